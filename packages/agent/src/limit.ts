// Bounded concurrency: over a list (mapLimit), or shared by several lists (semaphore).

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
