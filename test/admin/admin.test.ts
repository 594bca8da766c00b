// The admin API: bearer token required, server lifecycle, audit read and verify; every call audited.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { auditRecords, removeDir, shelterd, startGateway, type Gateway } from '../lib/gateway.ts';

let gw: Gateway;
let token: string;

function call(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(`${gw.url}${path}`, {
      method, ca: gw.caPem,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  gw = await startGateway();
  const r = shelterd(['admin', 'token', 'create', 'console', '--data', gw.dataDir, '--json']);
  assert.equal(r.status, 0, r.stderr);
  token = JSON.parse(r.stdout).token;
});
after(async () => { await gw.stop(); removeDir(gw.dataDir); });

test('requests without a valid token are refused and audited', async () => {
  assert.equal((await call('GET', '/_admin/servers')).status, 401);
  assert.equal((await call('GET', '/_admin/servers', { token: token + 'x' })).status, 401);
  const refused = auditRecords(gw.dataDir).filter((r) => r.operation.startsWith('admin.') && r.status === 401);
  assert.equal(refused.length, 2);
});

test('server lifecycle over the API: create, show, reset credentials, disable', async () => {
  const made = await call('POST', '/_admin/servers', { token, body: { name: 'api-one' } });
  assert.equal(made.status, 201, JSON.stringify(made.json));
  assert.equal(made.json.bucket, 'srv-api-one');
  assert.match(made.json.accessKeyId, /^SHS[A-Z0-9]{17}$/);
  assert.equal(made.json.secretAccessKey.length, 40);

  assert.equal((await call('POST', '/_admin/servers', { token, body: { name: 'api-one' } })).status, 409);
  assert.equal((await call('POST', '/_admin/servers', { token, body: { name: 'Bad Name!' } })).status, 400);

  const shown = await call('GET', '/_admin/servers/api-one', { token });
  assert.equal(shown.status, 200);
  assert.equal(shown.json.secretAccessKey, undefined, 'a secret is never shown again');
  assert.deepEqual(shown.json.accessKeys.map((k: { active: boolean }) => k.active), [true]);

  const reset = await call('POST', '/_admin/servers/api-one/reset-credentials', { token });
  assert.equal(reset.status, 200);
  assert.notEqual(reset.json.accessKeyId, made.json.accessKeyId);
  const after = await call('GET', '/_admin/servers/api-one', { token });
  assert.deepEqual(after.json.accessKeys.map((k: { active: boolean }) => k.active), [false, true]);

  const disabled = await call('POST', '/_admin/servers/api-one/disable', { token });
  assert.equal(disabled.json.disabled, true);
  assert.equal((await call('GET', '/_admin/servers/nope', { token })).status, 404);

  const list = await call('GET', '/_admin/servers', { token });
  assert.ok(list.json.some((s: { name: string }) => s.name === 'api-one'));
});

test('audit log over the API: read and verify; admin actions carry the token name', async () => {
  const v = await call('GET', '/_admin/audit/verify', { token });
  assert.equal(v.status, 200);
  assert.equal(v.json.ok, true, JSON.stringify(v.json.problems));
  const records = (await call('GET', '/_admin/audit', { token })).json as Array<{ operation: string; source: string; detail: unknown }>;
  const created = records.find((r) => r.operation === 'admin.CreateServer' && r.source === 'admin:console');
  assert.ok(created, 'server creation is in the log with its source');
  assert.ok(!JSON.stringify(records).includes('secretAccessKey'), 'no secret ever reaches the log');
  assert.equal(shelterd(['audit', 'verify', '--data', gw.dataDir]).status, 0);
});
