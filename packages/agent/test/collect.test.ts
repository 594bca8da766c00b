// collectWhenGrown (collect.ts): a full collection when this thread's heap has grown well past what
// was live after the last one, none otherwise (it is called at every restore batch and every turn a
// backup's walk gives the event loop: a needless full collection costs the main thread 25-60 ms on
// the linux tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GCProfiler, getHeapStatistics } from 'node:v8';
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
