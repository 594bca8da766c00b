// Typed SigV4 failures. `code` is the S3 error code AWS returns in the same situation, so the
// gateway can serialise it unchanged and clients (SDKs, aws-cli, rclone, restic) react as they do
// against AWS (e.g. the SDKs re-sync their clock on RequestTimeTooSkewed).

export type SigV4ErrorCode =
  | 'AccessDenied' | 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'RequestTimeTooSkewed'
  | 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError' | 'MissingSecurityHeader'
  | 'InvalidArgument' | 'InvalidRequest' | 'XAmzContentSHA256Mismatch' | 'BadDigest' | 'InvalidDigest'
  | 'IncompleteBody' | 'MissingContentLength' | 'EntityTooLarge' | 'IncompleteSignature';

// HTTP status AWS uses for each code: 403 for failed authentication, 400 for malformed requests
// and body/digest errors, 411 for a missing length.
const DEFAULT_STATUS: Record<SigV4ErrorCode, number> = {
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  SignatureDoesNotMatch: 403,
  RequestTimeTooSkewed: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  MissingSecurityHeader: 400,
  InvalidArgument: 400,
  InvalidRequest: 400,
  XAmzContentSHA256Mismatch: 400,
  BadDigest: 400,
  InvalidDigest: 400,
  IncompleteBody: 400,
  MissingContentLength: 411,
  EntityTooLarge: 400,
  IncompleteSignature: 400,
};

export class SigV4Error extends Error {
  code: SigV4ErrorCode;
  status: number;
  constructor(code: SigV4ErrorCode, message: string, status?: number) {
    super(message);
    this.name = 'SigV4Error';
    this.code = code;
    this.status = status ?? DEFAULT_STATUS[code];
  }
}

export const isSigV4Error = (e: unknown): e is SigV4Error => e instanceof SigV4Error;
