// loopYielder (limit.ts): work whose steps all resolve as microtasks (a backup's walk over trees
// and listings already at hand) gives the event loop a turn every so many ms, so that I/O waiting
// on it (a pack's upload writes) goes on; without it, nothing else runs until the work ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loopYielder } from '../src/limit.ts';

/** ~`ms` of steps that each await an already resolved promise; the timer ticks seen meanwhile */
async function busy(ms: number, yieldNow?: () => Promise<void> | undefined): Promise<number> {
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 1);
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const pause = yieldNow?.();
    if (pause) await pause;
    await Promise.resolve();
    for (let i = 0; i < 2000; i++) Math.sqrt(i); // a step's own work
  }
  const seen = ticks;
  clearInterval(timer);
  return seen;
}

test('loopYielder: a run of microtask steps lets timers and I/O run every few ms; without it, none run', async () => {
  assert.equal(await busy(150), 0, 'microtasks alone starve the event loop');
  const ticks = await busy(150, loopYielder(10));
  assert.ok(ticks >= 5, `with a turn every 10 ms, the 1 ms timer ran ${ticks} times in 150 ms`);
});

test('loopYielder: no turn is taken before `ms` have passed (the check is all a step pays)', async () => {
  const yieldNow = loopYielder(60_000);
  for (let i = 0; i < 1000; i++) assert.equal(yieldNow(), undefined);
  const soon = loopYielder(0);
  const pause = soon();
  assert.ok(pause instanceof Promise);
  await pause;
});
