// The tree loader (trees.ts) of a walk that takes each tree once (`release`: restore, backup's
// parent trees): its background load pauses while the opened trees waiting to be taken exceed
// its limit, so a slow walk holds a bounded part of a large hierarchy; every tree still comes,
// identical to what loadAllTrees gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeTree, toHex, type TreeNode } from '@shelter/format';
import { loadAllTrees, treeLoader } from '../src/trees.ts';
import { openRepo } from '../src/repository.ts';
import { backedUp } from './lib/backed-up.ts';

test('tree loader with release: the background load stays within its limit while the walk waits, and every tree comes', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-trees-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  // 40 x 40 directories, two files each: ~1,640 trees
  for (let a = 0; a < 40; a++) for (let b = 0; b < 40; b++) {
    const dir = join(src, `a${a}`, `b${b}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 2; f++) writeFileSync(join(dir, `file-with-a-longish-name-${f}`), `${a}/${b}/${f}`);
  }
  const { repo, snap } = await backedUp(t, src, { startWorkers: true });
  const root = snap.snapshot.tree;
  const all = await loadAllTrees(repo, root);
  const total = all.size;
  assert.ok(total > 1600);
  const sizes = [...all.values()].map((nodes) => encodeTree(nodes).length);
  const totalBytes = sizes.reduce((x, y) => x + y, 0);

  const limit = 4096;
  const loader = treeLoader(repo, root, { release: true, bounded: true, maxReadyBytes: limit });
  // the background load runs ahead of a walk that has not started, then stops near the limit
  let ahead = -1;
  for (let waited = 0; loader.readyBytes !== ahead || ahead < limit; waited += 100) {
    if (waited > 20_000) assert.fail(`the background load did not settle (${loader.readyBytes} bytes waiting)`);
    ahead = loader.readyBytes;
    await sleep(100);
  }
  // at most the limit plus the batches already on their way when it was reached (2 x 128 trees),
  // far from the whole hierarchy
  assert.ok(ahead >= limit && ahead <= limit + 2 * 128 * Math.max(...sizes) && ahead < totalBytes / 3, `${ahead} bytes of trees waiting (limit ${limit}, hierarchy ${totalBytes})`);
  // the walk: every tree, as loadAllTrees gives it; the background load resumes as trees are taken
  const seen = new Set<string>();
  const walk = async (id: Buffer) => {
    const nodes: TreeNode[] = await loader.nodes(id);
    assert.deepEqual(nodes, all.get(toHex(id)));
    seen.add(toHex(id));
    for (const n of nodes) if (n.subtree) await walk(n.subtree);
  };
  await walk(root);
  assert.equal(seen.size, total);
  assert.equal(loader.readyBytes, 0);

  // a walk that leaves out half the hierarchy (excluded directories): the forgotten trees, loaded ahead
  // or not, stop counting, and the background load is not left paused by them
  const partial = treeLoader(repo, root, { release: true, bounded: true, maxReadyBytes: limit });
  // down the path to the source directory (the snapshot's root is /)
  let top = await partial.nodes(root);
  while (!top.some((n) => n.name.toString() === 'a0')) top = await partial.nodes(top[0]!.subtree!);
  const a = top.find((n) => n.name.toString() === 'a0');
  // the background load has opened what it runs ahead with (the first directories, those left out)
  for (let last = -1, waited = 0; partial.readyBytes !== last || last === 0; waited += 100) {
    if (waited > 20_000) assert.fail('the background load did not settle');
    last = partial.readyBytes;
    await sleep(100);
  }
  assert.ok(partial.readyBytes > 0);
  const half = top.slice(0, top.length >> 1);
  for (const n of half) partial.forget(n.subtree!);
  let taken = 0;
  const walkPartial = async (id: Buffer) => {
    for (const n of await partial.nodes(id)) if (n.subtree) { taken++; await walkPartial(n.subtree); }
  };
  for (const n of top.slice(top.length >> 1)) { taken++; await walkPartial(n.subtree!); }
  assert.ok(a && half.includes(a), 'a0 was among those left out');
  assert.equal(taken, (top.length - half.length) * 41, 'every tree of the other half came');
  // what was opened of the forgotten half before forget() no longer counts
  await sleep(200);
  assert.equal(partial.readyBytes, 0, 'no forgotten tree left waiting');
});

test('tree loader: once the seal workers are up they open the trees, though every tree is at hand and nothing waits for I/O', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-trees-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  // 3,200 directories: opening them all on this thread takes longer than a worker's start
  for (let a = 0; a < 80; a++) for (let b = 0; b < 40; b++) {
    mkdirSync(join(src, `a${a}`, `b${b}`), { recursive: true });
    writeFileSync(join(src, `a${a}`, `b${b}`, 'f'), `${a}/${b}`); // (a tree of its own each)
  }
  const { backend, master, snap } = await backedUp(t, src);
  // opened again: its worker starts now
  const repo = await openRepo(backend, master, { sealWorkers: 1, startWorkers: true });
  t.after(() => repo.close());
  const pool = repo.sealPool();
  // this thread held up without a turn of its event loop (as a long run of work holds it): the
  // worker starts meanwhile, and the pool knows it without any message read
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
  assert.equal(pool.ready(), true, 'the worker is known to be up, though this thread read nothing from it');
  let onWorker = 0;
  const openTrees = pool.openTrees.bind(pool);
  pool.openTrees = (list) => { onWorker += list.length; return openTrees(list); };
  // the memory bucket answers without I/O: the whole load is a chain of promises resolved at once,
  // which would never have let a "ready" message be read
  const all = await loadAllTrees(repo, snap.snapshot.tree);
  assert.ok(all.size > 3200);
  assert.ok(onWorker > 0, `every one of ${all.size} trees was opened on the main thread`);
});
