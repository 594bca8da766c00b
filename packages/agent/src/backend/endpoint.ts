// Where the agent sends requests, and which CAs it trusts there: shared by the S3 backend and the
// deletion requests (forget.ts), and light (no SDK), so that commands load the SDK only when they use it.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { BackendError } from './types.ts';

/** The endpoint as a URL: https://, or http:// only with the explicit insecure flag (G1). Every request the agent sends goes through here. */
export function checkEndpoint(endpoint: string, insecureHttp: boolean | undefined): URL {
  let url: URL;
  try { url = new URL(endpoint); } catch { throw new BackendError('Config', `endpoint ${endpoint} is not a URL`); }
  if (url.protocol === 'http:' && !insecureHttp) {
    throw new BackendError('Config', `endpoint ${endpoint} is plain HTTP: use https://, or pass --insecure-http if you really mean it`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BackendError('Config', `endpoint ${endpoint}: only https:// (or http:// with --insecure-http)`);
  return url;
}

/**
 * A failed connection's error as the agent reports it when it is a TLS failure (`code`: Node's or
 * OpenSSL's), else undefined. For a certificate no trusted CA signed, it says which CAs were
 * trusted; for anything else (a name that does not match, an expired certificate, not TLS at all)
 * the code says it already. `what`: the request, if the message should name it.
 */
export function tlsFailure(e: unknown, origin: string, caFile: string | undefined, what?: string): BackendError | undefined {
  const code = (e as { code?: string } | undefined)?.code ?? '';
  if (!/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO/.test(code)) return undefined;
  const untrusted = /^(UNABLE_TO_(GET_ISSUER_CERT|VERIFY_LEAF_SIGNATURE)|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED)/.test(code);
  const advice = !untrusted ? 'the certificate or the connection was refused'
    : caFile ? `its certificate is not signed by a CA of ${caFile}, the only CAs trusted with --ca-cert` : 'pass the gateway\'s CA with --ca-cert';
  return new BackendError('Tls', `${what ? `${what}: ` : ''}TLS error talking to ${origin} (${code}); ${advice}`, { cause: e });
}

/**
 * The CAs of the user's file (e.g. the gateway's ca.pem; a PEM bundle may hold several), or
 * undefined for the system's. The file replaces the system's CAs, as curl's --cacert, aws-cli's
 * --ca-bundle and restic's --cacert do: an agent told which CA signs its gateway trusts no other
 * (none of the ~120 public CAs can then vouch for a machine posing as the gateway), and a context
 * of one CA is built in ~0.5 ms instead of ~5-12 (each command, each restore worker).
 */
export function caBundle(caFile: string | undefined): string[] | undefined {
  return caFile ? [readFileSync(caFile, 'utf8')] : undefined;
}

/**
 * Keep-alive connections to the endpoint (the S3 client's, and each restore worker's own),
 * trusting `caFile`'s CAs (caBundle). The CAs go in as one secure context built once: given as
 * `ca`, Node's agent would join the whole bundle into its connection-pool key on every request. node:http(s) through getBuiltinModule, when first needed: an
 * ESM import of node:http reads its lazy exports, which load undici (~25 ms of every command).
 */
export function keepAliveAgents(caFile: string | undefined, maxSockets: number): { http: HttpAgent; https: HttpsAgent } {
  const secureContext = secureContextFor(caFile);
  return {
    http: new (process.getBuiltinModule('node:http').Agent)({ keepAlive: true, maxSockets }),
    https: new (process.getBuiltinModule('node:https').Agent)({ keepAlive: true, maxSockets, ...(secureContext ? { secureContext } : {}) }),
  };
}

/** this thread's secure contexts, one per CA file */
const contexts = new Map<string, SecureContext | undefined>();

/**
 * `caFile`'s CAs as one TLS secure context, built once per thread (the S3 client's agents and
 * signedhttp.ts's connections share it); undefined for the system's CAs.
 */
export function secureContextFor(caFile: string | undefined): SecureContext | undefined {
  if (!contexts.has(caFile ?? '')) {
    const ca = caBundle(caFile);
    contexts.set(caFile ?? '', ca ? createSecureContext({ ca }) : undefined);
  }
  return contexts.get(caFile ?? '');
}
