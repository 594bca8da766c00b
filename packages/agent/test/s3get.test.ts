// The S3 backend's GETs (backend/s3.ts get): signed by backend/sign.ts and sent by
// backend/signedhttp.ts, the body read straight into one buffer; any failure answered by the SDK's
// own GET (retries, S3's error codes, a missing object as undefined); after a few failures in a
// row, every GET of that backend goes the SDK's way. (Against shelterd over HTTPS:
// test/agent/backend.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { openS3Backend, parseListPage } from '../src/backend/s3.ts';
import { serveObjects, type Behaviour } from './lib/range-server.ts';

test('backend GETs go through signedhttp.ts; a failure is answered by the SDK; three in a row and only the SDK is used', async (t) => {
  const body = randomBytes(300_000);
  let plan: (request: number) => Behaviour = () => 'ok';
  const server = await serveObjects(new Map([['b/data/ab/x', body]]), (i) => plan(i));
  t.after(() => server.close());
  const backend = openS3Backend({ endpoint: server.url, bucket: 'b', insecureHttp: true, accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', maxAttempts: 2 });
  const sdk = () => server.requests.filter((r) => /aws-sdk/.test(r.agent)).length;

  assert.ok((await backend.get('data/ab/x'))!.equals(body), 'the whole object');
  assert.ok((await backend.get('data/ab/x', { start: 10, end: 299_999 }))!.equals(body.subarray(10)), 'a range');
  assert.equal(server.requests.length, 2);
  assert.equal(sdk(), 0, 'neither through the SDK');
  // a missing object: undefined, as the SDK says
  assert.equal(await backend.get('data/ab/missing'), undefined);

  // an answer signedhttp.ts refuses: the same bytes, through the SDK
  for (const kind of ['short', 'shifted', 'long'] as const) {
    const first: number = server.requests.length;
    plan = (i) => (i === first ? kind : 'ok');
    assert.ok((await backend.get('data/ab/x', { start: 0, end: 99 }))!.equals(body.subarray(0, 100)), `${kind}: the right bytes`);
    assert.deepEqual(server.requests.slice(first).map((r) => /aws-sdk/.test(r.agent)), [false, true], `${kind}: then answered by the SDK`);
  }
  // that was three in a row (the 404 did not count): from now on only the SDK
  plan = () => 'ok';
  const first = server.requests.length;
  assert.ok((await backend.get('data/ab/x'))!.equals(body));
  assert.deepEqual(server.requests.slice(first).map((r) => /aws-sdk/.test(r.agent)), [true], 'given up after three failures in a row');
});

test('backend PUTs of objects named by their SHA-256 go through signedhttp.ts; a refusal is sent again by the SDK; never an overwrite', async (t) => {
  const objects = new Map<string, Buffer>();
  let plan: (request: number) => Behaviour = () => 'ok';
  const server = await serveObjects(objects, (i) => plan(i));
  t.after(() => server.close());
  const backend = openS3Backend({ endpoint: server.url, bucket: 'b', insecureHttp: true, accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', maxAttempts: 2 });
  const sha = (b: Buffer) => createHash('sha256').update(b).digest();
  const sdkFlags = (from: number) => server.requests.slice(from).map((r) => /aws-sdk/.test(r.agent));
  // a pack streamed from a spool file: read into the sender's buffer a part at a time
  const pack = randomBytes(2_500_000);
  const spooled = { length: pack.length, chunks: async function* () { yield pack; }, chunksInto: async function* (piece: Buffer) {
    for (let at = 0; at < pack.length; at += piece.length) { const n = Math.min(piece.length, pack.length - at); pack.copy(piece, 0, at, at + n); yield piece.subarray(0, n); }
  } };
  assert.equal(await backend.putNew('data/aa/pack', spooled, sha(pack)), 'created');
  assert.ok(objects.get('b/data/aa/pack')!.equals(pack), 'stored whole');
  assert.equal(await backend.putNew('data/aa/pack', spooled, sha(pack)), 'exists', 'never replaced');
  const small = randomBytes(1000);
  assert.equal(await backend.putNew('index/small', small, sha(small)), 'created');
  assert.deepEqual(sdkFlags(0), [false, false, false], 'none through the SDK');
  // refused, or the connection reset: sent again by the SDK, stored
  for (const kind of ['500', 'reset'] as const) {
    const first: number = server.requests.length;
    plan = (i) => (i === first ? kind : 'ok');
    const body = randomBytes(300_000);
    assert.equal(await backend.putNew(`data/bb/${kind}`, body, sha(body)), 'created', kind);
    assert.ok(objects.get(`b/data/bb/${kind}`)!.equals(body), `${kind}: stored`);
    assert.deepEqual(sdkFlags(first), [false, true], `${kind}: then by the SDK`);
  }
  assert.deepEqual(backend.requests, { signedGets: 0, sdkGets: 0, signedPuts: 3, sdkPuts: 2, signedLists: 0, sdkLists: 0 });
});

test('backend listings go through signedhttp.ts page by page; a failing page is fetched by the SDK from the same token', async (t) => {
  const objects = new Map<string, Buffer>();
  for (const k of ['index/a', 'index/b&c', 'index/d<e', 'index/f', 'index/g', 'snapshots/x']) objects.set(`b/${k}`, Buffer.alloc(k.length));
  let plan: (request: number) => Behaviour = () => 'ok';
  const server = await serveObjects(objects, (i) => plan(i));
  t.after(() => server.close());
  const backend = openS3Backend({ endpoint: server.url, bucket: 'b', insecureHttp: true, accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', maxAttempts: 2 });
  const list = async (prefix: string) => { const out: string[] = []; for await (const o of backend.list(prefix)) out.push(`${o.key}:${o.size}`); return out; };
  const expected = ['index/a:7', 'index/b&c:9', 'index/d<e:9', 'index/f:7', 'index/g:7'];
  assert.deepEqual(await list('index/'), expected, 'three pages, names unescaped');
  assert.deepEqual(backend.requests, { signedGets: 0, sdkGets: 0, signedPuts: 0, sdkPuts: 0, signedLists: 3, sdkLists: 0 });
  // the second page fails: the SDK fetches it, the third goes by signedhttp.ts again
  const first: number = server.requests.length;
  plan = (i) => (i === first + 1 ? '500' : 'ok');
  assert.deepEqual(await list('index/'), expected, 'nothing lost, nothing twice');
  assert.deepEqual(server.requests.slice(first).map((r) => /aws-sdk/.test(r.agent)), [false, false, true, false]);
  assert.equal(backend.requests!.sdkLists, 1);
});

test('parseListPage reads S3\'s listing strictly: entities decoded; a DTD, an unknown entity, a bare &, a truncated page without token refused', () => {
  const page = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>${inner}</ListBucketResult>`;
  assert.deepEqual(parseListPage(page('<Contents><Key>a&amp;b&lt;&#233;&#x41;</Key><LastModified>x</LastModified><Size>12</Size></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1</NextContinuationToken>')),
    { items: [{ key: 'a&b<éA', size: 12 }], next: 't&1' });
  assert.deepEqual(parseListPage(page('<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>')), { items: [] });
  for (const [bad, why] of [
    [page('<Contents><Key>&ent;</Key><Size>1</Size></Contents><IsTruncated>false</IsTruncated>'), /unknown XML entity/],
    [page('<Contents><Key>a & b</Key><Size>1</Size></Contents><IsTruncated>false</IsTruncated>'), /bare &/],
    [page('<Contents><Key>a</Key></Contents><IsTruncated>false</IsTruncated>'), /without a key or size/],
    [page('<IsTruncated>true</IsTruncated>'), /without a continuation token/],
    [page('<Contents><Key>a</Key><Size>1</Size></Contents>'), /without IsTruncated/],
    ['<!DOCTYPE x [<!ENTITY e "x">]>' + page('<IsTruncated>false</IsTruncated>'), /not a ListBucketResult/],
    ['<Error><Code>AccessDenied</Code></Error>', /not a ListBucketResult/],
  ] as const) assert.throws(() => parseListPage(bad), why);
});
