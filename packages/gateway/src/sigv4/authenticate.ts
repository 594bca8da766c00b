// Entry point of request authentication: decides which mechanism the request uses and refuses
// everything that is not exactly one SigV4 mechanism (anonymous, SigV2, SigV4a, both at once).
import { headerValues, parseQuery, type QueryParam } from './canonical.ts';
import { SigV4Error } from './errors.ts';
import { authenticateHeader } from './header.ts';
import { authenticateQuery, hasQueryAuth } from './presigned.ts';
import type { AuthContext } from './scope.ts';
import type { AuthOptions, AuthRequest, AuthResult, PayloadSpec } from './types.ts';

const SIGV4_ONLY = 'Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported by this endpoint; please sign your requests with SigV4.';

/** SigV2 presigned URLs carry AWSAccessKeyId, Signature and Expires. */
function hasSigV2Query(query: readonly QueryParam[]): boolean {
  const names = new Set(query.map((p) => p.name));
  return names.has('AWSAccessKeyId') && names.has('Signature');
}

function dispatch(req: AuthRequest, opts: AuthOptions, ctx: AuthContext): { payload: PayloadSpec; presigned: boolean } {
  const query = parseQuery(req.rawQuery);
  const authValues = headerValues(req.headers, 'authorization');
  const queryV4 = hasQueryAuth(query);
  const queryV2 = hasSigV2Query(query);

  if (authValues !== undefined) {
    if (queryV4 || queryV2) {
      throw new SigV4Error('InvalidArgument', 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified');
    }
    if (authValues.length !== 1) {
      throw new SigV4Error('InvalidArgument', 'Only one Authorization header is allowed.');
    }
    const authorization = authValues[0]!;
    if (authorization.startsWith('AWS ')) throw new SigV4Error('InvalidRequest', SIGV4_ONLY);
    if (authorization.startsWith('AWS4-ECDSA-P256-SHA256')) {
      throw new SigV4Error('InvalidRequest', 'SigV4a (AWS4-ECDSA-P256-SHA256) is not supported by this endpoint; sign with AWS4-HMAC-SHA256.');
    }
    if (!authorization.startsWith('AWS4-HMAC-SHA256 ')) throw new SigV4Error('InvalidArgument', 'Unsupported Authorization Type');
    return { payload: authenticateHeader(req, authorization, query, opts, ctx), presigned: false };
  }
  if (queryV4) return { payload: authenticateQuery(req, query, opts, ctx), presigned: true };
  if (queryV2) throw new SigV4Error('InvalidRequest', SIGV4_ONLY);
  // The gateway serves no anonymous access at all.
  throw new SigV4Error('AccessDenied', 'Access Denied: the request carries no credentials and anonymous access is not allowed.');
}

/**
 * Authenticates one request. Never throws for a client error: the failure is returned as a
 * SigV4Error with the S3 code AWS would use. `accessKeyId` in a failure is the key the request
 * claimed (unverified), for the audit log.
 */
export function authenticate(req: AuthRequest, opts: AuthOptions): AuthResult {
  const ctx: AuthContext = {};
  try {
    const { payload, presigned } = dispatch(req, opts, ctx);
    return { ok: true, accessKeyId: ctx.accessKeyId!, payload, presigned };
  } catch (e) {
    if (!(e instanceof SigV4Error)) throw e;
    return ctx.accessKeyId === undefined ? { ok: false, error: e } : { ok: false, error: e, accessKeyId: ctx.accessKeyId };
  }
}
