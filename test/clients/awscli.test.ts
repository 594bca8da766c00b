// aws-cli v2 (Debian's awscli, /usr/bin/aws) against a fresh shelterd over its own HTTPS:
// s3 cp/sync/ls/rm/presign, s3api for versions, retention and legal hold, a 64 MiB multipart
// upload, and a second server's bucket that the first server's key may not touch.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditRecords, createServer, removeDir, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  AwsCli, KiB, MiB, assertSameTree, formatRun, httpsRequest, md5hex, pseudoRandomBytes, reportGatewayLogs, sha256, sha256File,
  writeTree, type FileSpec, type ServerInfo,
} from '../lib/clients.ts';

let gw: Gateway;
let tmp: string;
let A: ServerInfo; // the server under test
let B: ServerInfo; // another tenant
let cli: AwsCli; // A's credentials
let cliB: AwsCli; // B's credentials

interface Version { Key: string; VersionId: string; IsLatest: boolean; Size?: number; ETag?: string }
interface Versions { Versions?: Version[]; DeleteMarkers?: Version[] }

const s3url = (bucket: string, key = ''): string => `s3://${bucket}/${key}`;
/** A date `days` from now, whole seconds, in the form aws-cli accepts. */
const future = (days: number): string => new Date(Math.floor(Date.now() / 1000) * 1000 + days * 86_400_000).toISOString().replace('.000Z', 'Z');

before(async () => {
  tmp = tempDir('shelter-awscli-');
  gw = await startGateway({ dataDir: join(tmp, 'data') });
  reportGatewayLogs(gw);
  A = createServer(gw.dataDir, 'aws-a');
  B = createServer(gw.dataDir, 'aws-b');
  assert.notEqual(A.bucket, B.bucket, 'two servers must get two buckets');
  cli = await AwsCli.create(gw, A, join(tmp, 'cli-a'), [
    ['default.s3.multipart_chunksize', '8MB'],
    ['default.s3.multipart_threshold', '8MB'],
  ]);
  cliB = await AwsCli.create(gw, B, join(tmp, 'cli-b'));
  // B's own object, which A must never be able to read, list, overwrite or delete.
  writeFileSync(join(tmp, 'b-secret.txt'), 'belongs to server B\n');
  await cliB.ok('B uploads its own object', ['s3', 'cp', join(tmp, 'b-secret.txt'), s3url(B.bucket, 'secret.txt')]);
});

after(async () => {
  reportGatewayLogs(null);
  await gw?.stop();
  if (tmp && !process.env.SHELTER_KEEP_TMP) removeDir(tmp);
});

test('aws --version is aws-cli v2', async () => {
  const r = await cli.ok('aws --version', ['--version']);
  assert.match(r.stdout + r.stderr, /^aws-cli\/2\./, `expected aws-cli v2\n${formatRun(r)}`);
});

test('s3 cp up and down is byte-identical, head-object reports size and MD5 ETag', async () => {
  const dir = join(tmp, 'cp');
  mkdirSync(join(dir, 'down'), { recursive: true });
  const data = pseudoRandomBytes('awscli-cp', 3 * MiB + 17);
  writeFileSync(join(dir, 'file.bin'), data);
  await cli.ok('s3 cp upload', ['s3', 'cp', join(dir, 'file.bin'), s3url(A.bucket, 'cp/file.bin')]);
  await cli.ok('s3 cp download', ['s3', 'cp', s3url(A.bucket, 'cp/file.bin'), join(dir, 'down', 'file.bin')]);
  assert.equal(await sha256File(join(dir, 'down', 'file.bin')), sha256(data), 'downloaded bytes differ from uploaded bytes (sha256)');

  const head = await cli.json<{ ContentLength: number; ETag: string; VersionId?: string; LastModified?: string }>('s3api head-object',
    ['s3api', 'head-object', '--bucket', A.bucket, '--key', 'cp/file.bin']);
  assert.equal(head.ContentLength, data.length, 'head-object ContentLength');
  assert.equal(head.ETag, `"${md5hex(data)}"`, 'head-object ETag of a single-part upload must be the quoted MD5 of the bytes');
  assert.ok(head.VersionId && head.VersionId !== 'null', `head-object must report a VersionId (bucket is versioned): ${JSON.stringify(head)}`);
  assert.ok(head.LastModified, 'head-object LastModified');
});

const treeSpec: FileSpec[] = [
  { path: 'a.txt', size: 1000 },
  { path: 'empty.bin', size: 0 },
  { path: 'dir one/file with spaces.txt', size: 2345 },
  { path: 'dir one/nested/deeper/x.bin', size: 300 * KiB },
  { path: 'dir one/nested/deeper/even deeper/y.bin', size: 12 },
  { path: 'unicodé/日本語のファイル.txt', size: 777 },
  { path: 'unicodé/emoji 🎉 party.dat', size: 4096 },
  { path: 'ümlaut ß/ñandú.txt', size: 99 },
  { path: 'special/plus+sign.txt', size: 10 },
  { path: 'special/percent%20encoded.txt', size: 11 },
  { path: 'special/amp&eq=semi;comma,.txt', size: 12 },
  { path: "special/[brackets] (parens) ~tilde 'quote' !bang @at $dollar.txt", size: 13 },
  { path: `long/${'n'.repeat(180)}.txt`, size: 14 },
  ...Array.from({ length: 24 }, (_, i) => ({ path: `many/sub${i % 4}/file-${String(i).padStart(3, '0')}.dat`, size: 1 + ((i * 7919) % (64 * KiB)) })),
];

test('s3 sync of a tree (nested dirs, unicode, spaces, empty file) up then down is identical; s3 ls lists it', async () => {
  const src = writeTree(join(tmp, 'sync-src'), treeSpec);
  const down = join(tmp, 'sync-down');
  mkdirSync(down);
  await cli.ok('s3 sync up', ['s3', 'sync', src, s3url(A.bucket, 'sync/')]);
  await cli.ok('s3 sync down', ['s3', 'sync', s3url(A.bucket, 'sync/'), down]);
  await assertSameTree(src, down, 's3 sync up then down');

  // A second sync finds nothing to do: listing sizes and dates are right.
  const again = await cli.ok('s3 sync up again (nothing to do)', ['s3', 'sync', src, s3url(A.bucket, 'sync/')]);
  assert.doesNotMatch(again.stdout, /upload:/, `a second sync of an unchanged tree must upload nothing\n${formatRun(again)}`);

  // s3 ls: buckets (only A's), one level with PRE entries, and recursive.
  const buckets = await cli.ok('s3 ls (buckets)', ['s3', 'ls']);
  const names = buckets.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop());
  assert.deepEqual(names, [A.bucket], `s3 ls must show exactly the server's own bucket\n${formatRun(buckets)}`);

  const top = await cli.ok('s3 ls one level', ['s3', 'ls', s3url(A.bucket, 'sync/')]);
  for (const pre of ['dir one/', 'unicodé/', 'ümlaut ß/', 'special/', 'many/', 'long/']) {
    assert.ok(top.stdout.includes(`PRE ${pre}`), `s3 ls must show "PRE ${pre}"\n${formatRun(top)}`);
  }
  assert.match(top.stdout, /\s1000 a\.txt\n/, `s3 ls must show a.txt with 1000 bytes\n${formatRun(top)}`);
  assert.match(top.stdout, /\s0 empty\.bin\n/, `s3 ls must show empty.bin with 0 bytes\n${formatRun(top)}`);

  const rec = await cli.ok('s3 ls --recursive', ['s3', 'ls', '--recursive', s3url(A.bucket, 'sync/')]);
  const listed = new Map<string, number>();
  for (const line of rec.stdout.split('\n').filter(Boolean)) {
    const m = /^\S+ \S+\s+(\d+) (.*)$/.exec(line);
    assert.ok(m, `unexpected s3 ls line ${JSON.stringify(line)}`);
    listed.set(m[2]!, Number(m[1]));
  }
  const expected = new Map(treeSpec.map((f) => [`sync/${f.path}`, f.size]));
  assert.deepEqual(listed, expected, `s3 ls --recursive must list every synced key with its size\n${formatRun(rec)}`);
});

test('overwriting a key makes a second version; the old version stays readable', async () => {
  const dir = join(tmp, 'ver');
  mkdirSync(dir);
  const v1 = pseudoRandomBytes('awscli-v1', 5000);
  const v2 = pseudoRandomBytes('awscli-v2', 6000);
  writeFileSync(join(dir, 'v1'), v1);
  writeFileSync(join(dir, 'v2'), v2);
  await cli.ok('upload v1', ['s3', 'cp', join(dir, 'v1'), s3url(A.bucket, 'ver/doc.bin')]);
  await cli.ok('upload v2 over it', ['s3', 'cp', join(dir, 'v2'), s3url(A.bucket, 'ver/doc.bin')]);
  const lv = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'ver/doc.bin']);
  const versions = lv.Versions ?? [];
  assert.equal(versions.length, 2, `expected 2 versions of ver/doc.bin: ${JSON.stringify(lv)}`);
  assert.equal(lv.DeleteMarkers?.length ?? 0, 0, `no delete marker expected: ${JSON.stringify(lv)}`);
  assert.equal(versions.filter((v) => v.IsLatest).length, 1, `exactly one version must be IsLatest: ${JSON.stringify(lv)}`);
  assert.ok(versions[0]!.IsLatest && versions[0]!.Size === v2.length, `newest version first, IsLatest, 6000 bytes: ${JSON.stringify(lv)}`);
  assert.equal(versions[1]!.Size, v1.length, `older version is the 5000-byte one: ${JSON.stringify(lv)}`);
  assert.notEqual(versions[0]!.VersionId, versions[1]!.VersionId, 'distinct version ids');

  await cli.ok('get-object old version', ['s3api', 'get-object', '--bucket', A.bucket, '--key', 'ver/doc.bin', '--version-id', versions[1]!.VersionId, join(dir, 'old.out')]);
  assert.equal(sha256(readFileSync(join(dir, 'old.out'))), sha256(v1), 'old version bytes (sha256)');
  await cli.ok('get-object latest', ['s3api', 'get-object', '--bucket', A.bucket, '--key', 'ver/doc.bin', join(dir, 'new.out')]);
  assert.equal(sha256(readFileSync(join(dir, 'new.out'))), sha256(v2), 'latest version bytes (sha256)');
});

test('s3 rm makes a delete marker; every version stays and the old bytes are readable by version id', async () => {
  const dir = join(tmp, 'rm');
  mkdirSync(dir);
  const data = pseudoRandomBytes('awscli-rm', 4321);
  writeFileSync(join(dir, 'f'), data);
  await cli.ok('upload', ['s3', 'cp', join(dir, 'f'), s3url(A.bucket, 'rm/victim.bin')]);
  await cli.ok('s3 rm', ['s3', 'rm', s3url(A.bucket, 'rm/victim.bin')]);

  // aws s3 ls exits 1 when it lists nothing.
  const ls = await cli.run(['s3', 'ls', s3url(A.bucket, 'rm/')]);
  assert.ok(ls.status === 0 || (ls.status === 1 && ls.stderr.trim() === ''), `s3 ls after rm\n${formatRun(ls)}`);
  assert.doesNotMatch(ls.stdout, /victim\.bin/, `a deleted key must not be listed\n${formatRun(ls)}`);
  await cli.fail('head-object of a deleted key', /\(404\)|Not Found|NoSuchKey/, ['s3api', 'head-object', '--bucket', A.bucket, '--key', 'rm/victim.bin']);

  const lv = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'rm/victim.bin']);
  assert.equal(lv.DeleteMarkers?.length, 1, `expected one delete marker: ${JSON.stringify(lv)}`);
  assert.equal(lv.DeleteMarkers![0]!.IsLatest, true, `the delete marker must be the latest: ${JSON.stringify(lv)}`);
  assert.equal(lv.Versions?.length, 1, `the version must still exist: ${JSON.stringify(lv)}`);
  const old = lv.Versions![0]!;
  assert.equal(old.IsLatest, false, 'the old version is no longer the latest');
  assert.equal(old.Size, data.length, 'old version size');

  await cli.ok('get-object --version-id after rm', ['s3api', 'get-object', '--bucket', A.bucket, '--key', 'rm/victim.bin', '--version-id', old.VersionId, join(dir, 'out')]);
  assert.equal(sha256(readFileSync(join(dir, 'out'))), sha256(data), 'bytes of the deleted version (sha256)');
});

test('s3api delete-object --version-id is refused with AccessDenied and the version survives', async () => {
  const lv = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'ver/doc.bin']);
  const target = lv.Versions?.[1];
  assert.ok(target, `need the old version of ver/doc.bin: ${JSON.stringify(lv)}`);
  await cli.fail('delete-object --version-id', /AccessDenied/, ['s3api', 'delete-object', '--bucket', A.bucket, '--key', 'ver/doc.bin', '--version-id', target.VersionId]);
  // The delete marker of rm/victim.bin cannot be removed either (that would "undelete" by destroying history).
  const rm = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'rm/victim.bin']);
  const marker = rm.DeleteMarkers?.[0];
  assert.ok(marker, 'delete marker of rm/victim.bin');
  await cli.fail('delete-object of a delete marker by version id', /AccessDenied/, ['s3api', 'delete-object', '--bucket', A.bucket, '--key', 'rm/victim.bin', '--version-id', marker.VersionId]);

  const later = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'ver/doc.bin']);
  assert.deepEqual((later.Versions ?? []).map((v) => v.VersionId), (lv.Versions ?? []).map((v) => v.VersionId), 'both versions must still exist');
});

test('put-bucket-versioning Suspended is refused with AccessDenied; versioning stays Enabled', async () => {
  await cli.fail('put-bucket-versioning Suspended', /AccessDenied/, ['s3api', 'put-bucket-versioning', '--bucket', A.bucket, '--versioning-configuration', 'Status=Suspended']);
  const v = await cli.json<{ Status?: string }>('get-bucket-versioning', ['s3api', 'get-bucket-versioning', '--bucket', A.bucket]);
  assert.equal(v.Status, 'Enabled', `versioning must stay Enabled: ${JSON.stringify(v)}`);
});

test('object retention: GOVERNANCE and COMPLIANCE can be set and extended, never shortened', async () => {
  const file = join(tmp, 'ret.txt');
  writeFileSync(file, 'retained\n');
  await cli.ok('upload', ['s3', 'cp', file, s3url(A.bucket, 'ret/gov.txt')]);
  await cli.ok('upload', ['s3', 'cp', file, s3url(A.bucket, 'ret/comp.txt')]);
  const getRet = (key: string) => cli.json<{ Retention?: { Mode?: string; RetainUntilDate?: string } }>(`get-object-retention ${key}`,
    ['s3api', 'get-object-retention', '--bucket', A.bucket, '--key', key]);

  // GOVERNANCE
  const d2 = future(2);
  await cli.ok('put-object-retention GOVERNANCE +2d', ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/gov.txt', '--retention', `Mode=GOVERNANCE,RetainUntilDate=${d2}`]);
  let r = await getRet('ret/gov.txt');
  assert.equal(r.Retention?.Mode, 'GOVERNANCE', `mode: ${JSON.stringify(r)}`);
  assert.equal(Date.parse(r.Retention?.RetainUntilDate ?? ''), Date.parse(d2), `retain-until date: ${JSON.stringify(r)} expected ${d2}`);
  await cli.fail('shortening GOVERNANCE retention', /AccessDenied/, ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/gov.txt', '--retention', `Mode=GOVERNANCE,RetainUntilDate=${future(1)}`]);
  await cli.fail('shortening GOVERNANCE retention with --bypass-governance-retention', /AccessDenied/, ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/gov.txt', '--bypass-governance-retention', '--retention', `Mode=GOVERNANCE,RetainUntilDate=${future(1)}`]);
  const d3 = future(3);
  await cli.ok('extending GOVERNANCE retention', ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/gov.txt', '--retention', `Mode=GOVERNANCE,RetainUntilDate=${d3}`]);
  r = await getRet('ret/gov.txt');
  assert.equal(Date.parse(r.Retention?.RetainUntilDate ?? ''), Date.parse(d3), `extended date: ${JSON.stringify(r)} expected ${d3}`);

  // COMPLIANCE
  const c1 = future(1);
  await cli.ok('put-object-retention COMPLIANCE +1d', ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/comp.txt', '--retention', `Mode=COMPLIANCE,RetainUntilDate=${c1}`]);
  r = await getRet('ret/comp.txt');
  assert.equal(r.Retention?.Mode, 'COMPLIANCE', `mode: ${JSON.stringify(r)}`);
  assert.equal(Date.parse(r.Retention?.RetainUntilDate ?? ''), Date.parse(c1), `retain-until date: ${JSON.stringify(r)} expected ${c1}`);
  const shorter = new Date(Date.parse(c1) - 3_600_000).toISOString().replace('.000Z', 'Z');
  await cli.fail('shortening COMPLIANCE retention', /AccessDenied/, ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/comp.txt', '--retention', `Mode=COMPLIANCE,RetainUntilDate=${shorter}`]);
  await cli.fail('COMPLIANCE -> GOVERNANCE', /AccessDenied/, ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/comp.txt', '--retention', `Mode=GOVERNANCE,RetainUntilDate=${c1}`]);
  const c4 = future(4);
  await cli.ok('extending COMPLIANCE retention', ['s3api', 'put-object-retention', '--bucket', A.bucket, '--key', 'ret/comp.txt', '--retention', `Mode=COMPLIANCE,RetainUntilDate=${c4}`]);
  r = await getRet('ret/comp.txt');
  assert.equal(r.Retention?.Mode, 'COMPLIANCE', `mode after extension: ${JSON.stringify(r)}`);
  assert.equal(Date.parse(r.Retention?.RetainUntilDate ?? ''), Date.parse(c4), `extended date: ${JSON.stringify(r)} expected ${c4}`);

  // A retained object may still get a delete marker (as on AWS), but its version cannot be deleted.
  await cli.ok('s3 rm of a retained object (delete marker)', ['s3', 'rm', s3url(A.bucket, 'ret/gov.txt')]);
  const lv = await cli.json<Versions>('list-object-versions', ['s3api', 'list-object-versions', '--bucket', A.bucket, '--prefix', 'ret/gov.txt']);
  assert.equal(lv.Versions?.length, 1, `retained version still there: ${JSON.stringify(lv)}`);
  await cli.fail('delete-object --version-id of a retained version', /AccessDenied/, ['s3api', 'delete-object', '--bucket', A.bucket, '--key', 'ret/gov.txt', '--version-id', lv.Versions![0]!.VersionId, '--bypass-governance-retention']);
});

test('legal hold ON can be set and read back', async () => {
  const file = join(tmp, 'hold.txt');
  writeFileSync(file, 'on hold\n');
  await cli.ok('upload', ['s3', 'cp', file, s3url(A.bucket, 'hold/doc.txt')]);
  await cli.ok('put-object-legal-hold ON', ['s3api', 'put-object-legal-hold', '--bucket', A.bucket, '--key', 'hold/doc.txt', '--legal-hold', 'Status=ON']);
  const h = await cli.json<{ LegalHold?: { Status?: string } }>('get-object-legal-hold', ['s3api', 'get-object-legal-hold', '--bucket', A.bucket, '--key', 'hold/doc.txt']);
  assert.equal(h.LegalHold?.Status, 'ON', `legal hold status: ${JSON.stringify(h)}`);
  const head = await cli.json<{ ObjectLockLegalHoldStatus?: string }>('head-object', ['s3api', 'head-object', '--bucket', A.bucket, '--key', 'hold/doc.txt']);
  assert.equal(head.ObjectLockLegalHoldStatus, 'ON', `head-object must report the legal hold: ${JSON.stringify(head)}`);
});

test('multipart upload of 64 MiB via s3 cp (8 MiB parts) downloads byte-identical', { timeout: 240_000 }, async () => {
  const dir = join(tmp, 'mp');
  mkdirSync(dir);
  const data = pseudoRandomBytes('awscli-multipart', 64 * MiB);
  writeFileSync(join(dir, 'big.bin'), data);
  const want = sha256(data);
  await cli.ok('s3 cp 64 MiB (multipart)', ['s3', 'cp', join(dir, 'big.bin'), s3url(A.bucket, 'mp/big.bin')], { timeoutMs: 180_000 });
  const head = await cli.json<{ ContentLength: number; ETag: string }>('head-object', ['s3api', 'head-object', '--bucket', A.bucket, '--key', 'mp/big.bin']);
  assert.equal(head.ContentLength, 64 * MiB, 'size of the multipart object');
  assert.match(head.ETag, /^"[0-9a-f]{32}-8"$/, `a multipart object of 8 parts has an ETag ending in -8: ${head.ETag}`);

  const recs = auditRecords(gw.dataDir).filter((r) => r.bucket === A.bucket && r.key === 'mp/big.bin');
  const count = (op: string) => recs.filter((r) => r.operation === op && r.status === 200).length;
  assert.equal(count('CreateMultipartUpload'), 1, `audit: one CreateMultipartUpload: ${JSON.stringify(recs.map((r) => r.operation))}`);
  assert.equal(count('UploadPart'), 8, `audit: 8 UploadPart: ${JSON.stringify(recs.map((r) => r.operation))}`);
  assert.equal(count('CompleteMultipartUpload'), 1, `audit: one CompleteMultipartUpload: ${JSON.stringify(recs.map((r) => r.operation))}`);

  // Downloads of large objects are ranged GETs in aws-cli.
  await cli.ok('s3 cp download 64 MiB', ['s3', 'cp', s3url(A.bucket, 'mp/big.bin'), join(dir, 'big.out')], { timeoutMs: 180_000 });
  assert.equal(await sha256File(join(dir, 'big.out')), want, 'downloaded multipart object differs (sha256)');
  await cli.ok('get-object 64 MiB', ['s3api', 'get-object', '--bucket', A.bucket, '--key', 'mp/big.bin', join(dir, 'big.get')], { timeoutMs: 180_000 });
  assert.equal(await sha256File(join(dir, 'big.get')), want, 'get-object of the multipart object differs (sha256)');
  removeDir(dir);
});

test('presigned URL from aws s3 presign is fetched with plain HTTPS', async () => {
  const r = await cli.ok('s3 presign', ['s3', 'presign', s3url(A.bucket, 'cp/file.bin'), '--expires-in', '300']);
  const url = r.stdout.trim();
  assert.ok(url.startsWith(`${gw.url}/${A.bucket}/cp/file.bin?`), `presigned URL must be path-style on the gateway: ${url}`);
  assert.match(url, /X-Amz-Signature=/, `presigned URL must be SigV4: ${url}`);
  const res = await httpsRequest(url, gw.caPem);
  assert.equal(res.status, 200, `GET presigned URL: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 500)}`);
  assert.equal(sha256(res.body), sha256(pseudoRandomBytes('awscli-cp', 3 * MiB + 17)), 'bytes fetched through the presigned URL (sha256)');
  // The same URL with its signature altered is refused.
  const bad = url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
  const res2 = await httpsRequest(bad, gw.caPem);
  assert.equal(res2.status, 403, `tampered presigned URL must be refused: HTTP ${res2.status}`);
  assert.match(res2.body.toString('utf8'), /SignatureDoesNotMatch/, 'tampered presigned URL error code');
});

test("the other server's bucket is refused (AccessDenied) for ls, cp, get, head, rm, versions, presign", async () => {
  const file = join(tmp, 'intruder.txt');
  writeFileSync(file, 'should never land in B\n');
  await cli.fail('s3 ls of B', /AccessDenied/, ['s3', 'ls', s3url(B.bucket)]);
  await cli.fail('s3 cp into B', /AccessDenied/, ['s3', 'cp', file, s3url(B.bucket, 'intruder.txt')]);
  await cli.fail('s3 cp overwrite in B', /AccessDenied/, ['s3', 'cp', file, s3url(B.bucket, 'secret.txt')]);
  await cli.fail('s3 cp from B', /AccessDenied|\(403\)|Forbidden/, ['s3', 'cp', s3url(B.bucket, 'secret.txt'), join(tmp, 'stolen.txt')]);
  await cli.fail('s3api get-object from B', /AccessDenied/, ['s3api', 'get-object', '--bucket', B.bucket, '--key', 'secret.txt', join(tmp, 'stolen2.txt')]);
  await cli.fail('s3api head-object in B', /\(403\)|Forbidden|AccessDenied/, ['s3api', 'head-object', '--bucket', B.bucket, '--key', 'secret.txt']);
  await cli.fail('s3 rm in B', /AccessDenied/, ['s3', 'rm', s3url(B.bucket, 'secret.txt')]);
  await cli.fail('list-object-versions of B', /AccessDenied/, ['s3api', 'list-object-versions', '--bucket', B.bucket]);
  await cli.fail('s3 sync into B', /AccessDenied/, ['s3', 'sync', join(tmp, 'sync-src'), s3url(B.bucket, 'sync/')]);
  const p = await cli.ok('s3 presign of B (signing is local)', ['s3', 'presign', s3url(B.bucket, 'secret.txt')]);
  const res = await httpsRequest(p.stdout.trim(), gw.caPem);
  assert.equal(res.status, 403, `presigned GET of B's object with A's key: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 300)}`);
  assert.match(res.body.toString('utf8'), /AccessDenied/, 'presigned cross-bucket error code');

  // B's bucket is untouched: one version of secret.txt, no delete marker, nothing else.
  const lv = await cliB.json<Versions & { Versions?: Version[] }>('B list-object-versions', ['s3api', 'list-object-versions', '--bucket', B.bucket]);
  assert.deepEqual((lv.Versions ?? []).map((v) => v.Key), ['secret.txt'], `B's bucket must hold only its own object: ${JSON.stringify(lv)}`);
  assert.equal(lv.DeleteMarkers?.length ?? 0, 0, `no delete marker in B: ${JSON.stringify(lv)}`);
  const got = join(tmp, 'b-check.txt');
  await cliB.ok('B reads its object', ['s3', 'cp', s3url(B.bucket, 'secret.txt'), got]);
  assert.equal(readFileSync(got, 'utf8'), 'belongs to server B\n', "B's object content");
  // And B cannot reach A either.
  await cliB.fail('B lists A', /AccessDenied/, ['s3', 'ls', s3url(A.bucket)]);
});

test('audit log: every request recorded with its source; refusals recorded; no 5xx', () => {
  const recs = auditRecords(gw.dataDir);
  const fromA = recs.filter((r) => r.source === `server:${A.id}`);
  assert.ok(fromA.length > 50, `expected many records with source server:${A.id}, got ${fromA.length}`);
  const ops = new Set(fromA.filter((r) => (r.bucket === A.bucket || r.bucket === null) && r.status < 300).map((r) => r.operation));
  for (const op of ['PutObject', 'GetObject', 'HeadObject', 'ListObjectsV2', 'DeleteObject', 'ListObjectVersions', 'CreateMultipartUpload', 'UploadPart',
    'CompleteMultipartUpload', 'PutObjectRetention', 'GetObjectRetention', 'PutObjectLegalHold', 'GetObjectLegalHold', 'GetBucketVersioning', 'ListBuckets']) {
    assert.ok(ops.has(op), `audit: no successful ${op} from server:${A.id} (seen: ${[...ops].sort().join(', ')})`);
  }
  // (A successful DeleteObject records the version id of the delete marker it made.)
  const versionDeletes = fromA.filter((r) => r.operation === 'DeleteObject' && r.bucket === A.bucket && r.status === 403);
  assert.ok(versionDeletes.length >= 3 && versionDeletes.every((r) => r.error === 'AccessDenied' && r.versionId),
    `audit: the 3 refused version deletes must be recorded as 403 AccessDenied with their versionId: ${JSON.stringify(versionDeletes)}`);
  const suspend = fromA.filter((r) => r.operation === 'PutBucketVersioning');
  assert.ok(suspend.length >= 1 && suspend.every((r) => r.status === 403 && r.error === 'AccessDenied'), `audit: refused PutBucketVersioning: ${JSON.stringify(suspend)}`);

  const onB = fromA.filter((r) => r.bucket === B.bucket);
  assert.ok(onB.length > 0 && onB.every((r) => r.status === 403), `audit: every request of A on B's bucket must be a recorded 403: ${JSON.stringify(onB.filter((r) => r.status !== 403))}`);
  const refusedOps = new Set(onB.map((r) => r.operation));
  for (const op of ['ListObjectsV2', 'PutObject', 'GetObject', 'HeadObject', 'DeleteObject', 'ListObjectVersions']) {
    assert.ok(refusedOps.has(op), `audit: the refused ${op} of A on B's bucket is missing (seen: ${[...refusedOps].sort().join(', ')})`);
  }
  const bodyErrors = onB.filter((r) => r.operation !== 'HeadObject' && r.error !== 'AccessDenied');
  assert.deepEqual(bodyErrors, [], 'audit: refused cross-bucket requests carry error AccessDenied');

  const five = recs.filter((r) => r.status >= 500);
  assert.deepEqual(five, [], 'no request may end in a 5xx');
  for (const r of fromA.slice(0, 5)) assert.ok(r.requestId && r.time && r.remote, `audit record fields: ${JSON.stringify(r)}`);
});
