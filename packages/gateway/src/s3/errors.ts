// S3 errors as typed values. Every refusal the gateway makes is an S3Error carrying the code AWS
// would return, so clients (aws-cli, SDKs, rclone, restic) react the way they do against AWS.
export type S3ErrorCode =
  | 'AccessDenied' | 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'RequestTimeTooSkewed'
  | 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError' | 'MissingSecurityHeader'
  | 'InvalidArgument' | 'InvalidRequest' | 'XAmzContentSHA256Mismatch' | 'BadDigest' | 'InvalidDigest'
  | 'IncompleteBody' | 'MissingContentLength' | 'EntityTooLarge' | 'EntityTooSmall' | 'IncompleteSignature'
  | 'NoSuchBucket' | 'NoSuchKey' | 'NoSuchVersion' | 'NoSuchUpload' | 'InvalidPart' | 'InvalidPartOrder'
  | 'InvalidRange' | 'PreconditionFailed' | 'NotModified' | 'MethodNotAllowed' | 'NotImplemented'
  | 'MalformedXML' | 'InvalidBucketName' | 'BucketAlreadyExists' | 'BucketAlreadyOwnedByYou' | 'BucketNotEmpty'
  | 'KeyTooLongError' | 'MetadataTooLarge' | 'InvalidURI' | 'NoSuchObjectLockConfiguration'
  | 'ObjectLockConfigurationNotFoundError' | 'InvalidRetentionPeriod' | 'InternalError' | 'ServiceUnavailable'
  | 'SlowDown' | 'RequestTimeout' | 'TooManyParts' | 'InvalidObjectState' | 'MaxMessageLengthExceeded'
  | 'RequestHeaderSectionTooLarge' | 'MissingRequestBodyError' | 'InvalidBucketState' | 'UnexpectedContent'
  | 'InvalidLocationConstraint';

const STATUS: Partial<Record<S3ErrorCode, number>> = {
  AccessDenied: 403, InvalidAccessKeyId: 403, SignatureDoesNotMatch: 403, RequestTimeTooSkewed: 403,
  MissingSecurityHeader: 400, NoSuchBucket: 404, NoSuchKey: 404, NoSuchVersion: 404, NoSuchUpload: 404,
  NoSuchObjectLockConfiguration: 404, ObjectLockConfigurationNotFoundError: 404,
  InvalidRange: 416, PreconditionFailed: 412, NotModified: 304, MethodNotAllowed: 405, NotImplemented: 501,
  BucketAlreadyExists: 409, BucketAlreadyOwnedByYou: 409, BucketNotEmpty: 409, InvalidBucketState: 409,
  MissingContentLength: 411, InternalError: 500, ServiceUnavailable: 503, SlowDown: 503, RequestTimeout: 400,
  InvalidObjectState: 403,
};

export class S3Error extends Error {
  readonly code: S3ErrorCode;
  readonly status: number;
  /** extra response headers (e.g. x-amz-delete-marker on a 404) and extra XML fields */
  readonly headers: Record<string, string>;
  readonly fields: Record<string, string>;
  constructor(code: S3ErrorCode, message: string, opts: { status?: number; headers?: Record<string, string>; fields?: Record<string, string> } = {}) {
    super(message);
    this.code = code;
    this.status = opts.status ?? STATUS[code] ?? 400;
    this.headers = opts.headers ?? {};
    this.fields = opts.fields ?? {};
  }
}

export const isS3Error = (e: unknown): e is S3Error => e instanceof S3Error;
