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

  // every worker dies seconds after it started: each is replaced only after 250 ms, then 500 ms
  // (lower bounds on the replacement's start time, which a loaded machine only makes later)
  for (const delay of [250, 500]) {
    const killedAt = Date.now();
    await kill();
    await waitFor('the deaths noticed', () => hashPool().every((p) => p.dead || p.started >= killedAt), 2000);
    await hashed(); // in place while no worker lives
    await waitFor('the workers replaced', () => hashPool().every((p) => !p.dead), 10_000);
    for (const p of hashPool()) assert.ok(p.started - killedAt >= delay, `replaced ${p.started - killedAt} ms after the kill (at least ${delay})`);
    await hashed();
  }
  assert.equal(hashPool().length, size);
  await hashed();
});
