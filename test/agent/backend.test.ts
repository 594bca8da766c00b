// The agent's S3 backend against a real shelterd over HTTPS: objects named by their SHA-256 are
// sent with that digest as their checksum, so bytes damaged after they were hashed (a pack read
// back from its spool file, memory) are refused by the store, clearly, and nothing is stored under
// the name; the right bytes go in, whole, buffered or streamed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import { openS3Backend } from '../../packages/agent/src/backend/s3.ts';
import { BackendError, type Backend } from '../../packages/agent/src/backend/types.ts';
import { createServer, startGateway, type Gateway } from '../lib/gateway.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();
/** a streamed body (as a pack from its spool file): `bytes` in pieces, each call from the start */
const streamed = (bytes: Buffer) => ({ length: bytes.length, async *chunks() { for (let at = 0; at < bytes.length; at += 100_000) yield bytes.subarray(at, at + 100_000); } });

describe('S3 backend: content-addressed objects carry their SHA-256 (shelterd over HTTPS)', () => {
  let gw: Gateway;
  let backend: Backend;
  before(async () => {
    gw = await startGateway();
    const server = createServer(gw.dataDir, 'backend-digest');
    backend = openS3Backend({ endpoint: gw.url, bucket: server.bucket, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, caFile: gw.caFile, maxAttempts: 2 });
  });
  after(async () => { await gw?.stop(); });

  it('the right bytes, buffered or streamed, are stored whole', async () => {
    for (const [kind, make] of [['buffered', (b: Buffer) => b], ['streamed', streamed]] as const) {
      const bytes = randomBytes(1_234_567);
      const id = sha256(bytes);
      const key = `data/${id.toString('hex').slice(0, 2)}/${id.toString('hex')}`;
      assert.equal(await backend.putNew(key, make(bytes), id), 'created', kind);
      assert.ok((await backend.get(key))!.equals(bytes), `${kind}: read back`);
      assert.equal(await backend.putNew(key, make(bytes), id), 'exists', `${kind}: never replaced`);
    }
  });

  it('bytes that are not the ones hashed are refused (Integrity), and nothing is stored under the name', async () => {
    for (const [kind, make] of [['buffered', (b: Buffer) => b], ['streamed', streamed]] as const) {
      const made = randomBytes(2_000_000);
      const id = sha256(made);
      const key = `data/${id.toString('hex').slice(0, 2)}/${id.toString('hex')}`;
      const damaged = Buffer.from(made);
      damaged[1_500_000]! ^= 0x10; // one bit, after the bytes were hashed
      await assert.rejects(backend.putNew(key, make(damaged), id), (e: unknown) => {
        assert.ok(e instanceof BackendError, `${kind}: ${String(e)}`);
        assert.equal(e.code, 'Integrity', `${kind}: ${e.message}`);
        assert.match(e.message, /SHA-256/);
        return true;
      });
      assert.equal(await backend.head(key), undefined, `${kind}: nothing stored`);
      // the right bytes still go in afterwards
      assert.equal(await backend.putNew(key, make(made), id), 'created', `${kind}: the right bytes after`);
    }
  });
});
