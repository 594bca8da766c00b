// The restore in batches (restorer.ts): with batches of a few files, a tree whose hard links,
// empty files, symlinks and a file spread over several pack ranges fall into different batches is
// restored identical to the source, as with one batch; storage that fails during a later batch
// fails the restore with that error (not a warning per file) and leaves nothing running; the
// workers fetch the ranges they write themselves, and a range whose fetch fails there (in any of
// the ways a store can answer wrongly) is fetched again through the backend, with nothing lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restoreSnapshot } from '../src/restorer.ts';
import { BackendError } from '../src/backend/types.ts';
import { backedUp } from './lib/backed-up.ts';
import { serveObjects, type Behaviour } from './lib/range-server.ts';
import { assertSameTrees, scanTree } from '../../../test/lib/agent.ts';

test('restore in small batches: identical to the source, hard links and multi-range files across batches', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-restorer-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  // 3 directories deep, ~70 entries: with batches of 4 files, many batches
  for (let d = 0; d < 4; d++) {
    const dir = join(src, `d${d}`, `sub${d % 2}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 14; f++) writeFileSync(join(dir, `f${f}`), f % 5 === 0 ? Buffer.alloc(0) : randomBytes(100 + f * 997));
  }
  mkdirSync(join(src, 'empty-dir'));
  // hard links whose names lie far apart in the walk (different batches)
  linkSync(join(src, 'd0', 'sub0', 'f1'), join(src, 'd3', 'sub1', 'link-to-d0-f1'));
  linkSync(join(src, 'd0', 'sub0', 'f1'), join(src, 'zz-last-link'));
  symlinkSync('d1/sub1/f2', join(src, 'a-symlink'));
  // a file over several 8 MiB ranges (created empty first, its parts written by several ranges)
  writeFileSync(join(src, 'd2', 'big'), randomBytes(20 * 1024 * 1024));
  utimesSync(join(src, 'd2'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));

  const { repo, snap } = await backedUp(t, src, { sealWorkers: 2 });
  const expected = scanTree(src);

  for (const batchFiles of [4, 1, undefined]) {
    const target = join(work, `restored-${batchFiles ?? 'default'}`);
    const warnings: string[] = [];
    const r = await restoreSnapshot(repo, snap, { target, batchFiles, onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
    assert.deepEqual(warnings, [], `batches of ${batchFiles ?? 'default'}: no warnings`);
    assertSameTrees(expected, scanTree(join(target, src)), `restore in batches of ${batchFiles ?? 'default'}`, { dirTimes: true });
    assert.equal(r.files, [...expected.values()].filter((e) => e.type === 'file').length);
  }
});

test('restore: storage failing during a later batch fails the restore with that error', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-restorer-fail-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(src);
  for (let f = 0; f < 40; f++) writeFileSync(join(src, `f${String(f).padStart(2, '0')}`), randomBytes(300_000));
  const { repo, snap, backend } = await backedUp(t, src);
  // data ranges fail from the third GET on (trees come first and still load)
  let dataGets = 0;
  const get = backend.get.bind(backend);
  backend.get = async (key, range) => {
    if (key.startsWith('data/') && range && ++dataGets > 2) throw new BackendError('Network', 'connection reset (test)');
    return get(key, range);
  };
  const warnings: string[] = [];
  await assert.rejects(
    restoreSnapshot(repo, snap, { target: join(work, 'restored'), batchFiles: 3, concurrency: 1, onWarning: (p, m) => warnings.push(`${p}: ${m}`) }),
    (e: Error) => e instanceof BackendError && /connection reset/.test(e.message),
  );
  assert.ok(warnings.length <= 3, `the failure is the restore's, not a warning per file (${warnings.length} warnings)`);
});

test('restore: workers fetch their own ranges; one whose fetch fails is fetched again by the backend', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-restorer-fetch-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  for (let f = 0; f < 30; f++) writeFileSync(join(src, f % 2 ? 'sub' : '', `f${f}`), randomBytes(50_000 + f * 9_973));
  writeFileSync(join(src, 'big'), randomBytes(20 * 1024 * 1024)); // over several ranges
  const { repo, snap, backend } = await backedUp(t, src, { sealWorkers: 2 });
  const expected = scanTree(src);
  // ranged GETs of packs through the backend itself (the trees' too)
  let backendGets = 0;
  const get = backend.get.bind(backend);
  backend.get = async (key, range) => { if (key.startsWith('data/') && range) backendGets++; return get(key, range); };
  const failures: Behaviour[] = ['500', 'whole', 'shifted', 'short', 'long', 'reset'];
  let plan: (request: number) => Behaviour = () => 'ok';
  const server = await serveObjects(backend.objects, (i) => plan(i));
  t.after(() => server.close());
  backend.signGet = (key, range) => server.signGet(key, range!);

  // every worker fetch answered: no file range comes through the backend
  const warnings: string[] = [];
  await restoreSnapshot(repo, snap, { target: join(work, 'r1'), batchFiles: 2, onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
  assertSameTrees(expected, scanTree(join(work, 'r1', src)), 'restore by the workers');
  const treeGets = backendGets;
  const ranges = server.requests.length;
  assert.ok(ranges >= 4, `the workers fetched the ranges (${ranges})`);

  // every other worker fetch fails, in each way in turn: each of those ranges comes through the backend
  backendGets = 0;
  let failed = 0;
  plan = (i) => { const how = (i - ranges) % 2 ? failures[((i - ranges) >> 1) % failures.length]! : 'ok'; if (how !== 'ok') failed++; return how; };
  await restoreSnapshot(repo, snap, { target: join(work, 'r2'), batchFiles: 2, onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
  assertSameTrees(expected, scanTree(join(work, 'r2', src)), 'restore with failed worker fetches');
  assert.equal(server.requests.length - ranges, ranges, 'the same ranges asked for');
  assert.ok(failed >= failures.length, `every kind of failure happened (${failed})`);
  assert.equal(backendGets - treeGets, failed, 'each failed range fetched once more through the backend');
  assert.deepEqual(warnings, []);
});
