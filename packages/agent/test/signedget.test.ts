// A restore worker's own GET (backend/signedget.ts): the bytes of exactly the range asked for, or
// an error that says what went wrong, for every way a store can answer wrongly; never bytes of
// another range, never a partial buffer passed off as whole. (Against shelterd over HTTPS, with
// SigV4: test/agent/backend.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sendSignedGet } from '../src/backend/signedget.ts';
import { serveObjects, type Behaviour } from './lib/range-server.ts';

test('a worker GET gets exactly its range, or fails saying why', async (t) => {
  const body = randomBytes(200_000);
  let how: Behaviour = 'ok';
  const server = await serveObjects(new Map([['data/ab/x', body]]), () => how);
  t.after(() => server.close());
  const get = async (start: number, end: number) => sendSignedGet(await server.signGet('data/ab/x', { start, end }), start, end);

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
  // nothing listening
  await assert.rejects(sendSignedGet({ url: 'http://127.0.0.1:1/data/ab/x', headers: {} }, 0, 9), /ECONNREFUSED/);
});
