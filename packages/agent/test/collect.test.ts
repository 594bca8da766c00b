// collectWhenGrown (collect.ts): a full collection when this thread's heap has grown well past what
// was live after the last one, none otherwise (it is called at every restore batch and every turn a
// backup's walk gives the event loop: a needless full collection costs the main thread 25-60 ms on
// the linux tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { collectWhenGrown, youngCollectionEvery } from '../src/collect.ts';

const MiB = 1024 * 1024;

/** the full collections run while `f` does (V8's own included) */
function fullCollections(f: () => void): number {
  const profiler = new GCProfiler();
  profiler.start();
  f();
  return profiler.stop()!.statistics.filter((s) => s.gcType === 'MarkSweepCompact').length;
}

/** ~`mb` MiB of small objects, as a restore's decoded trees and plans are */
const garbage = (mb: number) => Array.from({ length: mb * 16 * 1024 }, (_, i) => ({ name: `file-${i}`, size: i, mode: 0o644, chunks: [i, i + 1] }));

test('collectWhenGrown: a full collection once the heap has grown past what was live, none before', () => {
  let held: unknown = garbage(48);
  const before = getHeapStatistics().used_heap_size;
  held = undefined; // dropped, not collected yet: the heap is as large as the phase made it
  assert.equal(fullCollections(() => collectWhenGrown()), 1, 'a heap holding 48 MiB of dropped objects is collected');
  const after = getHeapStatistics().used_heap_size;
  assert.ok(before - after > 32 * MiB, `the dropped objects were freed (${(before / MiB).toFixed(0)} -> ${(after / MiB).toFixed(0)} MiB)`);

  // nothing dropped since: no collection (each would cost a restore's main thread tens of ms)
  assert.equal(fullCollections(() => collectWhenGrown()), 0);
  // a little garbage (under the minimum growth): still none
  held = garbage(2);
  held = undefined;
  assert.equal(fullCollections(() => collectWhenGrown()), 0);

  // the next phase's garbage: collected again
  held = garbage(48);
  held = undefined;
  assert.equal(fullCollections(() => collectWhenGrown()), 1);
  assert.equal(held, undefined);
});

test('youngCollectionEvery: a young-generation collection each time the bytes counted pass the step, none before', () => {
  const count = youngCollectionEvery(8 * MiB);
  const young = (f: () => void) => {
    const profiler = new GCProfiler();
    profiler.start();
    f();
    return profiler.stop()!.statistics.filter((s) => s.gcType === 'Scavenge').length;
  };
  assert.equal(young(() => count(5 * MiB)), 0);
  assert.equal(young(() => count(5 * MiB)), 1, '10 MiB counted: one');
  assert.equal(young(() => { for (let i = 0; i < 8; i++) count(2 * MiB); }), 2, '16 MiB more: two');
});

test('threads fetching V8\'s gc function at the same moment all get it (the flag that exposes it is the process\'s)', async () => {
  // collect.ts sets the flag only while it fetches the function; another thread unsetting it in
  // between left a thread without one, and a seal worker died of "gc is not defined" (a restore
  // then failed its files). Sixteen threads, released together, each collect once.
  const go = new Int32Array(new SharedArrayBuffer(4));
  const workers = Array.from({ length: 16 }, () => new Worker(new URL('./lib/collect-worker.ts', import.meta.url), { workerData: { go } }));
  try {
    const ready = workers.map((w) => new Promise((res) => w.once('message', res)));
    await Promise.all(ready);
    const results = workers.map((w) => new Promise<{ collections?: number; error?: string }>((res, rej) => { w.once('message', res); w.once('error', rej); }));
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);
    for (const r of await Promise.all(results)) {
      assert.equal(r.error, undefined, `a thread failed: ${r.error}`);
      assert.ok(r.collections! >= 1, 'each thread collected');
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
});
