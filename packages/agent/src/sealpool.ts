// A pool of crypto workers (up to one per core, sealworker.ts; started as work comes, GROW_BYTES). submit() transfers a chunk to the least
// busy worker and resolves with the sealed envelope (backup), in batches; submitSmallFile() and
// streamFile() have a worker read files itself (backup without parent), a stream's windows sealed
// by any worker (sealWindow); verifyChunks() checks a
// changed file's leading chunks (incremental backup); openTrees() opens tree blobs; writeRange()
// transfers a fetched pack range, which the worker decrypts and writes into the restored files
// (restore: decryption, zstd and the file system's work off the main thread).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { youngCollectionEvery } from './collect.ts';
import type { ChunkerParams, PackEntry, RepoKeys } from '@shelter/format';
import { encodeWriteJob, type FileWrite } from './writejob.ts';
import type { SignedRequest } from './backend/types.ts';

/** the zstd level of every blob sealed (3: zstd's default, restic's "auto") */
export const SEAL_LEVEL = 3;

/** a tree blob's plaintext and the subtree ids it names (not validated: decodeTree does that) */
export interface OpenedTree { plain: Buffer; subtrees: Buffer[] }

/** a small file read by a worker: sealed (`length` > 0), empty, too large to be one chunk, or unreadable */
export type SmallFile = { id: Buffer; sealed: Buffer; length: number } | { length: 0 } | { large: true } | { error: string };

/** a window of a file stream: its chunks' plaintexts laid end to end in `data` (a buffer of its own), their `lengths` and ids (32 bytes each) */
export interface StreamWindow { data: Buffer; lengths: number[]; ids: Buffer; read: number; done: boolean }

export interface FileStream {
  next(): Promise<StreamWindow>;
  close(): void;
}

/** null: written; `warning`: written, but its metadata could not be set; `error`: not written */
export type FileResult = null | { warning: string } | { error: string; /** a blob it needs does not decrypt */ corrupt?: true };

export interface SealPool {
  submit(id: Buffer, plaintext: Buffer): Promise<Buffer>;
  /**
   * Like submit, for a chunk whose id is not known yet: the worker computes it (HMAC) before
   * sealing. A backup without parent hashes its chunks this way, off the main thread.
   */
  submitUnhashed(plaintext: Buffer): Promise<{ id: Buffer; sealed: Buffer }>;
  /**
   * A backup without parent: a file expected to be smaller than one chunk (`size` at stat) is
   * read, hashed and sealed by a worker, so that this thread neither opens nor reads it. A file
   * found to hold the pool's `smallFileMax` bytes or more comes back `large` (not read).
   */
  submitSmallFile(path: Buffer, size: number): Promise<SmallFile>;
  /**
   * A backup without parent: a large file read, chunked (with `params`) and hashed by one worker,
   * a window at a time: next() asks for the next window's chunks; after the last (`done`) or an
   * error the stream is gone; close() drops one given up before its end. Its chunks are sealed by
   * sealWindow, on any worker.
   */
  streamFile(path: Buffer, params: ChunkerParams, size?: number): FileStream;
  /**
   * A stream window's chunks sealed by the least busy worker, in order, except those marked in
   * `skip` (duplicates: an empty buffer in their place). `window.data` is handed over (detached).
   */
  sealWindow(window: StreamWindow, skip?: Uint8Array): Promise<Buffer[]>;
  /**
   * Restore: writes `files` from the blobs of a pack range (bytes starting at pack offset `start`),
   * each blob decrypted when first needed; `result[i]` says how files[i] went (a file that needs a
   * blob that does not decrypt is not restored, and says which blob). No plaintext comes back.
   */
  writeRange(bytes: Buffer, start: number, entries: PackEntry[], files: FileWrite[]): Promise<FileResult[]>;
  /**
   * Restore: like writeRange, for a range [start, end] the worker fetches itself with `request`
   * (so that its bytes never cross this thread). A fetch that fails resolves `{ fetchError }`:
   * nothing was written, and the caller fetches the range itself (with retries).
   */
  fetchWriteRange(request: SignedRequest, start: number, end: number, entries: PackEntry[], files: FileWrite[]): Promise<FileResult[] | { fetchError: string }>;
  /**
   * Opens sealed tree blobs (decryption, zstd, the id check) spread over every worker; resolves
   * with their plaintexts in order, each with the subtree ids it names (found by the worker), or
   * rejects naming the first blob that does not open.
   */
  openTrees(blobs: ReadonlyArray<{ id: Buffer; sealed: Uint8Array; rawLength: number }>): Promise<OpenedTree[]>;
  /** whether chunks are waiting to be sent in a batch (one will be sent in this event-loop turn) */
  batchPending(): boolean;
  /** whether a worker has loaded its code (jobs sent before wait for that); true as soon as it has, whatever this thread is doing */
  ready(): boolean;
  /**
   * Backup of a changed file: how many of its chunks at the parent snapshot (`ids`, plaintext
   * `lengths`, laid end to end from offset 0) the file still holds, each read and hashed by a
   * worker. Parts of the file are verified in parallel, a few at a time, and no part is sent after
   * one that differs.
   */
  verifyChunks(path: Buffer, lengths: number[], ids: Buffer[]): Promise<number>;
  /** starts every worker not started yet (a pool made with fewer initialWorkers) */
  grow(): void;
  /** worker threads started so far (dead ones included) */
  started(): number;
  close(): Promise<void>;
}

/**
 * Bytes to hand over to a worker: their own buffer without a copy when they are all of it (it is
 * detached here), else a copy (transferring a shared buffer would take the other views' bytes too).
 */
function transferable(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return new Uint8Array(bytes.buffer);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

/** the pieces of a worker's joined reply (one transfer), by their lengths */
function split(all: Buffer, lengths: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (const n of lengths) { out.push(all.subarray(off, off + n)); off += n; }
  return out;
}

const EMPTY = Buffer.alloc(0);

/**
 * The workers' replies (sealed batches, file streams' windows) are buffers transferred here,
 * written to a pack's spool file or sent back within milliseconds, then garbage, and their memory
 * is freed only when this thread's heap is collected. A backup of large files makes few objects
 * here, so V8 collected rarely: a worker's buffers waiting to be freed here reached 60 MiB on the
 * large-files set. A young-generation collection every RECEIVED_GC_EVERY bytes received frees them
 * (as the workers do with their own output): bench/ab.ts --op initial, large files peak RSS
 * 217 -> 192 MiB, 5.60 -> 5.33 s (4 alternated runs); linux tree 328 -> 308 MiB, 10.6 -> 10.0 s.
 */
const RECEIVED_GC_EVERY = 8 * 1024 * 1024;

/** a batch of chunks goes to a worker once it holds this many bytes or chunks (or at the end of the event-loop turn) */
const BATCH_BYTES = 1024 * 1024;
const BATCH_COUNT = 256;
/**
 * streamFile: bytes read per window. Each stream in flight holds its buffer (a window plus the
 * chunker's maximum) and a window's chunks on their way to be sealed: 2 MiB rather than 4 took the
 * large-files initial backup's peak RSS from 216 to 187 MiB, no slower (6.09 -> 5.73 s; linux 374
 * -> 359 MiB, 11.5 -> 10.4 s; bench/ab.ts --op initial, 4-5 alternated runs).
 */
const STREAM_WINDOW = 2 * 1024 * 1024;
/**
 * A pool told to start with fewer workers (an incremental backup, until it meets real work)
 * starts the others once this many bytes of work are in flight (jobs sent, not yet answered, and
 * the whole size of the files being streamed or verified, from their start to their end): a large
 * changed file, a large new file, many new files at once. An incremental backup that
 * changed little leaves the second worker unstarted: it booted (~0.1 s of CPU: Node's own
 * modules, ours) and compiled the same hot code again as the first (V8 compiles per thread), for
 * work the first does alone meanwhile. Linux tree with 1% changed, 8 alternated runs: 3.02 ->
 * 2.79 s median. (Counting a stream's windows alone, 2 MiB each, four streams at most, an
 * incremental backup adding 600 MB of large new files ran on one worker: 1.75-2.02 s -> 2.07-2.51.)
 */
const GROW_BYTES = 16 * 1024 * 1024;
/** verifyChunks: bytes per part (whole chunks), and parts in flight per worker */
const VERIFY_PART = 8 * 1024 * 1024;
const VERIFY_AHEAD = 2;

/** `smallFileMax`: submitSmallFile reads files of fewer bytes (the chunker's minimum: such a file is one chunk) */
/** `followSymlinks`: files read for a backup may be reached through symlinks (--follow-symlinks; fsnode.ts openForBackup) */
/** `initialWorkers`: started at once (default all `workers`); the others when work piles up (GROW_BYTES) or grow() is called */
export function createSealPool(keys: RepoKeys, opts: { workers?: number; initialWorkers?: number; level?: number; smallFileMax?: number; followSymlinks?: boolean } = {}): SealPool {
  const smallFileMax = opts.smallFileMax ?? 64 * 1024;
  const max = Math.max(1, opts.workers ?? availableParallelism());
  const plainKeys = { ...keys };
  interface PoolWorker { w: Worker; busy: number; dead: Error | null; loaded: Int32Array }
  const workers: PoolWorker[] = [];
  let closing = false;
  /** the least busy live worker; undefined once every worker has died */
  const pick = () => workers.filter((wk) => !wk.dead).reduce<PoolWorker | undefined>((x, y) => (!x || y.busy < x.busy ? y : x), undefined);
  const noWorker = () => Object.assign(new Error(`every seal worker has died (${workers[0]?.dead?.message ?? 'unknown'})`), { workerDied: true });
  type Reply = { sealed: Buffer; lengths: number[]; fileResults?: FileResult[]; fetchError?: string; ids?: Uint8Array; counts?: number[]; raw?: number[]; errors?: string[]; read?: number; done?: boolean };
  /** what a worker posts: a Reply's fields as they cross (`sealed` a Uint8Array), or its failure */
  type WorkerMessage = Partial<Omit<Reply, 'sealed'>> & { seq: number; sealed?: Uint8Array; error?: string };
  const waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void; worker: PoolWorker; bytes: number }>();
  let seq = 0;
  /** bytes of work sent and not yet answered, and of file streams not yet ended (GROW_BYTES) */
  let inFlight = 0;
  const reserve = (bytes: number) => {
    inFlight += bytes;
    if (inFlight >= GROW_BYTES) grow();
  };
  /** one job to the least busy live worker; resolves with its reply. `bytes`: how much work it is */
  const send = (message: Record<string, unknown>, transfer: ArrayBuffer[], bytes: number): Promise<Reply> => {
    const wk = pick();
    return wk ? sendTo(wk, message, transfer, bytes) : Promise.reject(noWorker());
  };
  /** one job to this worker (a file stream's state lives in one worker) */
  const sendTo = (wk: PoolWorker, message: Record<string, unknown>, transfer: ArrayBuffer[], bytes: number): Promise<Reply> => {
    if (wk.dead) return Promise.reject(wk.dead);
    if (wk.busy++ === 0) wk.w.ref();
    reserve(bytes);
    const s = seq++;
    return new Promise((resolve, reject) => {
      waiting.set(s, { resolve, reject, worker: wk, bytes });
      wk.w.postMessage({ seq: s, ...message }, transfer);
    });
  };
  const collectEvery = youngCollectionEvery(RECEIVED_GC_EVERY);
  const spawn = () => {
    // set to 1 by the worker once its code is loaded (see ready())
    const loaded = new Int32Array(new SharedArrayBuffer(4));
    const w = new Worker(new URL('./sealworker.ts', import.meta.url), { workerData: { keys: plainKeys, level: opts.level ?? SEAL_LEVEL, followSymlinks: opts.followSymlinks ?? false, loaded } });
    const wk: PoolWorker = { w, busy: 0, dead: null, loaded };
    workers.push(wk);
    wk.w.on('message', (m: WorkerMessage) => {
      const job = waiting.get(m.seq);
      if (!job) return;
      waiting.delete(m.seq);
      inFlight -= job.bytes;
      // a worker with jobs keeps the process alive (the main thread may have nothing else pending)
      if (--wk.busy === 0) wk.w.unref();
      if (m.sealed) collectEvery(m.sealed.byteLength);
      if (m.error !== undefined) job.reject(new Error(m.error));
      else if (m.fetchError !== undefined) job.resolve({ sealed: EMPTY, lengths: [], fetchError: m.fetchError });
      else job.resolve({ sealed: Buffer.from(m.sealed!.buffer, m.sealed!.byteOffset, m.sealed!.byteLength), lengths: m.lengths ?? [], fileResults: m.fileResults, ids: m.ids, counts: m.counts, raw: m.raw, errors: m.errors, read: m.read, done: m.done });
    });
    // a worker that dies fails its own jobs and takes no new ones: nothing waits forever on it
    const died = (cause: Error) => {
      if (wk.dead || closing) return;
      // tagged: a job failed by a dead worker is not a file's own error (repository.ts saveFileStream)
      const e = Object.assign(new Error(`seal worker died: ${cause.message}`, { cause }), { workerDied: true });
      wk.dead = e;
      for (const [s, job] of waiting) if (job.worker === wk) { waiting.delete(s); inFlight -= job.bytes; job.reject(e); }
    };
    wk.w.on('error', died);
    wk.w.on('exit', (code) => died(new Error(`seal worker exited (${code})`)));
    // an idle worker does not keep the process alive (a pool never closed, after an error, must not
    // hang the command); after the listeners: adding a 'message' listener refs the worker again
    wk.w.unref();
  };
  /** every worker not started yet starts now */
  const grow = () => { while (workers.length < max && !closing) spawn(); };
  for (let i = Math.min(max, Math.max(1, opts.initialWorkers ?? max)); i > 0; i--) spawn();
  /** ids[i] undefined: the worker computes it; paths[i]: a small file the worker reads (entry i has no bytes in data) */
  interface Batch {
    ids: Array<Buffer | undefined>; lengths: number[]; paths: Array<Buffer | null>; jobs: Array<{ resolve: (r: Sealed) => void; reject: (e: Error) => void }>;
    /** bytes in data; work: those plus the sizes of the files to read */
    bytes: number; work: number; data: Uint8Array<ArrayBuffer> | null;
  }
  /** raw: the plaintext's length; for a file, -1 (too large, not read) or -2 (unreadable: error) */
  interface Sealed { id: Buffer; sealed: Buffer; raw: number; error?: string }
  let batch: Batch | null = null;
  let streamIds = 0;
  /**
   * Bytes of the next batch's buffer: twice what the last one held, within [64 KiB, 2 x
   * BATCH_BYTES]. A backup that changed little sends a few KiB per event-loop turn: a 2 MiB buffer
   * for each cost more in allocation and garbage collection than the sealing itself.
   */
  let dataBytes = 2 * BATCH_BYTES;
  const flushBatch = () => {
    const b = batch;
    if (!b) return;
    batch = null;
    if (b.data) dataBytes = Math.min(2 * BATCH_BYTES, Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(Math.max(1, 2 * b.bytes)))));
    const ids = new Uint8Array(32 * b.ids.length);
    let hash: Uint8Array | undefined; // 1: the worker computes that chunk's id
    b.ids.forEach((id, i) => { if (id) ids.set(id, 32 * i); else (hash ??= new Uint8Array(b.ids.length))[i] = 1; });
    const data = b.data ?? new Uint8Array(0);
    const files = b.paths.some((p) => p) ? { paths: b.paths, max: smallFileMax, raw: [] } : undefined;
    send({ ids, hash, lengths: b.lengths, data, files }, [data.buffer, ids.buffer], b.work).then(({ sealed, lengths, ids: back, raw, errors }) => {
      const idBytes = back ? Buffer.from(back.buffer, back.byteOffset, back.byteLength) : undefined;
      split(sealed, lengths).forEach((part, i) => b.jobs[i]!.resolve({
        id: b.ids[i] ?? idBytes!.subarray(32 * i, 32 * i + 32), sealed: part, raw: b.paths[i] ? raw![i]! : b.lengths[i]!, error: errors?.[i],
      }));
    }, (e: Error) => { for (const j of b.jobs) j.reject(new Error(`sealing failed: ${e.message}`)); });
  };

  /**
   * Chunks travel in batches (one copy, one message per MiB of work or per event-loop turn): one
   * message per chunk cost the main thread more than chunking and hashing the source tree.
   * `plaintext` is copied now: the caller may reuse its read buffer as soon as this returns.
   */
  const enqueue = (id: Buffer | undefined, plaintext: Buffer | null, path: Buffer | null = null, size = 0): Promise<Sealed> => {
    const n = plaintext?.length ?? 0;
    if (batch?.data && batch.bytes + n > batch.data.length) flushBatch();
    if (!batch) {
      batch = { ids: [], lengths: [], paths: [], jobs: [], bytes: 0, work: 0, data: null };
      setImmediate(flushBatch);
    }
    if (plaintext) {
      // not zero-filled: only the bytes copied in are sent (zeroing 2 MiB per batch cost the main
      // thread as much as the copies themselves)
      batch.data ??= new Uint8Array(Buffer.allocUnsafeSlow(Math.max(dataBytes, n)).buffer);
      batch.data.set(plaintext, batch.bytes);
    }
    batch.ids.push(id);
    batch.lengths.push(n);
    batch.paths.push(path);
    batch.bytes += n;
    batch.work += path ? size : n;
    const done = new Promise<Sealed>((resolve, reject) => { batch!.jobs.push({ resolve, reject }); });
    if (batch.work >= BATCH_BYTES || batch.ids.length >= BATCH_COUNT) flushBatch();
    return done;
  };

  return {
    submit: (id, plaintext) => enqueue(id, plaintext).then((r) => r.sealed),
    batchPending: () => batch !== null,
    ready: () => workers.some((wk) => Atomics.load(wk.loaded, 0) === 1 && !wk.dead),
    submitUnhashed: (plaintext) => enqueue(undefined, plaintext),
    streamFile(path, params, size = 0) {
      // the whole file is this stream's work, from now to its end: a large one starts the other
      // workers before a worker is chosen for it (its windows are all read by that one)
      reserve(size);
      let held = size;
      const release = () => { inFlight -= held; held = 0; };
      const wk = pick();
      const id = streamIds++;
      let opened = false;
      return {
        next: () => {
          if (!wk) { release(); return Promise.reject(noWorker()); }
          const stream = opened ? { id, window: STREAM_WINDOW } : { id, path, params, window: STREAM_WINDOW };
          opened = true;
          return sendTo(wk, { stream }, [], 0).then((r) => {
            if (r.done) release();
            return { data: r.sealed, lengths: r.lengths, ids: Buffer.from(r.ids!.buffer, r.ids!.byteOffset, r.ids!.byteLength), read: r.read!, done: r.done! };
          }, (e: Error) => { release(); throw e; });
        },
        close: () => {
          release();
          if (wk && opened) sendTo(wk, { stream: { id, window: 0, close: true } }, [], 0).catch(() => { /* a dead worker holds nothing */ });
        },
      };
    },
    sealWindow(window, skip) {
      // (the worker's reply owns its memory; ids are copied: the caller keeps them)
      const data = transferable(window.data);
      const ids = new Uint8Array(window.ids);
      return send({ ids, skip, lengths: window.lengths, data }, [data.buffer, ids.buffer], data.length).then((r) => split(r.sealed, r.lengths));
    },
    submitSmallFile: (path, size) => enqueue(undefined, null, path, size).then((r): SmallFile => {
      if (r.raw === -2) return { error: r.error ?? 'cannot read' };
      if (r.raw === -1) return { large: true };
      return r.raw === 0 ? { length: 0 } : { id: r.id, sealed: r.sealed, length: r.raw };
    }),
    writeRange(bytes, start, entries, files) {
      // (the fetched range usually owns its memory)
      const data = transferable(bytes);
      const job = encodeWriteJob(entries, files);
      return send({ write: { start, ...job }, data }, [data.buffer, job.nums.buffer, job.bytes.buffer], data.length).then((r) => r.fileResults ?? []);
    },
    fetchWriteRange(request, start, end, entries, files) {
      const job = encodeWriteJob(entries, files);
      return send({ fetch: { request, end }, write: { start, ...job } }, [job.nums.buffer, job.bytes.buffer], end - start + 1)
        .then((r) => (r.fetchError !== undefined ? { fetchError: r.fetchError } : r.fileResults ?? []));
    },
    async openTrees(blobs) {
      const live = workers.filter((wk) => !wk.dead).length;
      if (!live) throw noWorker();
      const total = blobs.reduce((x, b) => x + b.sealed.length, 0);
      const parts: Array<Promise<OpenedTree[]>> = [];
      for (let i = 0; i < blobs.length;) {
        // about one part per worker, by bytes
        const part: typeof blobs[number][] = [];
        let bytes = 0;
        while (i < blobs.length && (bytes < total / live || part.length === 0)) { part.push(blobs[i]!); bytes += blobs[i]!.sealed.length; i++; }
        const data = new Uint8Array(bytes);
        const ids = new Uint8Array(32 * part.length);
        let at = 0;
        part.forEach((b, k) => { data.set(b.sealed, at); at += b.sealed.length; ids.set(b.id, 32 * k); });
        const open = { lengths: part.map((b) => b.sealed.length), rawLengths: part.map((b) => b.rawLength) };
        parts.push(send({ open, ids, data }, [data.buffer, ids.buffer], bytes).then((r) => {
          const found = Buffer.from(r.ids!.buffer, r.ids!.byteOffset, r.ids!.byteLength);
          let at = 0;
          return split(r.sealed, r.lengths).map((plain, k) => {
            const subtrees = split(found.subarray(32 * at), Array(r.counts![k]!).fill(32));
            at += r.counts![k]!;
            return { plain, subtrees };
          });
        }));
      }
      return (await Promise.all(parts)).flat();
    },
    async verifyChunks(path, lengths, ids) {
      // parts of whole chunks: [first chunk, end chunk, file offset]
      const parts: Array<[number, number, number]> = [];
      for (let i = 0, at = 0; i < lengths.length;) {
        const first = i, start = at;
        while (i < lengths.length && (i === first || at - start + lengths[i]! <= VERIFY_PART)) at += lengths[i++]!;
        parts.push([first, i, start]);
      }
      const verifyPart = ([first, end, start]: [number, number, number]) => {
        const partIds = new Uint8Array(32 * (end - first));
        for (let i = first; i < end; i++) partIds.set(ids[i]!, 32 * (i - first));
        return send({ verify: { path, start, lengths: lengths.slice(first, end) }, ids: partIds }, [partIds.buffer], 0).then((r) => r.lengths[0]!);
      };
      // the whole file is this verification's work, from now to its end (as a file stream's): a
      // large one starts the other workers before its first part is sent. (Counting the parts in
      // flight instead, two parts of whole chunks stay under GROW_BYTES: a single large changed
      // file was verified by one worker.)
      const total = lengths.reduce((x, y) => x + y, 0);
      reserve(total);
      try {
        // VERIFY_AHEAD parts per live worker (counted after the reservation, which may have started some)
        const ahead = VERIFY_AHEAD * Math.max(1, workers.filter((wk) => !wk.dead).length);
        const sent: Array<Promise<number>> = [];
        let matched = 0, next = 0;
        for (let k = 0; k < parts.length; k++) {
          while (next < parts.length && next - k < ahead) {
            const p = verifyPart(parts[next++]!);
            p.catch(() => { /* awaited below, or not needed once an earlier part differed */ });
            sent.push(p);
          }
          const [first, end] = parts[k]!;
          const m = await sent[k]!;
          matched += m;
          if (m < end - first) break;
        }
        return matched;
      } finally { inFlight -= total; }
    },
    grow,
    started: () => workers.length,
    async close() { closing = true; await Promise.all(workers.map((wk) => wk.w.terminate())); },
  };
}
