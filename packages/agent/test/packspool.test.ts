// Packs waiting for their upload in a spool file (packspool.ts): the uploaded pack is exactly the
// bytes given, however they were cut into write runs, readable again for a retry; the file is
// never visible in its directory, which is not even modified; a directory where no file can be created keeps packs in memory
// (with a notice); a full one fails the backup with a message that names it, and leaves a
// repository the next backup completes and `check` passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository } from '@shelter/format';
import { backupFiles } from '../src/archiver.ts';
import { checkRepository } from '../src/checker.ts';
import { openPackSpool, SpoolError } from '../src/packspool.ts';
import { initRepository, openRepo } from '../src/repository.ts';
import { memoryBackend } from './lib/memory-backend.ts';

const collect = async (it: AsyncIterable<Buffer>) => { const parts: Buffer[] = []; for await (const c of it) parts.push(c); return Buffer.concat(parts); };

test('a spool gives back exactly the bytes appended, then the tail, as often as asked; its file is never listed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-spool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const before = statSync(dir).mtimeMs;
  const spool = openPackSpool(dir);
  assert.deepEqual(readdirSync(dir), [], 'unlinked at creation');
  // O_TMPFILE: no entry is ever made, so the directory does not change (a backup of / or /tmp
  // would otherwise find /tmp changed by every backup, and store a new tree for it)
  if (process.platform === 'linux') assert.equal(statSync(dir).mtimeMs, before, 'the directory is not modified');
  // sizes around the write run (1 MiB): many small blobs, one larger than a run, an empty one
  const blobs = [...Array.from({ length: 700 }, (_, i) => randomBytes(1 + (i * 7919) % 6000)), randomBytes(3 << 20), Buffer.alloc(0), randomBytes(5)];
  for (const b of blobs) spool.append(b);
  const tail = [randomBytes(300), Buffer.from([1, 2, 3, 4])];
  const spilled = blobs.reduce((n, b) => n + b.length, 0);
  const body = await spool.body(spilled, tail);
  const expected = Buffer.concat([...blobs, ...tail]);
  assert.equal(body.length, expected.length);
  assert.ok((await collect(body.chunks())).equals(expected));
  assert.ok((await collect(body.chunks())).equals(expected), 'a retry reads the same bytes again');
  await assert.rejects(spool.body(spilled + 1, tail), /holds \d+ bytes, the pack \d+/, 'a miscount is refused, not uploaded');
  spool.close();
  assert.deepEqual(readdirSync(dir), []);
  assert.throws(() => openPackSpool(join(dir, 'missing')), (e: Error) => e instanceof SpoolError && e.message.includes(join(dir, 'missing')));
});

test('backups spool their packs; without a usable spool directory they keep them in memory, with a notice', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-spool-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(src);
  for (let i = 0; i < 20; i++) writeFileSync(join(src, `f${i}`), randomBytes(300_000));
  const spoolDir = join(work, 'spool');
  mkdirSync(spoolDir);
  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);

  const notices = [] as string[];
  const spooled = await openRepo(backend, master, { sealWorkers: 1, spoolDir, onNotice: (m) => notices.push(m) });
  await backupFiles(spooled, { name: 'a', paths: [src] });
  await spooled.close();
  assert.equal(notices.length, 0, notices.join("\n"));
  assert.deepEqual(readdirSync(spoolDir), [], 'no spool file left behind');

  const inMemory = await openRepo(backend, master, { sealWorkers: 1, spoolDir: join(work, 'missing'), onNotice: (m) => notices.push(m) });
  t.after(() => inMemory.close());
  writeFileSync(join(src, 'new'), randomBytes(500_000));
  await backupFiles(inMemory, { name: 'b', paths: [src] });
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /cannot create a pack spool file in .*missing.*in memory/);
  const checked = await checkRepository(inMemory, { readData: true });
  assert.deepEqual(checked.problems, []);
  assert.equal(checked.snapshots, 2);
});

test('a full spool directory fails the backup with a message naming it; the next backup completes and check passes', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-spool-'));
  const mnt = join(work, 'small');
  mkdirSync(mnt);
  let mounted = false;
  t.after(() => { if (mounted) execFileSync('umount', [mnt]); rmSync(work, { recursive: true, force: true }); });
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'shelter-test', mnt], { stdio: 'pipe' }); }
  catch (e) { t.skip(`cannot mount a tmpfs here: ${(e as Error).message.split('\n')[0]}`); return; }
  mounted = true;
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'big'), randomBytes(6 << 20));
  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);

  const full = await openRepo(backend, master, { sealWorkers: 1, spoolDir: mnt });
  await assert.rejects(backupFiles(full, { name: 'a', paths: [src] }), (e: Error) => {
    assert.match(e.message, new RegExp(`pack to its spool file in ${mnt}.*(ENOSPC|no space)`, 'i'));
    return true;
  });
  await full.close();
  assert.deepEqual(readdirSync(mnt), []);

  const repo = await openRepo(backend, master, { sealWorkers: 1, spoolDir: join(work) });
  t.after(() => repo.close());
  await backupFiles(repo, { name: 'a', paths: [src] });
  const checked = await checkRepository(repo, { readData: true });
  assert.deepEqual(checked.problems, []);
  assert.equal(checked.snapshots, 1);
});

test('no spool file for the next pack (its directory gone mid-backup) fails the backup, not one file; the next backup completes', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-spool-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(src);
  // one large file, streamed by a worker: five 16 MiB packs of data blobs. With one upload at a
  // time, at most three packs (one uploading, one queued, one filling) have their spool files
  // before the first upload reaches the bucket, however the threads are scheduled: the later
  // ones find the directory gone (with 40 MiB, a loaded machine could spool all three first)
  writeFileSync(join(src, 'big'), randomBytes(72 << 20));
  const spoolDir = join(work, 'spool');
  mkdirSync(spoolDir);
  const backend = memoryBackend();
  // when the first pack is uploaded, the spool directory disappears: the second pack has none.
  // Each repository below has its own view of the bucket, and only the one under test removes the
  // directory (before close() waited for the uploads it had started, a late upload of a failed
  // repository removed the directory made again for the next backup)
  let underTest = 0;
  const removingDir = (n: number): typeof backend => ({
    ...backend,
    putNew: async (key, body) => { if (key.startsWith('data/') && underTest === n) rmSync(spoolDir, { recursive: true, force: true }); return backend.putNew(key, body); },
  });
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  // the file's blobs cannot all be stored: that is the repository's failure (flush reports it),
  // not only this file's (the archiver would skip the file with a warning and go on)
  underTest = 1;
  const repo = await openRepo(removingDir(1), master, { sealWorkers: 1, spoolDir, uploads: 1 });
  await assert.rejects(repo.saveFileStream(Buffer.from(join(src, 'big'))), /cannot create a pack spool file/);
  await assert.rejects(repo.flush(), /cannot create a pack spool file in .*spool/);
  await repo.close();
  // and through a backup
  mkdirSync(spoolDir);
  underTest = 2;
  const second = await openRepo(removingDir(2), master, { sealWorkers: 1, spoolDir, uploads: 1 });
  await assert.rejects(backupFiles(second, { name: 'a', paths: [src] }), /cannot create a pack spool file in .*spool/);
  await second.close();
  assert.equal([...backend.objects.keys()].filter((k) => k.startsWith('snapshots/')).length, 0, 'no snapshot');

  underTest = 0;
  const again = await openRepo(backend, master, { sealWorkers: 1, spoolDir: work });
  t.after(() => again.close());
  await backupFiles(again, { name: 'a', paths: [src] });
  const checked = await checkRepository(again, { readData: true });
  assert.deepEqual(checked.problems, []);
  assert.equal(checked.snapshots, 1);
});

test('close() of a failed repository waits for the uploads under way and starts none of the packs still queued', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-spool-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  // 72 MiB of random bytes: five 16 MiB data packs
  const big = join(work, 'big');
  writeFileSync(big, randomBytes(72 << 20));
  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  // the first pack's upload hangs until released; the second is refused at once
  let started = 0, finished = 0;
  let release!: () => void;
  const released = new Promise<void>((res) => { release = res; });
  const repo = await openRepo({
    ...backend,
    putNew: async (key, body) => {
      if (!key.startsWith('data/')) return backend.putNew(key, body);
      const n = ++started;
      if (n === 1) await released;
      if (n === 2) throw new Error('storage refused the second pack');
      const r = await backend.putNew(key, body);
      finished++;
      return r;
    },
  }, master, { sealWorkers: 1, spoolDir: work, uploads: 2 });
  await assert.rejects(repo.saveFileStream(Buffer.from(big)), /storage refused the second pack/);
  await assert.rejects(repo.flush(), /storage refused the second pack/);
  assert.equal(started, 2, 'two uploads under way when the backup failed');
  let closed = false;
  const closing = repo.close().then(() => { closed = true; });
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(closed, false, 'close() waits for the upload under way');
  release();
  await closing;
  assert.equal(finished, 1, 'the upload under way completed before close() returned');
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(started, 2, 'no queued pack was uploaded after close()');
  assert.deepEqual(readdirSync(work), ['big'], 'no spool file left');
});
