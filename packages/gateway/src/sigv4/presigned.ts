// SigV4 in the query string (presigned URLs): X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date,
// X-Amz-Expires, X-Amz-SignedHeaders, X-Amz-Signature. The signature covers every other query
// parameter; the payload is UNSIGNED-PAYLOAD unless the URL carries X-Amz-Content-Sha256.
import { ALGORITHM, canonicalQueryString, getHeader, parseAmzDate, type QueryParam } from './canonical.ts';
import { SigV4Error } from './errors.ts';
import {
  checkScope, checkUnsignedHeaders, classifyPayloadHash, DEFAULT_MAX_PRESIGNED_EXPIRES_SECONDS,
  DEFAULT_MAX_SKEW_SECONDS, parseCredential, parseSignedHeaders, QUERY_MODE, UNSIGNED_PAYLOAD,
  verifySignature, type AuthContext,
} from './scope.ts';
import type { AuthOptions, AuthRequest, PayloadSpec } from './types.ts';

const REQUIRED = ['x-amz-algorithm', 'x-amz-credential', 'x-amz-date', 'x-amz-expires', 'x-amz-signedheaders', 'x-amz-signature'] as const;
type Required = typeof REQUIRED[number];

/** True when the query carries any SigV4 query-auth parameter (names matched case-insensitively, as the SDKs do). */
export function hasQueryAuth(query: readonly QueryParam[]): boolean {
  return query.some((p) => {
    const n = p.name.toLowerCase();
    return n === 'x-amz-algorithm' || n === 'x-amz-credential' || n === 'x-amz-signature';
  });
}

/** The one value of a parameter; a repeated auth parameter is ambiguous and refused. */
function single(query: readonly QueryParam[], name: string): string | undefined {
  const found = query.filter((p) => p.name.toLowerCase() === name);
  if (found.length > 1) {
    throw new SigV4Error('AuthorizationQueryParametersError', `The query parameter ${name} is present more than once.`);
  }
  return found[0]?.value;
}

function parseExpires(value: string, max: number): number {
  if (value.startsWith('-')) throw new SigV4Error('AuthorizationQueryParametersError', 'X-Amz-Expires must be non-negative');
  if (!/^\d{1,12}$/.test(value)) throw new SigV4Error('AuthorizationQueryParametersError', 'X-Amz-Expires should be a number');
  const n = Number(value);
  if (n > max) {
    throw new SigV4Error('AuthorizationQueryParametersError', `X-Amz-Expires must be less than a week (in seconds) that is, the given X-Amz-Expires must be less than ${max} seconds`);
  }
  return n;
}

export function authenticateQuery(req: AuthRequest, query: readonly QueryParam[], opts: AuthOptions, ctx: AuthContext): PayloadSpec {
  const p = {} as Record<Required, string>;
  for (const name of REQUIRED) {
    const v = single(query, name);
    if (v === undefined) {
      throw new SigV4Error('AuthorizationQueryParametersError', 'Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
    }
    p[name] = v;
  }
  if (p['x-amz-algorithm'] !== ALGORITHM) {
    throw new SigV4Error('AuthorizationQueryParametersError', `X-Amz-Algorithm only supports "${ALGORITHM}"`);
  }
  const cred = parseCredential(p['x-amz-credential'], QUERY_MODE);
  ctx.accessKeyId = cred.accessKeyId;
  const amzDate = p['x-amz-date'];
  const date = parseAmzDate(amzDate);
  if (date === undefined) {
    throw new SigV4Error('AuthorizationQueryParametersError', `X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'"`);
  }
  const expires = parseExpires(p['x-amz-expires'], opts.maxPresignedExpiresSeconds ?? DEFAULT_MAX_PRESIGNED_EXPIRES_SECONDS);
  const scope = checkScope(cred, amzDate, opts, QUERY_MODE);
  const signedHeaders = parseSignedHeaders(p['x-amz-signedheaders'], QUERY_MODE);
  checkUnsignedHeaders(req.headers, signedHeaders);

  // A URL dated in the future (beyond the skew window) is not valid yet; one past its expiry is
  // a replay. Both are checked before the signature, as AWS does.
  const now = opts.now.getTime();
  if (date.getTime() - now > (opts.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS) * 1000) {
    throw new SigV4Error('AccessDenied', 'Request is not valid yet');
  }
  if (now > date.getTime() + expires * 1000) {
    throw new SigV4Error('AccessDenied', 'Request has expired');
  }

  // Payload hash: hoisted into the query by the SDK presigners (X-Amz-Content-Sha256), else a
  // signed header, else UNSIGNED-PAYLOAD.
  let payloadHash = single(query, 'x-amz-content-sha256');
  if (payloadHash === undefined && signedHeaders.includes('x-amz-content-sha256')) payloadHash = getHeader(req.headers, 'x-amz-content-sha256');
  payloadHash ??= UNSIGNED_PAYLOAD;
  const decl = classifyPayloadHash(payloadHash);
  if (decl.kind === 'streaming-signed') {
    // The chunk signature chain is seeded by a header signature; a URL has none.
    throw new SigV4Error('InvalidRequest', `${payloadHash} requires Authorization header signing; it cannot be used with a presigned URL.`);
  }

  const signed = query.filter((q) => q.name.toLowerCase() !== 'x-amz-signature');
  return verifySignature({
    cred, scope, amzDate, signature: p['x-amz-signature'], decl, opts,
    canonical: {
      method: req.method, rawPath: req.rawPath, canonicalQuery: canonicalQueryString(signed),
      signedHeaders, headers: req.headers, payloadHash,
    },
  });
}
