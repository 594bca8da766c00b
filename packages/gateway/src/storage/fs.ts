// Embedded storage: one file per blob under DATA/objects/ab/cd/<id>.
// A write goes to DATA/objects/pending/<id>, is fsynced (file, then directory: POSIX wants both
// for a new name to survive a crash), and only then acknowledged to the caller, which commits
// metadata and calls commit(), which renames the file into place. If the process dies between
// the two, recover() at the next start finds the pending file and either completes the rename
// (metadata references it) or removes it (it never became visible).
import { constants, mkdirSync, readdirSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { randomId } from '../secrets.ts';
import { DIRECT_ALIGN, DIRECT_SLOT, openDirectPool, type DirectPool } from './direct.ts';
import type { BlobStore, BlobWrite } from './types.ts';

/** Coalesces concurrent fsyncs of one directory: callers arriving while one runs share the next. */
function dirSyncer(dir: string): () => Promise<void> {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const run = async () => {
    const fh = await open(dir, 'r');
    try { await fh.sync(); } finally { await fh.close(); }
  };
  return () => {
    if (!running) {
      running = run().finally(() => { running = null; });
      return running;
    }
    if (!next) {
      next = running.then(() => { next = null; running = run().finally(() => { running = null; }); return running; });
    }
    return next;
  };
}

/** bytes written between background fdatasyncs of a large blob */
const SYNC_EVERY = 8 * 1024 * 1024;
/** bytes gathered before one writev */
const WRITE_BATCH = 1024 * 1024;

/** Writes through the page cache: batched writevs, background fdatasyncs while the body arrives. */
async function writeBuffered(path: string, chunks: AsyncIterable<Buffer>, created: () => void): Promise<number> {
  const fh = await open(path, 'wx', 0o600);
  created();
  let bytes = 0;
  let unsynced = 0;
  const syncs: Promise<void>[] = [];
  let batch: Buffer[] = [];
  let batchBytes = 0;
  // one write in flight while the next batch arrives (receiving and writing overlap)
  let writing: Promise<unknown> = Promise.resolve();
  const writeBatch = async () => {
    const parts = batch;
    batch = [];
    batchBytes = 0;
    await writing;
    writing = fh.writev(parts);
  };
  try {
    for await (const c of chunks) {
      batch.push(c);
      batchBytes += c.length;
      bytes += c.length;
      unsynced += c.length;
      if (batchBytes >= WRITE_BATCH) await writeBatch();
      // flush to disk while the body is still arriving, so the final fsync has little left to do
      if (unsynced >= SYNC_EVERY) {
        unsynced = 0;
        const w = writing;
        syncs.push(w.then(() => fh.datasync()).catch(() => { /* the final sync reports */ }));
      }
    }
    if (batchBytes) await writeBatch();
    await writing;
    await Promise.all(syncs);
    await fh.sync();
    await fh.close();
  } catch (e) {
    await writing.catch(() => { /* reported below */ });
    await Promise.all(syncs);
    await fh.close().catch(() => { /* already closed */ });
    await rm(path, { force: true });
    throw e;
  }
  return bytes;
}

/**
 * Writes with O_DIRECT through two aligned staging buffers (one fills while the other is on its
 * way to disk). The last block is padded to the alignment and the file truncated to its size.
 */
async function writeDirect(path: string, chunks: AsyncIterable<Buffer>, created: () => void, pair: [Buffer, Buffer], pool: DirectPool): Promise<number> {
  let fh: FileHandle | undefined;
  let bytes = 0;
  let fileOffset = 0;
  let [cur, spare] = pair;
  let fill = 0;
  let writing: Promise<void> = Promise.resolve();
  const writeAll = async (h: FileHandle, buf: Buffer, len: number, at: number) => {
    for (let done = 0; done < len;) done += (await h.write(buf, done, len - done, at + done)).bytesWritten;
  };
  const flush = async (len: number) => {
    await writing; // the spare buffer is free once its write is done
    writing = writeAll(fh!, cur, len, fileOffset);
    fileOffset += len;
    [cur, spare] = [spare, cur];
    fill = 0;
  };
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, 0o600);
    created();
    for await (const c of chunks) {
      for (let p = 0; p < c.length;) {
        const n = Math.min(c.length - p, DIRECT_SLOT - fill);
        c.copy(cur, fill, p, p + n);
        fill += n;
        p += n;
        bytes += n;
        if (fill === DIRECT_SLOT) await flush(DIRECT_SLOT);
      }
    }
    if (fill) {
      const padded = Math.ceil(fill / DIRECT_ALIGN) * DIRECT_ALIGN;
      cur.fill(0, fill, padded);
      await flush(padded);
    }
    await writing;
    if (fileOffset !== bytes) await fh.truncate(bytes);
    await fh.sync();
    await fh.close();
  } catch (e) {
    await writing.catch(() => { /* reported below */ });
    await fh?.close().catch(() => { /* already closed */ });
    await rm(path, { force: true });
    throw e;
  } finally {
    // only now: a buffer must not be reused while a write from it may still be in flight
    await writing.catch(() => { /* reported above */ });
    pool.release(pair);
  }
  return bytes;
}

export function openFsStore(root: string): BlobStore {
  const pendingDir = join(root, 'pending');
  mkdirSync(pendingDir, { recursive: true, mode: 0o700 });
  const syncPending = dirSyncer(pendingDir);
  // 64 MiB of staging buffers: two per concurrent large write, 32 at once; beyond, page-cache writes
  const direct = openDirectPool(pendingDir, 64);
  const madeDirs = new Set<string>();
  const finalDir = (id: string) => join(root, id.slice(0, 2), id.slice(2, 4));
  const finalPath = (id: string) => join(finalDir(id), id);
  const pendingPath = (id: string) => join(pendingDir, id);
  const validId = (id: string) => /^[0-9a-f]{32}$/.test(id);

  const moving = new Map<string, Promise<void>>();
  const moveIntoPlace = async (id: string) => {
    const dir = finalDir(id);
    if (!madeDirs.has(dir)) { await mkdir(dir, { recursive: true, mode: 0o700 }); madeDirs.add(dir); }
    try {
      await rename(pendingPath(id), finalPath(id));
    } catch (e) {
      // already committed (e.g. recover() ran first) or removed meanwhile is fine; anything else is not
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  };

  /**
   * Opens a blob under its committed name, else its pending name (the background rename may not
   * have run), else the committed name again (the rename ran between the two tries).
   */
  const openBlob = async (id: string): Promise<FileHandle | undefined> => {
    if (!validId(id)) return undefined;
    for (const p of [finalPath(id), pendingPath(id), finalPath(id)]) {
      try { return await open(p, 'r'); } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    return undefined;
  };

  return {
    async write(body: Readable): Promise<BlobWrite> {
      // the first MiB decides: a body that ends before it is small and goes through the page
      // cache (one write, one fsync); a larger one is written with direct I/O when available
      const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      const head: Buffer[] = [];
      let headBytes = 0;
      let ended = false;
      while (headBytes < DIRECT_SLOT) {
        const r = await it.next();
        if (r.done) { ended = true; break; }
        head.push(r.value);
        headBytes += r.value.length;
      }
      const chunks = (async function* () {
        yield* head;
        if (!ended) for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
      })();
      const id = randomId(16);
      const path = pendingPath(id);
      const pair = ended ? null : direct.acquirePair();
      // the new name is made durable (directory fsync) as soon as it exists, while the body is
      // still arriving: by the end of a large body it is long done and costs the request nothing
      let nameSynced: Promise<void> | undefined;
      const created = () => { nameSynced = syncPending(); };
      try {
        const bytes = pair ? await writeDirect(path, chunks, created, pair, direct) : await writeBuffered(path, chunks, created);
        await nameSynced;
        return { id, bytes };
      } finally {
        await nameSynced?.catch(() => { /* the write failed anyway; its file is removed */ });
      }
    },

    async commit(ids: string[]): Promise<void> {
      // The rename out of pending/ runs in the background: the blob is already durable and its
      // metadata committed, reads find it under either name, and recover() completes a rename a
      // crash interrupted. Waiting for it would add a journal round trip to every PUT.
      for (const id of ids) {
        const move = moveIntoPlace(id).catch((e: Error) => {
          console.error(`shelterd: could not move blob ${id} out of pending/ (recovery at the next start will): ${e.message}`);
        }).finally(() => { moving.delete(id); });
        moving.set(id, move);
      }
    },

    async settle(): Promise<void> {
      await Promise.all(moving.values());
    },

    async remove(id: string): Promise<void> {
      if (!validId(id)) return;
      await moving.get(id);
      await rm(finalPath(id), { force: true });
      await rm(pendingPath(id), { force: true });
    },

    async read(id: string, start: number, end: number): Promise<Readable> {
      const fh = await openBlob(id);
      if (!fh) throw Object.assign(new Error(`blob ${id} is missing from storage`), { code: 'ENOENT' });
      const size = (await fh.stat()).size;
      if (size < end + 1) {
        await fh.close();
        throw Object.assign(new Error(`blob ${id} holds ${size} bytes, ${end + 1} needed: storage is damaged`), { code: 'EBLOBDAMAGED' });
      }
      const stream = fh.createReadStream({ start, end, highWaterMark: 1 << 20, autoClose: true });
      // a file shorter than its metadata says (damaged disk) must fail the response, not end it
      // early: a short body with a full Content-Length would leave the client waiting
      const expected = end - start + 1;
      let got = 0;
      const checked = new Transform({
        transform(c: Buffer, _e, cb) { got += c.length; cb(null, c); },
        flush(cb) { cb(got < expected ? new Error(`blob ${id} is shorter than recorded (${got} of ${expected} bytes): storage is damaged`) : null); },
      });
      stream.on('error', (e) => checked.destroy(e));
      return stream.pipe(checked);
    },

    async stat(id: string): Promise<number | undefined> {
      const fh = await openBlob(id);
      if (!fh) return undefined;
      try { return (await fh.stat()).size; } finally { await fh.close(); }
    },

    async recover(referenced) {
      let committed = 0;
      let removed = 0;
      const names = readdirSync(pendingDir);
      const keep = names.length ? referenced(names.filter(validId)) : new Set<string>();
      for (const name of names) {
        if (keep.has(name)) {
          await moveIntoPlace(name);
          committed++;
        } else {
          await rm(join(pendingDir, name), { force: true });
          removed++;
        }
      }
      return { committed, removed };
    },

    async *list() {
      await this.settle();
      for (const a of readdirSync(root)) {
        if (a === 'pending' || !/^[0-9a-f]{2}$/.test(a)) continue;
        for (const b of readdirSync(join(root, a))) {
          for (const id of readdirSync(join(root, a, b))) {
            yield { id, bytes: statSync(join(root, a, b, id)).size };
          }
        }
      }
    },
  };
}
