// Time limits on what a client controls: a body that stalls is cut off; headers over the limit get a
// readable 431 and are audited; a body the gateway cannot store is answered promptly; the gateway
// keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditRecords, createServer, removeDir, startGateway, type Gateway } from '../lib/gateway.ts';
import { RawS3 } from '../lib/raw-s3.ts';

let gw: Gateway;
let creds: { accessKeyId: string; secretAccessKey: string };
before(async () => { gw = await startGateway({ args: ['--idle-timeout', '2'] }); creds = createServer(gw.dataDir, 'slow'); });
after(async () => { await gw.stop(); removeDir(gw.dataDir); });

function rawTls(payload: string, waitMs: number): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = connect({ host: '127.0.0.1', port: gw.port, ca: gw.caPem, servername: 'localhost' }, () => s.write(payload));
    let text = '';
    s.on('data', (d) => { text += d.toString(); });
    s.on('error', reject);
    s.on('close', () => resolve({ text, closedAfterMs: Date.now() - t0 }));
    setTimeout(() => { s.destroy(); resolve({ text, closedAfterMs: -1 }); }, waitMs);
  });
}

test('a request body that stops arriving is cut off by the idle timeout', async () => {
  // promises 1 MiB, sends 10 bytes, then nothing
  const r = await rawTls('PUT /srv-slow/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n0123456789', 15_000);
  assert.ok(r.closedAfterMs > 0 && r.closedAfterMs < 10_000, `connection closed by the gateway within the idle timeout (closed after ${r.closedAfterMs} ms)`);
});

test('headers over 16 KiB get a readable 431 and an audit record', async () => {
  const r = await rawTls(`GET /srv-slow/k HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 10_000);
  assert.match(r.text, /^HTTP\/1\.1 431 /);
  const rec = auditRecords(gw.dataDir).find((x) => x.operation === 'MalformedHttpRequest');
  assert.equal(rec?.status, 431);
});

test('an upload the storage refuses before reading its body is answered at once, not after the drain timeout', async () => {
  // the storage cannot create the object's file (its pending directory replaced by a file), so the
  // operation fails before it reads the body; the body must then be drained and the 500 sent, not
  // held until DRAIN_TIMEOUT_MS (30 s) while the body stays piped into a reader nobody drives
  const s3 = new RawS3({ endpoint: gw.url, ca: gw.caPem, credentials: creds });
  const pending = join(gw.dataDir, 'objects', 'pending');
  renameSync(pending, `${pending}.aside`);
  writeFileSync(pending, 'not a directory');
  try {
    const t0 = Date.now();
    const r = await s3.request({ method: 'PUT', bucket: 'srv-slow', key: 'refused.bin', body: randomBytes(4 << 20), payload: 'unsigned' }, { timeoutMs: 60_000 });
    const ms = Date.now() - t0;
    assert.equal(r.status, 500, `${r.status} ${r.text.slice(0, 300)}`);
    assert.equal(r.code, 'InternalError');
    assert.ok(ms < 10_000, `answered after ${ms} ms`);
  } finally {
    rmSync(pending);
    renameSync(`${pending}.aside`, pending);
  }
  const ok = await s3.request({ method: 'PUT', bucket: 'srv-slow', key: 'stored.bin', body: randomBytes(4 << 20), payload: 'unsigned' });
  assert.equal(ok.status, 200, `${ok.status} ${ok.text.slice(0, 300)}`);
});
