// A restore range's work for the worker that writes it (sealpool.ts writeRange, sealworker.ts), as
// two flat arrays handed over without a copy: its blobs (ids, places in the pack) and the files it
// writes (paths, metadata, which chunk goes where). As a structured clone of objects (an entry
// and a FileWrite per blob and file, each with its own id or path Buffer) the linux tree's 84k
// blobs and 78k files cost the main thread ~0.3 s of postMessage and the workers as much again.
//
// nums (Float64Array): [entries E, files F, chunks C,
//   E x (offset, length, rawLength),
//   F x (path offset in bytes, path length, size, mode, uid, gid, atime, mtime, flags, chunk count),
//   C x (entry, offset in the file)]                 flags: 1 whole, 2 chown, 4 owned if new; a file's chunks in order
// bytes (Uint8Array): E ids of 32 bytes, then the paths end to end.
import type { FileMeta } from './filewrite.ts';

/**
 * Restore: what the worker that opens a range writes into one file. `whole`: every chunk of the
 * file is in this range, so the worker creates (truncates) it, writes the chunks, gives it its
 * length and metadata and closes it; otherwise it opens the existing file and writes its part.
 * All-zero chunks are skipped (holes).
 */
export interface FileWrite extends FileMeta {
  path: Buffer;
  whole: boolean;
  /** `entry`: index in the range's entries */
  chunks: Array<{ entry: number; offset: number }>;
}

/** a blob of the range (a pack entry's fields the worker needs) */
export interface RangeBlob { id: Buffer; offset: number; length: number; rawLength: number }

export interface EncodedWriteJob { nums: Float64Array<ArrayBuffer>; bytes: Uint8Array<ArrayBuffer> }

const ENTRY = 3;
const FILE = 10;
const CHUNK = 2;
const WHOLE = 1;
const CHOWN = 2;
const OWNED_IF_NEW = 4;

export function encodeWriteJob(entries: readonly RangeBlob[], files: readonly FileWrite[]): EncodedWriteJob {
  const chunks = files.reduce((n, f) => n + f.chunks.length, 0);
  const pathBytes = files.reduce((n, f) => n + f.path.length, 0);
  const nums = new Float64Array(3 + ENTRY * entries.length + FILE * files.length + CHUNK * chunks);
  const bytes = new Uint8Array(32 * entries.length + pathBytes);
  nums[0] = entries.length; nums[1] = files.length; nums[2] = chunks;
  let n = 3;
  entries.forEach((e, i) => {
    bytes.set(e.id, 32 * i);
    nums[n++] = e.offset; nums[n++] = e.length; nums[n++] = e.rawLength;
  });
  let c = n + FILE * files.length;
  let at = 32 * entries.length;
  for (const f of files) {
    bytes.set(f.path, at);
    nums[n++] = at; nums[n++] = f.path.length; nums[n++] = f.size; nums[n++] = f.mode; nums[n++] = f.uid; nums[n++] = f.gid;
    nums[n++] = f.atime; nums[n++] = f.mtime; nums[n++] = (f.whole ? WHOLE : 0) | (f.chown ? CHOWN : 0) | (f.ownedIfNew ? OWNED_IF_NEW : 0); nums[n++] = f.chunks.length;
    at += f.path.length;
    for (const k of f.chunks) { nums[c++] = k.entry; nums[c++] = k.offset; }
  }
  return { nums, bytes };
}

/**
 * The job back as objects, on the worker (ids and paths are Buffer views of `bytes`). A job whose
 * counts do not match its arrays throws (a bug on the sending side: never misread).
 */
export function decodeWriteJob({ nums, bytes }: EncodedWriteJob): { entries: RangeBlob[]; files: FileWrite[] } {
  const [e, f, chunkCount] = [nums[0]!, nums[1]!, nums[2]!];
  const view = (at: number, length: number) => Buffer.from(bytes.buffer, bytes.byteOffset + at, length);
  if (nums.length !== 3 + ENTRY * e + FILE * f + CHUNK * chunkCount || bytes.length < 32 * e) throw new Error(`malformed write job: ${e} blobs, ${f} files, ${chunkCount} chunks in ${nums.length} numbers`);
  const entries: RangeBlob[] = [];
  let n = 3;
  for (let i = 0; i < e; i++, n += ENTRY) entries.push({ id: view(32 * i, 32), offset: nums[n]!, length: nums[n + 1]!, rawLength: nums[n + 2]! });
  const files: FileWrite[] = [];
  let c = n + FILE * f;
  for (let i = 0; i < f; i++, n += FILE) {
    if (nums[n]! + nums[n + 1]! > bytes.length || c + CHUNK * nums[n + 9]! > nums.length) throw new Error(`malformed write job: file ${i} lies outside it`);
    const chunks: FileWrite['chunks'] = [];
    for (let k = 0; k < nums[n + 9]!; k++, c += CHUNK) chunks.push({ entry: nums[c]!, offset: nums[c + 1]! });
    const flags = nums[n + 8]!;
    files.push({
      path: view(nums[n]!, nums[n + 1]!), size: nums[n + 2]!, mode: nums[n + 3]!, uid: nums[n + 4]!, gid: nums[n + 5]!,
      atime: nums[n + 6]!, mtime: nums[n + 7]!, whole: (flags & WHOLE) !== 0, chown: (flags & CHOWN) !== 0, ownedIfNew: (flags & OWNED_IF_NEW) !== 0, chunks,
    });
  }
  if (c !== nums.length) throw new Error(`malformed write job: its files place ${(c - n) / CHUNK} of its ${chunkCount} chunks`);
  return { entries, files };
}
