// The archiver's rare path: a file the walk found smaller than one chunk (so a seal worker was to
// read it whole) that has grown to a chunk or more by the time the worker opens it. The worker
// reads none of it and says so; the backup reads and chunks it here, as it is then, and the
// snapshot holds that content whole, with its new size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository } from '@shelter/format';
import { backupFiles } from '../src/archiver.ts';
import { initRepository, openRepo } from '../src/repository.ts';
import { restoreSnapshot } from '../src/restorer.ts';
import { memoryBackend } from './lib/memory-backend.ts';

test('a small file that grew to a chunk or more before its worker read it is read whole here', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-archiver-grown-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(src);
  for (let f = 0; f < 20; f++) writeFileSync(join(src, `small-${f}`), randomBytes(1_000 + f));
  const grows = join(src, 'grows');
  writeFileSync(grows, randomBytes(1_000));

  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const repo = await openRepo(backend, master, { sealWorkers: 1 });
  t.after(() => repo.close());
  // the file grows after the walk saw it small, just before a worker is asked to read it
  const grown = randomBytes(3 * repo.config.chunker.max);
  const submit = repo.saveSmallFileUnhashed.bind(repo);
  let seen = 0;
  repo.saveSmallFileUnhashed = (path, size) => {
    if (path.toString() === grows) { seen++; assert.equal(size, 1_000); appendFileSync(grows, grown); }
    return submit(path, size);
  };
  const warnings: string[] = [];
  const result = await backupFiles(repo, { name: 'x', paths: [src], onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
  assert.equal(seen, 1, 'the file went to a worker as a small one');
  assert.equal(result.summary.files, 21);

  const snap = (await repo.listSnapshots()).pop()!;
  const target = join(work, 'restored');
  await restoreSnapshot(repo, snap, { target });
  const whole = readFileSync(grows);
  assert.equal(whole.length, 1_000 + grown.length);
  assert.ok(readFileSync(join(target, grows)).equals(whole), 'restored as it was when read: grown, whole');
  for (let f = 0; f < 20; f++) assert.ok(readFileSync(join(target, src, `small-${f}`)).equals(readFileSync(join(src, `small-${f}`))));
  assert.ok(warnings.every((w) => !w.includes('cannot read')), warnings.join('\n'));
});
