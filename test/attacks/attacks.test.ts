// Attack tests (issue 2, "How we will know"; PRODUCT.md G1, G5, G6, G7). Every attack must be
// refused with the code AWS would return AND be present in the audit log with its source and
// error. At the end, every object written legitimately is still intact and the audit log verifies.
//
// The data directory sits deep inside a private sandbox, so that a gateway that wrongly let a key
// like `../../etc/passwd` reach the filesystem would write inside the sandbox (where the test
// looks for it), never onto the machine.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DatabaseSync } from 'node:sqlite';
import {
  auditRecords, createOperatorKey, createServer, removeDir, shelterd, startGateway,
  type AuditRecord, type Gateway, type S3Credentials, filesUnder } from '../lib/gateway.ts';
import {
  RawS3, crc32Base64, encodeSignedChunks, listAllVersions, md5Base64, sha256Hex, signChunks, signTrailer,
  xmlBlocks, xmlValue, type RawResponse, type SignedRequest,
} from '../lib/raw-s3.ts';

type Server = S3Credentials & { id: string; name: string };

let sandbox: string;
let dataDir: string;
let gw: Gateway;
let A: Server; let B: Server; let C: Server; let D: Server;
let s3A: RawS3; let s3B: RawS3; let anon: RawS3;
let opKey: { accessKeyId: string; secretAccessKey: string };
const secretB = `BRAVO-SECRET-${randomBytes(8).toString('hex')}`;

/** Every object written legitimately: checked byte for byte at the end. */
const legit: { client: () => RawS3; bucket: string; key: string; versionId: string; sha: string; size: number }[] = [];

const show = (r: RawResponse) => `${r.status} ${r.code ?? '-'} ${r.text.slice(0, 400)}`;

function client(creds: { accessKeyId: string; secretAccessKey: string } | undefined): RawS3 {
  return new RawS3({ endpoint: gw.url, ca: gw.caPem, credentials: creds });
}

async function put(s3: RawS3, bucket: string, key: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return s3.request({ method: 'PUT', bucket, key, body, headers });
}

/** A legitimate PUT: must succeed; remembered for the final integrity check. */
async function putLegit(who: () => RawS3, bucket: string, key: string, body: Buffer | string): Promise<string> {
  const r = await put(who(), bucket, key, body);
  assert.equal(r.status, 200, `legit PUT ${bucket}/${key}: ${show(r)}`);
  const versionId = r.headers['x-amz-version-id'] as string;
  assert.ok(versionId, 'PUT response carries x-amz-version-id');
  legit.push({ client: who, bucket, key, versionId, sha: sha256Hex(body), size: Buffer.byteLength(body) });
  return versionId;
}

function remember(who: () => RawS3, bucket: string, key: string, r: RawResponse, body: Buffer | string): void {
  const versionId = r.headers['x-amz-version-id'] as string;
  assert.ok(versionId, `x-amz-version-id on ${key}`);
  legit.push({ client: who, bucket, key, versionId, sha: sha256Hex(body), size: Buffer.byteLength(body) });
}

/** Versions (and delete markers) of exactly `key` in `bucket`, seen by its owner. */
async function versionsOf(owner: RawS3, bucket: string, key: string) {
  return (await listAllVersions(owner, bucket, key)).filter((v) => v.key === key);
}

async function assertNothingStored(owner: RawS3, bucket: string, key: string, what: string): Promise<void> {
  const vs = await versionsOf(owner, bucket, key);
  assert.deepEqual(vs, [], `${what}: no version may exist for ${key}, found ${JSON.stringify(vs)}`);
  const h = await owner.request({ method: 'HEAD', bucket, key });
  assert.equal(h.status, 404, `${what}: HEAD ${key} after the refused write`);
}

function assertRefused(r: RawResponse, status: number | number[], code: string | string[] | null, what: string): void {
  const statuses = Array.isArray(status) ? status : [status];
  assert.ok(statuses.includes(r.status), `${what}: expected HTTP ${statuses.join('|')}, got ${show(r)}`);
  if (code !== null) {
    const codes = Array.isArray(code) ? code : [code];
    assert.ok(r.code !== null && codes.includes(r.code), `${what}: expected <Code>${codes.join('|')}</Code>, got ${show(r)}`);
  }
}

// ---- audit ----------------------------------------------------------------------------------

let auditCache: AuditRecord[] = [];
async function auditOf(r: RawResponse, what: string): Promise<AuditRecord[]> {
  assert.ok(r.requestId, `${what}: the response carries no request id (x-amz-request-id / <RequestId>): ${show(r)}`);
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = auditCache.filter((a) => a.requestId === r.requestId);
    if (found.length) return found;
    if (Date.now() > deadline) assert.fail(`${what}: no audit record with requestId ${r.requestId} (response ${show(r)})`);
    auditCache = auditRecords(dataDir);
    if (!auditCache.some((a) => a.requestId === r.requestId)) await sleep(150);
  }
}

interface AuditExpect { sameStatus?: boolean; source?: string | string[]; error?: string | string[] | 'any'; operation?: string; bucket?: string; key?: string; status?: number }

/** The refusal (or operation) is in the audit log with its source, error, operation... */
async function assertAudited(r: RawResponse, exp: AuditExpect, what: string): Promise<AuditRecord> {
  const recs = await auditOf(r, what);
  const match = (a: AuditRecord) => {
    if (exp.source !== undefined && !(Array.isArray(exp.source) ? exp.source : [exp.source]).includes(a.source)) return false;
    if (exp.error === 'any') { if (!a.error) return false; }
    else if (exp.error !== undefined && !(Array.isArray(exp.error) ? exp.error : [exp.error]).includes(a.error as string)) return false;
    if (exp.operation !== undefined && a.operation !== exp.operation) return false;
    if (exp.bucket !== undefined && a.bucket !== exp.bucket) return false;
    if (exp.key !== undefined && a.key !== exp.key) return false;
    if (exp.status !== undefined && a.status !== exp.status) return false;
    return true;
  };
  const rec = recs.find(match);
  assert.ok(rec, `${what}: audit record(s) for ${r.requestId} do not match ${JSON.stringify(exp)}: ${JSON.stringify(recs)}`);
  if (exp.error !== undefined && exp.error !== 'any' && exp.sameStatus !== false) assert.equal(rec.status, r.status, `${what}: audit status = response status`);
  return rec;
}

const src = (s: { id: string }) => `server:${s.id}`;

/**
 * Deferred audit checks: a test queues them and they are all checked after the test (afterEach),
 * with one `audit export` for the lot instead of one per request.
 */
const pendingAudit: { r: RawResponse; exp: AuditExpect; what: string }[] = [];
function expectAudited(r: RawResponse, exp: AuditExpect, what: string): void {
  pendingAudit.push({ r, exp, what });
}
async function flushAudit(): Promise<void> {
  const list = pendingAudit.splice(0);
  const errors: string[] = [];
  for (const p of list) {
    try { await assertAudited(p.r, p.exp, p.what); } catch (e) { errors.push((e as Error).message); }
  }
  if (errors.length) throw new Error(`audit log:\n${errors.join('\n')}`);
}

// ---- XML bodies -------------------------------------------------------------------------------

const NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';
const retentionXml = (mode: string, until: Date) => `<Retention ${NS}><Mode>${mode}</Mode><RetainUntilDate>${until.toISOString()}</RetainUntilDate></Retention>`;
const xmlHeaders = (body: string) => ({ 'content-md5': md5Base64(body), 'content-type': 'application/xml' });
const days = (n: number) => new Date(Date.now() + n * 86400_000);

async function putRetention(s3: RawS3, bucket: string, key: string, versionId: string, mode: string, until: Date, extra: Record<string, string> = {}) {
  const body = retentionXml(mode, until);
  return s3.request({ method: 'PUT', bucket, key, query: { retention: '', versionId }, body, headers: { ...xmlHeaders(body), ...extra } });
}

async function getRetention(s3: RawS3, bucket: string, key: string, versionId: string) {
  const r = await s3.request({ method: 'GET', bucket, key, query: { retention: '', versionId } });
  assert.equal(r.status, 200, `GetObjectRetention: ${show(r)}`);
  return { mode: xmlValue(r.text, 'Mode'), until: new Date(xmlValue(r.text, 'RetainUntilDate') ?? 0) };
}


// =============================================================================================

describe('attacks on shelterd', { timeout: 240_000 }, () => {
  before(async () => {
    sandbox = mkdtempSync(join(tmpdir(), 'shelter-attacks-'));
    dataDir = join(sandbox, 'l1', 'l2', 'l3', 'l4', 'data');
    mkdirSync(dataDir, { recursive: true });
    gw = await startGateway({ dataDir });
    A = createServer(dataDir, 'alpha') as Server;
    B = createServer(dataDir, 'bravo') as Server;
    C = createServer(dataDir, 'charlie') as Server;
    D = createServer(dataDir, 'delta') as Server;
    opKey = createOperatorKey(dataDir);
    s3A = client(A); s3B = client(B); anon = client(undefined);
    await putLegit(() => s3A, A.bucket, 'docs/a.txt', 'alpha version 1');
    await putLegit(() => s3A, A.bucket, 'docs/a.txt', 'alpha version 2');
    await putLegit(() => s3B, B.bucket, 'b-secret.txt', secretB);
  });

  afterEach(flushAudit);

  after(async () => {
    await gw?.stop();
    if (process.env.KEEP_TEST_DATA) console.log(`data kept in ${sandbox}`);
    else if (sandbox) removeDir(sandbox);
  });

  it('audits legitimate requests too (source, operation, bucket, key, version, bytes)', async () => {
    const body = 'audited body';
    const r = await put(s3A, A.bucket, 'audit/ok.txt', body);
    assert.equal(r.status, 200, show(r));
    remember(() => s3A, A.bucket, 'audit/ok.txt', r, body);
    const rec = await assertAudited(r, { source: src(A), operation: 'PutObject', bucket: A.bucket, key: 'audit/ok.txt', status: 200 }, 'legit PUT');
    assert.equal(rec.versionId, r.headers['x-amz-version-id']);
    assert.equal(rec.bytes, body.length);
    assert.equal(rec.error, null);
  });

  // ---- G5: segmentation -------------------------------------------------------------------

  describe('cross-bucket access with server A key on server B bucket', () => {
    it('GetObject -> AccessDenied', async () => {
      const r = await s3A.request({ method: 'GET', bucket: B.bucket, key: 'b-secret.txt' });
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket GetObject');
      assert.ok(!r.text.includes(secretB), 'no data leaked');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'GetObject', bucket: B.bucket, key: 'b-secret.txt' }, 'cross-bucket GetObject');
    });

    it('GetObject of a given version -> AccessDenied', async () => {
      const v = legit.find((l) => l.bucket === B.bucket)!.versionId;
      const r = await s3A.request({ method: 'GET', bucket: B.bucket, key: 'b-secret.txt', query: { versionId: v } });
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket GetObject versionId');
      expectAudited(r, { source: src(A), error: 'AccessDenied', bucket: B.bucket }, 'cross-bucket GetObject versionId');
    });

    it('PutObject -> AccessDenied, nothing written in B', async () => {
      const r = await put(s3A, B.bucket, 'planted.txt', 'planted by A');
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket PutObject');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'PutObject', bucket: B.bucket, key: 'planted.txt' }, 'cross-bucket PutObject');
      await assertNothingStored(s3B, B.bucket, 'planted.txt', 'cross-bucket PutObject');
    });

    it('ListObjectsV2, ListObjects and ListObjectVersions -> AccessDenied', async () => {
      for (const [op, query] of [['ListObjectsV2', { 'list-type': '2' }], ['ListObjects', {}], ['ListObjectVersions', { versions: '' }]] as const) {
        const r = await s3A.request({ method: 'GET', bucket: B.bucket, query: { ...query } });
        assertRefused(r, 403, 'AccessDenied', `cross-bucket ${op}`);
        assert.ok(!r.text.includes('b-secret.txt'), `${op}: no key names leaked`);
        expectAudited(r, { source: src(A), error: 'AccessDenied', operation: op, bucket: B.bucket }, `cross-bucket ${op}`);
      }
    });

    it('HeadObject -> 403', async () => {
      const r = await s3A.request({ method: 'HEAD', bucket: B.bucket, key: 'b-secret.txt' });
      assertRefused(r, 403, null, 'cross-bucket HeadObject');
      assert.equal(r.headers['content-length'] === String(secretB.length) && r.headers['etag'] !== undefined, false, 'no object metadata leaked');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'HeadObject', bucket: B.bucket }, 'cross-bucket HeadObject');
    });

    it('DeleteObject and DeleteObjects -> AccessDenied, no delete marker in B', async () => {
      const r = await s3A.request({ method: 'DELETE', bucket: B.bucket, key: 'b-secret.txt' });
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket DeleteObject');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'DeleteObject', bucket: B.bucket }, 'cross-bucket DeleteObject');
      const body = `<Delete ${NS}><Object><Key>b-secret.txt</Key></Object></Delete>`;
      const r2 = await s3A.request({ method: 'POST', bucket: B.bucket, query: { delete: '' }, body, headers: xmlHeaders(body) });
      assertRefused(r2, 403, 'AccessDenied', 'cross-bucket DeleteObjects');
      expectAudited(r2, { source: src(A), error: 'AccessDenied', bucket: B.bucket }, 'cross-bucket DeleteObjects');
      const vs = await versionsOf(s3B, B.bucket, 'b-secret.txt');
      assert.deepEqual(vs.map((v) => v.deleteMarker), [false], `B's object untouched: ${JSON.stringify(vs)}`);
    });

    it('CopyObject from B into A -> AccessDenied, nothing copied', async () => {
      const r = await s3A.request({ method: 'PUT', bucket: A.bucket, key: 'stolen.txt', headers: { 'x-amz-copy-source': `/${B.bucket}/b-secret.txt` } });
      assertRefused(r, 403, 'AccessDenied', 'CopyObject from another bucket');
      expectAudited(r, { source: src(A), error: 'AccessDenied' }, 'CopyObject from another bucket');
      await assertNothingStored(s3A, A.bucket, 'stolen.txt', 'CopyObject from another bucket');
      const r2 = await s3A.request({ method: 'PUT', bucket: B.bucket, key: 'copied-in.txt', headers: { 'x-amz-copy-source': `/${A.bucket}/docs/a.txt` } });
      assertRefused(r2, 403, 'AccessDenied', 'CopyObject into another bucket');
      expectAudited(r2, { source: src(A), error: 'AccessDenied' }, 'CopyObject into another bucket');
      await assertNothingStored(s3B, B.bucket, 'copied-in.txt', 'CopyObject into another bucket');
    });

    it('CreateMultipartUpload in B -> AccessDenied', async () => {
      const r = await s3A.request({ method: 'POST', bucket: B.bucket, key: 'mpu.bin', query: { uploads: '' } });
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket CreateMultipartUpload');
      expectAudited(r, { source: src(A), error: 'AccessDenied', bucket: B.bucket }, 'cross-bucket CreateMultipartUpload');
    });

    it('bucket-level reads on B (HeadBucket, GetBucketVersioning, GetObjectLockConfiguration, ListMultipartUploads) -> 403', async () => {
      for (const [op, method, query] of [
        ['HeadBucket', 'HEAD', {}], ['GetBucketVersioning', 'GET', { versioning: '' }],
        ['GetObjectLockConfiguration', 'GET', { 'object-lock': '' }], ['ListMultipartUploads', 'GET', { uploads: '' }],
      ] as const) {
        const r = await s3A.request({ method, bucket: B.bucket, query: { ...query } });
        assertRefused(r, 403, method === 'HEAD' ? null : 'AccessDenied', `cross-bucket ${op}`);
        expectAudited(r, { source: src(A), error: 'AccessDenied', bucket: B.bucket }, `cross-bucket ${op}`);
      }
    });

    it('a presigned GET made with A key for B object -> AccessDenied', async () => {
      const url = await s3A.presign({ method: 'GET', bucket: B.bucket, key: 'b-secret.txt' });
      const r = await anon.fetchUrl(url);
      assertRefused(r, 403, 'AccessDenied', 'cross-bucket presigned GET');
      assert.ok(!r.text.includes(secretB));
      expectAudited(r, { source: src(A), error: 'AccessDenied' }, 'cross-bucket presigned GET');
    });

    it('ListBuckets shows A only its own bucket', async () => {
      const r = await s3A.request({ method: 'GET', path: '/' });
      assert.equal(r.status, 200, show(r));
      const names = xmlBlocks(r.text, 'Bucket').map((b) => xmlValue(b, 'Name'));
      assert.deepEqual(names, [A.bucket]);
    });

    it('path and host tricks never reach B data', async () => {
      const tricks: { path: string; host?: string }[] = [
        { path: `/${A.bucket}/../${B.bucket}/b-secret.txt` },
        { path: `/${A.bucket}/%2E%2E/${B.bucket}/b-secret.txt` },
        { path: `/${A.bucket}/..%2F${B.bucket}%2Fb-secret.txt` },
        { path: `//${B.bucket}/b-secret.txt` },
        { path: `/./${B.bucket}/b-secret.txt` },
        { path: `/${B.bucket.toUpperCase()}/b-secret.txt` },
        { path: `/${B.bucket}%2Fb-secret.txt` },
        { path: `/b-secret.txt`, host: `${B.bucket}.localhost:${gw.port}` },
        { path: `/${B.bucket}/b-secret.txt`, host: `${A.bucket}.localhost:${gw.port}` },
        { path: `/${A.bucket}/b-secret.txt`, host: `${B.bucket}.localhost:${gw.port}` },
      ];
      for (const t of tricks) {
        let r: RawResponse;
        try {
          r = await s3A.request({ method: 'GET', path: t.path, ...(t.host ? { host: t.host } : {}) });
        } catch (e) { continue; /* connection refused outright: nothing leaked */ }
        assert.ok(!r.text.includes(secretB), `trick ${JSON.stringify(t)} leaked B's data: ${show(r)}`);
        assert.ok(r.status >= 400, `trick ${JSON.stringify(t)} must not succeed: ${show(r)}`);
        if (r.requestId) expectAudited(r, { error: 'any' }, `trick ${JSON.stringify(t)}`);
      }
    });
  });

  // ---- G7: immutability on the server's own bucket ------------------------------------------

  describe('immutability on own bucket (server credentials)', () => {
    it('DeleteObject?versionId -> AccessDenied, version still readable', async () => {
      const v1 = legit.find((l) => l.key === 'docs/a.txt')!.versionId;
      const r = await s3A.request({ method: 'DELETE', bucket: A.bucket, key: 'docs/a.txt', query: { versionId: v1 } });
      assertRefused(r, 403, 'AccessDenied', 'version delete');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'DeleteObject', bucket: A.bucket, key: 'docs/a.txt' }, 'version delete');
      const g = await s3A.request({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt', query: { versionId: v1 } });
      assert.equal(g.status, 200, show(g));
      assert.equal(g.text, 'alpha version 1');
    });

    it('DeleteObjects with a VersionId -> refused (AccessDenied), version still readable', async () => {
      const v1 = legit.find((l) => l.key === 'docs/a.txt')!.versionId;
      const body = `<Delete ${NS}><Object><Key>docs/a.txt</Key><VersionId>${v1}</VersionId></Object></Delete>`;
      const r = await s3A.request({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body, headers: xmlHeaders(body) });
      if (r.status === 200) {
        const errs = xmlBlocks(r.text, 'Error');
        assert.equal(errs.length, 1, `DeleteObjects must report the version as not deleted: ${show(r)}`);
        assert.equal(xmlValue(errs[0]!, 'Code'), 'AccessDenied', show(r));
        assert.equal(xmlBlocks(r.text, 'Deleted').length, 0, show(r));
      } else {
        assertRefused(r, 403, 'AccessDenied', 'DeleteObjects with VersionId');
      }
      // a 200 DeleteResult may be audited per key, each refused key with its own 403
      expectAudited(r, { source: src(A), error: 'AccessDenied', sameStatus: r.status !== 200 }, 'DeleteObjects with VersionId');
      const g = await s3A.request({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt', query: { versionId: v1 } });
      assert.equal(g.status, 200, show(g));
    });

    it('plain DeleteObject makes a delete marker; every version stays; the marker itself cannot be deleted', async () => {
      const r = await s3A.request({ method: 'DELETE', bucket: A.bucket, key: 'docs/a.txt' });
      assert.equal(r.status, 204, show(r));
      assert.equal(r.headers['x-amz-delete-marker'], 'true');
      const marker = r.headers['x-amz-version-id'] as string;
      assert.ok(marker);
      const vs = await versionsOf(s3A, A.bucket, 'docs/a.txt');
      assert.equal(vs.filter((v) => !v.deleteMarker).length, 2, JSON.stringify(vs));
      const rm = await s3A.request({ method: 'DELETE', bucket: A.bucket, key: 'docs/a.txt', query: { versionId: marker } });
      assertRefused(rm, 403, 'AccessDenied', 'delete-marker removal by a server');
      expectAudited(rm, { source: src(A), error: 'AccessDenied' }, 'delete-marker removal');
    });

    it('PutBucketVersioning Suspended -> AccessDenied, versioning still Enabled', async () => {
      const body = `<VersioningConfiguration ${NS}><Status>Suspended</Status></VersioningConfiguration>`;
      const r = await s3A.request({ method: 'PUT', bucket: A.bucket, query: { versioning: '' }, body, headers: xmlHeaders(body) });
      assertRefused(r, 403, 'AccessDenied', 'versioning suspend');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'PutBucketVersioning', bucket: A.bucket }, 'versioning suspend');
      const g = await s3A.request({ method: 'GET', bucket: A.bucket, query: { versioning: '' } });
      assert.equal(g.status, 200, show(g));
      assert.equal(xmlValue(g.text, 'Status'), 'Enabled');
    });

    it('PutObjectLockConfiguration by a server -> AccessDenied', async () => {
      const body = `<ObjectLockConfiguration ${NS}><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>`;
      const r = await s3A.request({ method: 'PUT', bucket: A.bucket, query: { 'object-lock': '' }, body, headers: xmlHeaders(body) });
      assertRefused(r, 403, 'AccessDenied', 'PutObjectLockConfiguration');
      expectAudited(r, { source: src(A), error: 'AccessDenied', operation: 'PutObjectLockConfiguration', bucket: A.bucket }, 'PutObjectLockConfiguration');
    });

    it('DeleteBucket, lifecycle and policy changes by a server -> refused', async () => {
      const del = await s3A.request({ method: 'DELETE', bucket: A.bucket });
      assertRefused(del, 403, 'AccessDenied', 'DeleteBucket');
      expectAudited(del, { source: src(A), error: 'AccessDenied', bucket: A.bucket }, 'DeleteBucket');
      const lc = `<LifecycleConfiguration ${NS}><Rule><ID>wipe</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>`;
      const r1 = await s3A.request({ method: 'PUT', bucket: A.bucket, query: { lifecycle: '' }, body: lc, headers: xmlHeaders(lc) });
      assertRefused(r1, [403, 501], ['AccessDenied', 'NotImplemented'], 'PutBucketLifecycleConfiguration');
      expectAudited(r1, { source: src(A), error: ['AccessDenied', 'NotImplemented'] }, 'PutBucketLifecycleConfiguration');
      const pol = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: 's3:*', Resource: `arn:aws:s3:::${A.bucket}/*` }] });
      const r2 = await s3A.request({ method: 'PUT', bucket: A.bucket, query: { policy: '' }, body: pol, headers: { 'content-md5': md5Base64(pol) } });
      assertRefused(r2, [403, 501], ['AccessDenied', 'NotImplemented'], 'PutBucketPolicy');
      expectAudited(r2, { source: src(A), error: ['AccessDenied', 'NotImplemented'] }, 'PutBucketPolicy');
      const g = await s3A.request({ method: 'HEAD', bucket: A.bucket });
      assert.equal(g.status, 200, 'bucket still there');
    });

    it('retention can be set and extended, never shortened (also not with bypass-governance)', async () => {
      const body = 'locked under governance';
      const r0 = await put(s3A, A.bucket, 'locked/gov.txt', body);
      assert.equal(r0.status, 200, show(r0));
      remember(() => s3A, A.bucket, 'locked/gov.txt', r0, body);
      const v = r0.headers['x-amz-version-id'] as string;
      const set = await putRetention(s3A, A.bucket, 'locked/gov.txt', v, 'GOVERNANCE', days(2));
      assert.equal(set.status, 200, `setting a retention is allowed: ${show(set)}`);
      const before = await getRetention(s3A, A.bucket, 'locked/gov.txt', v);
      assert.equal(before.mode, 'GOVERNANCE');

      const shorter = await putRetention(s3A, A.bucket, 'locked/gov.txt', v, 'GOVERNANCE', days(1));
      assertRefused(shorter, 403, 'AccessDenied', 'retention shortening');
      expectAudited(shorter, { source: src(A), error: 'AccessDenied', operation: 'PutObjectRetention', key: 'locked/gov.txt' }, 'retention shortening');

      const bypass = await putRetention(s3A, A.bucket, 'locked/gov.txt', v, 'GOVERNANCE', days(1), { 'x-amz-bypass-governance-retention': 'true' });
      assertRefused(bypass, 403, 'AccessDenied', 'retention shortening with bypass-governance');
      expectAudited(bypass, { source: src(A), error: 'AccessDenied', operation: 'PutObjectRetention' }, 'retention shortening with bypass');

      const past = await putRetention(s3A, A.bucket, 'locked/gov.txt', v, 'GOVERNANCE', new Date(Date.now() - 86400_000), { 'x-amz-bypass-governance-retention': 'true' });
      assertRefused(past, [400, 403], ['AccessDenied', 'InvalidArgument', 'InvalidRequest'], 'retention set into the past');
      expectAudited(past, { source: src(A), error: 'any' }, 'retention set into the past');

      const after1 = await getRetention(s3A, A.bucket, 'locked/gov.txt', v);
      assert.equal(after1.until.getTime(), before.until.getTime(), 'retain-until unchanged after the refused attempts');

      const longer = await putRetention(s3A, A.bucket, 'locked/gov.txt', v, 'GOVERNANCE', days(3));
      assert.equal(longer.status, 200, `extending is allowed: ${show(longer)}`);

      // the locked version cannot be deleted, even with bypass-governance
      const dv = await s3A.request({ method: 'DELETE', bucket: A.bucket, key: 'locked/gov.txt', query: { versionId: v }, headers: { 'x-amz-bypass-governance-retention': 'true' } });
      assertRefused(dv, 403, 'AccessDenied', 'deleting a locked version with bypass-governance');
      expectAudited(dv, { source: src(A), error: 'AccessDenied' }, 'deleting a locked version');
    });

    it('COMPLIANCE retention cannot be weakened to GOVERNANCE', async () => {
      const body = 'locked under compliance';
      const r0 = await put(s3A, A.bucket, 'locked/comp.txt', body);
      assert.equal(r0.status, 200, show(r0));
      remember(() => s3A, A.bucket, 'locked/comp.txt', r0, body);
      const v = r0.headers['x-amz-version-id'] as string;
      const until = days(2);
      const set = await putRetention(s3A, A.bucket, 'locked/comp.txt', v, 'COMPLIANCE', until);
      assert.equal(set.status, 200, show(set));
      const weaker = await putRetention(s3A, A.bucket, 'locked/comp.txt', v, 'GOVERNANCE', until, { 'x-amz-bypass-governance-retention': 'true' });
      assertRefused(weaker, 403, 'AccessDenied', 'COMPLIANCE -> GOVERNANCE');
      expectAudited(weaker, { source: src(A), error: 'AccessDenied', operation: 'PutObjectRetention' }, 'COMPLIANCE -> GOVERNANCE');
      assert.equal((await getRetention(s3A, A.bucket, 'locked/comp.txt', v)).mode, 'COMPLIANCE');
    });

    it('an operator key cannot delete a version under retention either', async () => {
      const v = legit.find((l) => l.key === 'locked/comp.txt')!.versionId;
      const op = client(opKey);
      const r = await op.request({ method: 'DELETE', bucket: A.bucket, key: 'locked/comp.txt', query: { versionId: v }, headers: { 'x-amz-bypass-governance-retention': 'true' } });
      assertRefused(r, 403, 'AccessDenied', 'operator deleting a COMPLIANCE-locked version');
      expectAudited(r, { source: `operator:${opKey.accessKeyId}`, error: 'AccessDenied' }, 'operator version delete');
      const g = await s3A.request({ method: 'GET', bucket: A.bucket, key: 'locked/comp.txt', query: { versionId: v } });
      assert.equal(g.status, 200, show(g));
    });
  });

  // ---- G1: SigV4, payload integrity ---------------------------------------------------------

  describe('SigV4 and payload integrity', () => {
    it('positive controls: every signing mode of this client is accepted and stores the exact bytes', async () => {
      const data = randomBytes(200_000);
      const cases: [string, () => Promise<SignedRequest | string>][] = [
        ['signed sha256', () => s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'ok/sha256.bin', body: data })],
        ['UNSIGNED-PAYLOAD', () => s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'ok/unsigned.bin', body: data, payload: 'unsigned' })],
        ['Content-MD5', () => s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'ok/md5.bin', body: data, headers: { 'content-md5': md5Base64(data) } })],
        ['x-amz-checksum-crc32 header', () => s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'ok/crc.bin', body: data, headers: { 'x-amz-checksum-crc32': crc32Base64(data) } })],
        ['aws-chunked signed', async () => (await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'ok/chunked.bin' }, data, 65536)).req],
        ['aws-chunked signed + trailer', async () => (await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'ok/chunked-trailer.bin' }, data, 65536, { trailer: { name: 'x-amz-checksum-crc32', value: crc32Base64(data) } })).req],
        ['unsigned payload + crc32 trailer', () => s3A.signUnsignedTrailer({ method: 'PUT', bucket: A.bucket, key: 'ok/trailer.bin' }, data)],
        ['presigned PUT', () => s3A.presign({ method: 'PUT', bucket: A.bucket, key: 'ok/presigned.bin' })],
      ];
      for (const [name, make] of cases) {
        const req = await make();
        const r = typeof req === 'string' ? await anon.fetchUrl(req, 'PUT', data) : await s3A.send(req);
        assert.equal(r.status, 200, `${name}: ${show(r)}`);
        const key = typeof req === 'string' ? 'ok/presigned.bin' : decodeURIComponent(req.path.slice(A.bucket.length + 2));
        remember(() => s3A, A.bucket, key, r, data);
        const g = await s3A.request({ method: 'GET', bucket: A.bucket, key });
        assert.equal(g.status, 200, `${name} read back: ${show(g)}`);
        assert.equal(sha256Hex(g.body), sha256Hex(data), `${name}: stored bytes differ (aws-chunked framing stored?)`);
      }
      const url = await s3A.presign({ method: 'GET', bucket: A.bucket, key: 'ok/sha256.bin' });
      const g = await anon.fetchUrl(url);
      assert.equal(g.status, 200, `presigned GET: ${show(g)}`);
      assert.equal(sha256Hex(g.body), sha256Hex(data));
      const old = await s3A.request({ method: 'GET', bucket: A.bucket, key: 'ok/sha256.bin', date: new Date(Date.now() - 14 * 60_000) });
      assert.equal(old.status, 200, `a request signed 14 min ago is inside the 15-minute window: ${show(old)}`);
    });

    it('tampered body under a signed SHA-256 -> XAmzContentSHA256Mismatch, no version', async () => {
      const req = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'tamper/body.txt', body: 'the original body!' });
      req.body = Buffer.from('the tampered body!');
      const r = await s3A.send(req);
      assertRefused(r, 400, 'XAmzContentSHA256Mismatch', 'tampered body');
      expectAudited(r, { source: src(A), error: 'XAmzContentSHA256Mismatch', operation: 'PutObject', key: 'tamper/body.txt' }, 'tampered body');
      await assertNothingStored(s3A, A.bucket, 'tamper/body.txt', 'tampered body');
    });

    it('tampered body of another length -> XAmzContentSHA256Mismatch, no version', async () => {
      const req = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'tamper/body2.txt', body: 'short' });
      req.body = Buffer.from('short, then a lot more that was appended in transit');
      const r = await s3A.send(req);
      assertRefused(r, 400, 'XAmzContentSHA256Mismatch', 'tampered body (length)');
      expectAudited(r, { source: src(A), error: 'XAmzContentSHA256Mismatch' }, 'tampered body (length)');
      await assertNothingStored(s3A, A.bucket, 'tamper/body2.txt', 'tampered body (length)');
    });

    it('tampered signed header, path or query -> SignatureDoesNotMatch', async () => {
      const h = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'tamper/hdr.txt', body: 'x', headers: { 'x-amz-meta-owner': 'alice' } });
      h.headers['x-amz-meta-owner'] = 'mallory';
      const r1 = await s3A.send(h);
      assertRefused(r1, 403, 'SignatureDoesNotMatch', 'tampered header');
      expectAudited(r1, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered header');
      await assertNothingStored(s3A, A.bucket, 'tamper/hdr.txt', 'tampered header');

      const p = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'tamper/path-a.txt', body: 'y' });
      p.path = p.path.replace('path-a', 'path-b');
      const r2 = await s3A.send(p);
      assertRefused(r2, 403, 'SignatureDoesNotMatch', 'tampered path');
      expectAudited(r2, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered path');
      await assertNothingStored(s3A, A.bucket, 'tamper/path-a.txt', 'tampered path');
      await assertNothingStored(s3A, A.bucket, 'tamper/path-b.txt', 'tampered path');

      const q = await s3A.sign({ method: 'GET', bucket: A.bucket, query: { 'list-type': '2', prefix: 'docs/' } });
      q.query['prefix'] = '';
      const r3 = await s3A.send(q);
      assertRefused(r3, 403, 'SignatureDoesNotMatch', 'tampered query');
      expectAudited(r3, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered query');

      const m = await s3A.sign({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt' });
      m.method = 'DELETE';
      const r4 = await s3A.send(m);
      assertRefused(r4, 403, 'SignatureDoesNotMatch', 'tampered method');
      expectAudited(r4, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered method');
    });

    it('an x-amz-* header added after signing is refused', async () => {
      const req = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'tamper/unsigned-hdr.txt', body: 'z' });
      req.headers['x-amz-object-lock-legal-hold'] = 'OFF';
      req.headers['x-amz-meta-injected'] = 'yes';
      const r = await s3A.send(req);
      assertRefused(r, [400, 403], ['AccessDenied', 'SignatureDoesNotMatch', 'InvalidRequest'], 'unsigned x-amz-* header');
      expectAudited(r, { source: src(A), error: 'any' }, 'unsigned x-amz-* header');
      await assertNothingStored(s3A, A.bucket, 'tamper/unsigned-hdr.txt', 'unsigned x-amz-* header');
    });

    const chunkData = () => randomBytes(3 * 65536 + 1000);

    it('aws-chunked: tampered chunk signature -> SignatureDoesNotMatch, nothing stored', async () => {
      const { req, chunks } = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-sig.bin' }, chunkData(), 65536);
      const c = chunks[1]!;
      c.signature = (c.signature[0] === '0' ? '1' : '0') + c.signature.slice(1);
      req.body = encodeSignedChunks(chunks);
      const r = await s3A.send(req);
      assertRefused(r, 403, 'SignatureDoesNotMatch', 'tampered chunk signature');
      expectAudited(r, { source: src(A), error: 'SignatureDoesNotMatch', key: 'tamper/chunk-sig.bin' }, 'tampered chunk signature');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-sig.bin', 'tampered chunk signature');
    });

    it('aws-chunked: tampered chunk data (signature kept) -> SignatureDoesNotMatch, nothing stored', async () => {
      const { req, chunks } = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-data.bin' }, chunkData(), 65536);
      const d = Buffer.from(chunks[2]!.data);
      d[100] = d[100]! ^ 0xff;
      chunks[2]!.data = d;
      req.body = encodeSignedChunks(chunks);
      const r = await s3A.send(req);
      assertRefused(r, 403, 'SignatureDoesNotMatch', 'tampered chunk data');
      expectAudited(r, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered chunk data');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-data.bin', 'tampered chunk data');
    });

    it('aws-chunked: only the final (empty) chunk signature wrong -> SignatureDoesNotMatch, nothing stored', async () => {
      const { req, chunks } = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-final.bin' }, chunkData(), 65536);
      const last = chunks[chunks.length - 1]!;
      last.signature = 'f'.repeat(64);
      req.body = encodeSignedChunks(chunks);
      const r = await s3A.send(req);
      assertRefused(r, 403, 'SignatureDoesNotMatch', 'tampered final chunk signature');
      expectAudited(r, { source: src(A), error: 'SignatureDoesNotMatch' }, 'tampered final chunk signature');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-final.bin', 'tampered final chunk signature');
    });

    it('aws-chunked: chunks reordered or dropped (each with its own valid signature) -> refused, nothing stored', async () => {
      const data = chunkData();
      const a = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-order.bin' }, data, 65536);
      [a.chunks[0], a.chunks[1]] = [a.chunks[1]!, a.chunks[0]!];
      a.req.body = encodeSignedChunks(a.chunks);
      const r1 = await s3A.send(a.req);
      assertRefused(r1, 403, 'SignatureDoesNotMatch', 'reordered chunks');
      expectAudited(r1, { source: src(A), error: 'SignatureDoesNotMatch' }, 'reordered chunks');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-order.bin', 'reordered chunks');

      const b = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-drop.bin' }, data, 65536);
      b.chunks.splice(1, 1); // the chain breaks, and the length no longer matches
      b.req.body = encodeSignedChunks(b.chunks);
      const r2 = await s3A.send(b.req);
      assertRefused(r2, [400, 403], null, 'dropped chunk');
      expectAudited(r2, { source: src(A), error: 'any' }, 'dropped chunk');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-drop.bin', 'dropped chunk');
    });

    it('aws-chunked: decoded length larger than what the valid chunks carry -> refused, nothing stored', async () => {
      const data = chunkData();
      // valid chunk signatures, under a signed header that claims 10 more bytes than they carry
      const lie = await s3A.sign({
        method: 'PUT', bucket: A.bucket, key: 'tamper/chunk-short.bin', payload: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        headers: { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(data.length + 10) },
      });
      const chunks = signChunks(lie.signing!, [data.subarray(0, 65536), data.subarray(65536), Buffer.alloc(0)]);
      lie.body = encodeSignedChunks(chunks);
      const r = await s3A.send(lie);
      assertRefused(r, [400, 403], null, 'decoded length mismatch');
      expectAudited(r, { source: src(A), error: 'any' }, 'decoded length mismatch');
      await assertNothingStored(s3A, A.bucket, 'tamper/chunk-short.bin', 'decoded length mismatch');
    });

    it('unsigned payload with a wrong crc32 trailer -> BadDigest, nothing stored', async () => {
      const data = chunkData();
      const req = await s3A.signUnsignedTrailer({ method: 'PUT', bucket: A.bucket, key: 'tamper/trailer.bin' }, data, { checksum: crc32Base64(Buffer.from('something else')) });
      const r = await s3A.send(req);
      assertRefused(r, 400, 'BadDigest', 'wrong crc32 trailer');
      expectAudited(r, { source: src(A), error: 'BadDigest', key: 'tamper/trailer.bin' }, 'wrong crc32 trailer');
      await assertNothingStored(s3A, A.bucket, 'tamper/trailer.bin', 'wrong crc32 trailer');
    });

    it('unsigned payload with the announced trailer missing -> refused, nothing stored', async () => {
      const data = chunkData();
      const req = await s3A.signUnsignedTrailer({ method: 'PUT', bucket: A.bucket, key: 'tamper/no-trailer.bin' }, data);
      const text = req.body!.toString('latin1');
      req.body = Buffer.from(text.replace(/x-amz-checksum-crc32:[^\r]*\r\n/, ''), 'latin1');
      const r = await s3A.send(req);
      assertRefused(r, [400, 403], null, 'missing trailer');
      expectAudited(r, { source: src(A), error: 'any' }, 'missing trailer');
      await assertNothingStored(s3A, A.bucket, 'tamper/no-trailer.bin', 'missing trailer');
    });

    it('signed chunks with a (validly signed) wrong crc32 trailer -> BadDigest; a tampered trailer signature -> SignatureDoesNotMatch', async () => {
      const data = chunkData();
      const wrong = crc32Base64(Buffer.from('not the data'));
      const a = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/signed-trailer.bin' }, data, 65536, { trailer: { name: 'x-amz-checksum-crc32', value: wrong } });
      const r1 = await s3A.send(a.req);
      assertRefused(r1, 400, 'BadDigest', 'signed trailer, wrong crc32');
      expectAudited(r1, { source: src(A), error: 'BadDigest' }, 'signed trailer, wrong crc32');
      await assertNothingStored(s3A, A.bucket, 'tamper/signed-trailer.bin', 'signed trailer, wrong crc32');

      const b = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/signed-trailer2.bin' }, data, 65536, { trailer: { name: 'x-amz-checksum-crc32', value: crc32Base64(data) } });
      // a man in the middle swaps the checksum (and the data would follow): the trailer signature no longer fits
      b.trailer!.value = wrong;
      b.req.body = encodeSignedChunks(b.chunks, b.trailer);
      const r2 = await s3A.send(b.req);
      assertRefused(r2, [400, 403], ['SignatureDoesNotMatch', 'BadDigest'], 'tampered signed trailer');
      expectAudited(r2, { source: src(A), error: ['SignatureDoesNotMatch', 'BadDigest'] }, 'tampered signed trailer');
      await assertNothingStored(s3A, A.bucket, 'tamper/signed-trailer2.bin', 'tampered signed trailer');

      const c = await s3A.signChunked({ method: 'PUT', bucket: A.bucket, key: 'tamper/signed-trailer3.bin' }, data, 65536, { trailer: { name: 'x-amz-checksum-crc32', value: crc32Base64(data) } });
      c.trailer!.signature = signTrailer(c.req.signing!, 'f'.repeat(64), c.trailer!.name, c.trailer!.value);
      c.req.body = encodeSignedChunks(c.chunks, c.trailer);
      const r3 = await s3A.send(c.req);
      assertRefused(r3, 403, 'SignatureDoesNotMatch', 'wrong trailer signature');
      expectAudited(r3, { source: src(A), error: 'SignatureDoesNotMatch' }, 'wrong trailer signature');
      await assertNothingStored(s3A, A.bucket, 'tamper/signed-trailer3.bin', 'wrong trailer signature');
    });

    it('wrong Content-MD5 -> BadDigest; malformed Content-MD5 -> InvalidDigest; wrong x-amz-checksum-crc32 header -> BadDigest', async () => {
      const r1 = await put(s3A, A.bucket, 'tamper/md5.txt', 'payload', { 'content-md5': md5Base64('other payload') });
      assertRefused(r1, 400, 'BadDigest', 'wrong Content-MD5');
      expectAudited(r1, { source: src(A), error: 'BadDigest' }, 'wrong Content-MD5');
      await assertNothingStored(s3A, A.bucket, 'tamper/md5.txt', 'wrong Content-MD5');

      const r2 = await put(s3A, A.bucket, 'tamper/md5b.txt', 'payload', { 'content-md5': 'not-an-md5' });
      assertRefused(r2, 400, 'InvalidDigest', 'malformed Content-MD5');
      expectAudited(r2, { source: src(A), error: 'InvalidDigest' }, 'malformed Content-MD5');
      await assertNothingStored(s3A, A.bucket, 'tamper/md5b.txt', 'malformed Content-MD5');

      const r3 = await put(s3A, A.bucket, 'tamper/crc.txt', 'payload', { 'x-amz-checksum-crc32': crc32Base64(Buffer.from('other')) });
      assertRefused(r3, 400, 'BadDigest', 'wrong x-amz-checksum-crc32');
      expectAudited(r3, { source: src(A), error: 'BadDigest' }, 'wrong x-amz-checksum-crc32');
      await assertNothingStored(s3A, A.bucket, 'tamper/crc.txt', 'wrong x-amz-checksum-crc32');
    });

    it('right key id, wrong secret -> SignatureDoesNotMatch, audited with the server as source', async () => {
      const forger = client({ accessKeyId: A.accessKeyId, secretAccessKey: 'x'.repeat(40) });
      const r = await forger.request({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt' });
      assertRefused(r, 403, 'SignatureDoesNotMatch', 'wrong secret');
      expectAudited(r, { source: src(A), error: 'SignatureDoesNotMatch', bucket: A.bucket }, 'wrong secret');
      const w = await forger.request({ method: 'PUT', bucket: A.bucket, key: 'forged.txt', body: 'forged' });
      assertRefused(w, 403, 'SignatureDoesNotMatch', 'wrong secret PUT');
      await assertNothingStored(s3A, A.bucket, 'forged.txt', 'wrong secret PUT');
    });

    it('unknown access key -> InvalidAccessKeyId', async () => {
      const r = await client({ accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: 'y'.repeat(40) }).request({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt' });
      assertRefused(r, 403, 'InvalidAccessKeyId', 'unknown access key');
      const rec = await assertAudited(r, { error: 'InvalidAccessKeyId' }, 'unknown access key');
      assert.ok(!rec.source.startsWith('server:'), `an unknown key is attributed to no server, got ${rec.source}`);
    });

    it('anonymous requests -> AccessDenied, audited as anonymous', async () => {
      for (const [what, spec] of [
        ['GetObject', { method: 'GET', bucket: A.bucket, key: 'docs/a.txt' }],
        ['PutObject', { method: 'PUT', bucket: A.bucket, key: 'anon.txt', body: 'anon' }],
        ['ListObjectsV2', { method: 'GET', bucket: A.bucket, query: { 'list-type': '2' } }],
        ['ListBuckets', { method: 'GET', path: '/' }],
      ] as const) {
        const r = await anon.request(spec);
        assertRefused(r, 403, 'AccessDenied', `anonymous ${what}`);
        expectAudited(r, { source: 'anonymous', error: 'AccessDenied' }, `anonymous ${what}`);
      }
      await assertNothingStored(s3A, A.bucket, 'anon.txt', 'anonymous PUT');
    });

    it('clock skew of 20 minutes (either way) -> RequestTimeTooSkewed', async () => {
      for (const skew of [20, -20]) {
        const r = await s3A.request({ method: 'PUT', bucket: A.bucket, key: `skew${skew}.txt`, body: 'skewed', date: new Date(Date.now() + skew * 60_000) });
        assertRefused(r, 403, 'RequestTimeTooSkewed', `skew ${skew} min`);
        expectAudited(r, { source: src(A), error: 'RequestTimeTooSkewed' }, `skew ${skew} min`);
        await assertNothingStored(s3A, A.bucket, `skew${skew}.txt`, `skew ${skew} min`);
      }
    });

    it('a captured signed request replayed after its 15-minute window -> RequestTimeTooSkewed', async () => {
      // The request was signed (captured) 16 minutes ago; it is replayed now, byte for byte.
      const captured = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'replayed.txt', body: 'replayed', date: new Date(Date.now() - 16 * 60_000) });
      const r = await s3A.send(captured);
      assertRefused(r, 403, 'RequestTimeTooSkewed', 'replay after window');
      expectAudited(r, { source: src(A), error: 'RequestTimeTooSkewed', key: 'replayed.txt' }, 'replay after window');
      await assertNothingStored(s3A, A.bucket, 'replayed.txt', 'replay after window');
      const g = await s3A.send(await s3A.sign({ method: 'GET', bucket: A.bucket, key: 'docs/a.txt', date: new Date(Date.now() - 16 * 60_000) }));
      assertRefused(g, 403, 'RequestTimeTooSkewed', 'GET replay after window');
    });

    it('expired presigned URL -> AccessDenied; a presigned URL replayed after expiry -> AccessDenied', async () => {
      const expired = await s3A.presign({ method: 'GET', bucket: A.bucket, key: 'ok/sha256.bin' }, { date: new Date(Date.now() - 2 * 3600_000), expiresIn: 3600 });
      const r = await anon.fetchUrl(expired);
      assertRefused(r, 403, 'AccessDenied', 'expired presigned URL');
      expectAudited(r, { source: src(A), error: 'AccessDenied' }, 'expired presigned URL');

      const putUrl = await s3A.presign({ method: 'PUT', bucket: A.bucket, key: 'presigned-expired.txt' }, { date: new Date(Date.now() - 2 * 3600_000), expiresIn: 3600 });
      const w = await anon.fetchUrl(putUrl, 'PUT', Buffer.from('late'));
      assertRefused(w, 403, 'AccessDenied', 'expired presigned PUT');
      expectAudited(w, { source: src(A), error: 'AccessDenied' }, 'expired presigned PUT');
      await assertNothingStored(s3A, A.bucket, 'presigned-expired.txt', 'expired presigned PUT');

      // X-Amz-Date has whole seconds: the URL is valid until floor(signing time) + 2 s
      const signedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
      const shortLived = await s3A.presign({ method: 'GET', bucket: A.bucket, key: 'ok/sha256.bin' }, { date: signedAt, expiresIn: 2 });
      const first = await anon.fetchUrl(shortLived);
      assert.equal(first.status, 200, `presigned URL inside its validity: ${show(first)}`);
      await sleep(signedAt.getTime() + 2000 + 1200 - Date.now());
      const replay = await anon.fetchUrl(shortLived);
      assertRefused(replay, 403, 'AccessDenied', 'presigned URL replayed after expiry');
      expectAudited(replay, { source: src(A), error: 'AccessDenied' }, 'presigned URL replayed after expiry');
    });

    it('presigned URL with tampered key or expiry -> SignatureDoesNotMatch', async () => {
      const url = await s3A.presign({ method: 'GET', bucket: A.bucket, key: 'ok/sha256.bin' }, { expiresIn: 60 });
      const r1 = await anon.fetchUrl(url.replace('ok/sha256.bin', 'ok/md5.bin'));
      assertRefused(r1, 403, 'SignatureDoesNotMatch', 'presigned URL, other key');
      expectAudited(r1, { source: src(A), error: 'SignatureDoesNotMatch' }, 'presigned URL, other key');
      const r2 = await anon.fetchUrl(url.replace('X-Amz-Expires=60', 'X-Amz-Expires=604800'));
      assertRefused(r2, 403, 'SignatureDoesNotMatch', 'presigned URL, longer expiry');
      expectAudited(r2, { source: src(A), error: 'SignatureDoesNotMatch' }, 'presigned URL, longer expiry');
    });
  });

  // ---- G5: credential lifecycle -------------------------------------------------------------

  describe('credential reset and disable', () => {
    /** Repeats `send` until it is refused or 2 s have passed; returns the response and the delay. */
    async function refusedWithin2s(send: () => Promise<RawResponse>): Promise<{ r: RawResponse; waitedMs: number }> {
      const t0 = Date.now();
      for (let attempt = 0; ; attempt++) {
        const r = await send();
        if (r.status >= 400 || Date.now() - t0 > 2000) return { r, waitedMs: attempt === 0 ? 0 : Date.now() - t0 };
        await sleep(200);
      }
    }

    it('after reset-credentials the old key gets InvalidAccessKeyId at once; the new key works', async () => {
      const oldS3 = client(D);
      await putLegit(() => client(D), D.bucket, 'd.txt', 'delta data');
      // (the lambda closes over the variable D, which holds the new key after the reset)
      const presignedBefore = await oldS3.presign({ method: 'GET', bucket: D.bucket, key: 'd.txt' }, { expiresIn: 600 });
      const res = shelterd(['server', 'reset-credentials', 'delta', '--data', dataDir, '--json']);
      assert.equal(res.status, 0, res.stderr);
      const fresh = JSON.parse(res.stdout) as { accessKeyId: string; secretAccessKey: string };
      assert.notEqual(fresh.accessKeyId, D.accessKeyId);
      const oldKeyId = D.accessKeyId;
      D = { ...D, ...fresh };

      const { r, waitedMs } = await refusedWithin2s(() => oldS3.request({ method: 'GET', bucket: D.bucket, key: 'd.txt' }));
      if (waitedMs > 0) console.log(`# reset-credentials: old key refused after ${waitedMs} ms`);
      assertRefused(r, 403, 'InvalidAccessKeyId', 'old key after reset');
      const rec = await assertAudited(r, { error: 'InvalidAccessKeyId' }, 'old key after reset');
      console.log(`# reset-credentials: the old key ${oldKeyId} is audited with source ${rec.source}`);
      assert.ok([src(D), 'anonymous'].includes(rec.source), `source of a revoked key: ${rec.source}`);

      const w = await oldS3.request({ method: 'PUT', bucket: D.bucket, key: 'after-reset.txt', body: 'old key' });
      assertRefused(w, 403, 'InvalidAccessKeyId', 'old key PUT after reset');
      const p = await anon.fetchUrl(presignedBefore);
      assertRefused(p, 403, 'InvalidAccessKeyId', 'presigned URL of the old key after reset');
      expectAudited(p, { error: 'InvalidAccessKeyId' }, 'presigned URL of the old key after reset');

      const g = await client(D).request({ method: 'GET', bucket: D.bucket, key: 'd.txt' });
      assert.equal(g.status, 200, `new key works: ${show(g)}`);
      assert.equal(g.text, 'delta data');
      await assertNothingStored(client(D), D.bucket, 'after-reset.txt', 'old key PUT after reset');
    });

    it('a disabled server: its key is refused, audited with its source', async () => {
      const s3C = client(C);
      await putLegit(() => s3C, C.bucket, 'c.txt', 'charlie data');
      const presigned = await s3C.presign({ method: 'GET', bucket: C.bucket, key: 'c.txt' }, { expiresIn: 600 });
      const res = shelterd(['server', 'disable', 'charlie', '--data', dataDir]);
      assert.equal(res.status, 0, res.stderr);
      const { r, waitedMs } = await refusedWithin2s(() => s3C.request({ method: 'GET', bucket: C.bucket, key: 'c.txt' }));
      if (waitedMs > 0) console.log(`# server disable: key refused after ${waitedMs} ms`);
      assertRefused(r, 403, ['AccessDenied', 'InvalidAccessKeyId'], 'disabled server GET');
      expectAudited(r, { source: src(C), error: ['AccessDenied', 'InvalidAccessKeyId'] }, 'disabled server GET');
      const w = await put(s3C, C.bucket, 'while-disabled.txt', 'x');
      assertRefused(w, 403, ['AccessDenied', 'InvalidAccessKeyId'], 'disabled server PUT');
      expectAudited(w, { source: src(C), error: ['AccessDenied', 'InvalidAccessKeyId'] }, 'disabled server PUT');
      const p = await anon.fetchUrl(presigned);
      assertRefused(p, 403, ['AccessDenied', 'InvalidAccessKeyId'], 'disabled server presigned URL');
      // re-enable to read back (the final integrity check reads as the owner)
      const en = shelterd(['server', 'enable', 'charlie', '--data', dataDir]);
      assert.equal(en.status, 0, en.stderr);
      await sleep(1100); // the gateway may cache keys for about a second
      await assertNothingStored(s3C, C.bucket, 'while-disabled.txt', 'disabled server PUT');
    });
  });

  // ---- limits and malformed input -------------------------------------------------------------

  describe('oversized and malformed input', () => {
    it('a key of 1025 bytes or 2 KiB -> KeyTooLongError; 1024 bytes is fine', async () => {
      for (const len of [1025, 2048]) {
        const key = 'k'.repeat(len);
        const r = await put(s3A, A.bucket, key, 'long');
        assertRefused(r, 400, 'KeyTooLongError', `key of ${len} bytes`);
        expectAudited(r, { source: src(A), error: 'KeyTooLongError' }, `key of ${len} bytes`);
      }
      const key = `${'é'.repeat(500)}${'k'.repeat(24)}`; // 1024 bytes in UTF-8
      assert.equal(Buffer.byteLength(key), 1024);
      await putLegit(() => s3A, A.bucket, key, 'exactly 1024 bytes of key');
      const tooLong = `${'é'.repeat(500)}${'k'.repeat(25)}`; // 1025 bytes, 525 characters
      const r = await put(s3A, A.bucket, tooLong, 'x');
      assertRefused(r, 400, 'KeyTooLongError', 'key of 1025 UTF-8 bytes');
    });

    it('huge request headers -> 431 or 400, and the gateway keeps serving', async () => {
      // raw socket: the server may reset the connection right after its answer, which Node's
      // HTTP client reports as ECONNRESET without the response; the status line is what counts
      const big = await s3A.rawExchange(`GET /${A.bucket}/docs/a.txt HTTP/1.1\r\nHost: ${s3A.hostHeader}\r\nX-Amz-Meta-Big: ${'h'.repeat(64 * 1024)}\r\n\r\n`);
      assert.ok(big.status === 431 || big.status === 400, `64 KiB header: expected 431 or 400, got ${JSON.stringify(big)}`);
      const lines = Array.from({ length: 3000 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('');
      const many = await s3A.rawExchange(`GET /${A.bucket}/docs/a.txt HTTP/1.1\r\nHost: ${s3A.hostHeader}\r\n${lines}\r\n`);
      assert.ok(many.status === 431 || many.status === 400, `3000 headers: expected 431 or 400, got ${JSON.stringify({ ...many, received: many.received.slice(0, 200) })}`);
      const g = await s3A.request({ method: 'HEAD', bucket: A.bucket });
      assert.equal(g.status, 200, 'still serving');
    });

    it('user metadata over 2 KB -> MetadataTooLarge, nothing stored', async () => {
      const r = await put(s3A, A.bucket, 'meta-big.txt', 'm', { 'x-amz-meta-big': 'm'.repeat(4096) });
      assertRefused(r, 400, 'MetadataTooLarge', 'metadata too large');
      expectAudited(r, { source: src(A), error: 'MetadataTooLarge' }, 'metadata too large');
      await assertNothingStored(s3A, A.bucket, 'meta-big.txt', 'metadata too large');
    });

    it('DeleteObjects with malformed XML -> MalformedXML; entity bombs and 1001 keys refused', async () => {
      const bad = '<Delete><Object><Key>docs/a.txt</Key></Object>';
      const r = await s3A.request({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body: bad, headers: xmlHeaders(bad) });
      assertRefused(r, 400, 'MalformedXML', 'malformed DeleteObjects');
      expectAudited(r, { source: src(A), error: 'MalformedXML' }, 'malformed DeleteObjects');

      const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lollollollollollollollollollol">` +
        Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join('') +
        `]><Delete ${NS}><Object><Key>&lol9;</Key></Object></Delete>`;
      const t0 = Date.now();
      const r2 = await s3A.request({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body: bomb, headers: xmlHeaders(bomb) });
      assert.ok(Date.now() - t0 < 5000, 'entity bomb answered quickly');
      assertRefused(r2, 400, null, 'XML entity bomb');
      expectAudited(r2, { source: src(A), error: 'any' }, 'XML entity bomb');

      const many = `<Delete ${NS}>${Array.from({ length: 1001 }, (_, i) => `<Object><Key>k${i}</Key></Object>`).join('')}</Delete>`;
      const r3 = await s3A.request({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body: many, headers: xmlHeaders(many) });
      assertRefused(r3, 400, 'MalformedXML', 'DeleteObjects with 1001 keys');
      expectAudited(r3, { source: src(A), error: 'MalformedXML' }, 'DeleteObjects with 1001 keys');

      const big = `<Delete ${NS}><Object><Key>${'x'.repeat(4 << 20)}</Key></Object></Delete>`;
      const r4 = await s3A.request({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body: big, headers: xmlHeaders(big) });
      assertRefused(r4, 400, null, 'DeleteObjects with a 4 MiB body');
      expectAudited(r4, { source: src(A), error: 'any' }, 'DeleteObjects with a 4 MiB body');
      // the same body sent slowly: the gateway has refused it long before the client has sent it
      // all, and must still deliver its answer (not reset a connection the client is writing to)
      const slow = await s3A.sign({ method: 'POST', bucket: A.bucket, query: { delete: '' }, body: big, headers: xmlHeaders(big) });
      const pieces = (async function* () {
        const body = Buffer.from(big);
        for (let at = 0; at < body.length; at += 256 * 1024) {
          yield body.subarray(at, at + 256 * 1024);
          await sleep(20);
        }
      })();
      const r5 = await s3A.send({ ...slow, headers: { ...slow.headers, 'content-length': String(Buffer.byteLength(big)) } }, { bodyStream: pieces });
      assertRefused(r5, 400, null, 'DeleteObjects with a 4 MiB body sent slowly');
      const g = await s3A.request({ method: 'HEAD', bucket: A.bucket });
      assert.equal(g.status, 200, 'still serving');
    });

    it('a declared object size over 5 GiB -> EntityTooLarge, answered without reading the body', async () => {
      const req = await s3A.sign({ method: 'PUT', bucket: A.bucket, key: 'huge.bin', payload: 'unsigned', headers: { 'content-length': String(5 * 1024 ** 3 + 1) } });
      let closed!: () => void;
      const whenClosed = new Promise<void>((res) => { closed = res; });
      const never = (async function* () { await whenClosed; yield* []; })(); // sends no body at all
      const r = await s3A.send(req, { bodyStream: never, timeoutMs: 10_000, onRequest: (cr) => cr.on('close', () => closed()) });
      assertRefused(r, 400, 'EntityTooLarge', 'object over 5 GiB');
      expectAudited(r, { source: src(A), error: 'EntityTooLarge' }, 'object over 5 GiB');
      await assertNothingStored(s3A, A.bucket, 'huge.bin', 'object over 5 GiB');
    });

    it('multipart: part number 10001 -> InvalidArgument; a small non-last part -> EntityTooSmall, nothing stored', async () => {
      const c = await s3A.request({ method: 'POST', bucket: A.bucket, key: 'mpu/small.bin', query: { uploads: '' } });
      assert.equal(c.status, 200, show(c));
      const uploadId = xmlValue(c.text, 'UploadId')!;
      const r = await s3A.request({ method: 'PUT', bucket: A.bucket, key: 'mpu/small.bin', query: { partNumber: '10001', uploadId }, body: 'p' });
      assertRefused(r, 400, 'InvalidArgument', 'part number 10001');
      expectAudited(r, { source: src(A), error: 'InvalidArgument' }, 'part number 10001');
      const etags: string[] = [];
      for (const n of [1, 2]) {
        const p = await s3A.request({ method: 'PUT', bucket: A.bucket, key: 'mpu/small.bin', query: { partNumber: String(n), uploadId }, body: Buffer.alloc(1024, n) });
        assert.equal(p.status, 200, show(p));
        etags.push(p.headers['etag'] as string);
      }
      const body = `<CompleteMultipartUpload ${NS}>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
      const done = await s3A.request({ method: 'POST', bucket: A.bucket, key: 'mpu/small.bin', query: { uploadId }, body, headers: xmlHeaders(body) });
      assertRefused(done, 400, 'EntityTooSmall', 'complete with a 1 KiB first part');
      expectAudited(done, { source: src(A), error: 'EntityTooSmall' }, 'complete with a small part');
      await assertNothingStored(s3A, A.bucket, 'mpu/small.bin', 'complete with a small part');
    });

    it('path traversal keys are plain keys and never touch the filesystem outside the data directory', async () => {
      const rnd = randomBytes(6).toString('hex');
      const canary = `shelter-canary-${rnd}`;
      const keys = ['../../etc/passwd', `${'../'.repeat(12)}tmp/${canary}`, `/${canary}-abs`, `a/./b/../../${canary}-dots`];
      for (const key of keys) {
        const body = `TRAVERSAL ${key}`;
        const path = `/${A.bucket}/${key.split('/').map((s) => encodeURIComponent(s)).join('/')}`;
        const r = await s3A.request({ method: 'PUT', path, body });
        assert.equal(r.status, 200, `PUT of key ${JSON.stringify(key)} as a plain key: ${show(r)}`);
        remember(() => s3A, A.bucket, key, r, body);
        const g = await s3A.request({ method: 'GET', path });
        assert.equal(g.status, 200, `GET ${key}: ${show(g)}`);
        assert.equal(g.text, body);
        const l = await s3A.request({ method: 'GET', bucket: A.bucket, query: { 'list-type': '2', prefix: key } });
        assert.deepEqual(xmlBlocks(l.text, 'Contents').map((c) => xmlValue(c, 'Key')), [key], `listed as the exact key: ${show(l)}`);
      }
      // nothing named after the keys exists anywhere: not in the sandbox around the data dir, not in /tmp
      assert.ok(!existsSync(join(tmpdir(), canary)), `/tmp/${canary} was created`);
      const outside = filesUnder(sandbox).filter((p) => !p.startsWith(dataDir + '/'));
      assert.deepEqual(outside, [], `files appeared outside the data directory: ${outside.join(', ')}`);
      const named = filesUnder(dataDir).filter((p) => /passwd|canary/.test(relative(dataDir, p)));
      assert.deepEqual(named, [], `objects must be stored under gateway-generated ids, found ${named.join(', ')}`);
      // and reading through traversal never reaches real files
      const etcPasswd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : 'root:x:0:0';
      for (const path of [`/${A.bucket}/${'../'.repeat(12)}etc/passwd`, `/${A.bucket}/${'..%2F'.repeat(12)}etc%2Fpasswd`, `/..%2F..%2Fetc/passwd`]) {
        const g = await s3A.request({ method: 'GET', path });
        assert.ok(!g.text.includes(etcPasswd.slice(0, 20)), `GET ${path} returned a real file`);
        assert.notEqual(g.status, 200, `GET ${path}: ${show(g)}`);
      }
    });
  });

  // ---- after everything -----------------------------------------------------------------

  describe('after all attacks', () => {
    it('every object written legitimately is intact (each version, byte for byte)', async () => {
      assert.ok(legit.length >= 15, `${legit.length} legit objects`);
      for (const l of legit) {
        const path = `/${l.bucket}/${l.key.split('/').map((s) => encodeURIComponent(s)).join('/')}`;
        const g = await l.client().request({ method: 'GET', path, query: { versionId: l.versionId } });
        assert.equal(g.status, 200, `${l.bucket}/${l.key}@${l.versionId}: ${show(g)}`);
        assert.equal(g.body.length, l.size, `${l.key} size`);
        assert.equal(sha256Hex(g.body), l.sha, `${l.key} content`);
      }
    });

    it('every refused request of this run is in the audit log, and audit verify passes (running and stopped)', async () => {
      const recs = auditRecords(dataDir);
      assert.ok(recs.filter((r) => r.error).length >= 60, `refusals audited: ${recs.filter((r) => r.error).length}`);
      for (let i = 1; i < recs.length; i++) {
        assert.ok(recs[i]!.seq > recs[i - 1]!.seq, 'seq increases');
        assert.equal(recs[i]!.prevHash, recs[i - 1]!.hash, `chain link at seq ${recs[i]!.seq}`);
      }
      const v1 = shelterd(['audit', 'verify', '--data', dataDir]);
      assert.equal(v1.status, 0, `audit verify (gateway running): ${v1.stdout}${v1.stderr}`);
      await gw.stop();
      const v2 = shelterd(['audit', 'verify', '--data', dataDir]);
      assert.equal(v2.status, 0, `audit verify (gateway stopped): ${v2.stdout}${v2.stderr}`);
      const f = shelterd(['fsck', '--data', dataDir]);
      assert.equal(f.status, 0, `fsck: ${f.stdout}${f.stderr}`);
    });
  });

  // ---- G6: tamper evidence of the audit log ---------------------------------------------------

  describe('audit verify detects tampering (gateway stopped, on copies of the data dir)', () => {
    function tamperedCopy(name: string, edit: (db: DatabaseSync, seqs: number[]) => void): { status: number | null; out: string } {
      const copy = join(sandbox, `copy-${name}`);
      cpSync(dataDir, copy, { recursive: true });
      const db = new DatabaseSync(join(copy, 'meta.db'));
      try {
        const seqs = (db.prepare('SELECT seq FROM audit ORDER BY seq').all() as { seq: number }[]).map((r) => r.seq);
        assert.ok(seqs.length > 20);
        edit(db, seqs);
      } finally { db.close(); }
      const v = shelterd(['audit', 'verify', '--data', copy]);
      return { status: v.status, out: v.stdout + v.stderr };
    }
    const mid = (seqs: number[]) => seqs[Math.floor(seqs.length / 2)]!;

    it('an untouched copy verifies', () => {
      const v = tamperedCopy('control', () => {});
      assert.equal(v.status, 0, v.out);
    });
    it('an edited record (source, error cleared) is detected', () => {
      const v = tamperedCopy('edit', (db, seqs) => {
        const s = mid(seqs);
        db.prepare("UPDATE audit SET source = 'admin' WHERE seq = ?").run(s);
      });
      assert.notEqual(v.status, 0, `edited source not detected: ${v.out}`);
      const v2 = tamperedCopy('edit-error', (db) => {
        const row = db.prepare('SELECT seq FROM audit WHERE error IS NOT NULL ORDER BY seq LIMIT 1 OFFSET 5').get() as { seq: number };
        db.prepare('UPDATE audit SET error = NULL, status = 200 WHERE seq = ?').run(row.seq);
      });
      assert.notEqual(v2.status, 0, `a refusal rewritten as success not detected: ${v2.out}`);
    });
    it('a removed record (middle) is detected', () => {
      const v = tamperedCopy('delete', (db, seqs) => { db.prepare('DELETE FROM audit WHERE seq = ?').run(mid(seqs)); });
      assert.notEqual(v.status, 0, `removed record not detected: ${v.out}`);
    });
    it('two swapped records are detected', () => {
      const v = tamperedCopy('swap', (db, seqs) => {
        const a = mid(seqs); const b = seqs[seqs.indexOf(a) + 1]!; const tmp = seqs[seqs.length - 1]! + 1000;
        db.exec('BEGIN');
        db.prepare('UPDATE audit SET seq = ? WHERE seq = ?').run(tmp, a);
        db.prepare('UPDATE audit SET seq = ? WHERE seq = ?').run(a, b);
        db.prepare('UPDATE audit SET seq = ? WHERE seq = ?').run(b, tmp);
        db.exec('COMMIT');
      });
      assert.notEqual(v.status, 0, `swapped records not detected: ${v.out}`);
    });
    it('removing the newest records (truncating the tail) is detected', () => {
      const v = tamperedCopy('truncate', (db, seqs) => { db.prepare('DELETE FROM audit WHERE seq >= ?').run(seqs[seqs.length - 3]!); });
      assert.notEqual(v.status, 0, `tail truncation not detected: ${v.out}`);
    });
  });
});
