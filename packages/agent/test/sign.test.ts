// The agent's own SigV4 signer (backend/sign.ts) against the AWS SDK's (@smithy/signature-v4, a
// development dependency here): the same request at the same instant must get the same signature,
// for every kind the agent sends (ranged GET, PUT with checksum and If-None-Match, listing with a
// continuation token, a POST with a body). That the gateway accepts them: test/agent/backend.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { s3Signer } from '../src/backend/sign.ts';

type Data = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: Data) => (typeof d === 'string' ? Buffer.from(d) : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
class Sha256 {
  private h;
  constructor(secret?: Data) { this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret)); }
  update(data: Data): void { this.h.update(bytes(data)); }
  async digest(): Promise<Uint8Array> { return this.h.digest(); }
  reset(): void { throw new Error('not resettable'); }
}

const cred = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', region: 'eu-west-3' };
const reference = new SignatureV4({ credentials: cred, region: cred.region, service: 's3', sha256: Sha256, uriEscapePath: false });
const ours = s3Signer(cred);
const at = new Date('2026-11-28T23:59:59.999Z');
const digest = createHash('sha256').update('a pack').digest();

const requests: Array<{ what: string; method: string; path: string; query?: Record<string, string>; headers: Record<string, string>; body?: string }> = [
  { what: 'a ranged GET', method: 'GET', path: '/bucket/data/ab/abcdef', headers: { host: 'gw.example:8443', range: 'bytes=0-8388607' } },
  {
    what: 'a PUT named by its digest', method: 'PUT', path: '/bucket/index/0123', headers: {
      host: 'gw.example:8443', 'content-length': '6', 'if-none-match': '*', 'x-amz-content-sha256': digest.toString('hex'),
      'x-amz-checksum-sha256': digest.toString('base64'),
    },
  },
  {
    what: 'a listing page', method: 'GET', path: '/bucket',
    query: { 'list-type': '2', prefix: 'data/', 'continuation-token': "1/a+b=c d*e(f)!'~", 'max-keys': '1000' }, headers: { host: 'gw.example' },
  },
  { what: 'a POST with a body', method: 'POST', path: '/bucket', query: { 'deletion-request': '' }, headers: { host: 'gw.example', 'content-type': 'application/json', 'content-length': '20' }, body: '{"snapshot":"abcdef"}' },
  { what: 'header values with runs of spaces', method: 'GET', path: '/b/k', headers: { host: 'h', 'X-Amz-Meta-Note': '  two   spaces  ' } },
];

for (const r of requests) {
  test(`SigV4: ${r.what} is signed as the AWS SDK signs it`, async () => {
    const expected = await reference.sign({ method: r.method, protocol: 'https:', hostname: 'gw.example', path: r.path, query: r.query ?? {}, headers: { ...r.headers }, body: r.body }, { signingDate: at });
    const got = ours.sign({ method: r.method, path: r.path, query: r.query, headers: { ...r.headers }, body: r.body }, { signingDate: at });
    const lower = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
    assert.equal(got.headers.authorization, lower(expected.headers).authorization);
    assert.deepEqual(got.headers, lower(expected.headers), 'the same headers sent');
    assert.equal(got.headers['x-amz-date'], '20261128T235959Z');
  });
}

test('SigV4: the signing key follows the day; another secret, another signature', () => {
  const req = { method: 'GET', path: '/b/k', headers: { host: 'h' } };
  const a = ours.sign(req, { signingDate: at }).headers.authorization!;
  const nextDay = ours.sign(req, { signingDate: new Date(at.getTime() + 1) }).headers.authorization!;
  assert.notEqual(a, nextDay);
  assert.match(nextDay, /Credential=AKIDEXAMPLE\/20261129\/eu-west-3\/s3\/aws4_request/);
  assert.equal(ours.sign(req, { signingDate: at }).headers.authorization, a, 'the same again once the key of another day was derived');
  assert.notEqual(s3Signer({ ...cred, secretAccessKey: 'other' }).sign(req, { signingDate: at }).headers.authorization, a);
  assert.throws(() => ours.sign({ method: 'GET', path: '/b/k', headers: {} }), /host/);
});

test('SigV4: the query string sent is the one signed (encoded and sorted)', () => {
  const s = ours.sign({ method: 'GET', path: '/b', query: { prefix: 'a b', 'continuation-token': 'x/y+z' }, headers: { host: 'h' } });
  assert.equal(s.search, 'continuation-token=x%2Fy%2Bz&prefix=a%20b');
});
