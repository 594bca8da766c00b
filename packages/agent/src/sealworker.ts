// Worker thread: the CPU-heavy part of a backup or restore, so that every core works. Backup: it
// seals chunks (zstd + AES-256-GCM, format's `seal`) the main thread hands over, hashing them too
// when there is no parent; without parent it also reads small files itself (one chunk each) and
// streams large ones (reads, chunks and hashes a window at a time, for any worker to seal); with
// a parent it verifies a changed file's leading chunks by hashing. Both: it opens tree blobs and
// finds their subtrees.
// Restore: it decrypts fetched pack ranges and writes the files.
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { blobId, Chunker, extractBlob, freeBuffer, gearTable, MAX_BLOB_BYTES, openBlob, seal, subtreeIds, toHex, type ChunkerParams, type RepoKeys } from '@shelter/format';
import { createFile, finishFile, writeChunkAt } from './filewrite.ts';
import { decodeWriteJob, type EncodedWriteJob, type FileWrite, type RangeBlob } from './writejob.ts';
import { openForBackup } from './fsnode.ts';
import { youngCollectionEvery } from './collect.ts';
import type { FileResult } from './sealpool.ts';
import type { SignedRequest } from './backend/types.ts';

const k = workerData.keys as Record<string, Uint8Array | string>;
const keys = Object.fromEntries(Object.entries(k).map(([n, v]) => [n, typeof v === 'string' ? v : Buffer.from(v)])) as unknown as RepoKeys;
const level = workerData.level as number;
const follow = workerData.followSymlinks === true;

// This thread's JS heap stays tiny while it allocates and drops hundreds of MiB of zstd and
// cipher output outside it, so V8 rarely sees a reason to collect, and the process's memory grows
// by that much. A young-generation collection every 8 MiB handled keeps it bounded: the
// buffers die young, so a minor GC (well under a ms on this tiny heap) frees them; a full one
// every 64 MiB let each worker hold ~60 MiB of dead buffers.
const handled = youngCollectionEvery(8 * 1024 * 1024);

interface WriteJob extends EncodedWriteJob { start: number }

parentPort!.on('message', (m: { seq: number; ids: Uint8Array; hash?: Uint8Array; skip?: Uint8Array; lengths: number[]; data: Uint8Array; files?: FilesJob; write?: WriteJob; fetch?: FetchJob; open?: OpenJob; verify?: VerifyJob; stream?: StreamJob }) => {
  if (m.fetch) return void fetchAndWriteRange(m.seq, m.fetch, m.write!);
  if (m.stream) return streamWindow(m.seq, m.stream);
  if (m.verify) return verifyChunks(m.seq, m.ids, m.verify);
  if (m.write) return writeRange(m.seq, m.data, m.write);
  if (m.open) return openTrees(m.seq, m.ids, m.data, m.open);
  try {
    // a batch of chunks (and small files this thread reads itself): sealed one by one, returned as
    // one buffer (one transfer) plus lengths
    const sealed: Buffer[] = [];
    const files = m.files;
    let at = 0, read = 0;
    m.lengths.forEach((n, i) => {
      let chunk: Uint8Array;
      const path = files?.paths[i];
      if (path) {
        const r = readSmallFile(path, files!.max);
        files!.raw[i] = typeof r === 'string' ? -2 : r === null ? -1 : r.length;
        if (typeof r === 'string') (files!.errors ??= [])[i] = r;
        if (typeof r === 'string' || r === null || r.length === 0) { sealed.push(EMPTY); return; }
        chunk = r;
        read += r.length;
      } else {
        chunk = m.data.subarray(at, at + n);
        at += n;
        // a duplicate the main thread found in a file stream's window: not sealed
        if (m.skip?.[i]) { sealed.push(EMPTY); return; }
      }
      // an id the main thread left to this thread (a backup without parent): HMAC here, then seal
      if (m.hash?.[i]) m.ids.set(blobId(keys, chunk), 32 * i);
      sealed.push(seal(keys, chunk, m.ids.subarray(32 * i, 32 * i + 32), { level }));
    });
    const all = join(sealed);
    const reply = { seq: m.seq, sealed: all, lengths: sealed.map((b) => b.length), ...(files ? { raw: files.raw, errors: files.errors } : {}) };
    // the envelopes (copied) and the plaintexts (sealed) are dead: their memory is reused now
    for (const b of sealed) freeBuffer(b);
    freeBuffer(m.data);
    if (m.hash) parentPort!.postMessage({ ...reply, ids: m.ids }, [all.buffer, m.ids.buffer as ArrayBuffer]);
    else parentPort!.postMessage(reply, [all.buffer]);
    handled(m.data.length + read);
  } catch (e) {
    parentPort!.postMessage({ seq: m.seq, error: (e as Error).message });
  }
});

interface VerifyJob { path: Uint8Array; start: number; lengths: number[] }
/**
 * Small files of a batch, read here (a backup without parent): `paths[i]` is a file to read in
 * place of entry i's bytes; back in `raw[i]`: the bytes read, -1 for a file of `max` bytes or more
 * (too large to be one chunk: the main thread reads and chunks it), -2 unreadable (`errors[i]`).
 */
interface FilesJob { paths: Array<Uint8Array | null>; max: number; raw: number[]; errors?: string[] }

let readBuf = Buffer.alloc(0);
const readInto = (fd: number, n: number, at: number): number => {
  if (readBuf.length < n) readBuf = Buffer.allocUnsafeSlow(n);
  let got = 0;
  for (let r = -1; got < n && r !== 0; got += r) r = readSync(fd, readBuf, got, n - got, at + got);
  return got;
};

/** a whole file of fewer than `max` bytes (a view of readBuf, valid until the next read), null if it holds more, or why it cannot be read */
function readSmallFile(path: Uint8Array, max: number): Buffer | null | string {
  let fd = -1;
  try {
    fd = openForBackup(Buffer.from(path.buffer, path.byteOffset, path.byteLength), follow);
    const n = readInto(fd, max, 0);
    return n >= max ? null : readBuf.subarray(0, n);
  } catch (e) {
    return (e as Error).message;
  } finally {
    if (fd >= 0) try { closeSync(fd); } catch { /* read already, or the error above says more */ }
  }
}
/**
 * Backup of a changed file: how many of the chunks it held at the parent snapshot (ids in `ids`,
 * lengths in the job, from file offset `start` on) it still holds: each is read, hashed and
 * compared; the count stops at the first that differs or is cut short. Replies `lengths: [count]`.
 */
function verifyChunks(seq: number, ids: Uint8Array, job: VerifyJob): void {
  let fd = -1;
  let matched = 0;
  try {
    fd = openForBackup(Buffer.from(job.path.buffer, job.path.byteOffset, job.path.byteLength), follow);
    let at = job.start;
    for (const n of job.lengths) {
      const got = readInto(fd, n, at);
      if (got < n || !blobId(keys, readBuf.subarray(0, n)).equals(ids.subarray(32 * matched, 32 * matched + 32))) break;
      matched++;
      at += n;
    }
  } catch (e) {
    parentPort!.postMessage({ seq, error: (e as Error).message });
    return;
  } finally {
    if (fd >= 0) try { closeSync(fd); } catch { /* read already: the answer stands */ }
  }
  parentPort!.postMessage({ seq, sealed: EMPTY, lengths: [matched] });
}

/**
 * A large file of a backup without parent, read, chunked and hashed here a window at a
 * time (the main thread asks for the next window when it has room): `path` and `params` open the
 * stream, later windows name it by `id` alone; `close` drops it (the backup stopped).
 */
interface StreamJob { id: number; path?: Uint8Array; params?: ChunkerParams; window: number; close?: boolean }
interface FileStream { fd: number; chunker: Chunker; buf: Buffer; start: number; end: number; position: number }
const streams = new Map<number, FileStream>();
/** stream buffers given back (a few MiB each): the next stream takes one instead of allocating */
const streamBuffers = bufferPool(0, Infinity, 2);
let gear: Int32Array | undefined;

/** the next window of a file stream: its chunks' plaintexts as one buffer (a copy: the stream's buffer is reused) plus lengths and ids; `done` at its end */
function streamWindow(seq: number, job: StreamJob): void {
  let st = streams.get(job.id);
  const drop = () => {
    if (!st) return;
    streams.delete(job.id);
    streamBuffers.give(st.buf);
    try { closeSync(st.fd); } catch { /* closing after an error */ }
  };
  if (job.close) { drop(); parentPort!.postMessage({ seq, sealed: EMPTY, lengths: [] }); return; }
  try {
    if (!st) {
      const p = job.params!;
      gear ??= gearTable(keys.chunker);
      const fd = openForBackup(Buffer.from(job.path!.buffer, job.path!.byteOffset, job.path!.byteLength), follow);
      // room for a window plus the bytes of a chunk not yet cut
      const size = job.window + p.max;
      st = { fd, chunker: new Chunker(gear, p), buf: streamBuffers.take(size), start: 0, end: 0, position: 0 };
      streams.set(job.id, st);
    }
    const s = st;
    const plains: Buffer[] = [];
    // the uncut bytes move to the front, then a window is read after them (as the archiver does)
    if (s.start > 0) { s.buf.copyWithin(0, s.start, s.end); s.end -= s.start; s.start = 0; }
    let read = 0, done = false;
    while (read < job.window && !done) {
      const n = readSync(s.fd, s.buf, s.end, Math.min(job.window - read, s.buf.length - s.end), s.position);
      if (n === 0) { done = true; break; }
      const at = s.end;
      s.end += n; s.position += n; read += n;
      for (const cut of s.chunker.push(s.buf.subarray(at, s.end))) { plains.push(s.buf.subarray(s.start, at + cut)); s.start = at + cut; }
    }
    if (done) {
      s.chunker.end();
      if (s.end > s.start) plains.push(s.buf.subarray(s.start, s.end));
    }
    // hashed here, sealed by whichever worker is least busy (the main thread sends on the new
    // chunks): one large file no longer holds one worker for its zstd while the other idles
    const ids = new Uint8Array(32 * plains.length);
    plains.forEach((chunk, i) => ids.set(blobId(keys, chunk), 32 * i));
    const all = join(plains);
    if (done) drop();
    parentPort!.postMessage({ seq, sealed: all, lengths: plains.map((c) => c.length), ids, done, read }, [all.buffer, ids.buffer]);
    handled(read);
  } catch (e) {
    drop();
    parentPort!.postMessage({ seq, error: (e as Error).message });
  }
}

interface OpenJob { lengths: number[]; rawLengths: number[] }

/** pieces joined into one buffer of its own (one transfer back) */
function join(parts: Buffer[]): Buffer<ArrayBuffer> {
  const all = Buffer.allocUnsafeSlow(parts.reduce((x, b) => x + b.length, 0)); // every byte written below
  let at = 0;
  for (const b of parts) { all.set(b, at); at += b.length; }
  return all;
}

/**
 * Opens each blob (`open(i)`), or reports the first that does not decrypt to the main thread and
 * returns undefined.
 */
function openEach(seq: number, count: number, idOf: (i: number) => Buffer, open: (i: number, id: Buffer) => Buffer): Buffer[] | undefined {
  const plains: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = idOf(i);
    try { plains.push(open(i, id)); }
    catch (err) {
      parentPort!.postMessage({ seq, error: `blob ${toHex(id)} does not decrypt: ${(err as Error).message}` });
      return undefined;
    }
  }
  return plains;
}

/**
 * Tree blobs back to plaintexts (a snapshot's trees being loaded), returned as one buffer plus
 * lengths, with the ids of the subtrees each one names (`ids`, `counts`): the main thread goes on
 * loading the next level without decoding this one (it decodes a tree when it needs it).
 */
function openTrees(seq: number, ids: Uint8Array, data: Uint8Array, job: OpenJob): void {
  const starts: number[] = [];
  job.lengths.reduce((at, n) => { starts.push(at); return at + n; }, 0);
  const plains = openEach(seq, job.lengths.length, (i) => Buffer.from(ids.buffer, ids.byteOffset + 32 * i, 32),
    (i, id) => openBlob(keys, id, data.subarray(starts[i], starts[i]! + job.lengths[i]!), MAX_BLOB_BYTES, job.rawLengths[i]));
  if (!plains) return;
  const subtrees: Buffer[] = [];
  const counts = plains.map((p) => { const n = subtrees.length; for (const id of subtreeIds(p)) subtrees.push(id); return subtrees.length - n; });
  const all = join(plains);
  const found = join(subtrees);
  parentPort!.postMessage({ seq, sealed: all, lengths: plains.map((b) => b.length), ids: found, counts }, [all.buffer, found.buffer]);
  handled(data.length + all.length);
}

/**
 * restore: a range's blobs, each opened (decrypted, checked, decompressed) when a file first needs
 * it, with the blobs after it that files need while they fit in the same 1 MiB buffer, and dropped
 * after its last use in the range; buffers are kept from range to range. A buffer or two at a time
 * in the usual case of files in pack order. Opening every blob of the range first kept all its
 * plaintexts at once (a range of source text decompresses to 3-4 times its size: 20-30 MiB per
 * worker), each page of it new to the process, and written from memory rather than from the cache
 * it was just decompressed into.
 */
interface RangeBlobs {
  /** entry i's plaintext; throws BlobError if it does not decrypt (the file that needs it cannot be written) */
  take(i: number): Buffer;
  /** one use of entry i done: after its last, its buffer is the next blob's */
  done(i: number): void;
  /** the range written: what is still open (uses of files that failed) goes back */
  close(): void;
}
function rangeBlobs(entries: RangeBlob[], files: FileWrite[], bytes: Buffer, start: number): RangeBlobs {
  const uses = new Int32Array(entries.length);
  for (const f of files) for (const c of f.chunks) uses[c.entry]!++;
  const open = new Array<Buffer | undefined>(entries.length);
  /** the buffer open[i] lies in, shared by the blobs opened with it (openBlob may return one of its own instead) */
  const held = new Array<Held | undefined>(entries.length);
  const failed = new Map<number, string>();
  const release = (i: number) => {
    open[i] = undefined;
    const h = held[i];
    held[i] = undefined;
    if (h && --h.live === 0) plainBuffers.give(h.buffer);
  };
  /** opens entry i into `h` at `at`; its plaintext, or the reason it does not decrypt */
  const openInto = (i: number, h: Held, at: number): Buffer | string => {
    const e = entries[i]!;
    try {
      const plain = extractBlob(keys, bytes, { type: 'data', id: e.id, offset: e.offset, length: e.length, rawLength: e.rawLength }, start, undefined, h.buffer.subarray(at));
      if (plain.buffer === h.buffer.buffer) { held[i] = h; h.live++; }
      return (open[i] = plain);
    } catch (err) {
      const message = `blob ${toHex(e.id)} does not decrypt: ${(err as Error).message}`;
      failed.set(i, message);
      return message;
    }
  };
  return {
    take(i) {
      const had = open[i];
      if (had) return had;
      const why = failed.get(i);
      if (why !== undefined) throw new BlobError(why);
      // entry i, and the entries after it that files still need while they fit in its buffer: the
      // small blobs of a run of small files are opened in one go, then written (interleaving each
      // blob's crypto and zstd with its file's system calls cost the linux tree's restore ~5%)
      // (each plaintext has a byte after it, where decompressFrame detects a frame that holds more)
      const h: Held = { buffer: plainBuffers.take(entries[i]!.rawLength + 1), live: 0 };
      const first = openInto(i, h, 0);
      let at = typeof first === 'string' ? 0 : entries[i]!.rawLength + 1;
      for (let j = i + 1; typeof first !== 'string' && j < entries.length && held[j - 1] === h; j++) {
        if (open[j] || failed.has(j) || uses[j] === 0 || at + entries[j]!.rawLength + 1 > h.buffer.length) break;
        openInto(j, h, at);
        at += entries[j]!.rawLength + 1;
      }
      if (h.live === 0) plainBuffers.give(h.buffer);
      if (typeof first === 'string') throw new BlobError(first);
      return first;
    },
    done(i) {
      if (--uses[i]! <= 0) release(i);
    },
    close() {
      for (let i = 0; i < open.length; i++) if (open[i]) release(i);
    },
  };
}
/** a plaintext buffer and how many open blobs lie in it */
interface Held { buffer: Buffer; live: number }
class BlobError extends Error {}

/**
 * Buffers of at least `size` bytes, kept for reuse (a fresh one's pages are new to the process,
 * and garbage until a collection): `take(n)` one of n bytes or more, a kept one if any; `give(b)`
 * keeps it while there are fewer than `maxKept` and it is not over `maxBytes` (an unusually large
 * one is let go).
 */
function bufferPool(size: number, maxBytes: number, maxKept = Infinity) {
  const spare: Buffer[] = [];
  return {
    take(n: number): Buffer {
      const i = spare.findIndex((b) => b.length >= n);
      return i >= 0 ? spare.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(Math.max(n, size));
    },
    give(b: Buffer | undefined): void {
      if (b && b.length <= maxBytes && spare.length < maxKept) spare.push(b);
    },
  };
}

/** plaintext buffers, for the next blobs (chunks are at most the chunker's maximum: 1 MiB by default) */
const PLAIN_BUFFER = 1024 * 1024 + 1;
const plainBuffers = bufferPool(PLAIN_BUFFER, 4 * PLAIN_BUFFER, 8);
/** restore: writes the files given from the blobs of a fetched pack range, each opened as needed */
function writeRange(seq: number, data: Uint8Array, job: WriteJob): void {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const { entries, files } = decodeWriteJob(job);
  const blobs = rangeBlobs(entries, files, bytes, job.start);
  let fileResults: FileResult[];
  try { fileResults = files.map((f) => writeFile(f, blobs)); }
  finally { blobs.close(); }
  parentPort!.postMessage({ seq, sealed: EMPTY, lengths: [], fileResults });
  handled(bytes.length);
}
const EMPTY = Buffer.alloc(0);

/** restore: the range's bytes [start, end] of its pack, to be fetched here with a GET the main thread signed */
interface FetchJob { request: SignedRequest; end: number }
let signedHttp: Promise<typeof import('./backend/signedhttp.ts')> | undefined;
/**
 * restore: fetches a range, then writes it as writeRange does. A fetch that fails is reported as
 * `fetchError` (not an error: the main thread fetches the range itself, with retries).
 */
async function fetchAndWriteRange(seq: number, fetch: FetchJob, job: WriteJob): Promise<void> {
  let buffer: Buffer | undefined;
  let bytes: Buffer;
  try {
    // loaded on the first fetch: a backup's workers never need node:tls
    signedHttp ??= import('./backend/signedhttp.ts');
    bytes = await (await signedHttp).sendSignedGet(fetch.request, job.start, fetch.end, (n) => (buffer = rangeBuffers.take(n)).subarray(0, n));
  } catch (e) {
    rangeBuffers.give(buffer);
    parentPort!.postMessage({ seq, fetchError: (e as Error).message });
    return;
  }
  try { writeRange(seq, bytes, job); }
  finally { rangeBuffers.give(buffer); } // (writeRange keeps no view of it)
}
/**
 * Fetched ranges' buffers, reused: a fresh 8 MiB buffer per range cost its page faults and, as
 * garbage, collections (~1 s of a worker's 3.5 on the large-files set). A range is at most 8 MiB
 * of plaintext (its ciphertext a little more when incompressible); a larger one (a single blob
 * over 8 MiB) gets a buffer of its own, not kept beyond 2 x RANGE_BUFFER. As many are kept as
 * this worker had ranges in flight at once.
 */
const RANGE_BUFFER = 9 * 1024 * 1024;
const rangeBuffers = bufferPool(RANGE_BUFFER, 2 * RANGE_BUFFER);

/**
 * restore: a whole file, or this range's part of one (writejob.ts FileWrite). A blob that does not
 * decrypt fails the files that need it, each said so; the range's other files are written.
 */
function writeFile(f: FileWrite, blobs: RangeBlobs): FileResult {
  let fd = -1;
  const put = (c: { entry: number; offset: number }): number => {
    const end = writeChunkAt(fd, blobs.take(c.entry), c.offset);
    blobs.done(c.entry);
    return end;
  };
  try {
    const path = f.path;
    if (!f.whole) {
      fd = openSync(path, 'r+');
      for (const c of f.chunks) put(c);
      return null;
    }
    const created = createFile(path, f);
    fd = created.fd;
    let end = 0;
    for (const c of f.chunks) end = Math.max(end, put(c));
    const warning = finishFile(fd, f, end, created);
    return warning ? { warning } : null;
  } catch (e) {
    if (e instanceof BlobError) return { error: `not restored: ${e.message}`, corrupt: true };
    return { error: `cannot write: ${(e as Error).message}` };
  } finally {
    if (fd >= 0) try { closeSync(fd); } catch { /* the error above, if any, says more */ }
  }
}

// loaded: jobs from here on are handled at once (the main thread opens trees itself until a
// worker says so: a thread's start costs ~0.1 s, in which an incremental backup would wait). Said
// in shared memory, not by a message: the main thread reads it at once, even in the middle of a
// long run of work that gives its event loop no turn (a message would wait unread meanwhile).
Atomics.store(workerData.loaded as Int32Array, 0, 1);
