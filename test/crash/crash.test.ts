// Crash tests (issue 2, item 9 and "How we will know"): kill -9 of shelterd during single PUTs of
// large bodies, during multipart uploads (between parts, in the middle of a part, during
// CompleteMultipartUpload) and during concurrent small PUTs; then restart on the same data
// directory and check:
//   - ListObjectVersions shows only completed versions: everything acknowledged (200) before the
//     kill is there and byte-identical; a write that was in flight is either entirely there
//     (byte-identical) or not there at all; nothing partial is visible;
//   - acknowledged parts of an open multipart upload survive and the upload can be completed;
//   - no leftovers of unfinished writes remain (temp/pending files, orphan data on disk);
//   - `shelterd fsck` exits 0 and `shelterd audit verify` passes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, removeDir, shelterd, startGateway, tempDir, type Gateway, type S3Credentials, filesUnder } from '../lib/gateway.ts';
import { RawS3, listAllVersions, sha256Hex, xmlBlocks, xmlValue, type RawResponse } from '../lib/raw-s3.ts';

const MiB = 1024 * 1024;

let dataDir: string;
let gw: Gateway;
let S: S3Credentials & { id: string };
let s3: RawS3;

/** versionId -> what was acknowledged */
const acked = new Map<string, { key: string; sha: string; size: number }>();
/** writes in flight at a kill, not acknowledged: may appear (complete) or not at all */
let maybe: { key: string; sha: string; size: number }[] = [];

const show = (r: RawResponse) => `${r.status} ${r.code ?? '-'} ${r.text.slice(0, 300)}`;
const md5Hex = (b: Buffer) => createHash('md5').update(b).digest('hex');

function uniqueData(size: number, tag: string): Buffer {
  const b = randomBytes(size);
  b.write(`${tag}:`, 0);
  return b;
}

async function start(): Promise<void> {
  gw = await startGateway({ dataDir });
  s3 = new RawS3({ endpoint: gw.url, ca: gw.caPem, credentials: S });
}

/** Streams `data` as the body of a signed request, 1 MiB at a time; `onProgress(bytesWritten)` after each. */
async function* slowly(data: Buffer, onProgress: (n: number) => Promise<void> | void, pauseMs = 3): AsyncIterable<Buffer> {
  for (let off = 0; off < data.length; off += MiB) {
    const chunk = data.subarray(off, Math.min(off + MiB, data.length));
    yield chunk;
    await onProgress(off + chunk.length);
    if (pauseMs) await sleep(pauseMs);
  }
}

interface Outcome { r?: RawResponse; err?: Error }
const settle = (p: Promise<RawResponse>): Promise<Outcome> => p.then((r) => ({ r }), (err: Error) => ({ err }));

/** A PUT (or UploadPart) whose body is streamed; the gateway is killed once `killAt` bytes are written. */
async function putAndKill(key: string, data: Buffer, killAt: number, query: Record<string, string> = {}): Promise<Outcome> {
  const req = await s3.sign({ method: 'PUT', bucket: S.bucket, key, query, payload: sha256Hex(data), headers: { 'content-length': String(data.length) } });
  let killed: Promise<void> | null = null;
  const kill = () => { killed ??= gw.kill9(); return killed; };
  const out = settle(s3.send(req, {
    timeoutMs: 60_000,
    bodyStream: slowly(data, async (n) => { if (n >= killAt) await kill(); }),
  }));
  const o = await out;
  await kill(); // in case the response came first
  return o;
}

async function putAcked(key: string, data: Buffer): Promise<string> {
  const r = await s3.request({ method: 'PUT', bucket: S.bucket, key, body: data });
  assert.equal(r.status, 200, `PUT ${key}: ${show(r)}`);
  const v = r.headers['x-amz-version-id'] as string;
  acked.set(v, { key, sha: sha256Hex(data), size: data.length });
  return v;
}

function recordOutcome(o: Outcome, key: string, data: Buffer): void {
  if (o.r?.status === 200 && o.r.headers['x-amz-version-id']) {
    acked.set(o.r.headers['x-amz-version-id'] as string, { key, sha: sha256Hex(data), size: data.length });
  } else {
    maybe.push({ key, sha: sha256Hex(data), size: data.length });
  }
}

// ---- multipart helpers ------------------------------------------------------------------------

async function createUpload(key: string): Promise<string> {
  const r = await s3.request({ method: 'POST', bucket: S.bucket, key, query: { uploads: '' } });
  assert.equal(r.status, 200, `CreateMultipartUpload: ${show(r)}`);
  return xmlValue(r.text, 'UploadId')!;
}

async function uploadPart(key: string, uploadId: string, n: number, data: Buffer): Promise<string> {
  const r = await s3.request({ method: 'PUT', bucket: S.bucket, key, query: { partNumber: String(n), uploadId }, body: data });
  assert.equal(r.status, 200, `UploadPart ${n}: ${show(r)}`);
  const etag = r.headers['etag'] as string;
  assert.equal(etag.replace(/"/g, ''), md5Hex(data), `ETag of part ${n}`);
  return etag;
}

function completeBody(etags: string[]): string {
  return `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
}

async function complete(key: string, uploadId: string, etags: string[]): Promise<RawResponse> {
  return s3.request({ method: 'POST', bucket: S.bucket, key, query: { uploadId }, body: completeBody(etags) });
}

async function listParts(key: string, uploadId: string): Promise<{ status: number; parts: { n: number; etag: string; size: number }[] }> {
  const r = await s3.request({ method: 'GET', bucket: S.bucket, key, query: { uploadId } });
  if (r.status !== 200) return { status: r.status, parts: [] };
  return {
    status: 200,
    parts: xmlBlocks(r.text, 'Part').map((p) => ({ n: Number(xmlValue(p, 'PartNumber')), etag: xmlValue(p, 'ETag')!.replace(/"/g, ''), size: Number(xmlValue(p, 'Size')) })),
  };
}

async function openUploads(): Promise<{ key: string; uploadId: string }[]> {
  const r = await s3.request({ method: 'GET', bucket: S.bucket, query: { uploads: '' } });
  assert.equal(r.status, 200, `ListMultipartUploads: ${show(r)}`);
  return xmlBlocks(r.text, 'Upload').map((u) => ({ key: xmlValue(u, 'Key')!, uploadId: xmlValue(u, 'UploadId')! }));
}

// ---- checks after a restart --------------------------------------------------------------------

/** versions whose bytes were already read back after a crash (later checks compare listing and size) */
const readBack = new Set<string>();

/**
 * Only completed versions are visible; every acknowledged one is there, byte for byte. Each version
 * is read back in full the first time (and on `full`); afterwards its listing (key, size) is checked.
 */
async function checkVersions(label: string, full = false): Promise<void> {
  const listed = (await listAllVersions(s3, S.bucket)).filter((v) => !v.deleteMarker);
  const seen = new Set<string>();
  for (const v of listed) {
    seen.add(v.versionId);
    const known = acked.get(v.versionId);
    if (known && readBack.has(v.versionId) && !full) {
      assert.equal(v.key, known.key, `${label}: version ${v.versionId} moved to another key`);
      assert.equal(v.size, known.size, `${label}: ${known.key}@${v.versionId} listed with another size`);
      continue;
    }
    readBack.add(v.versionId);
    const g = await s3.request({ method: 'GET', bucket: S.bucket, key: v.key, query: { versionId: v.versionId } });
    assert.equal(g.status, 200, `${label}: listed version ${v.key}@${v.versionId} is not readable: ${show(g)}`);
    assert.equal(g.body.length, v.size, `${label}: ${v.key}@${v.versionId} listed size ${v.size}, read ${g.body.length}`);
    const sha = sha256Hex(g.body);
    const a = acked.get(v.versionId);
    if (a) {
      assert.equal(v.key, a.key, `${label}: version ${v.versionId} moved to another key`);
      assert.equal(sha, a.sha, `${label}: acknowledged ${a.key}@${v.versionId} is not byte-identical`);
      continue;
    }
    const m = maybe.find((x) => x.key === v.key && x.sha === sha && x.size === g.body.length);
    assert.ok(m, `${label}: a version that was never acknowledged and is not a complete in-flight write is visible: ${v.key}@${v.versionId} size ${v.size} (partial write?)`);
    // it exists now: from here on it must stay
    acked.set(v.versionId, { key: v.key, sha, size: g.body.length });
  }
  for (const [vid, a] of acked) assert.ok(seen.has(vid), `${label}: acknowledged version ${a.key}@${vid} lost after kill -9`);
  const latest = await s3.request({ method: 'GET', bucket: S.bucket, query: { 'list-type': '2' } });
  assert.equal(latest.status, 200, show(latest));
  const listedKeys = new Set(xmlBlocks(latest.text, 'Contents').map((c) => xmlValue(c, 'Key')));
  for (const a of acked.values()) assert.ok(listedKeys.has(a.key), `${label}: ${a.key} missing from ListObjectsV2`);
}


const TEMP_DIR = /^(tmp|temp|pending|partial|incoming|staging|\.tmp)$/i;
const TEMP_NAME = /(\.tmp|\.partial|\.part|\.inprogress)(-|\.|$)|~$/i;

function leftovers(): string[] {
  return filesUnder(dataDir).filter((p) => {
    const rel = relative(dataDir, p);
    const parts = rel.split(sep);
    return parts.slice(0, -1).some((d) => TEMP_DIR.test(d)) || TEMP_NAME.test(parts[parts.length - 1]!);
  });
}

/** No leftovers of unfinished writes anywhere in the data directory. */
function checkNoLeftovers(label: string): void {
  const bad = leftovers();
  assert.deepEqual(bad.map((p) => relative(dataDir, p)), [], `${label}: leftovers of unfinished writes`);
}

/** Bytes on disk (outside the metadata DB, TLS and keys) are no more than what is stored: no orphan data. */
async function checkNoOrphanBytes(label: string): Promise<void> {
  let stored = 0;
  for (const a of acked.values()) stored += a.size;
  for (const u of await openUploads()) for (const p of (await listParts(u.key, u.uploadId)).parts) stored += p.size;
  let onDisk = 0;
  const counted: string[] = [];
  for (const p of filesUnder(dataDir)) {
    const rel = relative(dataDir, p);
    if (/^meta\.db/.test(rel) || rel.startsWith(`tls${sep}`) || /\.key$|\.pem$/.test(rel)) continue;
    const size = statSync(p).size;
    onDisk += size;
    if (size > MiB) counted.push(`${rel} (${size})`);
  }
  assert.ok(onDisk <= stored + 2 * MiB,
    `${label}: ${onDisk} bytes of data files on disk, but only ${stored} bytes are stored (versions + open parts): orphan data of an unfinished write? large files: ${counted.join(', ')}`);
}

/** Stops the gateway gracefully, runs fsck and audit verify, checks leftovers, restarts. */
function offlineChecks(label: string): void {
  const f = shelterd(['fsck', '--data', dataDir]);
  assert.equal(f.status, 0, `${label}: fsck: ${f.stdout}${f.stderr}`);
  const v = shelterd(['audit', 'verify', '--data', dataDir]);
  assert.equal(v.status, 0, `${label}: audit verify: ${v.stdout}${v.stderr}`);
  checkNoLeftovers(`${label} (stopped)`);
}

async function afterCrash(label: string, extra?: () => Promise<void>): Promise<void> {
  // evidence that the kill landed mid-write: what the dead process left behind
  const left = leftovers();
  console.log(`# ${label}: ${left.length} unfinished-write file(s) left by the killed process (${left.slice(0, 3).map((p) => `${relative(dataDir, p)}: ${statSync(p).size} B`).join(', ')}${left.length > 3 ? ', ...' : ''})`);
  await start();
  checkNoLeftovers(`${label} (after restart)`);
  await checkVersions(label);
  if (extra) await extra();
  if (extra) await checkVersions(`${label}, after follow-up`);
  await checkNoOrphanBytes(label);
  maybe = [];
  await gw.stop();
  offlineChecks(label);
  await start();
}

// =================================================================================================

describe('crash: kill -9 during uploads, then restart', { timeout: 120_000 }, () => {
  before(async () => {
    dataDir = tempDir('shelter-crash-');
    gw = await startGateway({ dataDir });
    S = createServer(dataDir, 'crashy');
    s3 = new RawS3({ endpoint: gw.url, ca: gw.caPem, credentials: S });
    await putAcked('base/one.txt', Buffer.from('baseline one'));
    await putAcked('base/two.bin', uniqueData(3 * MiB, 'base2'));
    await putAcked('base/one.txt', Buffer.from('baseline one, version 2'));
  });

  after(async () => {
    await gw?.kill9();
    if (process.env.KEEP_TEST_DATA) console.log(`data kept in ${dataDir}`);
    else if (dataDir) removeDir(dataDir);
  });

  // kill points inside a 64 MiB single PUT: early, middle, and right after the last byte was sent
  for (const [i, killAtMiB] of [[1, 8], [2, 40], [3, 64]] as const) {
    it(`single 64 MiB PUT, kill -9 after ${killAtMiB} MiB sent`, async () => {
      await putAcked(`single-${i}/before.txt`, Buffer.from(`acked before trial ${i}`));
      const data = uniqueData(64 * MiB, `single-${i}`);
      const o = await putAndKill(`single-${i}/big.bin`, data, killAtMiB * MiB);
      recordOutcome(o, `single-${i}/big.bin`, data);
      if (killAtMiB < 64) assert.ok(!o.r || o.r.status !== 200, `the PUT cannot have been acknowledged after ${killAtMiB} of 64 MiB`);
      await afterCrash(`single PUT trial ${i}`, async () => {
        // the same key still works after the crash
        await putAcked(`single-${i}/big.bin`, data.subarray(0, 2 * MiB));
      });
    });
  }

  it('multipart: kill -9 between parts; acknowledged parts survive and the upload completes', async () => {
    const key = 'mpu-between/obj.bin';
    const parts = [uniqueData(5 * MiB, 'b1'), uniqueData(5 * MiB, 'b2'), uniqueData(1 * MiB, 'b3')];
    const uploadId = await createUpload(key);
    const etags = [await uploadPart(key, uploadId, 1, parts[0]!), await uploadPart(key, uploadId, 2, parts[1]!)];
    await gw.kill9();
    await afterCrash('multipart between parts', async () => {
      const lp = await listParts(key, uploadId);
      assert.equal(lp.status, 200, 'the upload survives the crash');
      assert.deepEqual(lp.parts.map((p) => [p.n, p.etag, p.size]), [[1, md5Hex(parts[0]!), 5 * MiB], [2, md5Hex(parts[1]!), 5 * MiB]]);
      etags.push(await uploadPart(key, uploadId, 3, parts[2]!));
      const c = await complete(key, uploadId, etags);
      assert.equal(c.status, 200, `complete after restart: ${show(c)}`);
      assert.ok(!/<Error>/.test(c.text), show(c));
      const all = Buffer.concat(parts);
      const head = await s3.request({ method: 'HEAD', bucket: S.bucket, key });
      acked.set(head.headers['x-amz-version-id'] as string, { key, sha: sha256Hex(all), size: all.length });
    });
  });

  for (const [i, killAtMiB] of [[1, 3], [2, 6]] as const) {
    it(`multipart: kill -9 in the middle of part 2 (after ${killAtMiB} of 8 MiB)`, async () => {
      const key = `mpu-mid-${i}/obj.bin`;
      const parts = [uniqueData(5 * MiB, `m${i}1`), uniqueData(8 * MiB, `m${i}2`), uniqueData(MiB, `m${i}3`)];
      const uploadId = await createUpload(key);
      const e1 = await uploadPart(key, uploadId, 1, parts[0]!);
      const o = await putAndKill(key, parts[1]!, killAtMiB * MiB, { partNumber: '2', uploadId });
      assert.ok(!o.r || o.r.status !== 200, 'part 2 cannot have been acknowledged');
      await afterCrash(`multipart mid-part ${i}`, async () => {
        const lp = await listParts(key, uploadId);
        assert.equal(lp.status, 200, 'the upload survives the crash');
        assert.deepEqual(lp.parts.map((p) => [p.n, p.etag]), [[1, md5Hex(parts[0]!)]], `only the acknowledged part is listed: ${JSON.stringify(lp.parts)}`);
        const vs = (await listAllVersions(s3, S.bucket, key)).filter((v) => v.key === key);
        assert.deepEqual(vs, [], 'no version of an uncompleted multipart object');
        const e2 = await uploadPart(key, uploadId, 2, parts[1]!);
        const e3 = await uploadPart(key, uploadId, 3, parts[2]!);
        const c = await complete(key, uploadId, [e1, e2, e3]);
        assert.equal(c.status, 200, show(c));
        assert.ok(!/<Error>/.test(c.text), show(c));
        const all = Buffer.concat(parts);
        const head = await s3.request({ method: 'HEAD', bucket: S.bucket, key });
        acked.set(head.headers['x-amz-version-id'] as string, { key, sha: sha256Hex(all), size: all.length });
      });
    });
  }

  for (const [i, delayMs] of [[1, 0], [2, 4], [3, 15]] as const) {
    it(`multipart: kill -9 during CompleteMultipartUpload (${delayMs} ms after sending it)`, async () => {
      const key = `mpu-complete-${i}/obj.bin`;
      const parts = [uniqueData(5 * MiB, `c${i}1`), uniqueData(5 * MiB, `c${i}2`), uniqueData(5 * MiB, `c${i}3`)];
      const all = Buffer.concat(parts);
      const uploadId = await createUpload(key);
      const etags: string[] = [];
      for (const [n, p] of parts.entries()) etags.push(await uploadPart(key, uploadId, n + 1, p));
      const pending = settle(complete(key, uploadId, etags));
      if (delayMs) await sleep(delayMs); else await new Promise((res) => setImmediate(res));
      await gw.kill9();
      const o = await pending;
      const ackedComplete = o.r?.status === 200 && !/<Error>/.test(o.r.text);
      if (ackedComplete) acked.set(o.r!.headers['x-amz-version-id'] as string, { key, sha: sha256Hex(all), size: all.length });
      else maybe.push({ key, sha: sha256Hex(all), size: all.length });
      console.log(`# complete trial ${i}: ${ackedComplete ? 'acknowledged before the kill' : `not acknowledged (${o.err?.message ?? o.r?.status})`}`);
      await afterCrash(`multipart complete ${i}`, async () => {
        const vs = (await listAllVersions(s3, S.bucket, key)).filter((v) => v.key === key && !v.deleteMarker);
        const lp = await listParts(key, uploadId);
        console.log(`# complete trial ${i}: after restart the object is ${vs.length === 1 ? 'visible (committed before the kill)' : 'absent and the upload still open'}`);
        if (vs.length === 1) {
          assert.notEqual(lp.status, 200, 'the object is complete, so its upload must be gone (atomic commit)');
        } else {
          assert.equal(vs.length, 0);
          assert.ok(!ackedComplete);
          assert.equal(lp.status, 200, 'the object is absent, so the upload must still be open with its parts');
          assert.deepEqual(lp.parts.map((p) => [p.n, p.etag]), parts.map((p, n) => [n + 1, md5Hex(p)]));
          const c = await complete(key, uploadId, etags);
          assert.equal(c.status, 200, show(c));
          assert.ok(!/<Error>/.test(c.text), show(c));
          const head = await s3.request({ method: 'HEAD', bucket: S.bucket, key });
          acked.set(head.headers['x-amz-version-id'] as string, { key, sha: sha256Hex(all), size: all.length });
        }
        assert.deepEqual(await openUploads(), [], 'no upload left open');
      });
    });
  }

  it('kill -9 during 24 concurrent small PUTs (group commit)', async () => {
    const datas = Array.from({ length: 24 }, (_, i) => uniqueData(64 * 1024 + i, `conc${i}`));
    const sends = datas.map((d, i) => settle(s3.request({ method: 'PUT', bucket: S.bucket, key: `conc/${i}.bin`, body: d })));
    // kill as soon as the first PUT is acknowledged, while the others are in flight (or after 2 s)
    await Promise.race([...sends.map((p) => p.then((o) => { if (o.r?.status !== 200) return new Promise(() => {}); })), sleep(2000)]);
    await gw.kill9();
    const outs = await Promise.all(sends);
    let n = 0;
    outs.forEach((o, i) => { recordOutcome(o, `conc/${i}.bin`, datas[i]!); if (o.r?.status === 200) n++; });
    console.log(`# concurrent trial: ${n} of 24 acknowledged before the kill`);
    await afterCrash('concurrent small PUTs');
  });

  it('final state: fsck clean, audit chain intact, no leftovers', async () => {
    await checkVersions('final', true);
    await gw.stop();
    offlineChecks('final');
    await start();
  });
});
