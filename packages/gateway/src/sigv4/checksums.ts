// S3 flexible checksums (x-amz-checksum-*): incremental hashers and the rules deciding which
// checksum a request carries (header or trailer) and whether that is consistent.
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { crc32 } from 'node:zlib';
import { getHeader } from './canonical.ts';
import { crc32cUpdate, crc64nvmeUpdate, type Crc64State } from './crc.ts';
import { SigV4Error } from './errors.ts';
import type { ChecksumAlgorithm } from './types.ts';

export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'];

const DIGEST_BYTES: Record<ChecksumAlgorithm, number> = { CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32 };

/** 'x-amz-checksum-crc64nvme' for 'CRC64NVME'. */
export function checksumHeaderName(alg: ChecksumAlgorithm): string {
  return `x-amz-checksum-${alg.toLowerCase()}`;
}

/** Case-insensitive algorithm name ('crc32c', 'CRC32C'), or undefined. */
export function parseChecksumAlgorithm(s: string): ChecksumAlgorithm | undefined {
  const up = s.trim().toUpperCase();
  return CHECKSUM_ALGORITHMS.find((a) => a === up);
}

/** Algorithm named by a trailer/header name 'x-amz-checksum-<alg>', or undefined. */
export function algorithmOfHeaderName(name: string): ChecksumAlgorithm | undefined {
  return CHECKSUM_ALGORITHMS.find((a) => checksumHeaderName(a) === name);
}

/** A base64 value of exactly the digest size, in canonical padded form (as the SDKs send it). */
export function isValidChecksumValue(alg: ChecksumAlgorithm, value: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return false;
  const raw = Buffer.from(value, 'base64');
  return raw.length === DIGEST_BYTES[alg] && raw.toString('base64') === value;
}

export interface Checksum {
  update(b: Buffer): void;
  digest(): Buffer;
}

/** Incremental checksum; digest() gives the big-endian digest bytes (base64 them for S3). */
export function createChecksum(alg: ChecksumAlgorithm): Checksum {
  switch (alg) {
    case 'CRC32': {
      let c = 0;
      return {
        update(b) { c = crc32(b, c); },
        digest() { const out = Buffer.alloc(4); out.writeUInt32BE(c >>> 0); return out; },
      };
    }
    case 'CRC32C': {
      let c = ~0;
      return {
        update(b) { c = crc32cUpdate(c, b); },
        digest() { const out = Buffer.alloc(4); out.writeUInt32BE(~c >>> 0); return out; },
      };
    }
    case 'CRC64NVME': {
      const s: Crc64State = { lo: ~0, hi: ~0 };
      return {
        update(b) { crc64nvmeUpdate(s, b); },
        digest() { const out = Buffer.alloc(8); out.writeInt32BE(~s.hi, 0); out.writeInt32BE(~s.lo, 4); return out; },
      };
    }
    case 'SHA1':
    case 'SHA256': {
      const h = createHash(alg === 'SHA1' ? 'sha1' : 'sha256');
      return { update(b) { h.update(b); }, digest() { return h.digest(); } };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Which checksum does the request carry?
// ---------------------------------------------------------------------------------------------

export interface ChecksumPlan {
  algorithm: ChecksumAlgorithm;
  /** value sent as a request header; undefined when it arrives in the trailer */
  headerValue?: string;
  /** trailer name carrying the value, when it arrives in the trailer */
  trailerName?: string;
}

/** Lower-cased names listed in x-amz-trailer (comma-separated), [] when absent. */
export function declaredTrailers(headers: IncomingHttpHeaders): string[] {
  const v = getHeader(headers, 'x-amz-trailer');
  if (v === undefined) return [];
  return v.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
}

/**
 * Decides the checksum to compute and verify. `trailers` are the declared trailer names, already
 * checked to be allowed by the payload mode. Throws InvalidRequest on inconsistent declarations.
 */
export function planChecksum(headers: IncomingHttpHeaders, trailers: readonly string[]): ChecksumPlan | undefined {
  const inHeaders = CHECKSUM_ALGORITHMS.filter((a) => headers[checksumHeaderName(a)] !== undefined);
  const inTrailer: ChecksumAlgorithm[] = [];
  for (const name of trailers) {
    const alg = algorithmOfHeaderName(name);
    if (alg === undefined) throw new SigV4Error('InvalidRequest', `The trailer ${name} is not supported; only x-amz-checksum-* trailers are.`);
    inTrailer.push(alg);
  }
  if (inHeaders.length + inTrailer.length > 1) {
    throw new SigV4Error('InvalidRequest', 'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  }

  const sdkAlg = getHeader(headers, 'x-amz-sdk-checksum-algorithm');
  const plainAlg = getHeader(headers, 'x-amz-checksum-algorithm');
  let requested: ChecksumAlgorithm | undefined;
  for (const [name, value] of [['x-amz-sdk-checksum-algorithm', sdkAlg], ['x-amz-checksum-algorithm', plainAlg]] as const) {
    if (value === undefined) continue;
    const alg = parseChecksumAlgorithm(value);
    if (alg === undefined) throw new SigV4Error('InvalidRequest', `Value for ${name} header is invalid.`);
    if (requested !== undefined && requested !== alg) {
      throw new SigV4Error('InvalidRequest', 'x-amz-sdk-checksum-algorithm and x-amz-checksum-algorithm name different algorithms.');
    }
    requested = alg;
  }

  const sent = inHeaders[0] ?? inTrailer[0];
  if (sent === undefined) {
    if (requested === undefined) return undefined;
    throw new SigV4Error('InvalidRequest', `x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.`);
  }
  if (requested !== undefined && requested !== sent) {
    throw new SigV4Error('InvalidRequest', `Checksum Type mismatch occurred, expected checksum Type: ${requested.toLowerCase()}, actual checksum Type: ${sent.toLowerCase()}`);
  }
  if (inHeaders.length === 1) {
    const value = getHeader(headers, checksumHeaderName(sent))!;
    if (!isValidChecksumValue(sent, value)) {
      throw new SigV4Error('InvalidRequest', `Value for ${checksumHeaderName(sent)} header is invalid.`);
    }
    return { algorithm: sent, headerValue: value };
  }
  return { algorithm: sent, trailerName: checksumHeaderName(sent) };
}

/** Message AWS uses when a flexible checksum does not match. */
export function checksumMismatch(alg: ChecksumAlgorithm): SigV4Error {
  return new SigV4Error('BadDigest', `The ${alg} you specified did not match the calculated checksum.`);
}
