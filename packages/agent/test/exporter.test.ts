// The export walked and written in batches (exporter.ts): with batches of a few entries, the
// archive GNU tar extracts is the tree (hard links whose names fall into different batches
// included), the same as with one batch; with --include, a directory is written only when it
// matches or holds something that does, whichever batch its first match falls into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSnapshot } from '../src/exporter.ts';
import { backedUp } from './lib/backed-up.ts';
import { assertSameTrees, scanTree } from '../../../test/lib/agent.ts';

test('export in small batches: the same tree as one batch; --include keeps only matching directories and those above them', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-exporter-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  for (let d = 0; d < 3; d++) {
    mkdirSync(join(src, `d${d}`, 'deep', 'deeper'), { recursive: true });
    for (let f = 0; f < 6; f++) writeFileSync(join(src, `d${d}`, `f${f}.txt`), randomBytes(50 + f * 3000));
  }
  writeFileSync(join(src, 'd2', 'deep', 'deeper', 'wanted.log'), 'found\n');
  mkdirSync(join(src, 'empty'));
  linkSync(join(src, 'd0', 'f1.txt'), join(src, 'd2', 'zz-link'));
  symlinkSync('d1/f2.txt', join(src, 'a-symlink'));
  writeFileSync(join(src, 'd1', 'big'), randomBytes(3 * 1024 * 1024));

  const { repo, snap } = await backedUp(t, src);
  const expected = scanTree(src);

  const exported = async (name: string, opts: Parameters<typeof exportSnapshot>[3]) => {
    const archive = join(work, `${name}.tar.gz`);
    const warnings: string[] = [];
    const r = await exportSnapshot(repo, snap, createWriteStream(archive), { ...opts, onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
    assert.deepEqual(warnings, []);
    const into = join(work, name);
    mkdirSync(into);
    execFileSync('tar', ['-xzf', archive, '-C', into]);
    return { r, root: join(into, src), names: execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).split('\n').filter(Boolean) };
  };
  const whole = await exported('whole', {});
  for (const batchEntries of [1, 3]) {
    const b = await exported(`batches-${batchEntries}`, { batchEntries });
    assertSameTrees(expected, scanTree(b.root), `export in batches of ${batchEntries}`, { owners: false, dirTimes: false });
    assert.deepEqual(b.names, whole.names, 'the same entries in the same order');
    assert.deepEqual(b.r, whole.r);
  }
  assert.equal(whole.r.hardlinks, 1);

  // --include: only the matching file, with the directories above it, in batches of 2
  const inc = await exported('include', { include: ['**/*.log'], batchEntries: 2 });
  const rel = src.slice(1);
  const parts = `${rel}/d2/deep/deeper`.split('/');
  const dirs = parts.map((_, i) => `${parts.slice(0, i + 1).join('/')}/`);
  assert.deepEqual(inc.names, [...dirs, `${rel}/d2/deep/deeper/wanted.log`]);
  assert.equal(readFileSync(join(inc.root, 'd2', 'deep', 'deeper', 'wanted.log'), 'utf8'), 'found\n');
});
