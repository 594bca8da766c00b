// The restore in batches (restorer.ts): with batches of a few files, a tree whose hard links,
// empty files, symlinks and a file spread over several pack ranges fall into different batches is
// restored identical to the source, as with one batch; storage that fails during a later batch
// fails the restore with that error (not a warning per file) and leaves nothing running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restoreSnapshot } from '../src/restorer.ts';
import { BackendError } from '../src/backend/types.ts';
import { backedUp } from './lib/backed-up.ts';
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
