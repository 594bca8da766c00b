// The agent's S3 backend against a real shelterd over HTTPS: objects named by their SHA-256 are
// sent with that digest as their checksum, so bytes damaged after they were hashed (a pack read
// back from its spool file, memory) are refused by the store, clearly, and nothing is stored under
// the name; the right bytes go in, whole, buffered or streamed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import { openS3Backend } from '../../packages/agent/src/backend/s3.ts';
import { BackendError, type Backend } from '../../packages/agent/src/backend/types.ts';
import { sendSignedGet } from '../../packages/agent/src/backend/signedhttp.ts';
import { caBundle } from '../../packages/agent/src/backend/endpoint.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, startGateway, type Gateway } from '../lib/gateway.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();
/** a streamed body (as a pack from its spool file): `bytes` in pieces, each call from the start */
const streamed = (bytes: Buffer) => ({ length: bytes.length, async *chunks() { for (let at = 0; at < bytes.length; at += 100_000) yield bytes.subarray(at, at + 100_000); } });

describe('S3 backend: content-addressed objects carry their SHA-256 (shelterd over HTTPS)', () => {
  let gw: Gateway;
  let backend: Backend;
  let server: ReturnType<typeof createServer>;
  before(async () => {
    gw = await startGateway();
    server = createServer(gw.dataDir, 'backend-digest');
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
    const listed: string[] = [];
    for await (const o of backend.list('data/')) listed.push(o.key);
    assert.equal(listed.length, 2, 'both listed');
    // each sent by signedhttp.ts, none of them again by the SDK (its requests are what the gateway accepts)
    assert.deepEqual(backend.requests, { signedGets: 2, sdkGets: 0, signedPuts: 4, sdkPuts: 0, signedLists: 1, sdkLists: 0 });
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

  it('a GET signed for a restore worker reads exactly its range over HTTPS; altered, the gateway refuses it', async () => {
    const bytes = randomBytes(3_000_000);
    const id = sha256(bytes);
    const key = `data/${id.toString('hex').slice(0, 2)}/${id.toString('hex')}`;
    await backend.putNew(key, bytes, id);
    for (const [start, end] of [[0, 0], [1_000, 2_500_999], [2_999_000, 2_999_999]] as const) {
      const signed = backend.signGet!(key, { start, end });
      assert.equal(signed.caFile, gw.caFile, 'the gateway CA travels with the request');
      assert.ok((await sendSignedGet(signed, start, end)).equals(bytes.subarray(start, end + 1)), `bytes ${start}-${end}`);
      // into a buffer of the caller's (a worker reuses its range buffers)
      const into = Buffer.alloc(end - start + 1 + 10);
      const got = await sendSignedGet(signed, start, end, (n) => into.subarray(0, n));
      assert.equal(got.buffer, into.buffer);
      assert.ok(got.equals(bytes.subarray(start, end + 1)));
    }
    const signed = await backend.signGet!(key, { start: 0, end: 99 });
    // another range than the one signed: the signature no longer matches
    await assert.rejects(sendSignedGet({ ...signed, headers: { ...signed.headers, range: 'bytes=100-199' } }, 100, 199), /HTTP 403/);
    // another object than the one signed
    await assert.rejects(sendSignedGet({ ...signed, url: signed.url.replace(/[0-9a-f]$/, (c) => (c === '0' ? '1' : '0')) }, 0, 99), /HTTP 403/);
    // beyond the object's end
    const past = await backend.signGet!(key, { start: 3_000_000, end: 3_000_099 });
    await assert.rejects(sendSignedGet(past, 3_000_000, 3_000_099), /HTTP 416/);
    // without the gateway's CA the connection is refused
    await assert.rejects(sendSignedGet({ ...signed, caFile: undefined }, 0, 99), /self[- ]signed|certificate|unable to verify/i);
    // a CA file is the whole trust: another CA's alone is refused; a bundle holding the gateway's
    // after another CA's is accepted (every certificate of the PEM file counts)
    const dir = mkdtempSync(join(tmpdir(), 'shelter-ca-'));
    try {
      const other = join(dir, 'other.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=another CA',
        '-days', '2', '-keyout', join(dir, 'other.key'), '-out', other], { stdio: 'ignore' });
      assert.deepEqual(caBundle(other), [readFileSync(other, 'utf8')], 'the file\'s CAs, not the system\'s added to them');
      await assert.rejects(sendSignedGet({ ...signed, caFile: other }, 0, 99), /self[- ]signed|certificate|unable to verify/i);
      const bundle = join(dir, 'bundle.pem');
      writeFileSync(bundle, readFileSync(other, 'utf8') + readFileSync(gw.caFile, 'utf8'));
      assert.ok((await sendSignedGet({ ...signed, caFile: bundle }, 0, 99)).equals(bytes.subarray(0, 100)));
      // the agent's backend says which CA file it trusted (SDK path included), not just "pass one"
      const strict = openS3Backend({ endpoint: gw.url, bucket: server.bucket, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, caFile: other, maxAttempts: 1 });
      await assert.rejects(strict.get(key), (e: unknown) => e instanceof BackendError && e.code === 'Tls' && e.message.includes(`a CA of ${other}`));
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
