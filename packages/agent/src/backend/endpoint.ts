// Where the agent sends requests, and which CAs it trusts there: shared by the S3 backend and the
// deletion requests (forget.ts), and light (no SDK), so that commands load the SDK only when they use it.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
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

/** The system's CAs plus the user's (e.g. the gateway's ca.pem), or undefined for the defaults. */
export function caBundle(caFile: string | undefined): string[] | undefined {
  return caFile ? [...rootCertificates, readFileSync(caFile, 'utf8')] : undefined;
}

