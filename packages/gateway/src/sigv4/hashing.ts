// Hashes of a request body (MD5 for the ETag, SHA-256 of a signed payload, the flexible checksum).
// MD5 alone costs most of a core at the speeds a 16 MiB upload arrives, so bodies that announce
// at least OFFLOAD_BYTES are hashed on a small pool of worker threads, in 1 MiB batches, while the
// main thread goes on serving connections; smaller bodies are hashed in place (a round trip to a
// worker would cost more than it saves).
import { createHash, type Hash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { createChecksum, type Checksum } from './checksums.ts';
import type { ChecksumAlgorithm } from './types.ts';

export interface BodyHashes { md5: Buffer; sha256: Buffer | null; checksum: Buffer | null }

export interface Hasher {
  update(b: Buffer): void;
  digest(): Promise<BodyHashes>;
  /** abandons the job (body refused): frees the worker's state */
  drop(): void;
}

export const OFFLOAD_BYTES = 1024 * 1024;
const BATCH = 1024 * 1024;

function inlineHasher(sha256: boolean, alg: ChecksumAlgorithm | null): Hasher {
  const md5: Hash = createHash('md5');
  const sha: Hash | null = sha256 ? createHash('sha256') : null;
  const sum: Checksum | null = alg ? createChecksum(alg) : null;
  return {
    update(b) { md5.update(b); sha?.update(b); sum?.update(b); },
    digest: async () => ({ md5: md5.digest(), sha256: sha?.digest() ?? null, checksum: sum?.digest() ?? null }),
    drop() { /* nothing held */ },
  };
}

interface PoolWorker { w: Worker; jobs: number; dead: boolean; started: number }
let pool: PoolWorker[] | undefined;
/**
 * A worker that dies within QUICK_DEATH_MS of its start is replaced after a delay that doubles,
 * up to MAX_RESTART_DELAY_MS (one that cannot start at all, a module that no longer loads or no
 * memory, must not be restarted in a loop); bodies are hashed in place while no worker lives.
 */
const QUICK_DEATH_MS = 10_000;
const FIRST_RESTART_DELAY_MS = 250;
const MAX_RESTART_DELAY_MS = 60_000;
const restartDelays: number[] = [];
/** digests awaited, by job: the worker that owns each, to fail them if it dies */
const waiting = new Map<number, { pw: PoolWorker; done: (h: BodyHashes) => void; fail: (e: Error) => void }>();
let nextJob = 1;

// Batches travel to the workers in 1 MiB slots that go back and forth by transfer: the main
// thread copies a body into a slot and transfers it, the worker hashes it and transfers it back.
// No allocation, zeroing, page faults or garbage per MiB on the thread that serves every
// connection (a fresh buffer per batch cost it about as much as the copy itself, plus GC).
// Plain ArrayBuffers, not SharedArrayBuffers: V8 copies into shared memory with relaxed atomic
// word stores, measured ~5x slower than memcpy, which made that copy the gateway's biggest cost.
const slots: ArrayBuffer[] = [];
/** retained slots beyond this are dropped when returned (only a burst needs more) */
const MAX_IDLE_SLOTS = 64;
const takeSlot = (): ArrayBuffer => slots.pop() ?? new ArrayBuffer(BATCH);

function workers(): PoolWorker[] {
  if (pool) return pool;
  const n = Math.max(1, Math.min(4, Number(process.env.SHELTERD_HASH_WORKERS ?? availableParallelism())));
  const start = (i: number): PoolWorker => {
    const w = new Worker(new URL('./hashworker.ts', import.meta.url));
    const pw: PoolWorker = { w, jobs: 0, dead: false, started: Date.now() };
    w.on('message', (m: { job: number; md5: Uint8Array; sha256: Uint8Array | null; checksum: Uint8Array | null } | { slot: ArrayBuffer }) => {
      if ('slot' in m) {
        if (slots.length < MAX_IDLE_SLOTS) slots.push(m.slot);
        return;
      }
      const j = waiting.get(m.job);
      waiting.delete(m.job);
      j?.done({ md5: Buffer.from(m.md5), sha256: m.sha256 && Buffer.from(m.sha256), checksum: m.checksum && Buffer.from(m.checksum) });
    });
    // a worker that fails fails its own requests (500), not the gateway; a new one takes its place
    const died = (e: Error) => {
      if (pw.dead) return;
      pw.dead = true;
      for (const [job, j] of waiting) if (j.pw === pw) { waiting.delete(job); j.fail(e); }
      replace(i, pw);
    };
    w.on('error', died);
    w.on('exit', (code) => died(new Error(`body hash worker exited (${code})`)));
    // after adding the listener (which refs the port): idle workers must not keep a process alive
    w.unref();
    return pw;
  };
  /**
   * Slot i's worker `gone` died (`since`: when it, or the last attempt to replace it, started): a
   * new one now, or after the growing delay if it died quickly; one that cannot even be created
   * (no memory, no descriptor) counts as a quick death.
   */
  const replace = (i: number, gone: PoolWorker, since = gone.started) => {
    if (!pool) return;
    const delay = Date.now() - since < QUICK_DEATH_MS ? Math.min(MAX_RESTART_DELAY_MS, Math.max(FIRST_RESTART_DELAY_MS, 2 * (restartDelays[i] ?? 0))) : 0;
    restartDelays[i] = delay;
    const attempt = () => {
      if (pool?.[i] !== gone) return;
      const at = Date.now();
      try { pool[i] = start(i); } catch { replace(i, gone, at); }
    };
    if (delay === 0) attempt();
    else setTimeout(attempt, delay).unref();
  };
  pool = Array.from({ length: n }, (_, i) => start(i));
  return pool;
}

/** the pool's workers (diagnostics and tests): each one's thread, when it started (ms), whether it died (its replacement not started yet) */
export function hashPool(): ReadonlyArray<{ worker: Worker; started: number; dead: boolean }> {
  return (pool ?? []).map((pw) => ({ worker: pw.w, started: pw.started, dead: pw.dead }));
}

export function createHasher(opts: { sha256: boolean; checksum: ChecksumAlgorithm | null; expectedBytes: number }): Hasher {
  if (opts.expectedBytes < OFFLOAD_BYTES || process.env.SHELTERD_HASH_WORKERS === '0') return inlineHasher(opts.sha256, opts.checksum);
  const live = workers().filter((p) => !p.dead);
  if (!live.length) return inlineHasher(opts.sha256, opts.checksum); // every worker died: until one is back
  const pw = live.reduce((a, b) => (b.jobs < a.jobs ? b : a));
  // a worker with jobs keeps the process alive until they finish; an idle one does not
  if (pw.jobs++ === 0) pw.w.ref();
  const release = () => { if (--pw.jobs === 0) pw.w.unref(); };
  const job = nextJob++;
  pw.w.postMessage({ kind: 'start', job, sha256: opts.sha256, checksum: opts.checksum });
  let slot: ArrayBuffer | null = null;
  let batch: Buffer = Buffer.alloc(0);
  let used = 0;
  let finished = false;
  const send = () => {
    if (used === 0 || !slot) return;
    pw.w.postMessage({ kind: 'data', job, slot, length: used }, [slot]);
    slot = null;
    used = 0;
  };
  return {
    update(b) {
      let at = 0;
      while (at < b.length) {
        if (!slot) { slot = takeSlot(); batch = Buffer.from(slot); }
        const n = Math.min(BATCH - used, b.length - at);
        b.copy(batch, used, at, at + n);
        used += n;
        at += n;
        if (used === BATCH) send();
      }
    },
    digest() {
      send();
      finished = true;
      return new Promise<BodyHashes>((resolve, reject) => {
        if (pw.dead) { release(); reject(new Error('body hash worker died')); return; }
        waiting.set(job, { pw, done: (h) => { release(); resolve(h); }, fail: (e) => { release(); reject(e); } });
        pw.w.postMessage({ kind: 'end', job });
      });
    },
    drop() {
      if (finished) return;
      finished = true;
      // a partly filled slot never went to the worker: back to the free list
      if (slot && slots.length < MAX_IDLE_SLOTS) slots.push(slot);
      slot = null;
      release();
      pw.w.postMessage({ kind: 'drop', job });
    },
  };
}
