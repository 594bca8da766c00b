// Local copies of index and snapshot objects (objectcache.ts): a repository opened again reads
// them from the cache, not the bucket; a copy that changed is dropped and fetched again; copies of
// objects gone from the bucket are removed; a cache directory another user could write to is not
// used; without a cache directory (as `check` opens it) every object comes from the bucket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository, toHex } from '@shelter/format';
import { backupFiles } from '../src/archiver.ts';
import { initRepository, openRepo, type OpenRepoOptions } from '../src/repository.ts';
import { memoryBackend } from './lib/memory-backend.ts';

test('index and snapshot objects: read from local copies once fetched, checked, pruned', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'shelter-objcache-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), randomBytes(100_000));
  const cacheDir = join(work, 'cache');
  const backend = memoryBackend();
  // which objects were fetched from the bucket
  const fetched: string[] = [];
  const get = backend.get.bind(backend);
  backend.get = async (key, range) => { fetched.push(key); return get(key, range); };
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const problems = [] as string[];
  const open = async (o: OpenRepoOptions = { cacheDir, onCacheProblem: (m) => problems.push(m) }) => {
    fetched.length = 0;
    const repo = await openRepo(backend, master, { sealWorkers: 1, ...o });
    t.after(() => repo.close());
    return repo;
  };
  const metadataFetched = () => fetched.filter((k) => k.startsWith('index/') || k.startsWith('snapshots/')).sort();

  // two backups (their index and snapshot objects are kept as they are written)
  let repo = await open();
  await backupFiles(repo, { name: 'x', paths: [src] });
  writeFileSync(join(src, 'b'), randomBytes(50_000));
  await backupFiles(repo, { name: 'x', paths: [src], parent: (await repo.listSnapshots()).pop() });
  const indexKeys = [...backend.objects.keys()].filter((k) => k.startsWith('index/'));
  assert.ok(indexKeys.length >= 2);

  repo = await open();
  assert.equal((await repo.listSnapshots()).length, 2);
  assert.deepEqual(metadataFetched(), [], 'nothing fetched: every index and snapshot object was a local copy');
  const objectsDir = join(cacheDir, toHex(repo.config.id), 'objects');
  assert.equal(readdirSync(join(objectsDir, 'index')).length, indexKeys.length);

  // a copy with a flipped byte fails its name check: dropped, fetched again, kept again
  const victim = indexKeys[0]!;
  const copy = join(objectsDir, victim);
  const bytes = readFileSync(copy);
  bytes[bytes.length >> 1]! ^= 1;
  writeFileSync(copy, bytes);
  // (without the index cache, which would spare opening the index objects at all: indexcache.test.ts)
  rmSync(join(cacheDir, toHex(repo.config.id), 'index'));
  repo = await open();
  assert.deepEqual(metadataFetched(), [victim]);
  assert.ok(readFileSync(copy).equals(backend.objects.get(victim)!), 'the good bytes are kept');

  // an object the bucket no longer holds: its copy goes
  backend.objects.delete(victim);
  repo = await open();
  assert.equal(existsSync(copy), false);

  // without a cache directory (check): everything from the bucket
  repo = await open({});
  await repo.listSnapshots();
  assert.equal(metadataFetched().length, indexKeys.length - 1 + 2);
  assert.equal(problems.length, 0, problems.join('\n'));

  // a cache another user could replace is not used, and says so once
  chmodSync(objectsDir, 0o777);
  rmSync(join(cacheDir, toHex(repo.config.id), 'index'), { force: true }); // (so that the index objects are opened)
  repo = await open();
  await repo.listSnapshots();
  assert.equal(metadataFetched().length, indexKeys.length - 1 + 2);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /is not a directory of this user that only it can write to/);
});
