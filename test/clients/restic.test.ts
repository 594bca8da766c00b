// restic (Debian's) on `s3:https://127.0.0.1:PORT/BUCKET` against a fresh shelterd: init, two
// backups, snapshots, check --read-data, restore byte for byte. restic removes its lock files with
// DELETE: on Shelter those become delete markers (every version stays), and restic keeps working.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectVersionsCommand, ListObjectsV2Command, type ObjectVersion, type DeleteMarkerEntry, type S3Client } from '@aws-sdk/client-s3';
import { auditRecords, createServer, removeDir, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  KiB, MiB, Restic, assertSameTree, formatRun, pseudoRandomBytes, reportGatewayLogs, s3Client, writeTree, type FileSpec, type RunResult, type ServerInfo,
} from '../lib/clients.ts';

let gw: Gateway;
let tmp: string;
let A: ServerInfo;
let restic: Restic;
let sdk: S3Client;
let src: string;

const dupBig = pseudoRandomBytes('restic-dup-big', 5 * MiB);
const dupSmall = pseudoRandomBytes('restic-dup-small', 64 * KiB);
const TREE: FileSpec[] = [
  ...Array.from({ length: 30 }, (_, i) => ({ path: `data/f${String(i).padStart(2, '0')}.bin`, size: 256 * KiB })),
  { path: 'big/a.bin', size: dupBig.length, content: dupBig },
  { path: 'big/copy of a.bin', size: dupBig.length, content: dupBig }, // duplicate content
  { path: 'big/b.bin', size: 3 * MiB },
  ...Array.from({ length: 6 }, (_, i) => ({ path: `dup/same-${i}.bin`, size: dupSmall.length, content: dupSmall })),
  ...Array.from({ length: 100 }, (_, i) => ({ path: `docs/${i % 10}/note-${i}.txt`, size: 1 + ((i * 7919) % (4 * KiB)) })),
  { path: 'naïve ünicode/文件 with spaces.txt', size: 1234 },
  { path: 'empty', size: 0 },
];

interface Summary { message_type: string; snapshot_id: string; files_new: number; files_changed: number; files_unmodified: number; data_added: number }

function summary(r: RunResult): Summary {
  const line = r.stdout.split('\n').filter(Boolean).reverse().find((l) => l.includes('"message_type":"summary"'));
  assert.ok(line, `restic backup --json printed no summary\n${formatRun(r)}`);
  return JSON.parse(line) as Summary;
}

async function backup(what: string): Promise<Summary> {
  const r = await restic.ok(what, ['backup', '--json', '--host', 'shelter-test', '.'], { cwd: src, timeoutMs: 180_000 });
  return summary(r);
}

async function snapshots(): Promise<{ id: string; paths: string[] }[]> {
  const r = await restic.ok('restic snapshots --json', ['snapshots', '--json']);
  return JSON.parse(r.stdout) as { id: string; paths: string[] }[];
}

async function checkReadData(what: string): Promise<void> {
  const r = await restic.ok(what, ['check', '--read-data'], { timeoutMs: 180_000 });
  assert.match(r.stdout + r.stderr, /no errors were found/, `${what}: restic check must find no errors\n${formatRun(r)}`);
}

/** Lock keys: every version and delete marker under locks/. */
async function lockHistory(): Promise<{ versions: ObjectVersion[]; markers: DeleteMarkerEntry[] }> {
  const versions: ObjectVersion[] = [];
  const markers: DeleteMarkerEntry[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  for (;;) {
    const r = await sdk.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: 'locks/', KeyMarker, VersionIdMarker }));
    versions.push(...(r.Versions ?? []));
    markers.push(...(r.DeleteMarkers ?? []));
    if (!r.IsTruncated) break;
    KeyMarker = r.NextKeyMarker;
    VersionIdMarker = r.NextVersionIdMarker;
  }
  return { versions, markers };
}

before(async () => {
  tmp = tempDir('shelter-restic-');
  gw = await startGateway({ dataDir: join(tmp, 'data') });
  reportGatewayLogs(gw);
  A = createServer(gw.dataDir, 'restic-a');
  restic = new Restic(gw, A, join(tmp, 'restic'));
  sdk = s3Client(gw, A);
  src = writeTree(join(tmp, 'src'), TREE);
});

after(async () => {
  reportGatewayLogs(null);
  sdk?.destroy();
  await gw?.stop();
  if (tmp && !process.env.SHELTER_KEEP_TMP) removeDir(tmp);
});

test('restic init creates a repository in the server bucket', async () => {
  const r = await restic.ok('restic init', ['init']);
  assert.match(r.stdout, /created restic repository/, `restic init\n${formatRun(r)}`);
  const list = await sdk.send(new ListObjectsV2Command({ Bucket: A.bucket }));
  const keys = (list.Contents ?? []).map((o) => o.Key ?? '');
  assert.ok(keys.includes('config'), `the repository config object must exist: ${JSON.stringify(keys)}`);
  assert.ok(keys.some((k) => k.startsWith('keys/')), `a key object must exist: ${JSON.stringify(keys)}`);
});

test('two backups (the second after changes, deduplicated), snapshots lists 2, check --read-data passes', { timeout: 300_000 }, async () => {
  const first = await backup('restic backup #1');
  assert.equal(first.files_new, TREE.length, `first backup: all ${TREE.length} files new: ${JSON.stringify(first)}`);
  assert.ok(first.data_added < 18 * MiB, `first backup: duplicate content must be stored once (data_added ${first.data_added}): ${JSON.stringify(first)}`);

  writeFileSync(join(src, 'data/f00.bin'), pseudoRandomBytes('restic-changed-f00', 256 * KiB));
  rmSync(join(src, 'data/f01.bin'));
  writeTree(src, [{ path: 'added/new.bin', size: 100 * KiB }]);
  const second = await backup('restic backup #2');
  assert.equal(second.files_changed, 1, `second backup: one changed file: ${JSON.stringify(second)}`);
  assert.equal(second.files_new, 1, `second backup: one new file: ${JSON.stringify(second)}`);
  assert.ok(second.data_added < 2 * MiB, `second backup must only add the changed data (data_added ${second.data_added}): ${JSON.stringify(second)}`);

  const snaps = await snapshots();
  assert.equal(snaps.length, 2, `restic snapshots --json must list 2 snapshots: ${JSON.stringify(snaps)}`);
  assert.deepEqual(new Set(snaps.map((s) => s.id.slice(0, 8))), new Set([first.snapshot_id.slice(0, 8), second.snapshot_id.slice(0, 8)]), 'snapshot ids');
  await checkReadData('restic check --read-data');
});

test('restore latest is byte-identical to the source tree', { timeout: 180_000 }, async () => {
  const target = join(tmp, 'restore');
  mkdirSync(target);
  await restic.ok('restic restore latest', ['restore', 'latest', '--target', target], { timeoutMs: 120_000 });
  // restic puts a backup of "." at the top of the target; older versions nest it under the absolute path.
  const root = existsSync(join(target, src)) ? join(target, src) : target;
  await assertSameTree(src, root, 'restic restore latest');
  removeDir(target);
});

test("restic's lock removals became delete markers; every lock version still exists", async () => {
  const { versions, markers } = await lockHistory();
  const lockKeys = new Set(versions.map((v) => v.Key));
  // init takes no lock; backup x2, snapshots, check and restore each took (and removed) one.
  assert.ok(lockKeys.size >= 4, `expected at least 4 lock objects written by restic, found ${lockKeys.size}: ${JSON.stringify(versions)}`);
  for (const key of lockKeys) {
    const m = markers.filter((d) => d.Key === key);
    assert.equal(m.length, 1, `lock ${key}: restic's DELETE must have produced exactly one delete marker: ${JSON.stringify(m)}`);
    assert.equal(m[0]!.IsLatest, true, `lock ${key}: the delete marker must be the latest version`);
    assert.ok(versions.some((v) => v.Key === key && v.IsLatest === false && (v.Size ?? 0) > 0), `lock ${key}: the lock's own version must still exist`);
  }
  const live = await sdk.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'locks/' }));
  assert.equal(live.KeyCount ?? 0, 0, `no lock may be visible in a plain listing once restic is done: ${JSON.stringify(live.Contents)}`);

  const dels = auditRecords(gw.dataDir).filter((r) => r.operation === 'DeleteObject' && r.bucket === A.bucket);
  assert.ok(dels.length >= lockKeys.size, `audit: every lock removal must be recorded (${dels.length} DeleteObject records, ${lockKeys.size} locks)`);
  for (const d of dels) {
    assert.ok(d.key?.startsWith('locks/'), `restic only deletes lock files, got ${JSON.stringify(d)}`);
    assert.ok(d.status >= 200 && d.status < 300 && d.error === null, `restic's lock DELETE must succeed (as a delete marker): ${JSON.stringify(d)}`);
    assert.equal(d.source, `server:${A.id}`, `source of ${JSON.stringify(d)}`);
  }
});

test('restic keeps working after its locks became delete markers: a third backup and check', { timeout: 240_000 }, async () => {
  writeTree(src, [{ path: 'added/third.bin', size: 200 * KiB }]);
  const third = await backup('restic backup #3');
  assert.equal(third.files_new, 1, `third backup: one new file: ${JSON.stringify(third)}`);
  assert.equal((await snapshots()).length, 3, 'three snapshots');
  await checkReadData('restic check --read-data after the third backup');
  const target = join(tmp, 'restore3');
  mkdirSync(target);
  await restic.ok('restic restore latest (third)', ['restore', 'latest', '--target', target], { timeoutMs: 120_000 });
  await assertSameTree(src, existsSync(join(target, src)) ? join(target, src) : target, 'restore of the third snapshot');
  removeDir(target);
});

test("audit log: restic's requests are recorded with the server's source; no 5xx", () => {
  const recs = auditRecords(gw.dataDir);
  // S3 requests on the bucket (not the admin records of the server's creation).
  const mine = recs.filter((r) => r.bucket === A.bucket && r.source !== 'system' && !r.operation.startsWith('admin.'));
  assert.ok(mine.length > 50, `expected many audited requests on ${A.bucket}, got ${mine.length}`);
  const others = mine.filter((r) => r.source !== `server:${A.id}`);
  assert.deepEqual(others, [], `every request on the bucket came from restic with server:${A.id}`);
  const ops = new Set(mine.map((r) => r.operation));
  for (const op of ['PutObject', 'GetObject', 'DeleteObject']) assert.ok(ops.has(op), `audit: no ${op} from restic (seen: ${[...ops].sort().join(', ')})`);
  assert.ok(ops.has('ListObjectsV2') || ops.has('ListObjects'), `audit: restic's listings missing (seen: ${[...ops].sort().join(', ')})`);
  const puts = mine.filter((r) => r.operation === 'PutObject' && r.status === 200);
  assert.deepEqual(puts.filter((r) => !r.key || !r.versionId), [], 'PutObject records carry key and versionId');
  assert.ok(puts.filter((r) => r.key?.startsWith('data/')).reduce((n, r) => n + r.bytes, 0) > 15 * MiB, 'audit: bytes of the pack uploads recorded');
  assert.deepEqual(recs.filter((r) => r.status >= 500), [], 'no request may end in a 5xx');
});
