// The local index cache (indexcache.ts): a repository opened from it must know exactly what one
// opened from its index objects knows (every blob where it is, tree packs, the index object of
// each pack), open without reading a single index object, and not use a cache that is damaged,
// made with another key, or out of date: index objects added since, or a pack gone from the bucket
// (its blobs must not be found, or a backup would not store them again).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository, packKey, toHex } from '@shelter/format';
import { backupFiles } from '../src/archiver.ts';
import { initRepository, openRepo, type Repository } from '../src/repository.ts';
import { loadAllTrees } from '../src/trees.ts';
import type { Backend } from '../src/backend/types.ts';
import { memoryBackend } from './lib/memory-backend.ts';

/** every blob a repository's snapshots use, and where its index puts it (by pack id, not number) */
async function whereIsEverything(repo: Repository): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const s of await repo.listSnapshots()) {
    for (const [hex, nodes] of await loadAllTrees(repo, s.snapshot.tree)) {
      for (const id of [Buffer.from(hex, 'hex'), ...nodes.flatMap((n) => n.content ?? [])]) {
        const loc = repo.index.lookup(id);
        assert.ok(loc, `blob ${toHex(id)} is in the index`);
        const pack = loc.pack;
        out.set(toHex(id), `${toHex(repo.index.packId(pack))} ${loc.offset} ${loc.length} ${loc.rawLength} tree-pack:${repo.isTreePack(pack)} ${repo.indexKeyOfPack(pack)}`);
      }
    }
  }
  return out;
}

test('index cache: the same index without reading an index object; damaged, foreign or out-of-date caches are not used', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-indexcache-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(join(src, 'd/e'), { recursive: true });
  for (const [f, n] of [['a', 3000], ['d/b', 5 << 20], ['d/e/c', 70_000]] as const) writeFileSync(join(src, f), randomBytes(n));
  const cacheDir = join(work, 'cache');

  const bucket = memoryBackend();
  const indexReads: string[] = [];
  const backend: Backend = { ...bucket, get: (key, range) => { if (key.startsWith('index/')) indexReads.push(key); return bucket.get(key, range); } };
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const problems: string[] = [];
  const open = async (cached: boolean) => {
    const repo = await openRepo(backend, master, cached ? { cacheDir, onCacheProblem: (m) => problems.push(m) } : {});
    t.after(() => repo.close());
    return repo;
  };
  const backup = async (repo: Repository, name: string) => backupFiles(repo, { name, paths: [src], parent: (await repo.listSnapshots()).filter((s) => s.snapshot.name === name).pop() });

  // two backups (two index objects), the cache written at each snapshot
  const writer = await open(true);
  await backup(writer, 'one');
  writeFileSync(join(src, 'new'), randomBytes(200_000));
  await backup(writer, 'two');
  const cacheFile = join(cacheDir, toHex(writer.config.id), 'index');
  const expected = await whereIsEverything(await open(false));
  assert.ok(expected.size >= 6, `blobs of both snapshots (${expected.size})`);

  // opened from the cache: the object cache's copies gone, not one index object read
  rmSync(join(cacheDir, toHex(writer.config.id), 'objects'), { recursive: true, force: true });
  indexReads.length = 0;
  const fromCache = await open(true);
  assert.deepEqual(indexReads, [], 'no index object read');
  assert.deepEqual(await whereIsEverything(fromCache), expected);
  assert.equal(fromCache.index.size, (await open(false)).index.size);
  assert.deepEqual(problems, []);

  // damaged: not used (said why), the index objects read instead, the cache written again
  const good = readFileSync(cacheFile);
  const bad = Buffer.from(good);
  bad[bad.length >> 1]! ^= 1;
  writeFileSync(cacheFile, bad);
  indexReads.length = 0;
  const rebuilt = await open(true);
  assert.deepEqual(await whereIsEverything(rebuilt), expected);
  assert.ok(indexReads.length > 0, 'the index objects were read');
  assert.match(problems.join('\n'), /index cache not used: authentication failed/);
  await rebuilt.close(); // (written once per run, when the repository is closed)
  assert.ok(!readFileSync(cacheFile).equals(bad), 'written again');
  problems.length = 0;
  indexReads.length = 0;
  await open(true);
  assert.deepEqual([indexReads, problems], [[], []], 'the rewritten cache is used');

  // another repository's cache (another key) in its place: not used
  const other = createRepository();
  const otherBucket = memoryBackend();
  await initRepository(otherBucket, other.configBytes);
  const otherRepo = await openRepo(otherBucket, other.master, { cacheDir: join(work, 'other-cache') });
  t.after(() => otherRepo.close());
  await backupFiles(otherRepo, { name: 'x', paths: [src] });
  writeFileSync(cacheFile, readFileSync(join(work, 'other-cache', toHex(otherRepo.config.id), 'index')));
  const reopened = await open(true);
  assert.deepEqual(await whereIsEverything(reopened), expected);
  assert.match(problems.join('\n'), /authentication failed/);
  await reopened.close();
  problems.length = 0;

  // out of date: an index object written by a process without the cache (another machine's backup)
  writeFileSync(join(src, 'newer'), randomBytes(300_000));
  await backup(await open(false), 'three');
  const withThree = await whereIsEverything(await open(false));
  assert.ok(withThree.size > expected.size);
  indexReads.length = 0;
  const updated = await open(true);
  assert.deepEqual(await whereIsEverything(updated), withThree, 'the new index object is not missed');
  assert.ok(indexReads.length > 0, 'the index objects were read');
  assert.deepEqual(problems, [], 'an out-of-date cache is no problem');
  await updated.close();

  // a pack gone from the bucket (the gateway's deletion workflow): its blobs are not found, even
  // though the cache (written by the open above) lists it
  indexReads.length = 0;
  await open(true);
  assert.deepEqual(indexReads, [], 'the cache is up to date again');
  const victim = fromCache.index.lookup(Buffer.from([...withThree.keys()].find((id) => !withThree.get(id)!.includes('tree-pack:true'))!, 'hex'))!;
  const goneId = fromCache.index.packId(victim.pack);
  bucket.objects.delete(packKey(goneId));
  const after = await open(true);
  const inGone = [...withThree.keys()].filter((id) => withThree.get(id)!.startsWith(toHex(goneId)));
  assert.ok(inGone.length > 0);
  for (const id of inGone) {
    assert.equal(after.index.lookup(Buffer.from(id, 'hex')), undefined, 'a blob of the deleted pack is not found');
    assert.equal(after.lostPackOf(Buffer.from(id, 'hex')), toHex(goneId), 'and is named as lost');
  }
});
