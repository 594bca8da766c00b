// Content-defined chunking: FastCDC (Xia et al., 2016/2020) with normalized chunking level 2
// and a secret gear table.
//
// For a chunk starting at stream position s, let b_i be its byte at offset i (0-based) and
// L = i + 1 the chunk length if it ends after b_i. The 32-bit gear hash is reset to 0 at each
// chunk start and updated for every i >= min - 32:   h = (2h + G[b_i]) mod 2^32,
// so when it is tested (L >= min) it is a function of the last 32 bytes only. The chunk ends
// after b_i at the first i where
//     L == max, or
//     min <= L < avg  and  (h & maskS) == 0,   maskS = the top (log2(avg) + 2) bits of 32
//     avg <= L < max  and  (h & maskL) == 0,   maskL = the top (log2(avg) - 2) bits of 32
// or at the end of the input (the last chunk may be shorter than min; a file shorter than min
// is one chunk). Bits 31 down are used because bit k of h depends on the last k + 1 bytes:
// the top bits see the whole 32-byte window.
//
// G is secret (derived from the repository key) so that chunk lengths, which a storage
// observer could otherwise match against known files, depend on the key.
import { createCipheriv } from 'node:crypto';
import { FormatError } from './errors.ts';
import type { RepoKeys } from './derive.ts';

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

/**
 * 64 KiB / 256 KiB / 1 MiB (mean chunk ~290 KiB on random data). docs/FORMAT.md "Chunker" has
 * the measurements: the benchmark's dedup.bin (1 MiB pieces at unaligned offsets) stores 285 MiB
 * with 1 MiB chunks (restic's size: nothing dedups) and 139 MiB with these, while compression of
 * a tar of /usr/lib loses only 3%. The price is 4x more blobs per TB, i.e. index memory: a
 * repository expecting many TB can pick avg 1 MiB in its config.
 */
export const DEFAULT_CHUNKER: Readonly<ChunkerParams> = Object.freeze({ min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 });

/** Window of the gear hash: bytes hashed before the first position that may end a chunk. */
export const GEAR_WINDOW = 32;

function log2(n: number): number {
  return 31 - Math.clz32(n);
}

export function validateChunkerParams(p: ChunkerParams, code: 'Invalid' | 'Corrupt' = 'Invalid'): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!ok(p.min) || !ok(p.avg) || !ok(p.max)) throw new FormatError(code, 'chunker sizes must be powers of two');
  // avg between 64 KiB and 16 MiB keeps both masks inside 32 bits with at least 12 bits each;
  // the ordering is what FastCDC needs; max <= 64 MiB bounds the memory of a reader.
  if (p.avg < 1 << 16 || p.avg > 1 << 24) throw new FormatError(code, 'chunker avg must be between 64 KiB and 16 MiB');
  if (p.min < GEAR_WINDOW || p.min > p.avg || p.max < p.avg || p.max > 1 << 26) {
    throw new FormatError(code, 'chunker sizes must satisfy 32 <= min <= avg <= max <= 64 MiB');
  }
}

/** G[j] = u32le at 4j of AES-256-CTR(key = chunker key, iv = 0^16) applied to 1024 zero bytes. */
export function gearTable(chunkerKey: Uint8Array): Int32Array {
  const c = createCipheriv('aes-256-ctr', chunkerKey, Buffer.alloc(16));
  const ks = Buffer.concat([c.update(Buffer.alloc(1024)), c.final()]);
  const g = new Int32Array(256);
  for (let j = 0; j < 256; j++) g[j] = ks.readInt32LE(4 * j);
  return g;
}

/**
 * Streaming chunker. Feed buffers of any size with push(); it returns the offsets *within that
 * buffer* where chunks end (exclusive). Call end() at the end of a file: the bytes since the
 * last cut (if any) are the final chunk. Cut points do not depend on how the input is split
 * into buffers. No allocation per byte; one small array per push. Reuse one Chunker for
 * many files (end() resets it): building the gear table costs an AES call.
 */
export class Chunker {
  readonly params: Readonly<ChunkerParams>;
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;
  /** Bytes in the current chunk so far. */
  private len = 0;
  private h = 0;

  constructor(gearOrKeys: Int32Array | RepoKeys, params: ChunkerParams = DEFAULT_CHUNKER) {
    validateChunkerParams(params);
    this.params = Object.freeze({ ...params });
    this.gear = gearOrKeys instanceof Int32Array ? gearOrKeys : gearTable(gearOrKeys.chunker);
    if (this.gear.length !== 256) throw new FormatError('Invalid', 'gear table must have 256 entries');
    const bits = log2(params.avg);
    this.maskS = topBits(bits + 2);
    this.maskL = topBits(bits - 2);
  }

  /** Bytes of the current, not yet ended chunk. */
  get pending(): number {
    return this.len;
  }

  push(buf: Uint8Array): number[] {
    const cuts: number[] = [];
    const n = buf.length;
    const g = this.gear;
    const { min, avg, max } = this.params;
    const warm = min - GEAR_WINDOW;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let len = this.len;
    let h = this.h;
    let i = 0;
    while (i < n) {
      // Phase 0: nothing before min - 32 can influence a cut: skip without reading.
      if (len < warm) {
        const skip = Math.min(warm - len, n - i);
        len += skip; i += skip;
        continue;
      }
      // `base` converts a buffer index to a chunk offset: offset = i + base, length = i + base + 1.
      const base = len - i;
      let cut = -1;
      // Phase 1: warm-up, hash only (offsets below min - 1, i.e. lengths below min, never cut).
      let end = Math.min(n, min - 1 - base);
      for (; i < end; i++) h = (h << 1) + g[buf[i]!]! | 0;
      // Phase 2: lengths min .. avg-1 test the strict mask.
      end = Math.min(n, avg - 1 - base);
      for (; i < end; i++) {
        h = (h << 1) + g[buf[i]!]! | 0;
        if ((h & maskS) === 0) { cut = i; break; }
      }
      if (cut < 0) {
        // Phase 3: lengths avg .. max-1 test the loose mask.
        end = Math.min(n, max - 1 - base);
        for (; i < end; i++) {
          h = (h << 1) + g[buf[i]!]! | 0;
          if ((h & maskL) === 0) { cut = i; break; }
        }
        if (cut < 0) {
          if (i >= n) { len = i + base; break; } // buffer exhausted inside the chunk
          cut = i; // offset max - 1: length max always cuts (its hash does not matter)
        }
      }
      cuts.push(cut + 1);
      i = cut + 1;
      len = 0;
      h = 0;
    }
    this.len = len;
    this.h = h;
    return cuts;
  }

  /** Ends the input: returns the length of the final chunk (0 when the input ended on a cut) and resets. */
  end(): number {
    const last = this.len;
    this.len = 0;
    this.h = 0;
    return last;
  }
}

function topBits(k: number): number {
  return k <= 0 ? 0 : (0xffffffff << (32 - k)) | 0;
}

/** Lengths of the chunks of one complete buffer (a whole file). */
export function chunkLengths(chunker: Chunker, data: Uint8Array): number[] {
  const out: number[] = [];
  let prev = 0;
  for (const c of chunker.push(data)) { out.push(c - prev); prev = c; }
  const last = chunker.end();
  if (last > 0) out.push(last);
  return out;
}

/**
 * Convenience over Chunker for callers that want the chunk bytes: push() returns the chunks
 * completed by this buffer, end() the final one. A chunk inside one pushed buffer is a
 * zero-copy view of it (keep the buffer alive, don't reuse it); a chunk spanning buffers is copied.
 */
export class ChunkSplitter {
  private readonly chunker: Chunker;
  private parts: Uint8Array[] = [];

  constructor(chunker: Chunker) {
    this.chunker = chunker;
  }

  push(buf: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let prev = 0;
    for (const c of this.chunker.push(buf)) {
      const piece = buf.subarray(prev, c);
      if (this.parts.length > 0) { this.parts.push(piece); out.push(Buffer.concat(this.parts)); this.parts = []; } else out.push(piece);
      prev = c;
    }
    if (prev < buf.length) this.parts.push(buf.subarray(prev));
    return out;
  }

  end(): Uint8Array | null {
    this.chunker.end();
    const parts = this.parts;
    this.parts = [];
    if (parts.length === 0) return null;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
