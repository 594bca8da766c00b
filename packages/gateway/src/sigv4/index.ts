// SigV4 for the shelterd S3 endpoint: request authentication (Authorization header and presigned
// URLs) and verification of the request body (payload hash, aws-chunked signatures, checksums).
export { SigV4Error, isSigV4Error, type SigV4ErrorCode } from './errors.ts';
export type {
  AuthOptions, AuthRequest, AuthResult, BodyResult, ChecksumAlgorithm, PayloadSpec,
} from './types.ts';
export { authenticate } from './authenticate.ts';
export { createBodyVerifier } from './payload.ts';
export {
  CHECKSUM_ALGORITHMS, checksumHeaderName, createChecksum, isValidChecksumValue, parseChecksumAlgorithm,
  type Checksum,
} from './checksums.ts';
export { MAX_CHUNK_SIZE } from './streaming.ts';
