// Checks shared by header and query (presigned) authentication: the credential scope, the signed
// header list, unsigned x-amz-* headers, the clock, the declared payload hash, the secret lookup
// and the final signature comparison.
import type { IncomingHttpHeaders } from 'node:http';
import {
  canonicalRequest, deriveSigningKey, signaturesEqual, signHex, stringToSign, TERMINATOR,
  type CanonicalInput,
} from './canonical.ts';
import { SigV4Error, type SigV4ErrorCode } from './errors.ts';
import type { AuthOptions, PayloadSpec } from './types.ts';

export const DEFAULT_MAX_SKEW_SECONDS = 900;
export const DEFAULT_MAX_PRESIGNED_EXPIRES_SECONDS = 604800;

/** Which flavour of auth is being checked: decides the error code and message prefix AWS uses. */
export interface Mode {
  presigned: boolean;
  /** AuthorizationHeaderMalformed or AuthorizationQueryParametersError */
  malformed: SigV4ErrorCode;
  /** prefix of scope errors, as AWS words them */
  prefix: string;
}

export const HEADER_MODE: Mode = {
  presigned: false,
  malformed: 'AuthorizationHeaderMalformed',
  prefix: 'The authorization header is malformed; ',
};

export const QUERY_MODE: Mode = {
  presigned: true,
  malformed: 'AuthorizationQueryParametersError',
  prefix: 'Error parsing the X-Amz-Credential parameter; ',
};

/** Mutable per-request context, so that a failure can still report the access key it claimed. */
export interface AuthContext {
  accessKeyId?: string;
}

export interface Credential {
  accessKeyId: string;
  shortDate: string;
  region: string;
  service: string;
  terminator: string;
}

/** 'AKID/YYYYMMDD/region/service/aws4_request' */
export function parseCredential(value: string, mode: Mode): Credential {
  const parts = value.split('/');
  if (parts.length !== 5 || parts.some((p) => p === '')) {
    throw new SigV4Error(mode.malformed, `${mode.prefix}the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  }
  const [accessKeyId, shortDate, region, service, terminator] = parts as [string, string, string, string, string];
  return { accessKeyId, shortDate, region, service, terminator };
}

/** The scope must name this endpoint and the day of the request timestamp, as AWS requires. */
export function checkScope(cred: Credential, amzDate: string, opts: AuthOptions, mode: Mode): string {
  const service = opts.service ?? 's3';
  if (!/^\d{8}$/.test(cred.shortDate) || cred.shortDate !== amzDate.slice(0, 8)) {
    throw new SigV4Error(mode.malformed, `${mode.prefix}Invalid credential date "${cred.shortDate}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  }
  if (cred.region !== opts.region) {
    throw new SigV4Error(mode.malformed, `${mode.prefix}the region '${cred.region}' is wrong; expecting '${opts.region}'`);
  }
  if (cred.service !== service) {
    throw new SigV4Error(mode.malformed, `${mode.prefix}incorrect service "${cred.service}". This endpoint belongs to "${service}".`);
  }
  if (cred.terminator !== TERMINATOR) {
    throw new SigV4Error(mode.malformed, `${mode.prefix}incorrect terminal "${cred.terminator}". This endpoint uses "${TERMINATOR}".`);
  }
  return `${cred.shortDate}/${cred.region}/${cred.service}/${TERMINATOR}`;
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * 'host;x-amz-date;...' -> sorted list. Names must be lower-case tokens without duplicates and
 * 'host' must be signed (otherwise a signature could be replayed against another endpoint).
 */
export function parseSignedHeaders(value: string, mode: Mode): string[] {
  const names = value.split(';');
  const seen = new Set<string>();
  for (const n of names) {
    if (!HEADER_NAME.test(n) || seen.has(n)) {
      throw new SigV4Error(mode.malformed, `${mode.presigned ? 'X-Amz-SignedHeaders' : 'SignedHeaders'} is malformed: ${JSON.stringify(value)}`);
    }
    seen.add(n);
  }
  if (!seen.has('host')) {
    throw new SigV4Error(mode.malformed, `'Host' must be a 'SignedHeader' in the AWS Authorization.`);
  }
  // The canonical request lists them sorted; a client that sent them unsorted signed them sorted.
  return names.sort();
}

/**
 * Every x-amz-* header present must be signed, as AWS requires: these headers carry the payload
 * hash, checksums, object lock settings... and must not be addable by anyone but the signer.
 * `extra` lists other headers that must be signed when present (the Date header when it is the
 * request timestamp).
 */
export function checkUnsignedHeaders(headers: IncomingHttpHeaders, signed: readonly string[], extra: readonly string[] = []): void {
  const signedSet = new Set(signed);
  const missing: string[] = [];
  for (const name of Object.keys(headers)) {
    if (headers[name] === undefined) continue;
    if ((name.startsWith('x-amz-') || extra.includes(name)) && !signedSet.has(name)) missing.push(name);
  }
  if (missing.length > 0) {
    throw new SigV4Error('AccessDenied', `There were headers present in the request which were not signed: ${missing.sort().join(', ')}`);
  }
}

export function checkSkew(date: Date, opts: AuthOptions): void {
  const maxSkewMs = (opts.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS) * 1000;
  if (Math.abs(opts.now.getTime() - date.getTime()) > maxSkewMs) {
    throw new SigV4Error('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
  }
}

// ---------------------------------------------------------------------------------------------
// Declared payload (x-amz-content-sha256)
// ---------------------------------------------------------------------------------------------

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';

export type PayloadDecl =
  | { kind: 'unsigned' }
  | { kind: 'sha256'; hex: string }
  | { kind: 'streaming-signed'; trailer: boolean }
  | { kind: 'streaming-unsigned-trailer' };

export function classifyPayloadHash(value: string): PayloadDecl {
  switch (value) {
    case UNSIGNED_PAYLOAD: return { kind: 'unsigned' };
    case STREAMING_SIGNED: return { kind: 'streaming-signed', trailer: false };
    case STREAMING_SIGNED_TRAILER: return { kind: 'streaming-signed', trailer: true };
    case STREAMING_UNSIGNED_TRAILER: return { kind: 'streaming-unsigned-trailer' };
    case 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD':
    case 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER':
      throw new SigV4Error('InvalidRequest', `${value} (SigV4a) is not supported by this endpoint; sign with AWS4-HMAC-SHA256.`);
    default:
      if (/^[0-9a-fA-F]{64}$/.test(value)) return { kind: 'sha256', hex: value.toLowerCase() };
      throw new SigV4Error('InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.');
  }
}

// ---------------------------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------------------------

export interface VerifyInput {
  cred: Credential;
  scope: string;
  amzDate: string;
  signature: string;
  canonical: CanonicalInput;
  decl: PayloadDecl;
  opts: AuthOptions;
}

/** Looks up the secret, recomputes the signature, compares in constant time, builds the PayloadSpec. */
export function verifySignature(v: VerifyInput): PayloadSpec {
  const secret = v.opts.lookupSecret(v.cred.accessKeyId);
  if (secret === undefined) {
    throw new SigV4Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  }
  const key = deriveSigningKey(secret, v.cred.shortDate, v.cred.region, v.cred.service);
  const expected = signHex(key, stringToSign(v.amzDate, v.scope, canonicalRequest(v.canonical)));
  if (!signaturesEqual(expected, v.signature)) {
    throw new SigV4Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  }
  switch (v.decl.kind) {
    case 'streaming-signed':
      // The chunk signature chain starts from the (now verified) header signature.
      return { kind: 'streaming-signed', trailer: v.decl.trailer, seedSignature: expected, signingKey: key, amzDate: v.amzDate, scope: v.scope };
    default:
      return v.decl;
  }
}
