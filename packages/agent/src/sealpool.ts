// A pool of crypto workers (one per core). submit() transfers a chunk to the least busy worker
// and resolves with the sealed envelope (backup); openRange() transfers a fetched pack range and
// resolves with the plaintexts of its blobs (restore: decryption and zstd off the main thread).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PackEntry, RepoKeys } from '@shelter/format';

export interface SealPool {
  submit(id: Buffer, plaintext: Buffer): Promise<Buffer>;
  /** opens every blob of a pack range (bytes starting at pack offset `start`); rejects with the first failure */
  openRange(bytes: Buffer, start: number, entries: PackEntry[]): Promise<Buffer[]>;
  close(): Promise<void>;
}

export function createSealPool(keys: RepoKeys, opts: { workers?: number; level?: number } = {}): SealPool {
  const n = Math.max(1, opts.workers ?? availableParallelism());
  const plainKeys = { ...keys };
  const workers = Array.from({ length: n }, () => {
    const w = new Worker(new URL('./sealworker.ts', import.meta.url), { workerData: { keys: plainKeys, level: opts.level ?? 3 } });
    w.unref();
    return { w, busy: 0 };
  });
  const waiting = new Map<number, { resolve: (b: Buffer, lengths?: number[]) => void; reject: (e: Error) => void; worker: (typeof workers)[number] }>();
  let seq = 0;
  for (const wk of workers) {
    wk.w.on('message', (m: { seq: number; sealed?: Uint8Array; lengths?: number[]; error?: string }) => {
      const job = waiting.get(m.seq);
      if (!job) return;
      waiting.delete(m.seq);
      // a worker with jobs keeps the process alive (the main thread may have nothing else pending)
      if (--wk.busy === 0) wk.w.unref();
      if (m.error !== undefined) job.reject(new Error(m.error));
      else job.resolve(Buffer.from(m.sealed!.buffer, m.sealed!.byteOffset, m.sealed!.byteLength), m.lengths);
    });
    wk.w.on('error', (e) => { for (const [s, job] of waiting) if (job.worker === wk) { waiting.delete(s); job.reject(e); } });
  }
  return {
    submit(id, plaintext) {
      const wk = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      if (wk.busy++ === 0) wk.w.ref();
      const s = seq++;
      // a standalone copy whose buffer can be transferred (the caller's may be a slice of a big read buffer)
      const data = new Uint8Array(plaintext.length);
      data.set(plaintext);
      return new Promise<Buffer>((resolve, reject) => {
        waiting.set(s, { resolve, reject, worker: wk });
        wk.w.postMessage({ seq: s, id, data }, [data.buffer]);
      });
    },
    openRange(bytes, start, entries) {
      const wk = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      if (wk.busy++ === 0) wk.w.ref();
      const s = seq++;
      const data = new Uint8Array(bytes.length);
      data.set(bytes);
      const list = entries.map((e) => ({ id: e.id, offset: e.offset, length: e.length, rawLength: e.rawLength }));
      return new Promise<Buffer[]>((resolve, reject) => {
        waiting.set(s, {
          resolve: (all, lengths) => {
            const out: Buffer[] = [];
            let at = 0;
            for (const n of lengths!) { out.push(all.subarray(at, at + n)); at += n; }
            resolve(out);
          },
          reject, worker: wk,
        });
        wk.w.postMessage({ seq: s, open: { start, entries: list }, data }, [data.buffer]);
      });
    },
    async close() { await Promise.all(workers.map((wk) => wk.w.terminate())); },
  };
}
