// The AWS SDK for JavaScript v3 with its DEFAULT checksum settings (CRC32 request checksums,
// aws-chunked trailers for streams, response checksum validation) against a fresh shelterd over
// its own HTTPS: object operations, listings, versions, multipart, object lock, bucket reads,
// virtual-hosted addressing, and the S3 error codes a client relies on.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateBucketCommand, CreateMultipartUploadCommand,
  DeleteBucketCommand, DeleteObjectCommand, DeleteObjectsCommand, GetBucketLocationCommand, GetBucketVersioningCommand,
  GetObjectCommand, GetObjectLegalHoldCommand, GetObjectLockConfigurationCommand, GetObjectRetentionCommand, HeadBucketCommand,
  HeadObjectCommand, ListBucketsCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, ListObjectsCommand,
  ListObjectsV2Command, ListPartsCommand, PutBucketVersioningCommand, PutObjectCommand, PutObjectLegalHoldCommand,
  PutObjectLockConfigurationCommand, PutObjectRetentionCommand, UploadPartCommand,
  type CompletedPart, type GetObjectCommandInput, type GetObjectCommandOutput, type ListObjectsV2CommandOutput, type UploadPartCommandOutput, type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { auditRecords, createOperatorKey, createServer, removeDir, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  KiB, MiB, crc32c, expectS3Error, loopbackLookup, md5hex, multipartEtag, pseudoRandomBytes, pseudoRandomStream, reportGatewayLogs,
  s3Client, sha256, sha256Stream, type ServerInfo,
} from '../lib/clients.ts';

let gw: Gateway;
let tmp: string;
let A: ServerInfo;
let B: ServerInfo;
let op: { accessKeyId: string; secretAccessKey: string };
let s3: S3Client; // A's key
let s3B: S3Client; // B's key
let s3Op: S3Client; // operator key

interface SeenRequest { method: string; hostname: string; path: string; headers: Record<string, string> }
const seen: SeenRequest[] = [];

/** Records every request the client sends, as it goes on the wire (after checksums and signing). */
function record(client: S3Client, into: SeenRequest[]): void {
  client.middlewareStack.add((next) => async (args) => {
    const r = args.request as { method: string; hostname: string; path: string; headers: Record<string, string> };
    into.push({ method: r.method, hostname: r.hostname, path: r.path, headers: { ...r.headers } });
    return next(args);
  }, { step: 'deserialize', name: 'shelterTestRecorder' });
}

async function getBytes(client: S3Client, input: GetObjectCommandInput): Promise<{ body: Buffer; out: GetObjectCommandOutput }> {
  const out = await client.send(new GetObjectCommand(input));
  assert.ok(out.Body, 'GetObject returned no body');
  const body = Buffer.from(await out.Body.transformToByteArray());
  return { body, out };
}

const put = (key: string, body: string | Buffer, bucket = A.bucket) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
const secs = (d: number): Date => new Date(Math.floor(d / 1000) * 1000);
const DAY = 86_400_000;

before(async () => {
  tmp = tempDir('shelter-sdk-');
  gw = await startGateway({ dataDir: join(tmp, 'data') });
  reportGatewayLogs(gw);
  A = createServer(gw.dataDir, 'sdk-a');
  B = createServer(gw.dataDir, 'sdk-b');
  op = createOperatorKey(gw.dataDir);
  s3 = s3Client(gw, A);
  record(s3, seen);
  s3B = s3Client(gw, B);
  s3Op = s3Client(gw, op);
  await s3B.send(new PutObjectCommand({ Bucket: B.bucket, Key: 'b-secret.txt', Body: 'belongs to B' }));
});

after(async () => {
  reportGatewayLogs(null);
  for (const c of [s3, s3B, s3Op]) c?.destroy();
  await gw?.stop();
  if (tmp && !process.env.SHELTER_KEEP_TMP) removeDir(tmp);
});

// ---------------------------------------------------------------------------------------------

const strBody = 'héllo wörld, ünïcode and ascii\n'.repeat(1000);
const bufBody = pseudoRandomBytes('sdk-buffer', MiB + 3);

test('PutObject of a string, a Buffer, an empty body and a file stream; GetObject is byte-identical', async () => {
  const p1 = await s3.send(new PutObjectCommand({ Bucket: A.bucket, Key: 'str.txt', Body: strBody, ContentType: 'text/plain; charset=utf-8', Metadata: { purpose: 'e2e', 'x-number': '42' } }));
  assert.equal(p1.ETag, `"${md5hex(Buffer.from(strBody))}"`, 'PutObject ETag of a string is the quoted MD5');
  assert.ok(p1.VersionId, 'PutObject returns a VersionId in a versioned bucket');
  const g1 = await getBytes(s3, { Bucket: A.bucket, Key: 'str.txt' });
  assert.equal(sha256(g1.body), sha256(strBody), 'string object bytes (sha256)');
  assert.equal(g1.out.ContentType, 'text/plain; charset=utf-8', 'Content-Type round trip');
  assert.deepEqual(g1.out.Metadata, { purpose: 'e2e', 'x-number': '42' }, 'user metadata round trip');
  assert.equal(g1.out.VersionId, p1.VersionId, 'GetObject VersionId');
  assert.equal(g1.out.ETag, p1.ETag, 'GetObject ETag');

  const p2 = await put('buf.bin', bufBody);
  assert.equal(p2.ETag, `"${md5hex(bufBody)}"`, 'PutObject ETag of a Buffer');
  const g2 = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin' });
  assert.equal(sha256(g2.body), sha256(bufBody), 'Buffer object bytes (sha256)');
  assert.equal(g2.out.ContentLength, bufBody.length, 'ContentLength');

  await put('empty', Buffer.alloc(0));
  const g3 = await getBytes(s3, { Bucket: A.bucket, Key: 'empty' });
  assert.equal(g3.body.length, 0, 'empty object');

  // A stream with a known length goes out as aws-chunked with a CRC32 trailer.
  const file = join(tmp, 'stream.bin');
  const fileBody = pseudoRandomBytes('sdk-file-stream', 3 * MiB + 11);
  writeFileSync(file, fileBody);
  const n0 = seen.length;
  await s3.send(new PutObjectCommand({ Bucket: A.bucket, Key: 'stream.bin', Body: createReadStream(file), ContentLength: fileBody.length }));
  const sent = seen.slice(n0).find((r) => r.method === 'PUT');
  assert.ok(sent, 'the PUT was recorded');
  assert.equal(sent.headers['x-amz-content-sha256'], 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', `the SDK sends streams as aws-chunked with a trailer: ${JSON.stringify(sent.headers)}`);
  assert.equal(sent.headers['x-amz-trailer'], 'x-amz-checksum-crc32', 'CRC32 trailer');
  const g4 = await getBytes(s3, { Bucket: A.bucket, Key: 'stream.bin' });
  assert.equal(sha256(g4.body), sha256(fileBody), 'streamed object bytes (sha256)');
  assert.equal(g4.out.ETag, `"${md5hex(fileBody)}"`, 'ETag of an aws-chunked upload is the MD5 of the decoded bytes');
});

const UPLOAD_SIZE = 40 * MiB + 12345;

test('lib-storage Upload of a stream of unknown length: ~40 MiB multipart in 5 MiB parts', { timeout: 180_000 }, async () => {
  const { stream, digest } = pseudoRandomStream('sdk-upload', UPLOAD_SIZE);
  const up = new Upload({ client: s3, params: { Bucket: A.bucket, Key: 'upload/stream.bin', Body: stream }, partSize: 5 * MiB, queueSize: 4 });
  const res = await up.done();
  assert.ok(res.VersionId, `CompleteMultipartUpload must return a VersionId: ${JSON.stringify(res)}`);
  const parts = Math.ceil(UPLOAD_SIZE / (5 * MiB));
  assert.match(res.ETag ?? '', new RegExp(`^"[0-9a-f]{32}-${parts}"$`), `multipart ETag with ${parts} parts`);

  const head = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'upload/stream.bin' }));
  assert.equal(head.ContentLength, UPLOAD_SIZE, 'size of the uploaded stream');
  assert.equal(head.ETag, res.ETag, 'HeadObject ETag = CompleteMultipartUpload ETag');
  const got = await s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'upload/stream.bin' }));
  const h = await sha256Stream(got.Body as AsyncIterable<Uint8Array>);
  assert.equal(h.size, UPLOAD_SIZE, 'downloaded size');
  assert.equal(h.sha256, digest(), 'downloaded bytes of the multipart upload (sha256)');

  const recs = auditRecords(gw.dataDir).filter((r) => r.key === 'upload/stream.bin' && r.status === 200);
  assert.equal(recs.filter((r) => r.operation === 'UploadPart').length, parts, `audit: ${parts} UploadPart records`);
  assert.equal(recs.filter((r) => r.operation === 'CreateMultipartUpload').length, 1, 'audit: CreateMultipartUpload');
  const complete = recs.find((r) => r.operation === 'CompleteMultipartUpload');
  assert.ok(complete, 'audit: CompleteMultipartUpload');
  assert.equal(complete.versionId, res.VersionId, 'audit: the completed version id');
});

test('GetObject with Range, and conditional requests (If-None-Match 304, If-Match 412, dates)', async () => {
  const r1 = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', Range: 'bytes=100-199' });
  assert.equal(r1.out.$metadata.httpStatusCode, 206, 'a range read is a 206');
  assert.equal(r1.out.ContentRange, `bytes 100-199/${bufBody.length}`, 'Content-Range');
  assert.equal(r1.out.ContentLength, 100, 'Content-Length of the range');
  assert.ok(r1.body.equals(bufBody.subarray(100, 200)), 'bytes 100-199');
  const r2 = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', Range: 'bytes=-10' });
  assert.ok(r2.body.equals(bufBody.subarray(bufBody.length - 10)), 'suffix range: the last 10 bytes');
  const r3 = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', Range: `bytes=${bufBody.length - 5}-` });
  assert.ok(r3.body.equals(bufBody.subarray(bufBody.length - 5)), 'open range: the last 5 bytes');
  const r4 = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', Range: `bytes=${bufBody.length - 5}-${bufBody.length + 100}` });
  assert.ok(r4.body.equals(bufBody.subarray(bufBody.length - 5)), 'a range ending past the end is clipped');
  // A range across a part boundary of the multipart object.
  const whole = pseudoRandomBytes('sdk-upload', UPLOAD_SIZE);
  const from = 5 * MiB - 1000;
  const r5 = await getBytes(s3, { Bucket: A.bucket, Key: 'upload/stream.bin', Range: `bytes=${from}-${from + 2 * MiB}` });
  assert.ok(r5.body.equals(whole.subarray(from, from + 2 * MiB + 1)), 'range across multipart part boundaries');

  await expectS3Error('Range past the end', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'buf.bin', Range: `bytes=${bufBody.length + 10}-${bufBody.length + 20}` })), { codes: ['InvalidRange'], status: 416 });

  const etag = `"${md5hex(bufBody)}"`;
  await expectS3Error('If-None-Match with the current ETag', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'buf.bin', IfNoneMatch: etag })), { status: 304 });
  const ok = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', IfNoneMatch: '"0123456789abcdef0123456789abcdef"' });
  assert.equal(sha256(ok.body), sha256(bufBody), 'If-None-Match with another ETag returns the object');
  await expectS3Error('If-Match with a wrong ETag', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'buf.bin', IfMatch: '"0123456789abcdef0123456789abcdef"' })), { codes: ['PreconditionFailed'], status: 412 });
  const m = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', IfMatch: etag });
  assert.equal(sha256(m.body), sha256(bufBody), 'If-Match with the right ETag returns the object');
  await expectS3Error('If-Modified-Since in the future', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'buf.bin', IfModifiedSince: new Date(Date.now() + DAY) })), { status: 304 });
  await expectS3Error('If-Unmodified-Since in the past', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'buf.bin', IfUnmodifiedSince: new Date('2001-01-01T00:00:00Z') })), { codes: ['PreconditionFailed'], status: 412 });
  const ims = await getBytes(s3, { Bucket: A.bucket, Key: 'buf.bin', IfModifiedSince: new Date('2001-01-01T00:00:00Z') });
  assert.equal(ims.body.length, bufBody.length, 'If-Modified-Since in the past returns the object');
});

test('HeadObject: size, ETag, dates, metadata, version; a missing key is a 404', async () => {
  const h = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'str.txt' }));
  assert.equal(h.ContentLength, Buffer.byteLength(strBody), 'ContentLength');
  assert.equal(h.ETag, `"${md5hex(Buffer.from(strBody))}"`, 'ETag');
  assert.ok(h.LastModified instanceof Date && Math.abs(h.LastModified.getTime() - Date.now()) < 10 * 60_000, `LastModified is recent: ${h.LastModified}`);
  assert.deepEqual(h.Metadata, { purpose: 'e2e', 'x-number': '42' }, 'metadata');
  assert.equal(h.ContentType, 'text/plain; charset=utf-8', 'content type');
  assert.ok(h.VersionId, 'VersionId');
  const hv = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'str.txt', VersionId: h.VersionId }));
  assert.equal(hv.VersionId, h.VersionId, 'HeadObject of a given version');
  await expectS3Error('HeadObject of a missing key', s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'no/such/key' })), { status: 404 });
});

test('CopyObject within the bucket (latest, a given version, odd key names, metadata replace)', async () => {
  const c1 = await s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'copies/str copy.txt', CopySource: `${A.bucket}/str.txt` }));
  assert.equal(c1.CopyObjectResult?.ETag, `"${md5hex(Buffer.from(strBody))}"`, 'copy ETag');
  assert.ok(c1.VersionId, 'the copy is a new version');
  const g1 = await getBytes(s3, { Bucket: A.bucket, Key: 'copies/str copy.txt' });
  assert.equal(sha256(g1.body), sha256(strBody), 'copied bytes');
  assert.deepEqual(g1.out.Metadata, { purpose: 'e2e', 'x-number': '42' }, 'COPY keeps the metadata');

  const odd = 'copies/ünï côdé+plus&amp=.txt';
  const v1 = await put(odd, 'version one');
  await put(odd, 'version two');
  const src = `${A.bucket}/${encodeURIComponent(odd).replace(/%2F/g, '/')}`;
  await s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'copies/from-v1.txt', CopySource: `${src}?versionId=${encodeURIComponent(v1.VersionId!)}` }));
  assert.equal((await getBytes(s3, { Bucket: A.bucket, Key: 'copies/from-v1.txt' })).body.toString(), 'version one', 'copy of a given (old) version');
  await s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'copies/from-latest.txt', CopySource: src }));
  assert.equal((await getBytes(s3, { Bucket: A.bucket, Key: 'copies/from-latest.txt' })).body.toString(), 'version two', 'copy of the latest version');

  await s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'copies/replaced.txt', CopySource: `${A.bucket}/str.txt`, MetadataDirective: 'REPLACE', Metadata: { fresh: 'yes' }, ContentType: 'application/x-test' }));
  const h = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'copies/replaced.txt' }));
  assert.deepEqual(h.Metadata, { fresh: 'yes' }, 'REPLACE sets the new metadata');
  assert.equal(h.ContentType, 'application/x-test', 'REPLACE sets the new content type');
  await expectS3Error('CopyObject of a missing source', s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'copies/nothing', CopySource: `${A.bucket}/no-such-source` })), { codes: ['NoSuchKey'], status: 404 });
});

const LIST_KEYS = ['list/a/1', 'list/a/2', 'list/b/1', 'list/c', 'list/d', 'list/e', 'list/f'];

test('ListObjectsV2: prefix, delimiter, StartAfter, pagination (MaxKeys 2 over 7 keys)', async () => {
  for (const k of LIST_KEYS) await put(k, `body of ${k}`);
  // Plain pagination.
  const keys: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'list/', MaxKeys: 2, ContinuationToken: token }));
    pages++;
    assert.ok((r.KeyCount ?? 0) <= 2, `page ${pages}: KeyCount ${r.KeyCount} <= MaxKeys`);
    assert.equal(r.KeyCount, r.Contents?.length ?? 0, `page ${pages}: KeyCount matches Contents`);
    keys.push(...(r.Contents ?? []).map((o) => o.Key!));
    if (r.IsTruncated) assert.ok(r.NextContinuationToken, `page ${pages}: truncated pages carry NextContinuationToken`);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
    assert.ok(pages <= 10, 'pagination must terminate');
  } while (token);
  assert.deepEqual(keys, LIST_KEYS, 'all 7 keys in order, each once');
  assert.equal(pages, 4, '7 keys at 2 per page = 4 pages');
  const first = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'list/', MaxKeys: 2 }));
  assert.equal(first.Contents?.[0]?.Size, Buffer.byteLength('body of list/a/1'), 'listing Size');
  assert.equal(first.Contents?.[0]?.ETag, `"${md5hex(Buffer.from('body of list/a/1'))}"`, 'listing ETag');

  // Delimiter.
  const d = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'list/', Delimiter: '/' }));
  assert.deepEqual((d.CommonPrefixes ?? []).map((p) => p.Prefix), ['list/a/', 'list/b/'], 'CommonPrefixes');
  assert.deepEqual((d.Contents ?? []).map((o) => o.Key), ['list/c', 'list/d', 'list/e', 'list/f'], 'Contents next to the prefixes');
  assert.equal(d.KeyCount, 6, 'KeyCount counts keys and common prefixes');
  assert.equal(d.IsTruncated, false, 'not truncated');

  // Delimiter with pagination: common prefixes count towards MaxKeys.
  const seenItems: string[] = [];
  token = undefined;
  pages = 0;
  do {
    const r: ListObjectsV2CommandOutput = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'list/', Delimiter: '/', MaxKeys: 2, ContinuationToken: token }));
    pages++;
    seenItems.push(...(r.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(r.Contents ?? []).map((o) => o.Key!));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
    assert.ok(pages <= 10, 'pagination must terminate');
  } while (token);
  assert.deepEqual(seenItems.sort(), ['list/a/', 'list/b/', 'list/c', 'list/d', 'list/e', 'list/f'], 'paged delimiter listing: each prefix and key once');
  assert.equal(pages, 3, '6 entries at 2 per page = 3 pages');

  const sa = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'list/', StartAfter: 'list/c' }));
  assert.deepEqual((sa.Contents ?? []).map((o) => o.Key), ['list/d', 'list/e', 'list/f'], 'StartAfter');
  const none = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'nothing-here/' }));
  assert.equal(none.KeyCount, 0, 'empty listing');
  assert.equal(none.Contents, undefined, 'no Contents in an empty listing');
});

test('ListObjects (v1): marker pagination and delimiter', async () => {
  const keys: string[] = [];
  let marker: string | undefined;
  let pages = 0;
  for (;;) {
    const r = await s3.send(new ListObjectsCommand({ Bucket: A.bucket, Prefix: 'list/', MaxKeys: 2, Marker: marker }));
    pages++;
    const got = (r.Contents ?? []).map((o) => o.Key!);
    assert.ok(got.length <= 2, `page ${pages}: at most MaxKeys`);
    keys.push(...got);
    if (!r.IsTruncated) break;
    marker = r.NextMarker ?? got[got.length - 1];
    assert.ok(pages <= 10, 'pagination must terminate');
  }
  assert.deepEqual(keys, LIST_KEYS, 'v1 pagination returns the 7 keys in order');
  assert.equal(pages, 4, 'v1: 4 pages');

  const d = await s3.send(new ListObjectsCommand({ Bucket: A.bucket, Prefix: 'list/', Delimiter: '/', MaxKeys: 3 }));
  assert.equal(d.IsTruncated, true, 'v1 delimiter listing with MaxKeys 3 is truncated');
  assert.ok(d.NextMarker, 'v1: NextMarker is returned when a delimiter is given and the listing is truncated');
  const d2 = await s3.send(new ListObjectsCommand({ Bucket: A.bucket, Prefix: 'list/', Delimiter: '/', Marker: d.NextMarker }));
  const all = [...(d.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(d.Contents ?? []).map((o) => o.Key!),
    ...(d2.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(d2.Contents ?? []).map((o) => o.Key!)];
  assert.deepEqual(all.sort(), ['list/a/', 'list/b/', 'list/c', 'list/d', 'list/e', 'list/f'], 'v1 delimiter listing over two pages');
});

test('ListObjectVersions: versions and delete markers, newest first, paginated', async () => {
  const ids: string[] = [];
  for (const body of ['one', 'two', 'three']) ids.push((await put('ver/k', body)).VersionId!);
  assert.equal(new Set(ids).size, 3, 'three distinct version ids');
  const del = await s3.send(new DeleteObjectCommand({ Bucket: A.bucket, Key: 'ver/k' }));
  assert.equal(del.DeleteMarker, true, 'DeleteObject reports a delete marker');
  assert.ok(del.VersionId, 'DeleteObject returns the delete marker version id');
  await expectS3Error('GetObject of a deleted key', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'ver/k' })), { codes: ['NoSuchKey'], status: 404 });

  const lv = await s3.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: 'ver/' }));
  assert.deepEqual((lv.Versions ?? []).map((v) => v.VersionId), [...ids].reverse(), 'versions newest first');
  assert.ok((lv.Versions ?? []).every((v) => v.IsLatest === false), 'no version is latest under a delete marker');
  assert.deepEqual((lv.Versions ?? []).map((v) => v.Size), [5, 3, 3], 'version sizes');
  assert.equal(lv.DeleteMarkers?.length, 1, 'one delete marker');
  assert.equal(lv.DeleteMarkers?.[0]?.VersionId, del.VersionId, 'delete marker id');
  assert.equal(lv.DeleteMarkers?.[0]?.IsLatest, true, 'the delete marker is latest');
  for (const [i, body] of ['one', 'two', 'three'].entries()) {
    assert.equal((await getBytes(s3, { Bucket: A.bucket, Key: 'ver/k', VersionId: ids[i] })).body.toString(), body, `version ${i + 1} is readable`);
  }
  await expectS3Error('GetObject of the delete marker by id', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: 'ver/k', VersionId: del.VersionId })), { status: 405 });

  const entries: string[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  let pages = 0;
  for (;;) {
    const r = await s3.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: 'ver/', MaxKeys: 2, KeyMarker, VersionIdMarker }));
    pages++;
    entries.push(...(r.Versions ?? []).map((v) => v.VersionId!), ...(r.DeleteMarkers ?? []).map((m) => m.VersionId!));
    if (!r.IsTruncated) break;
    KeyMarker = r.NextKeyMarker;
    VersionIdMarker = r.NextVersionIdMarker;
    assert.ok(KeyMarker, 'truncated version listings carry NextKeyMarker');
    assert.ok(pages <= 10, 'pagination must terminate');
  }
  assert.deepEqual(entries.sort(), [...ids, del.VersionId!].sort(), 'paged version listing returns each version and marker once');
  assert.equal(pages, 2, '4 entries at 2 per page = 2 pages');
  await expectS3Error('DeleteObject of a version', s3.send(new DeleteObjectCommand({ Bucket: A.bucket, Key: 'ver/k', VersionId: ids[0] })), { codes: ['AccessDenied'], status: 403 });
});

test('DeleteObjects (batch) makes delete markers; deleting versions in a batch is refused', async () => {
  const v: Record<string, string> = {};
  for (const k of ['batch/1', 'batch/2', 'batch/3']) v[k] = (await put(k, `body ${k}`)).VersionId!;
  const r = await s3.send(new DeleteObjectsCommand({ Bucket: A.bucket, Delete: { Objects: [{ Key: 'batch/1' }, { Key: 'batch/2' }, { Key: 'batch/3' }, { Key: 'batch/never-existed' }] } }));
  assert.deepEqual(r.Errors ?? [], [], 'no per-key errors');
  assert.deepEqual((r.Deleted ?? []).map((d) => d.Key).sort(), ['batch/1', 'batch/2', 'batch/3', 'batch/never-existed'], 'every key reported deleted');
  assert.ok((r.Deleted ?? []).every((d) => d.DeleteMarker === true && d.DeleteMarkerVersionId), `each deletion is a delete marker: ${JSON.stringify(r.Deleted)}`);
  const live = await s3.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: 'batch/' }));
  assert.equal(live.KeyCount, 0, 'nothing listed after the batch delete');
  const lv = await s3.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: 'batch/' }));
  assert.deepEqual(Object.fromEntries((lv.Versions ?? []).map((x) => [x.Key, x.VersionId])), v, 'every version is still there');

  // Quiet mode, and a batch that names a version: that entry is refused, the version stays.
  let refused = false;
  try {
    const q = await s3.send(new DeleteObjectsCommand({ Bucket: A.bucket, Delete: { Quiet: true, Objects: [{ Key: 'batch/1', VersionId: v['batch/1'] }] } }));
    const e = q.Errors ?? [];
    refused = e.length === 1 && e[0]!.Key === 'batch/1' && e[0]!.Code === 'AccessDenied';
    assert.ok(refused, `a batch deletion of a version must be refused per key with AccessDenied: ${JSON.stringify(q)}`);
  } catch (e) {
    const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
    assert.equal(err.$metadata?.httpStatusCode, 403, `a batch deletion of a version is refused: ${err.name}`);
    assert.equal(err.name, 'AccessDenied', 'refused with AccessDenied');
  }
  assert.equal((await getBytes(s3, { Bucket: A.bucket, Key: 'batch/1', VersionId: v['batch/1'] })).body.toString(), 'body batch/1', 'the version survives');
});

test('multipart by hand with CRC32C: Create, UploadPart, ListParts, ListMultipartUploads, Complete', { timeout: 120_000 }, async () => {
  const key = 'mp/hand made.bin';
  const parts = [pseudoRandomBytes('mp-1', 5 * MiB), pseudoRandomBytes('mp-2', 5 * MiB), pseudoRandomBytes('mp-3', MiB + 5)];
  const c = await s3.send(new CreateMultipartUploadCommand({ Bucket: A.bucket, Key: key, ChecksumAlgorithm: 'CRC32C', ContentType: 'application/x-parts', Metadata: { made: 'by-hand' } }));
  assert.ok(c.UploadId, 'UploadId');
  assert.equal(c.ChecksumAlgorithm, 'CRC32C', 'CreateMultipartUpload echoes the checksum algorithm');
  const done: CompletedPart[] = [];
  for (const [i, body] of parts.entries()) {
    const u: UploadPartCommandOutput = await s3.send(new UploadPartCommand({ Bucket: A.bucket, Key: key, UploadId: c.UploadId, PartNumber: i + 1, Body: body, ChecksumAlgorithm: 'CRC32C' }));
    assert.equal(u.ETag, `"${md5hex(body)}"`, `part ${i + 1}: ETag is the MD5 of the part`);
    assert.equal(u.ChecksumCRC32C, crc32c(body).toString('base64'), `part ${i + 1}: the gateway returns the part's CRC32C`);
    done.push({ PartNumber: i + 1, ETag: u.ETag, ChecksumCRC32C: u.ChecksumCRC32C });
  }
  const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: A.bucket, Prefix: 'mp/' }));
  assert.ok((ups.Uploads ?? []).some((u) => u.Key === key && u.UploadId === c.UploadId), `ListMultipartUploads shows the upload: ${JSON.stringify(ups.Uploads)}`);

  const lp = await s3.send(new ListPartsCommand({ Bucket: A.bucket, Key: key, UploadId: c.UploadId }));
  assert.deepEqual((lp.Parts ?? []).map((p) => [p.PartNumber, p.Size, p.ETag]), parts.map((b, i) => [i + 1, b.length, `"${md5hex(b)}"`]), 'ListParts: numbers, sizes, ETags');
  for (const p of lp.Parts ?? []) {
    if (p.ChecksumCRC32C !== undefined) assert.equal(p.ChecksumCRC32C, done[p.PartNumber! - 1]!.ChecksumCRC32C, `ListParts CRC32C of part ${p.PartNumber}`);
  }
  const lp1 = await s3.send(new ListPartsCommand({ Bucket: A.bucket, Key: key, UploadId: c.UploadId, MaxParts: 2 }));
  assert.equal(lp1.IsTruncated, true, 'ListParts MaxParts 2 of 3 is truncated');
  assert.equal(String(lp1.NextPartNumberMarker), '2', 'NextPartNumberMarker');
  const lp2 = await s3.send(new ListPartsCommand({ Bucket: A.bucket, Key: key, UploadId: c.UploadId, PartNumberMarker: lp1.NextPartNumberMarker }));
  assert.deepEqual((lp2.Parts ?? []).map((p) => p.PartNumber), [3], 'ListParts after the marker');

  await expectS3Error('GetObject before completion', s3.send(new GetObjectCommand({ Bucket: A.bucket, Key: key })), { codes: ['NoSuchKey'], status: 404 });
  const fin = await s3.send(new CompleteMultipartUploadCommand({ Bucket: A.bucket, Key: key, UploadId: c.UploadId, MultipartUpload: { Parts: done } }));
  assert.equal(fin.ETag, multipartEtag(parts), 'the multipart ETag is computed as AWS does (md5 of the part md5s, -3)');
  assert.ok(fin.VersionId, 'CompleteMultipartUpload VersionId');
  if (fin.ChecksumCRC32C !== undefined) {
    const composite = `${crc32c(Buffer.concat(parts.map((p) => crc32c(p)))).toString('base64')}-3`;
    const full = crc32c(Buffer.concat(parts)).toString('base64');
    assert.ok(fin.ChecksumCRC32C === composite || fin.ChecksumCRC32C === full, `object CRC32C ${fin.ChecksumCRC32C}: expected the composite ${composite} or the full-object ${full}`);
  }
  const later = await s3.send(new ListMultipartUploadsCommand({ Bucket: A.bucket, Prefix: 'mp/' }));
  assert.ok(!(later.Uploads ?? []).some((u) => u.UploadId === c.UploadId), 'a completed upload is no longer listed');

  const g = await getBytes(s3, { Bucket: A.bucket, Key: key });
  assert.equal(sha256(g.body), sha256(Buffer.concat(parts)), 'completed multipart object bytes (sha256)');
  assert.equal(g.out.ContentType, 'application/x-parts', 'content type given at CreateMultipartUpload');
  assert.deepEqual(g.out.Metadata, { made: 'by-hand' }, 'metadata given at CreateMultipartUpload');
  const h = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: key }));
  assert.equal(h.ETag, multipartEtag(parts), 'HeadObject ETag of the multipart object');
  assert.equal(h.ContentLength, 11 * MiB + 5, 'HeadObject size of the multipart object');
});

test('multipart errors: AbortMultipartUpload then NoSuchUpload, InvalidPart, EntityTooSmall', { timeout: 60_000 }, async () => {
  const create = async (key: string) => (await s3.send(new CreateMultipartUploadCommand({ Bucket: A.bucket, Key: key, ChecksumAlgorithm: 'CRC32' }))).UploadId!;
  const part = async (key: string, UploadId: string, PartNumber: number, body: Buffer): Promise<CompletedPart> => {
    const u: UploadPartCommandOutput = await s3.send(new UploadPartCommand({ Bucket: A.bucket, Key: key, UploadId, PartNumber, Body: body }));
    return { PartNumber, ETag: u.ETag, ChecksumCRC32: u.ChecksumCRC32 };
  };

  // Abort.
  const ab = await create('mp/aborted');
  await part('mp/aborted', ab, 1, pseudoRandomBytes('ab', KiB));
  await s3.send(new AbortMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/aborted', UploadId: ab }));
  const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: A.bucket }));
  assert.ok(!(ups.Uploads ?? []).some((u) => u.UploadId === ab), 'an aborted upload is no longer listed');
  await expectS3Error('UploadPart after abort', s3.send(new UploadPartCommand({ Bucket: A.bucket, Key: 'mp/aborted', UploadId: ab, PartNumber: 2, Body: 'x' })), { codes: ['NoSuchUpload'], status: 404 });
  await expectS3Error('ListParts after abort', s3.send(new ListPartsCommand({ Bucket: A.bucket, Key: 'mp/aborted', UploadId: ab })), { codes: ['NoSuchUpload'], status: 404 });
  await expectS3Error('UploadPart with an unknown upload id', s3.send(new UploadPartCommand({ Bucket: A.bucket, Key: 'mp/aborted', UploadId: 'no-such-upload-id', PartNumber: 1, Body: 'x' })), { codes: ['NoSuchUpload'], status: 404 });
  await expectS3Error('HeadObject of an aborted upload', s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'mp/aborted' })), { status: 404 });

  // InvalidPart: a wrong ETag, and a part that was never uploaded.
  const ip = await create('mp/invalid-part');
  const p1 = await part('mp/invalid-part', ip, 1, pseudoRandomBytes('ip', 2 * KiB));
  await expectS3Error('Complete with a wrong part ETag', s3.send(new CompleteMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/invalid-part', UploadId: ip,
    MultipartUpload: { Parts: [{ ...p1, ETag: '"00000000000000000000000000000000"' }] } })), { codes: ['InvalidPart'], status: 400 });
  await expectS3Error('Complete with a part never uploaded', s3.send(new CompleteMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/invalid-part', UploadId: ip,
    MultipartUpload: { Parts: [p1, { PartNumber: 2, ETag: p1.ETag, ChecksumCRC32: p1.ChecksumCRC32 }] } })), { codes: ['InvalidPart'], status: 400 });
  await s3.send(new AbortMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/invalid-part', UploadId: ip }));

  // EntityTooSmall: a 1 KiB part followed by another part.
  const sm = await create('mp/too-small');
  const s1 = await part('mp/too-small', sm, 1, pseudoRandomBytes('sm1', KiB));
  const s2 = await part('mp/too-small', sm, 2, pseudoRandomBytes('sm2', KiB));
  await expectS3Error('Complete with a 1 KiB first part', s3.send(new CompleteMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/too-small', UploadId: sm,
    MultipartUpload: { Parts: [s1, s2] } })), { codes: ['EntityTooSmall'], status: 400 });
  await s3.send(new AbortMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/too-small', UploadId: sm }));
  await expectS3Error('no object after a failed Complete', s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'mp/too-small' })), { status: 404 });

  // A single small part is a valid multipart upload (the last part may be small).
  const one = await create('mp/one-small-part');
  const only = await part('mp/one-small-part', one, 1, pseudoRandomBytes('one', KiB));
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: A.bucket, Key: 'mp/one-small-part', UploadId: one, MultipartUpload: { Parts: [only] } }));
  assert.equal(sha256((await getBytes(s3, { Bucket: A.bucket, Key: 'mp/one-small-part' })).body), sha256(pseudoRandomBytes('one', KiB)), 'single-part multipart bytes');
});

test('object lock: retention set, read, extended, never shortened; legal hold ON', async () => {
  const v = await put('lock/gov.txt', 'governed');
  const until = secs(Date.now() + 2 * DAY);
  await s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', Retention: { Mode: 'GOVERNANCE', RetainUntilDate: until } }));
  const r = await s3.send(new GetObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt' }));
  assert.equal(r.Retention?.Mode, 'GOVERNANCE', 'retention mode');
  assert.equal(r.Retention?.RetainUntilDate?.getTime(), until.getTime(), 'retain-until date');
  const h = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'lock/gov.txt' }));
  assert.equal(h.ObjectLockMode, 'GOVERNANCE', 'HeadObject ObjectLockMode');
  assert.equal(h.ObjectLockRetainUntilDate?.getTime(), until.getTime(), 'HeadObject ObjectLockRetainUntilDate');
  await expectS3Error('shortening GOVERNANCE', s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', Retention: { Mode: 'GOVERNANCE', RetainUntilDate: secs(Date.now() + DAY) } })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('shortening GOVERNANCE with BypassGovernanceRetention', s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: secs(Date.now() + DAY) } })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('removing retention', s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', BypassGovernanceRetention: true, Retention: {} })), { codes: ['AccessDenied'], status: 403 });
  const longer = secs(Date.now() + 3 * DAY);
  await s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', VersionId: v.VersionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: longer } }));
  const r2 = await s3.send(new GetObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', VersionId: v.VersionId }));
  assert.equal(r2.Retention?.RetainUntilDate?.getTime(), longer.getTime(), 'extended retain-until date');
  await expectS3Error('deleting a retained version', s3.send(new DeleteObjectCommand({ Bucket: A.bucket, Key: 'lock/gov.txt', VersionId: v.VersionId, BypassGovernanceRetention: true })), { codes: ['AccessDenied'], status: 403 });

  await put('lock/comp.txt', 'compliant');
  const cu = secs(Date.now() + DAY);
  await s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/comp.txt', Retention: { Mode: 'COMPLIANCE', RetainUntilDate: cu } }));
  const rc = await s3.send(new GetObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/comp.txt' }));
  assert.equal(rc.Retention?.Mode, 'COMPLIANCE', 'COMPLIANCE mode');
  assert.equal(rc.Retention?.RetainUntilDate?.getTime(), cu.getTime(), 'COMPLIANCE date');
  await expectS3Error('COMPLIANCE -> GOVERNANCE', s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/comp.txt', Retention: { Mode: 'GOVERNANCE', RetainUntilDate: secs(Date.now() + 5 * DAY) } })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('shortening COMPLIANCE', s3.send(new PutObjectRetentionCommand({ Bucket: A.bucket, Key: 'lock/comp.txt', Retention: { Mode: 'COMPLIANCE', RetainUntilDate: secs(cu.getTime() - 3_600_000) } })), { codes: ['AccessDenied'], status: 403 });

  await expectS3Error('GetObjectRetention without retention', s3.send(new GetObjectRetentionCommand({ Bucket: A.bucket, Key: 'str.txt' })), { codes: ['NoSuchObjectLockConfiguration'] });

  await put('lock/hold.txt', 'held');
  await s3.send(new PutObjectLegalHoldCommand({ Bucket: A.bucket, Key: 'lock/hold.txt', LegalHold: { Status: 'ON' } }));
  const lh = await s3.send(new GetObjectLegalHoldCommand({ Bucket: A.bucket, Key: 'lock/hold.txt' }));
  assert.equal(lh.LegalHold?.Status, 'ON', 'legal hold ON');
  const hh = await s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'lock/hold.txt' }));
  assert.equal(hh.ObjectLockLegalHoldStatus, 'ON', 'HeadObject ObjectLockLegalHoldStatus');
});

test('bucket reads allowed (versioning, object lock, location, head, list buckets); bucket writes refused', async () => {
  const v = await s3.send(new GetBucketVersioningCommand({ Bucket: A.bucket }));
  assert.equal(v.Status, 'Enabled', 'GetBucketVersioning');
  const ol = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: A.bucket }));
  assert.equal(ol.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled', 'GetObjectLockConfiguration');
  const loc = await s3.send(new GetBucketLocationCommand({ Bucket: A.bucket }));
  assert.ok(loc.LocationConstraint === undefined || (loc.LocationConstraint as string) === '' || (loc.LocationConstraint as string) === 'us-east-1', `GetBucketLocation: ${loc.LocationConstraint}`);
  const hb = await s3.send(new HeadBucketCommand({ Bucket: A.bucket }));
  assert.equal(hb.$metadata.httpStatusCode, 200, 'HeadBucket');
  const lb = await s3.send(new ListBucketsCommand({}));
  assert.deepEqual((lb.Buckets ?? []).map((b) => b.Name), [A.bucket], 'ListBuckets shows only the server bucket');

  await expectS3Error('PutBucketVersioning Suspended', s3.send(new PutBucketVersioningCommand({ Bucket: A.bucket, VersioningConfiguration: { Status: 'Suspended' } })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('PutObjectLockConfiguration', s3.send(new PutObjectLockConfigurationCommand({ Bucket: A.bucket, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } } })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('DeleteBucket', s3.send(new DeleteBucketCommand({ Bucket: A.bucket })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('CreateBucket with server credentials', s3.send(new CreateBucketCommand({ Bucket: `sdk-new-${process.pid}` })), { codes: ['AccessDenied'], status: 403 });
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: A.bucket }))).Status, 'Enabled', 'versioning still Enabled');
});

test("cross-bucket: every operation on another server's bucket is AccessDenied, audited with the caller's source", async () => {
  const denied = { codes: ['AccessDenied'], status: 403 };
  const Bk = B.bucket;
  const e = await expectS3Error('GetObject in B', s3.send(new GetObjectCommand({ Bucket: Bk, Key: 'b-secret.txt' })), denied);
  assert.ok(e.$metadata?.requestId, 'S3 errors carry a request id');
  await expectS3Error('PutObject in B', s3.send(new PutObjectCommand({ Bucket: Bk, Key: 'intruder', Body: 'x' })), denied);
  await expectS3Error('PutObject over B\'s key', s3.send(new PutObjectCommand({ Bucket: Bk, Key: 'b-secret.txt', Body: 'x' })), denied);
  await expectS3Error('ListObjectsV2 of B', s3.send(new ListObjectsV2Command({ Bucket: Bk })), denied);
  await expectS3Error('ListObjects of B', s3.send(new ListObjectsCommand({ Bucket: Bk })), denied);
  await expectS3Error('ListObjectVersions of B', s3.send(new ListObjectVersionsCommand({ Bucket: Bk })), denied);
  await expectS3Error('HeadObject in B', s3.send(new HeadObjectCommand({ Bucket: Bk, Key: 'b-secret.txt' })), { status: 403 });
  await expectS3Error('HeadBucket of B', s3.send(new HeadBucketCommand({ Bucket: Bk })), { status: 403 });
  await expectS3Error('DeleteObject in B', s3.send(new DeleteObjectCommand({ Bucket: Bk, Key: 'b-secret.txt' })), denied);
  await expectS3Error('DeleteObjects in B', s3.send(new DeleteObjectsCommand({ Bucket: Bk, Delete: { Objects: [{ Key: 'b-secret.txt' }] } })), denied);
  await expectS3Error('CopyObject from B into A', s3.send(new CopyObjectCommand({ Bucket: A.bucket, Key: 'stolen', CopySource: `${Bk}/b-secret.txt` })), denied);
  await expectS3Error('CopyObject from A into B', s3.send(new CopyObjectCommand({ Bucket: Bk, Key: 'planted', CopySource: `${A.bucket}/str.txt` })), denied);
  await expectS3Error('CreateMultipartUpload in B', s3.send(new CreateMultipartUploadCommand({ Bucket: Bk, Key: 'mp' })), denied);
  await expectS3Error('ListMultipartUploads of B', s3.send(new ListMultipartUploadsCommand({ Bucket: Bk })), denied);
  await expectS3Error('GetBucketVersioning of B', s3.send(new GetBucketVersioningCommand({ Bucket: Bk })), denied);
  await expectS3Error('GetObjectRetention in B', s3.send(new GetObjectRetentionCommand({ Bucket: Bk, Key: 'b-secret.txt' })), denied);
  await expectS3Error('PutObjectLegalHold in B', s3.send(new PutObjectLegalHoldCommand({ Bucket: Bk, Key: 'b-secret.txt', LegalHold: { Status: 'ON' } })), denied);
  await expectS3Error('PutObjectRetention in B', s3.send(new PutObjectRetentionCommand({ Bucket: Bk, Key: 'b-secret.txt', Retention: { Mode: 'COMPLIANCE', RetainUntilDate: secs(Date.now() + 3650 * DAY) } })), denied);
  await expectS3Error('a bucket that does not exist', s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket-shelter', Key: 'k' })), { codes: ['NoSuchBucket', 'AccessDenied'] });
  await expectS3Error('copy stolen object must not exist', s3.send(new HeadObjectCommand({ Bucket: A.bucket, Key: 'stolen' })), { status: 404 });

  // B's bucket is untouched.
  const lv = await s3B.send(new ListObjectVersionsCommand({ Bucket: Bk }));
  assert.deepEqual((lv.Versions ?? []).map((x) => x.Key), ['b-secret.txt'], `B holds only its object: ${JSON.stringify(lv.Versions)}`);
  assert.equal(lv.DeleteMarkers, undefined, 'no delete marker in B');
  assert.equal((await getBytes(s3B, { Bucket: Bk, Key: 'b-secret.txt' })).body.toString(), 'belongs to B', "B's bytes");
  try {
    const lh = await s3B.send(new GetObjectLegalHoldCommand({ Bucket: Bk, Key: 'b-secret.txt' }));
    assert.notEqual(lh.LegalHold?.Status, 'ON', 'A must not have set a legal hold in B');
  } catch (err) {
    assert.equal((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 404, `GetObjectLegalHold of an object without a hold: ${(err as Error).message}`);
  }
  try {
    const rt = await s3B.send(new GetObjectRetentionCommand({ Bucket: Bk, Key: 'b-secret.txt' }));
    assert.equal(rt.Retention?.Mode, undefined, 'A must not have set a retention in B');
  } catch (err) {
    assert.equal((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 404, `GetObjectRetention of an object without retention: ${(err as Error).message}`);
  }

  // The audit log has each refusal with A's source, and the request id the client saw.
  const recs = auditRecords(gw.dataDir);
  const rec = recs.find((r) => r.requestId === e.$metadata?.requestId);
  assert.ok(rec, `audit: no record with the request id of the refused GetObject (${e.$metadata?.requestId})`);
  assert.deepEqual({ source: rec.source, operation: rec.operation, bucket: rec.bucket, key: rec.key, status: rec.status, error: rec.error },
    { source: `server:${A.id}`, operation: 'GetObject', bucket: Bk, key: 'b-secret.txt', status: 403, error: 'AccessDenied' }, 'audit record of the refused GetObject');
  const onB = recs.filter((r) => r.source === `server:${A.id}` && r.bucket === Bk);
  const ops = new Set(onB.map((r) => r.operation));
  for (const o of ['GetObject', 'PutObject', 'ListObjectsV2', 'ListObjects', 'ListObjectVersions', 'HeadObject', 'HeadBucket', 'DeleteObject', 'DeleteObjects',
    'CreateMultipartUpload', 'ListMultipartUploads', 'GetBucketVersioning', 'GetObjectRetention', 'PutObjectLegalHold', 'PutObjectRetention', 'CopyObject']) {
    assert.ok(ops.has(o), `audit: refused ${o} of A on B's bucket missing (seen: ${[...ops].sort().join(', ')})`);
  }
  assert.ok(onB.every((r) => r.status === 403), `audit: all of A's requests on B were refused: ${JSON.stringify(onB.filter((r) => r.status !== 403))}`);
});

test('operator key: CreateBucket, HeadBucket, ListBuckets, DeleteBucket of an empty bucket', async () => {
  const name = `op-bucket-${process.pid}`;
  await s3Op.send(new CreateBucketCommand({ Bucket: name }));
  assert.equal((await s3Op.send(new HeadBucketCommand({ Bucket: name }))).$metadata.httpStatusCode, 200, 'HeadBucket of the new bucket');
  const lb = await s3Op.send(new ListBucketsCommand({}));
  const names = (lb.Buckets ?? []).map((b) => b.Name);
  for (const n of [A.bucket, B.bucket, name]) assert.ok(names.includes(n), `operator ListBuckets includes ${n}: ${JSON.stringify(names)}`);
  await expectS3Error('HeadBucket of a missing bucket', s3Op.send(new HeadBucketCommand({ Bucket: 'no-such-bucket-shelter' })), { status: 404 });
  await expectS3Error('server key on the operator bucket', s3.send(new ListObjectsV2Command({ Bucket: name })), { codes: ['AccessDenied'], status: 403 });
  await expectS3Error('operator DeleteBucket of a bucket holding versions', s3Op.send(new DeleteBucketCommand({ Bucket: A.bucket })), { codes: ['BucketNotEmpty', 'AccessDenied'] });
  await s3Op.send(new DeleteBucketCommand({ Bucket: name }));
  await expectS3Error('HeadBucket after DeleteBucket', s3Op.send(new HeadBucketCommand({ Bucket: name })), { status: 404 });
});

// the gateway's virtual-hosted domain is s3.localhost (plus --name values): TLS clients refuse a
// "*.localhost" wildcard, one label below a top-level name, so BUCKET.localhost cannot be served
for (const base of ['s3.localhost']) {
  test(`virtual-hosted-style addressing: https://BUCKET.${base}:PORT`, async () => {
    // the gateway certificate must cover BUCKET.base
    const host = `${A.bucket}.${base}`;
    const peer = await new Promise<tls.PeerCertificate>((res, rej) => {
      const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername: host, ca: gw.caPem, rejectUnauthorized: false }, () => { res(sock.getPeerCertificate()); sock.end(); });
      sock.on('error', rej);
    });
    const mismatch = tls.checkServerIdentity(host, peer);
    assert.equal(mismatch, undefined, `the gateway certificate must cover ${host} (SAN: ${peer.subjectaltname}): ${mismatch?.message}`);

    const requests: SeenRequest[] = [];
    const v = s3Client(gw, A, { endpoint: `https://${base}:${gw.port}`, forcePathStyle: false, lookup: loopbackLookup });
    record(v, requests);
    try {
      const key = `vhost/${base}/x y+z.txt`;
      const p = await v.send(new PutObjectCommand({ Bucket: A.bucket, Key: key, Body: `via ${base}` }));
      assert.equal(requests[0]?.hostname, host, 'the SDK used virtual-hosted addressing');
      assert.ok(!requests[0]?.path.startsWith(`/${A.bucket}`), `no bucket in the path: ${requests[0]?.path}`);
      assert.equal((await getBytes(v, { Bucket: A.bucket, Key: key })).body.toString(), `via ${base}`, 'GetObject via virtual host');
      const l = await v.send(new ListObjectsV2Command({ Bucket: A.bucket, Prefix: `vhost/${base}/` }));
      assert.deepEqual((l.Contents ?? []).map((o) => o.Key), [key], 'ListObjectsV2 via virtual host');
      const lv = await v.send(new ListObjectVersionsCommand({ Bucket: A.bucket, Prefix: `vhost/${base}/` }));
      assert.deepEqual((lv.Versions ?? []).map((o) => o.VersionId), [p.VersionId], 'ListObjectVersions via virtual host');
      assert.equal((await v.send(new HeadBucketCommand({ Bucket: A.bucket }))).$metadata.httpStatusCode, 200, 'HeadBucket via virtual host');
      await expectS3Error(`GetObject in B via ${B.bucket}.${base}`, v.send(new GetObjectCommand({ Bucket: B.bucket, Key: 'b-secret.txt' })), { codes: ['AccessDenied'], status: 403 });
      // Also readable path-style: same object.
      assert.equal((await getBytes(s3, { Bucket: A.bucket, Key: key })).body.toString(), `via ${base}`, 'the same object path-style');
      const rec = auditRecords(gw.dataDir).find((r) => r.operation === 'PutObject' && r.key === key);
      assert.ok(rec && rec.bucket === A.bucket && rec.source === `server:${A.id}` && rec.versionId === p.VersionId, `audit record of the virtual-hosted PutObject: ${JSON.stringify(rec)}`);
    } finally {
      v.destroy();
    }
  });
}

test('audit log: uploads recorded with key, version and bytes; no 5xx', () => {
  const recs = auditRecords(gw.dataDir);
  const p = recs.find((r) => r.operation === 'PutObject' && r.key === 'buf.bin' && r.status === 200);
  assert.ok(p, 'audit: PutObject buf.bin');
  assert.equal(p.source, `server:${A.id}`, 'source');
  assert.equal(p.bucket, A.bucket, 'bucket');
  assert.equal(p.bytes, bufBody.length, 'bytes of the upload');
  assert.ok(p.versionId, 'versionId');
  const g = recs.find((r) => r.operation === 'GetObject' && r.key === 'buf.bin' && r.status === 200);
  assert.ok(g && g.bytes === bufBody.length, `audit: GetObject buf.bin with its bytes: ${JSON.stringify(g)}`);
  const seqs = recs.map((r) => r.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'records in sequence order');
  assert.equal(new Set(seqs).size, seqs.length, 'unique sequence numbers');
  assert.deepEqual(recs.filter((r) => r.status >= 500), [], 'no request may end in a 5xx');
});
