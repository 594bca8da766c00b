// Garbage collection on demand, at the moments the heuristics serve badly. V8 sizes a heap by what
// was live at its last full collection and collects lazily while memory is cheap to grow: after a
// phase that dropped much (restore's plan: every tree node of the snapshot) the heap stays as large
// as that phase needed for the rest of the run, and a worker that handles hundreds of MiB outside
// its tiny heap rarely sees a reason to collect the buffers it dropped. One place for both.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (o: { type: 'major' | 'minor'; execution: 'sync' }) => void;
/** this thread's V8 gc function; null: it could not be had (collections are then skipped) */
let gc: Gc | null | undefined;

/**
 * V8's gc function for this thread. The flag that exposes it is set only while a new context is
 * made to get it, then unset: V8 accepts cached compiled code (launch's compile cache, and Node's
 * own for its built-in modules) only under the flags it was made with. Left set, every module
 * compiled after that moment was compiled again by the next command, and cached again for the one
 * after (7-54 modules a command, alternating backups with and without changes); given at start,
 * Node compiled its built-ins without their cache (+25 ms of every command's start). The flags are
 * the process's: another thread may unset the flag between this one's setting it and making its
 * context (that context then has no gc), hence the retries; a thread that still has none skips its
 * collections rather than fail (they bound memory, nothing depends on them).
 */
function fetchGc(): Gc | null {
  const given = (globalThis as { gc?: unknown }).gc;
  if (typeof given === 'function') return given as Gc; // the user started Node with --expose-gc
  let found: Gc | null = null;
  for (let attempt = 0; attempt < 100 && !found; attempt++) {
    setFlagsFromString('--expose-gc');
    try {
      const f: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
      if (typeof f === 'function') found = f as Gc;
    } catch { /* tried again */ }
  }
  setFlagsFromString('--no-expose-gc');
  return found;
}

/** a synchronous collection of this thread's heap: `minor` (the young generation, well under a ms on a small heap) or `major` */
export function collectGarbage(type: 'major' | 'minor'): void {
  if (gc === undefined) gc = fetchGc();
  gc?.({ type, execution: 'sync' });
}

/** what was live in this thread's heap after the last collectWhenGrown collection */
let liveAfterLast = 0;
/**
 * A major collection if this thread's heap now holds more than `factor` times what was live after
 * the last one (and at least `minBytes` more): called at the boundaries of a long phase that keeps
 * allocating what it drops soon after (restore's batches, a backup's walk at each turn it gives the
 * event loop). V8 lets the old generation grow to 2-4 times its live size between full collections
 * while collecting is cheap, and the pages it grew into stay the process's: on the linux tree the
 * main thread's heap reached 150 MiB for ~40 live in a restore, 70-90 MiB for ~25 in a backup.
 */
export function collectWhenGrown(factor = 1.5, minBytes = 16 * 1024 * 1024): void {
  const used = getHeapStatistics().used_heap_size;
  if (used < liveAfterLast * factor || used - liveAfterLast < minBytes) return;
  collectGarbage('major');
  liveAfterLast = getHeapStatistics().used_heap_size;
}

/**
 * A counter of bytes that collects this thread's young generation each time `everyBytes` more
 * have gone by: for a thread whose buffers live outside its small heap and die young, so that V8
 * sees no reason to collect while they pile up (a seal worker's output; the buffers the workers
 * send the main thread). A young collection frees those that are dead, in well under a ms.
 */
export function youngCollectionEvery(everyBytes: number): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since >= everyBytes) { since = 0; collectGarbage('minor'); }
  };
}
