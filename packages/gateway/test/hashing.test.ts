// The gateway's body hash pool (sigv4/hashing.ts): large bodies hashed on worker threads give the
// digests hashing in place gives; when workers die, bodies are still hashed (in place while none
// lives), and a worker that dies right after its start is replaced after a growing delay, not in a
// loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHasher, hashPool, OFFLOAD_BYTES } from '../src/sigv4/hashing.ts';

const body = randomBytes(3 * OFFLOAD_BYTES + 12345);
const expected = { md5: createHash('md5').update(body).digest(), sha256: createHash('sha256').update(body).digest() };

async function hashed(): Promise<void> {
  const h = createHasher({ sha256: true, checksum: null, expectedBytes: body.length });
  for (let at = 0; at < body.length; at += 65536) h.update(body.subarray(at, at + 65536));
  const d = await h.digest();
  assert.ok(d.md5.equals(expected.md5), 'md5');
  assert.ok(d.sha256!.equals(expected.sha256), 'sha256');
}

const waitFor = async (what: string, ok: () => boolean, ms: number) => {
  const until = Date.now() + ms;
  while (!ok()) { if (Date.now() > until) assert.fail(`${what}: not within ${ms} ms`); await sleep(20); }
};

test('hash pool: workers give the in-place digests; dead workers are replaced after a growing delay, bodies hashed meanwhile', async () => {
  await hashed();
  const pool = hashPool();
  assert.ok(pool.length >= 1 && pool.every((p) => !p.dead));
  const size = pool.length;
  const kill = async () => { await Promise.all(hashPool().map((p) => p.worker.terminate())); };

  // every worker dies seconds after it started: none is replaced at once
  await kill();
  await waitFor('the deaths noticed', () => hashPool().every((p) => p.dead), 2000);
  await hashed(); // in place, no worker alive
  await sleep(100);
  assert.ok(hashPool().every((p) => p.dead), 'not restarted within 100 ms (first delay 250 ms)');
  await waitFor('the workers replaced', () => hashPool().every((p) => !p.dead), 5000);
  await hashed();

  // dying quickly again: the delay doubles (500 ms)
  await kill();
  await waitFor('the deaths noticed', () => hashPool().every((p) => p.dead), 2000);
  await sleep(300);
  assert.ok(hashPool().every((p) => p.dead), 'not restarted within 300 ms the second time');
  await waitFor('the workers replaced', () => hashPool().every((p) => !p.dead), 5000);
  assert.equal(hashPool().length, size);
  await hashed();
});
