// Embedded storage: one file per blob under DATA/objects/ab/cd/<id>.
// A write goes to DATA/objects/pending/<id>, is fsynced (file, then directory: POSIX wants both
// for a new name to survive a crash), and only then acknowledged to the caller, which commits
// metadata and calls commit(), which renames the file into place. If the process dies between
// the two, recover() at the next start finds the pending file and either completes the rename
// (metadata references it) or removes it (it never became visible).
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { randomId } from '../secrets.ts';
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

export function openFsStore(root: string): BlobStore {
  const pendingDir = join(root, 'pending');
  mkdirSync(pendingDir, { recursive: true, mode: 0o700 });
  const syncPending = dirSyncer(pendingDir);
  const madeDirs = new Set<string>();
  const finalDir = (id: string) => join(root, id.slice(0, 2), id.slice(2, 4));
  const finalPath = (id: string) => join(finalDir(id), id);
  const pendingPath = (id: string) => join(pendingDir, id);
  const validId = (id: string) => /^[0-9a-f]{32}$/.test(id);

  /** the committed path, falling back to pending (commit() may not have renamed it yet) */
  const locate = async (id: string): Promise<string | undefined> => {
    if (!validId(id)) return undefined;
    for (const p of [finalPath(id), pendingPath(id)]) {
      try { await stat(p); return p; } catch { /* next */ }
    }
    return undefined;
  };

  return {
    async write(body: Readable): Promise<BlobWrite> {
      const id = randomId(16);
      const path = pendingPath(id);
      const fh = await open(path, 'wx', 0o600);
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
        for await (const c of body as AsyncIterable<Buffer>) {
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
        await syncPending();
      } catch (e) {
        await writing.catch(() => { /* reported below */ });
        await fh.close().catch(() => { /* already closed */ });
        await rm(path, { force: true });
        throw e;
      }
      return { id, bytes };
    },

    async commit(ids: string[]): Promise<void> {
      for (const id of ids) {
        const dir = finalDir(id);
        if (!madeDirs.has(dir)) { await mkdir(dir, { recursive: true, mode: 0o700 }); madeDirs.add(dir); }
        try {
          await rename(pendingPath(id), finalPath(id));
        } catch (e) {
          // already committed (e.g. recover() ran first) is fine; anything else is not
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
    },

    async remove(id: string): Promise<void> {
      if (!validId(id)) return;
      await rm(finalPath(id), { force: true });
      await rm(pendingPath(id), { force: true });
    },

    async read(id: string, start: number, end: number): Promise<Readable> {
      // the common case is committed; a read racing commit() finds it under the pending name
      const path = await locate(id);
      if (!path) throw Object.assign(new Error(`blob ${id} is missing from storage`), { code: 'ENOENT' });
      const fh = await open(path, 'r');
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
      const p = await locate(id);
      if (!p) return undefined;
      return (await stat(p)).size;
    },

    async recover(isReferenced) {
      let committed = 0;
      let removed = 0;
      for (const name of readdirSync(pendingDir)) {
        if (validId(name) && isReferenced(name)) {
          await this.commit([name]);
          committed++;
        } else {
          await rm(join(pendingDir, name), { force: true });
          removed++;
        }
      }
      return { committed, removed };
    },

    async *list() {
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
