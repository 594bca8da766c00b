// Bounded concurrency: over a list (mapLimit), or shared by several lists (semaphore); and a turn
// of the event loop for long runs of work on the main thread (yieldToLoop).

/** at most `limit` calls of `fn` in flight, results in input order */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i]!); }
  }));
  return out;
}

/** at most n holders at once, served in the order they asked (restore: one set of range slots for every batch) */
export interface Semaphore { acquire(): Promise<void>; release(): void }
export function semaphore(n: number): Semaphore {
  let free = n;
  const queue: Array<() => void> = [];
  return {
    acquire: () => (free > 0 ? (free--, Promise.resolve()) : new Promise<void>((res) => { queue.push(res); })),
    release: () => { const next = queue.shift(); if (next) next(); else free++; },
  };
}

/**
 * Lets the event loop run (I/O callbacks, worker messages) before going on. Work chained through
 * promises that resolve at once (trees already fetched, a walk's next directory) runs as
 * microtasks, which never give way to a worker's message: a restore's main thread decoded tree
 * after tree for ~0.25 s while both workers, done with their ranges, waited for it to hand out
 * the next.
 */
export const yieldToLoop = (): Promise<void> => new Promise((res) => { setImmediate(res); });

/**
 * A yieldToLoop once `ms` of work have passed since the last one, else undefined (nothing to await):
 * for work whose steps may all run as microtasks, called at each step. A backup's walk of
 * directories whose parent trees and listings are already at hand ran for 0.2-0.5 s at a stretch,
 * and its packs' uploads, which need the loop to write each piece, stood still meanwhile (a 16
 * MiB pack took 0.6-0.9 s instead of ~0.1).
 */
export function loopYielder(ms: number): () => Promise<void> | undefined {
  let last = performance.now();
  const resume = () => { last = performance.now(); };
  return () => (performance.now() - last < ms ? undefined : yieldToLoop().then(resume));
}
