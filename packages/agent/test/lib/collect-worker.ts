// A worker thread for collect.test.ts: takes its first young-generation collection as soon as
// told to (every worker at once, to meet the other threads' fetching of V8's gc function), and
// says whether one ran (GCProfiler) or what it threw.
import { parentPort, workerData } from 'node:worker_threads';
import { GCProfiler } from 'node:v8';
import { collectGarbage } from '../../src/collect.ts';

const go = workerData.go as Int32Array;
parentPort!.postMessage('ready');
Atomics.wait(go, 0, 0);
const profiler = new GCProfiler();
profiler.start();
try {
  collectGarbage('minor');
  const collections = profiler.stop()!.statistics.length;
  parentPort!.postMessage({ collections });
} catch (e) {
  profiler.stop();
  parentPort!.postMessage({ error: (e as Error).message });
}
