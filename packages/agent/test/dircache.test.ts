// The local directory cache (dircache.ts): a backup that reuses the trees of directories whose
// listing is as recorded must make exactly the snapshot a backup without the cache makes (same
// tree ids for the backed-up tree, a manifest listing exactly the packs its blobs are in), and a
// cache that is damaged, for another snapshot or other options, must be ignored.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository, encodeManifest, manifestKey, packKey, parseManifest, toHex, type TreeNode } from '@shelter/format';
import { checkRepository } from '../src/checker.ts';
import { backupFiles, type BackupOptions } from '../src/archiver.ts';
import { dirCacheWriter, loadDirCache, parseDirCache, walkKey } from '../src/dircache.ts';
import { cacheRoot } from '../src/localcache.ts';
import { readAccounts } from '../src/fsnode.ts';
import { initRepository, openRepo, type Repository, type SnapshotEntry } from '../src/repository.ts';
import { memoryBackend } from './lib/memory-backend.ts';
import { loadAllTrees } from '../src/trees.ts';

/**
 * Access times of directories and symlinks set ahead of now: one listed or read by a backup would
 * otherwise get a new atime (relatime), and the next backup of another name would see another listing.
 */
function freezeAtimes(dir: string): void {
  const later = Date.now() / 1000 + 3600;
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) visit(join(d, e.name));
      else if (e.isSymbolicLink()) lutimesSync(join(d, e.name), later, lstatSync(join(d, e.name)).mtime);
    }
    utimesSync(d, later, statSync(d).mtime);
  };
  visit(dir);
}

/**
 * A fresh repository in memory, and `backup(name, cached)`: a backup of `src` under `name`,
 * against its last snapshot, with or without the directory cache in `cacheDir` (no warnings)
 */
async function backupsOf(t: TestContext, src: string, cacheDir: string, sealWorkers: number) {
  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const repo = await openRepo(backend, master, { sealWorkers });
  t.after(() => repo.close());
  const key = walkKey({}, readAccounts());
  const latest = async (name: string) => (await repo.listSnapshots()).filter((s) => s.snapshot.name === name).pop();
  const backup = async (name: string, cached: boolean) => {
    const parent = await latest(name);
    const o: BackupOptions = { name, paths: [src], parent };
    if (cached) {
      if (parent) o.dirCache = loadDirCache(repo, parent.id, key, cacheDir);
      o.recordDirs = dirCacheWriter(repo, key, cacheDir);
    }
    const r = await backupFiles(repo, o);
    o.recordDirs?.write(r.snapshotId, new Set());
    assert.equal(r.warnings, 0);
    return { ...r, snapshot: (await latest(name))!, usedCache: !!o.dirCache };
  };
  return { backend, repo, key, latest, backup };
}

/** the tree id of `path` in a snapshot (its absolute path's names, from the snapshot's root) */
async function treeOf(repo: Repository, s: SnapshotEntry, path: string): Promise<Buffer> {
  const trees = await loadAllTrees(repo, s.snapshot.tree);
  let id = s.snapshot.tree;
  for (const name of path.split('/').filter(Boolean)) {
    const n = trees.get(toHex(id))!.find((x) => x.name.toString() === name);
    assert.ok(n?.subtree, `${name} of ${path} is in the snapshot`);
    id = n.subtree;
  }
  return id;
}

/** the packs a snapshot's blobs are in, by the index: what its manifest must list */
async function packsNeeded(repo: Repository, s: SnapshotEntry): Promise<string[]> {
  const trees = await loadAllTrees(repo, s.snapshot.tree);
  const packs = new Set<string>();
  const add = (id: Buffer) => packs.add(packKey(repo.index.packId(repo.index.lookup(id)!.pack)));
  for (const [hex, nodes] of trees) {
    add(Buffer.from(hex, 'hex'));
    for (const n of nodes as TreeNode[]) for (const id of n.content ?? []) add(id);
  }
  return [...packs].sort();
}

test('directory cache: the snapshot is the one a backup without it makes; unchanged directories are not loaded; a bad cache is ignored', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-dircache-'));
  const cacheDir = join(work, 'cache');
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  for (const d of ['a/b/c', 'a/e', 'x/y', 'x/gone/deeper', 'empty']) mkdirSync(join(src, d), { recursive: true });
  for (const [f, n] of [['a/b/c/same-size.txt', 5000], ['a/b/c/other.txt', 300], ['a/h.sh', 40], ['x/y/appended.log', 7000], ['x/gone/deeper/f', 10], ['top.txt', 1], ['a/e/big.bin', 3 << 20]] as const) {
    writeFileSync(join(src, f), randomBytes(n));
  }
  symlinkSync('a/h.sh', join(src, 'link'));
  freezeAtimes(src);

  const { backend, repo, key, backup } = await backupsOf(t, src, cacheDir, 2);
  const manifestPacks = async (id: string) => parseManifest((await backend.get(manifestKey(id)))!).packs;

  const c1 = await backup('cached', true);
  const p1 = await backup('plain', false);
  assert.deepEqual(await treeOf(repo, c1.snapshot, src), await treeOf(repo, p1.snapshot, src), 'same tree, with and without recording');
  assert.ok(readdirSync(join(cacheDir, toHex(repo.config.id), 'dirs')).includes(c1.snapshotId), 'the cache of the first snapshot is written');

  // changes at every depth: a rewrite of the same size (new mtime), an append, a new directory, a
  // removed one, a chmod, a symlink pointing elsewhere
  writeFileSync(join(src, 'a/b/c/same-size.txt'), randomBytes(5000));
  writeFileSync(join(src, 'x/y/appended.log'), randomBytes(100), { flag: 'a' });
  mkdirSync(join(src, 'new/sub'), { recursive: true });
  writeFileSync(join(src, 'new/sub/file'), randomBytes(2000));
  rmSync(join(src, 'x/gone'), { recursive: true });
  chmodSync(join(src, 'a/h.sh'), 0o755);
  unlinkSync(join(src, 'link'));
  symlinkSync('top.txt', join(src, 'link'));
  freezeAtimes(src);

  const c2 = await backup('cached', true);
  const p2 = await backup('plain', false);
  assert.ok(c2.usedCache, 'the second backup found the first one\'s cache');
  assert.equal(c2.summary.dirs, p2.summary.dirs);
  // unchanged listings: a/e and empty (freezeAtimes gave every directory a new ctime, so every
  // listing holding a directory changed too)
  assert.ok(c2.summary.cachedDirs! >= 2 && c2.summary.cachedDirs! < c2.summary.dirs!, `some directories came from the cache (${c2.summary.cachedDirs} of ${c2.summary.dirs})`);
  assert.deepEqual(await treeOf(repo, c2.snapshot, src), await treeOf(repo, p2.snapshot, src), 'the same tree as a backup that compares every directory');
  assert.deepEqual({ ...c2.summary, cachedDirs: 0, durationMs: 0, packs: 0, storedBytes: 0, newBlobs: 0, newBytes: 0 }, { ...p2.summary, cachedDirs: 0, durationMs: 0, packs: 0, storedBytes: 0, newBlobs: 0, newBytes: 0 }, 'the same counts of files and bytes');
  assert.deepEqual(await manifestPacks(c2.snapshotId), await packsNeeded(repo, c2.snapshot), 'the manifest lists exactly the packs the snapshot needs');
  assert.ok(!readdirSync(join(cacheDir, toHex(repo.config.id), 'dirs')).includes(c1.snapshotId), 'the parent\'s cache is removed');

  // nothing changed: every directory from the cache, nothing loaded (not even the trees of the
  // directories above the backed-up path: the cache has the path's own)
  const get = backend.get.bind(backend);
  const packReads: string[] = [];
  backend.get = (k, r) => { if (k.startsWith('data/')) packReads.push(k); return get(k, r); };
  const c3 = await backup('cached', true);
  backend.get = get;
  assert.deepEqual(packReads, [], 'no pack was read');
  assert.equal(c3.summary.cachedDirs, c3.summary.dirs, 'every directory came from the cache');
  assert.deepEqual(await treeOf(repo, c3.snapshot, src), await treeOf(repo, c2.snapshot, src));
  assert.deepEqual(await manifestPacks(c3.snapshotId), await packsNeeded(repo, c3.snapshot));
  assert.equal(c3.summary.unchangedFiles, c3.summary.files);

  // a file deep down rewritten (no directory's own stat changes): its directory is read again, its
  // ancestors' listings are as recorded, so their trees are the parent's with the new subtree ids
  await backup('plain', false);
  writeFileSync(join(src, 'a/b/c/other.txt'), randomBytes(300));
  const c5 = await backup('cached', true);
  const p5 = await backup('plain', false);
  assert.equal(c5.summary.cachedDirs, c5.summary.dirs! - 1, 'every directory but a/b/c came from the cache');
  assert.equal(c5.summary.changedFiles, 1);
  assert.deepEqual(await treeOf(repo, c5.snapshot, src), await treeOf(repo, p5.snapshot, src), 'ancestors rebuilt with the new subtree ids');
  assert.notDeepEqual(await treeOf(repo, c5.snapshot, src), await treeOf(repo, c3.snapshot, src));
  assert.deepEqual(await manifestPacks(c5.snapshotId), await packsNeeded(repo, c5.snapshot));

  // `check` proves every manifest complete (the gateway deletes by them); a manifest that lost a
  // pack is reported
  const checked = await checkRepository(repo);
  assert.deepEqual(checked.problems, []);
  const m = parseManifest(backend.objects.get(manifestKey(c5.snapshotId))!);
  assert.ok(m.packs.length > 1);
  const dropped = m.packs[0]!;
  backend.objects.set(manifestKey(c5.snapshotId), encodeManifest({ ...m, packs: m.packs.filter((p) => p !== dropped) }));
  const bad = await checkRepository(repo);
  assert.ok(bad.problems.some((p) => p.includes(`its manifest does not list ${dropped}`)), bad.problems.join('\n'));
  backend.objects.set(manifestKey(c5.snapshotId), encodeManifest(m));

  // a damaged cache, another snapshot's, other options: ignored, each for its reason
  const file = join(cacheDir, toHex(repo.config.id), 'dirs', c5.snapshotId);
  const bytes = readFileSync(file);
  const flipped = Buffer.from(bytes);
  flipped[flipped.length >> 1]! ^= 1;
  assert.throws(() => parseDirCache(repo, flipped, c5.snapshotId, key), /authentication failed/);
  assert.throws(() => parseDirCache(repo, bytes.subarray(0, bytes.length - 1), c5.snapshotId, key), /authentication failed|not a directory cache/);
  assert.throws(() => parseDirCache(repo, bytes, c3.snapshotId, key), /another snapshot/);
  assert.throws(() => parseDirCache(repo, bytes, c5.snapshotId, walkKey({ exclude: ['*.log'] }, readAccounts())), /other walk options/);
  const why: string[] = [];
  writeFileSync(file, flipped);
  assert.equal(loadDirCache(repo, c5.snapshotId, key, cacheDir, (w) => why.push(w)), undefined);
  assert.match(why[0]!, /authentication failed/);
  // planted in its place: a symlink (to the genuine bytes) is not followed, a fifo is not waited on
  const elsewhere = join(work, 'genuine');
  writeFileSync(elsewhere, bytes);
  rmSync(file);
  symlinkSync(elsewhere, file);
  assert.equal(loadDirCache(repo, c5.snapshotId, key, cacheDir, (w) => why.push(w)), undefined);
  assert.match(why.at(-1)!, /ELOOP|symbolic link/);
  rmSync(file);
  execFileSync('mkfifo', [file]);
  assert.equal(loadDirCache(repo, c5.snapshotId, key, cacheDir, (w) => why.push(w)), undefined);
  assert.match(why.at(-1)!, /not a regular file/);
  rmSync(file);
  writeFileSync(file, bytes);
  assert.ok(loadDirCache(repo, c5.snapshotId, key, cacheDir), 'the genuine bytes in place: used');
  // a cache directory others can write to is refused
  chmodSync(join(cacheDir, toHex(repo.config.id)), 0o777);
  assert.equal(loadDirCache(repo, c5.snapshotId, key, cacheDir, (w) => why.push(w)), undefined);
  assert.match(why.at(-1)!, /only it can write to/);
  chmodSync(join(cacheDir, toHex(repo.config.id)), 0o700);
  writeFileSync(file, flipped);
  // and the backup without it is still right (it loads the parent's trees)
  writeFileSync(join(src, 'top.txt'), randomBytes(2));
  freezeAtimes(src);
  const c4 = await backup('cached', true);
  assert.equal(c4.usedCache, false);
  const p4 = await backup('plain', false);
  assert.deepEqual(await treeOf(repo, c4.snapshot, src), await treeOf(repo, p4.snapshot, src));
  assert.equal(cacheRoot({ SHELTER_CACHE_DIR: '/x' }), '/x');
  assert.equal(cacheRoot({ XDG_CACHE_HOME: '/y' }), '/y/shelter');
});

test('directory cache: a reused directory keeps the empty tree of a directory on another file system in its manifest', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-dircache-fs-'));
  const mnt = join(work, 'src', 'mnt');
  let mounted = false;
  t.after(() => { if (mounted) execFileSync('umount', [mnt]); rmSync(work, { recursive: true, force: true }); });
  const src = join(work, 'src');
  mkdirSync(mnt, { recursive: true });
  writeFileSync(join(src, 'a.txt'), randomBytes(100));
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'shelter-test', mnt], { stdio: 'pipe' }); }
  catch (e) { t.skip(`cannot mount a tmpfs here: ${(e as Error).message.split('\n')[0]}`); return; }
  mounted = true;
  writeFileSync(join(mnt, 'elsewhere'), 'x');
  // the empty tree first stored by another backup (an empty directory): its pack is needed by the
  // cached backups only through the mount point's node
  const other = join(work, 'other');
  mkdirSync(join(other, 'empty'), { recursive: true });

  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const repo = await openRepo(backend, master, { sealWorkers: 1 });
  t.after(() => repo.close());
  const cacheDir = join(work, 'cache');
  const key = walkKey({ oneFileSystem: true }, readAccounts());
  await backupFiles(repo, { name: 'other', paths: [other] });
  const backup = async () => {
    const parent = (await repo.listSnapshots()).filter((s) => s.snapshot.name === 'src').pop();
    const o: BackupOptions = { name: 'src', paths: [src], oneFileSystem: true, parent, recordDirs: dirCacheWriter(repo, key, cacheDir) };
    if (parent) o.dirCache = loadDirCache(repo, parent.id, key, cacheDir);
    const r = await backupFiles(repo, o);
    o.recordDirs!.write(r.snapshotId, new Set());
    return { ...r, snapshot: (await repo.listSnapshots()).find((s) => s.id === r.snapshotId)! };
  };
  await backup();
  const again = await backup();
  assert.equal(again.summary.cachedDirs, 1, 'src came from the cache');
  assert.equal(again.summary.skipped, 1, 'the mount point was skipped');
  assert.deepEqual(parseManifest(backend.objects.get(manifestKey(again.snapshotId))!).packs, await packsNeeded(repo, again.snapshot));
});

test('an entry only read or listed since the parent snapshot keeps its atime: the directory is unchanged, with the cache and without', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-dircache-atime-'));
  const cacheDir = join(work, 'cache');
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  for (const d of ['a/b', 'c']) mkdirSync(join(src, d), { recursive: true });
  for (const f of ['a/b/f1', 'a/f2', 'c/f3', 'top']) writeFileSync(join(src, f), randomBytes(3000));
  symlinkSync('top', join(src, 'link'));
  // atimes older than the ctimes: the next listing or read updates them (relatime)
  const old = new Date('2020-01-01T00:00:00Z');
  const everything = ['a', 'a/b', 'c', 'a/b/f1', 'a/f2', 'c/f3', 'top'];
  for (const p of ['.', ...everything]) utimesSync(join(src, p), old, statSync(join(src, p)).mtime);

  const { repo, backup } = await backupsOf(t, src, cacheDir, 1);
  const c1 = await backup('cached', true);
  const p1 = await backup('plain', false);
  // read and listed by someone else (the backups listed the directories already)
  for (const f of ['a/b/f1', 'c/f3', 'top']) readFileSync(join(src, f));
  readdirSync(join(src, 'a/b'));
  for (const p of ['a', 'a/b', 'c/f3']) assert.ok(statSync(join(src, p)).atimeMs > old.getTime(), `${p}'s atime changed (a file system mounted with relatime or strictatime)`);

  const c2 = await backup('cached', true);
  const p2 = await backup('plain', false);
  assert.equal(c2.summary.cachedDirs, c2.summary.dirs, 'every directory from the cache');
  assert.deepEqual(await treeOf(repo, c2.snapshot, src), await treeOf(repo, c1.snapshot, src), 'the tree of the parent, with the cache');
  assert.deepEqual(await treeOf(repo, p2.snapshot, src), await treeOf(repo, p1.snapshot, src), 'the tree of the parent, without');

  // an atime set explicitly (utimes: the ctime changes too) is a change, recorded
  utimesSync(join(src, 'c/f3'), new Date('2021-06-01T00:00:00Z'), statSync(join(src, 'c/f3')).mtime);
  const c3 = await backup('cached', true);
  const trees = await loadAllTrees(repo, c3.snapshot.snapshot.tree);
  const f3 = trees.get(toHex(await treeOf(repo, c3.snapshot, join(src, 'c'))))!.find((n) => n.name.toString() === 'f3')!;
  assert.equal(f3.atime, BigInt(Date.parse('2021-06-01T00:00:00Z')) * 1_000_000n);
});
