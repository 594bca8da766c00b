// SigV4 in the Authorization header:
//   AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/s3/aws4_request, SignedHeaders=a;b, Signature=hex
import { ALGORITHM, canonicalQueryString, formatAmzDate, getHeader, parseAmzDate, parseHttpDate, type QueryParam } from './canonical.ts';
import { SigV4Error } from './errors.ts';
import {
  checkScope, checkSkew, checkUnsignedHeaders, classifyPayloadHash, HEADER_MODE, parseCredential,
  parseSignedHeaders, verifySignature, type AuthContext,
} from './scope.ts';
import type { AuthOptions, AuthRequest, PayloadSpec } from './types.ts';

interface AuthorizationParts {
  credential: string;
  signedHeaders: string;
  signature: string;
}

/** Splits the components after the algorithm. Separators are ',' with optional spaces. */
export function parseAuthorization(value: string): AuthorizationParts {
  const rest = value.slice(ALGORITHM.length).trim();
  const found = new Map<string, string>();
  for (const piece of rest.split(',')) {
    const item = piece.trim();
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (eq < 0 || (key !== 'Credential' && key !== 'SignedHeaders' && key !== 'Signature') || found.has(key)) {
      throw new SigV4Error('AuthorizationHeaderMalformed', `The authorization header is malformed; the authorization component "${item}" is malformed.`);
    }
    found.set(key, item.slice(eq + 1));
  }
  const missing = ['Credential', 'SignedHeaders', 'Signature'].filter((k) => !found.has(k));
  if (missing.length > 0) {
    throw new SigV4Error('IncompleteSignature', `The authorization header requires the Credential, SignedHeaders and Signature components; missing: ${missing.join(', ')}.`);
  }
  return { credential: found.get('Credential')!, signedHeaders: found.get('SignedHeaders')!, signature: found.get('Signature')! };
}

/** The request timestamp: x-amz-date, else the Date header (which must then be signed). */
function requestDate(req: AuthRequest): { date: Date; amzDate: string; header: 'x-amz-date' | 'date' } {
  const xAmzDate = getHeader(req.headers, 'x-amz-date');
  if (xAmzDate !== undefined) {
    const date = parseAmzDate(xAmzDate);
    if (date !== undefined) return { date, amzDate: xAmzDate, header: 'x-amz-date' };
  } else {
    const httpDate = getHeader(req.headers, 'date');
    const date = httpDate === undefined ? undefined : parseHttpDate(httpDate);
    if (date !== undefined) return { date, amzDate: formatAmzDate(date), header: 'date' };
  }
  throw new SigV4Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
}

export function authenticateHeader(req: AuthRequest, authorization: string, query: readonly QueryParam[], opts: AuthOptions, ctx: AuthContext): PayloadSpec {
  const parts = parseAuthorization(authorization);
  const cred = parseCredential(parts.credential, HEADER_MODE);
  ctx.accessKeyId = cred.accessKeyId;
  const signedHeaders = parseSignedHeaders(parts.signedHeaders, HEADER_MODE);
  const { date, amzDate, header: dateHeader } = requestDate(req);
  const scope = checkScope(cred, amzDate, opts, HEADER_MODE);
  checkUnsignedHeaders(req.headers, signedHeaders, dateHeader === 'date' ? ['date'] : []);

  // S3 requires the payload hash header on every SigV4 header-signed request.
  const payloadHash = getHeader(req.headers, 'x-amz-content-sha256');
  if (payloadHash === undefined) {
    throw new SigV4Error('MissingSecurityHeader', 'Missing required header for this request: x-amz-content-sha256');
  }
  const decl = classifyPayloadHash(payloadHash);
  checkSkew(date, opts);

  return verifySignature({
    cred, scope, amzDate, signature: parts.signature, decl, opts,
    canonical: {
      method: req.method, rawPath: req.rawPath, canonicalQuery: canonicalQueryString(query),
      signedHeaders, headers: req.headers, payloadHash,
    },
  });
}
