// rclone (Debian's, type s3 / provider Other) against a fresh shelterd over its own HTTPS:
// sync a tree of a few hundred files, some large enough for multipart, `rclone check` with
// 0 differences, copy back down byte-identical, then a second sync whose deletions must become
// delete markers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import { auditRecords, createServer, removeDir, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  KiB, MiB, Rclone, assertSameTree, formatRun, pseudoRandomBytes, readTree, reportGatewayLogs, s3Client, writeTree,
  type FileSpec, type RunResult, type ServerInfo,
} from '../lib/clients.ts';

let gw: Gateway;
let tmp: string;
let A: ServerInfo;
let B: ServerInfo;
let rc: Rclone;
let sdk: S3Client;

const BIG: FileSpec[] = [
  { path: 'big/just-over-5MiB.bin', size: 5 * MiB + 1 },
  { path: 'big/twelve.bin', size: 12 * MiB + 7 },
  { path: 'big/nested/twenty.bin', size: 20 * MiB - 3 },
];
const SMALL: FileSpec[] = Array.from({ length: 300 }, (_, i) => {
  const dir = ['', 'alpha/', 'alpha/beta/', 'gamma delta/', 'ünïcødé/', 'deep/a/b/c/d/'][i % 6]!;
  const name = i % 25 === 0 ? `spécial file +${i} (copy).txt` : `file-${String(i).padStart(4, '0')}.dat`;
  return { path: `${dir}${name}`, size: i % 50 === 7 ? 0 : 1 + ((i * 104729) % (48 * KiB)) };
});
const TREE = [...SMALL, ...BIG];

before(async () => {
  tmp = tempDir('shelter-rclone-');
  gw = await startGateway({ dataDir: join(tmp, 'data') });
  reportGatewayLogs(gw);
  A = createServer(gw.dataDir, 'rclone-a');
  B = createServer(gw.dataDir, 'rclone-b');
  // --retries 1: a sync that only succeeds after rclone retried it is a failure here.
  // --s3-list-chunk 100: listings of 300+ keys take several pages.
  rc = new Rclone(gw, A, join(tmp, 'rclone'), ['--retries', '1', '--s3-chunk-size', '5M', '--s3-upload-cutoff', '5M', '--s3-list-chunk', '100']);
  sdk = s3Client(gw, A);
});

after(async () => {
  reportGatewayLogs(null);
  sdk?.destroy();
  await gw?.stop();
  if (tmp && !process.env.SHELTER_KEEP_TMP) removeDir(tmp);
});

function checkReport(r: RunResult, files: number, what: string): void {
  const out = r.stderr + r.stdout;
  assert.match(out, /\b0 differences found/, `${what}: rclone check must report 0 differences\n${formatRun(r)}`);
  const matching = /(\d+) matching files/.exec(out);
  assert.equal(Number(matching?.[1]), files, `${what}: rclone check must match all ${files} files\n${formatRun(r)}`);
  assert.doesNotMatch(out, /hashes could not be checked|could not be checked/, `${what}: every hash must have been compared (MD5 ETag or rclone's md5 metadata)\n${formatRun(r)}`);
}

test('rclone sync of a few hundred files (some multipart) then rclone check: 0 differences', { timeout: 300_000 }, async () => {
  const src = writeTree(join(tmp, 'src'), TREE);
  await rc.ok('rclone sync up', ['sync', src, `shelter:${A.bucket}/tree`], { timeoutMs: 240_000 });
  const r = await rc.ok('rclone check', ['check', src, `shelter:${A.bucket}/tree`]);
  checkReport(r, TREE.length, 'after the first sync');

  // The large files went up as multipart uploads (5 MiB parts).
  const recs = auditRecords(gw.dataDir).filter((x) => x.bucket === A.bucket);
  for (const f of BIG) {
    const key = `tree/${f.path}`;
    const parts = recs.filter((x) => x.key === key && x.operation === 'UploadPart' && x.status === 200).length;
    assert.equal(parts, Math.ceil(f.size / (5 * MiB)), `${key}: expected ${Math.ceil(f.size / (5 * MiB))} UploadPart records in the audit log, got ${parts}`);
    assert.ok(recs.some((x) => x.key === key && x.operation === 'CompleteMultipartUpload' && x.status === 200), `${key}: CompleteMultipartUpload missing from the audit log`);
  }
});

test('rclone copy back down is byte-identical', { timeout: 240_000 }, async () => {
  const down = join(tmp, 'down');
  await rc.ok('rclone copy down', ['copy', `shelter:${A.bucket}/tree`, down], { timeoutMs: 180_000 });
  await assertSameTree(join(tmp, 'src'), down, 'rclone sync up then copy down');
  removeDir(down);
});

test('a second sync after changes: overwrites and deletions keep every version', { timeout: 240_000 }, async () => {
  const src = join(tmp, 'src');
  const changed = SMALL[1]!.path;
  const removed = SMALL[2]!.path;
  writeFileSync(join(src, changed), pseudoRandomBytes('rclone-changed', 3333));
  rmSync(join(src, removed));
  writeTree(src, [{ path: 'added/new file.txt', size: 4444 }]);
  const r = await rc.ok('rclone sync again', ['sync', src, `shelter:${A.bucket}/tree`]);
  const check = await rc.ok('rclone check after the second sync', ['check', src, `shelter:${A.bucket}/tree`]);
  checkReport(check, (await readTree(src)).size, `after the second sync (sync output:\n${formatRun(r)})`);

  const lv = await sdk.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: `tree/${removed}` }));
  assert.equal(lv.DeleteMarkers?.length, 1, `the file removed locally must get a delete marker: ${JSON.stringify(lv)}`);
  assert.equal(lv.DeleteMarkers?.[0]?.IsLatest, true, 'delete marker is latest');
  assert.equal(lv.Versions?.length, 1, `the removed file's version must still exist: ${JSON.stringify(lv)}`);
  const lc = await sdk.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: `tree/${changed}` }));
  assert.equal(lc.Versions?.length, 2, `the changed file must have 2 versions: ${JSON.stringify(lc)}`);

  const down = join(tmp, 'down2');
  await rc.ok('rclone copy down after the second sync', ['copy', `shelter:${A.bucket}/tree`, down], { timeoutMs: 180_000 });
  await assertSameTree(src, down, 'second sync then copy down');
  removeDir(down);
});

test("rclone with A's key cannot list, read or write B's bucket", async () => {
  writeTree(join(tmp, 'b'), [{ path: 'x.txt', size: 10 }]);
  const rcB = new Rclone(gw, B, join(tmp, 'rclone-b'), ['--retries', '1', '--low-level-retries', '1']);
  await rcB.ok('B writes its own object', ['copy', join(tmp, 'b'), `shelter:${B.bucket}/own`]);
  const rcA = new Rclone(gw, A, join(tmp, 'rclone-a2'), ['--retries', '1', '--low-level-retries', '1']);
  await rcA.fail('A lists B', /AccessDenied|403/, ['ls', `shelter:${B.bucket}`]);
  await rcA.fail('A reads B', /AccessDenied|403/, ['cat', `shelter:${B.bucket}/own/x.txt`]);
  await rcA.fail('A writes into B', /AccessDenied|403/, ['copyto', join(tmp, 'b', 'x.txt'), `shelter:${B.bucket}/own/x.txt`, '--s3-no-check-bucket']);
  // rclone HEADs the object first and reports the 403 as "doesn't exist"; the audit test below checks it was a 403.
  await rcA.fail('A deletes in B', /AccessDenied|403|doesn't exist/, ['deletefile', `shelter:${B.bucket}/own/x.txt`]);
  const listed = await rcB.ok('B lists its bucket', ['lsf', '-R', `shelter:${B.bucket}`]);
  assert.equal(listed.stdout.trim().split('\n').filter((l) => !l.endsWith('/')).join(','), 'own/x.txt', `B's bucket unchanged\n${formatRun(listed)}`);
});

test('audit log: rclone requests recorded with the server source; no 5xx', () => {
  const recs = auditRecords(gw.dataDir);
  const fromA = recs.filter((r) => r.source === `server:${A.id}` && r.bucket === A.bucket);
  const ops = new Set(fromA.filter((r) => r.status < 300).map((r) => r.operation));
  for (const op of ['PutObject', 'GetObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'DeleteObject']) {
    assert.ok(ops.has(op), `audit: no successful ${op} from server:${A.id} (seen: ${[...ops].sort().join(', ')})`);
  }
  assert.ok(ops.has('ListObjectsV2') || ops.has('ListObjects'), `audit: rclone's listings missing (seen: ${[...ops].sort().join(', ')})`);
  const refused = recs.filter((r) => r.source === `server:${A.id}` && r.bucket === B.bucket);
  assert.ok(refused.length >= 4 && refused.every((r) => r.status === 403), `audit: A's requests on B's bucket are recorded 403s: ${JSON.stringify(refused)}`);
  assert.deepEqual(recs.filter((r) => r.status >= 500), [], 'no request may end in a 5xx');
});
