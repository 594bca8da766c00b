// SigV4 signing of requests the agent sends without the S3 client: shelterd's deletion requests
// (forget.ts) and the ranged GETs a restore's worker threads send themselves (s3.ts signGet), each
// signed by @smithy/signature-v4, the AWS SDK's own signer. Light: no S3 client is loaded here.
import { createHash, createHmac, type BinaryLike } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

/** SHA-256 / HMAC-SHA256 in the shape @smithy/signature-v4 expects (node:crypto underneath). */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): BinaryLike => (typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
class Sha256 {
  private h;
  constructor(secret?: SourceData) { this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret)); }
  update(data: SourceData): void { this.h.update(bytes(data)); }
  async digest(): Promise<Uint8Array> { return this.h.digest(); }
  reset(): void { throw new Error('not resettable'); }
}

/**
 * A signer for S3 requests with these credentials. Paths are signed as given (S3's rule: the
 * caller escapes each key segment once); the payload's SHA-256 goes in x-amz-content-sha256.
 */
export function s3Signer(c: { accessKeyId: string; secretAccessKey: string; region?: string }): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
    region: c.region || 'us-east-1', service: 's3', sha256: Sha256, uriEscapePath: false,
  });
}
