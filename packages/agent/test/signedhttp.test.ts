// A restore worker's own GET (backend/signedhttp.ts): the bytes of exactly the range asked for, or
// an error that says what went wrong, for every way a store can answer wrongly; never bytes of
// another range, never a partial buffer passed off as whole. (Against shelterd over HTTPS, with
// SigV4: test/agent/backend.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendSignedGet } from '../src/backend/signedhttp.ts';
import { serveObjects, type Behaviour } from './lib/range-server.ts';

test('a worker GET gets exactly its range, or fails saying why', async (t) => {
  const body = randomBytes(200_000);
  let how: Behaviour = 'ok';
  const server = await serveObjects(new Map([['data/ab/x', body]]), () => how);
  t.after(() => server.close());
  const get = (start: number, end: number) => sendSignedGet(server.signGet('data/ab/x', { start, end }), start, end);

  assert.ok((await get(0, 199_999)).equals(body));
  assert.ok((await get(1_234, 150_000)).equals(body.subarray(1_234, 150_001)));
  const expected: Record<Exclude<Behaviour, 'ok'>, RegExp> = {
    '500': /HTTP 500/,
    whole: /HTTP 200/,
    shifted: /HTTP 206 for bytes 1235-150001 \(bytes 1234-150000 asked for\)/,
    short: /the body broke off after \d+ of 148767 bytes/,
    long: /long body: more than the 148767 bytes/,
    reset: /socket hang up|ECONNRESET/,
  };
  for (const [kind, message] of Object.entries(expected) as Array<[Behaviour, RegExp]>) {
    how = kind;
    await assert.rejects(get(1_234, 150_000), message, kind);
    // the connection pool is still good for the next request
    how = 'ok';
    assert.ok((await get(5, 10)).equals(body.subarray(5, 11)), `after ${kind}`);
  }
  // one connection for the requests above (kept alive; a new one after each failure that closed it)
  assert.ok(server.connections() <= 1 + Object.keys(expected).length, `${server.connections()} connections`);
  // nothing listening
  await assert.rejects(sendSignedGet({ url: 'http://127.0.0.1:1/data/ab/x', headers: {} }, 0, 9), /ECONNREFUSED/);
});

test('over TLS: the range lands in the caller\'s buffer, one connection serves many, the server\'s name is checked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-signedhttp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // a self-signed certificate for 127.0.0.1 only (the CA file is the certificate itself)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'),
    '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const body = randomBytes(3_000_000);
  const server = await serveObjects(new Map([['data/cd/y', body]]), () => 'ok',
    { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), caFile: join(dir, 'cert.pem') });
  t.after(() => server.close());
  const into = Buffer.alloc(3_000_100);
  for (const [start, end] of [[0, 2_999_999], [17, 17], [1_000_000, 2_345_678]] as const) {
    const signed = server.signGet('data/cd/y', { start, end });
    const got = await sendSignedGet(signed, start, end, (n) => into.subarray(0, n));
    assert.equal(got.buffer, into.buffer, 'the caller\'s buffer');
    assert.ok(got.equals(body.subarray(start, end + 1)), `bytes ${start}-${end}`);
  }
  assert.equal(server.connections(), 1, 'one kept-alive connection');
  // the same server under a name its certificate does not hold
  const signed = server.signGet('data/cd/y', { start: 0, end: 9 });
  await assert.rejects(sendSignedGet({ ...signed, url: signed.url.replace('127.0.0.1', 'localhost') }, 0, 9), /altnames|does not match/i);
  // nor without its CA
  await assert.rejects(sendSignedGet({ ...signed, caFile: undefined }, 0, 9), /self[- ]signed|certificate|unable to verify/i);
});
