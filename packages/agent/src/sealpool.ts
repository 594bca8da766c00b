// A pool of seal workers (one per core). submit() transfers the chunk to the least busy worker
// and resolves with the sealed envelope.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { RepoKeys } from '@shelter/format';

export interface SealPool {
  submit(id: Buffer, plaintext: Buffer): Promise<Buffer>;
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
  const waiting = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void; worker: (typeof workers)[number] }>();
  let seq = 0;
  for (const wk of workers) {
    wk.w.on('message', (m: { seq: number; sealed?: Uint8Array; error?: string }) => {
      const job = waiting.get(m.seq);
      if (!job) return;
      waiting.delete(m.seq);
      wk.busy--;
      if (m.error !== undefined) job.reject(new Error(`sealing failed: ${m.error}`));
      else job.resolve(Buffer.from(m.sealed!.buffer, m.sealed!.byteOffset, m.sealed!.byteLength));
    });
    wk.w.on('error', (e) => { for (const [s, job] of waiting) if (job.worker === wk) { waiting.delete(s); job.reject(e); } });
  }
  return {
    submit(id, plaintext) {
      const wk = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      wk.busy++;
      const s = seq++;
      // a standalone copy whose buffer can be transferred (the caller's may be a slice of a big read buffer)
      const data = new Uint8Array(plaintext.length);
      data.set(plaintext);
      return new Promise<Buffer>((resolve, reject) => {
        waiting.set(s, { resolve, reject, worker: wk });
        wk.w.postMessage({ seq: s, id, data }, [data.buffer]);
      });
    },
    async close() { await Promise.all(workers.map((wk) => wk.w.terminate())); },
  };
}
