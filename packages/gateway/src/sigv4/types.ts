// Public types of the SigV4 module (re-exported by index.ts).
import type { IncomingHttpHeaders } from 'node:http';
import type { SigV4Error } from './errors.ts';

export interface AuthRequest {
  method: string;
  /** path exactly as received on the wire, still percent-encoded, no query */
  rawPath: string;
  /** query string exactly as received, without '?', may be '' */
  rawQuery: string;
  /**
   * node's lowercased headers. `req.headers` works; `req.headersDistinct` gives the exact
   * canonical form for a header sent several times (node joins repeats with ', ').
   * Values are node's latin1 decoding of the wire bytes, which is what the hash is computed on.
   */
  headers: IncomingHttpHeaders;
}

export interface AuthOptions {
  /** e.g. 'us-east-1' */
  region: string;
  /** default 's3' */
  service?: string;
  /** injected clock */
  now: Date;
  /** default 900 (15 min), for header auth and for presigned URLs dated in the future */
  maxSkewSeconds?: number;
  /** default 604800 (7 days) */
  maxPresignedExpiresSeconds?: number;
  /** secret access key, or undefined if the key is unknown or disabled */
  lookupSecret: (accessKeyId: string) => string | undefined;
}

export type PayloadSpec =
  | { kind: 'unsigned' }
  | { kind: 'sha256'; hex: string }
  | { kind: 'streaming-signed'; trailer: boolean; seedSignature: string; signingKey: Buffer; amzDate: string; scope: string }
  | { kind: 'streaming-unsigned-trailer' };

export type AuthResult =
  | { ok: true; accessKeyId: string; payload: PayloadSpec; presigned: boolean }
  | { ok: false; error: SigV4Error; accessKeyId?: string };

export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256';

export interface BodyResult {
  /** decoded payload length */
  bytes: number;
  /** MD5 of the decoded payload (the S3 ETag of a single-part object) */
  md5: Buffer;
  /** base64 value, present when the client sent or asked for a flexible checksum */
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}
