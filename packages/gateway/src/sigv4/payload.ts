// The request body verifier: a Transform from the raw HTTP body to the decoded payload that
// enforces everything the signature promised about the body (x-amz-content-sha256, chunk and
// trailer signatures), the integrity headers (Content-MD5, x-amz-checksum-*), the declared
// lengths and the size limit. It errors with a SigV4Error on the first violation, so a consumer
// that stores to a temporary location and commits only after 'end' never keeps bad data.
//
// Missing Content-Length (411 MissingContentLength) is checked here rather than in authenticate:
// only the code that consumes a body knows one is expected (GET/HEAD never build a verifier).
// Header-level problems found at construction are reported on the first write (or at end for an
// empty body), never synchronously, so an 'error' can't fire before the consumer listens.
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { getHeader } from './canonical.ts';
import {
  checksumHeaderName, checksumMismatch, declaredTrailers, isValidChecksumValue,
  planChecksum, type ChecksumPlan,
} from './checksums.ts';
import { SigV4Error } from './errors.ts';
import { AwsChunkedDecoder } from './streaming.ts';
import { createHasher, type Hasher } from './hashing.ts';
import type { BodyResult, PayloadSpec } from './types.ts';

const DECIMAL = /^\d{1,15}$/;

function parseLength(headers: IncomingHttpHeaders, name: string): number | undefined {
  const v = getHeader(headers, name);
  if (v === undefined) return undefined;
  if (!DECIMAL.test(v)) throw new SigV4Error('InvalidArgument', `The ${name} header is not a valid length.`);
  return Number(v);
}

function parseContentMd5(headers: IncomingHttpHeaders): Buffer | undefined {
  const v = getHeader(headers, 'content-md5');
  if (v === undefined) return undefined;
  const raw = Buffer.from(v, 'base64');
  if (!/^[A-Za-z0-9+/]{22}==$/.test(v) || raw.length !== 16) {
    throw new SigV4Error('InvalidDigest', 'The Content-MD5 you specified was invalid.');
  }
  return raw;
}

function isAwsChunked(headers: IncomingHttpHeaders): boolean {
  const v = getHeader(headers, 'content-encoding');
  return v !== undefined && v.split(',').some((s) => s.trim().toLowerCase() === 'aws-chunked');
}

class BodyVerifier extends Transform {
  private pending: SigV4Error | null = null;
  private decoder: AwsChunkedDecoder | null = null;
  /** Content-Length, or x-amz-decoded-content-length for aws-chunked */
  private expectedLength = 0;
  private chunked = false;
  private bytes = 0;
  private readonly maxBytes: number;
  private hasher: Hasher | null = null;
  private wantSha256 = false;
  private declaredSha256 = '';
  private plan: ChecksumPlan | undefined;
  private contentMd5: Buffer | undefined;
  private final: BodyResult | undefined;
  private readonly emitData = (b: Buffer): void => this.onData(b);

  constructor(payload: PayloadSpec, headers: IncomingHttpHeaders, limits: { maxBytes: number }) {
    super();
    this.maxBytes = limits.maxBytes;
    try {
      this.setup(payload, headers);
    } catch (e) {
      if (!(e instanceof SigV4Error)) throw e;
      this.pending = e;
    }
  }

  private setup(payload: PayloadSpec, headers: IncomingHttpHeaders): void {
    const streaming = payload.kind === 'streaming-signed' || payload.kind === 'streaming-unsigned-trailer';
    let trailerNames: string[] = [];
    if (streaming) {
      this.chunked = true;
      const decoded = parseLength(headers, 'x-amz-decoded-content-length');
      if (decoded === undefined) {
        throw new SigV4Error('MissingContentLength', 'You must provide the x-amz-decoded-content-length header with an aws-chunked payload.');
      }
      this.expectedLength = decoded;
      trailerNames = declaredTrailers(headers);
      const trailerAllowed = payload.kind === 'streaming-unsigned-trailer' || payload.trailer;
      if (trailerNames.length > 0 && !trailerAllowed) {
        throw new SigV4Error('InvalidRequest', 'x-amz-trailer requires x-amz-content-sha256 STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.');
      }
      this.decoder = new AwsChunkedDecoder({
        signing: payload.kind === 'streaming-signed' ? payload : null,
        signedTrailer: payload.kind === 'streaming-signed' && payload.trailer,
        trailerNames,
        onChunkHeader: (size) => this.checkGrowth(size),
      });
    } else {
      // The framing would otherwise be stored as object data.
      if (isAwsChunked(headers)) {
        throw new SigV4Error('InvalidRequest', 'Content-Encoding aws-chunked requires a STREAMING-* x-amz-content-sha256 value.');
      }
      const length = parseLength(headers, 'content-length');
      if (length === undefined) throw new SigV4Error('MissingContentLength', 'You must provide the Content-Length HTTP header.');
      this.expectedLength = length;
      if (declaredTrailers(headers).length > 0) {
        throw new SigV4Error('InvalidRequest', 'x-amz-trailer requires an aws-chunked payload with trailer.');
      }
      if (payload.kind === 'sha256') {
        this.wantSha256 = true;
        this.declaredSha256 = payload.hex.toLowerCase();
      }
    }
    if (this.expectedLength > this.maxBytes) {
      throw new SigV4Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed object size.');
    }
    this.plan = planChecksum(headers, trailerNames);
    this.contentMd5 = parseContentMd5(headers);
    this.hasher = createHasher({ sha256: this.wantSha256, checksum: this.plan?.algorithm ?? null, expectedBytes: this.expectedLength });
  }

  /** Refuses a chunk before reading it when it would exceed the limit or the declared length. */
  private checkGrowth(size: number): void {
    if (this.bytes + size > this.maxBytes) {
      throw new SigV4Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed object size.');
    }
    if (this.bytes + size > this.expectedLength) {
      throw new SigV4Error('InvalidRequest', 'The aws-chunked payload is longer than x-amz-decoded-content-length.');
    }
  }

  private onData(b: Buffer): void {
    this.bytes += b.length;
    if (this.bytes > this.maxBytes) {
      throw new SigV4Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed object size.');
    }
    if (this.bytes > this.expectedLength) {
      throw new SigV4Error('InvalidRequest', this.chunked
        ? 'The aws-chunked payload is longer than x-amz-decoded-content-length.'
        : 'The request body is longer than Content-Length.');
    }
    this.hasher!.update(b);
    this.push(b);
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.pending !== null) {
      callback(this.pending);
      return;
    }
    try {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
      if (this.decoder !== null) this.decoder.write(buf, this.emitData);
      else this.onData(buf);
      callback();
    } catch (e) {
      callback(e as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.pending !== null) {
      callback(this.pending);
      return;
    }
    this.finish().then((r) => { this.final = r; callback(); }, (e: Error) => callback(e));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.final === undefined) this.hasher?.drop();
    callback(error);
  }

  private async finish(): Promise<BodyResult> {
    this.decoder?.end();
    if (this.bytes < this.expectedLength) {
      throw new SigV4Error('IncompleteBody', this.chunked
        ? 'You did not provide the number of bytes specified by the x-amz-decoded-content-length header.'
        : 'You did not provide the number of bytes specified by the Content-Length HTTP header.');
    }
    const hashes = await this.hasher!.digest();
    if (this.wantSha256 && hashes.sha256!.toString('hex') !== this.declaredSha256) {
      throw new SigV4Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const md5 = hashes.md5;
    if (this.contentMd5 !== undefined && !md5.equals(this.contentMd5)) {
      throw new SigV4Error('BadDigest', 'The Content-MD5 you specified did not match what we received.');
    }
    const result: BodyResult = { bytes: this.bytes, md5 };
    if (this.plan !== undefined) {
      const alg = this.plan.algorithm;
      const computed = hashes.checksum!.toString('base64');
      const sent = this.plan.headerValue ?? this.decoder?.trailers.get(this.plan.trailerName ?? '');
      if (sent === undefined || !isValidChecksumValue(alg, sent)) {
        throw new SigV4Error('InvalidRequest', `Value for ${checksumHeaderName(alg)} trailing header is invalid.`);
      }
      if (sent !== computed) throw checksumMismatch(alg);
      result.checksum = { algorithm: alg, value: computed };
    }
    return result;
  }

  /** The verified result; only available after the stream ended without error. */
  result(): BodyResult {
    if (this.final === undefined) throw new Error('createBodyVerifier: result() called before the body was fully verified');
    return this.final;
  }
}

export function createBodyVerifier(payload: PayloadSpec, headers: IncomingHttpHeaders, limits: { maxBytes: number }): Transform & { result(): BodyResult } {
  return new BodyVerifier(payload, headers, limits);
}
