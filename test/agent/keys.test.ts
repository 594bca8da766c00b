// `shelter key add` / `shelter key list` against a real shelterd over HTTPS: a repository made with
// a key file gets a passphrase slot, a wrapping-key slot (key file) and a key-command slot, each a
// new keys/<id> object; the agent then opens the repository from the environment alone with only
// the passphrase (or only the wrapping key), and a wrong passphrase exits 5 with a clear message.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createKeySlot } from '@shelter/format';
import { createServer, type Gateway } from '../lib/gateway.ts';
import { startAgentFixture, type AgentFixture } from '../lib/fixture.ts';
import {
  EXIT, agentEnv, assertExit, assertNoStackTrace, listObjects, serverAudit, shelter, type Agent, type BackupSummary, type SnapshotRow,
} from '../lib/agent.ts';

const PASSPHRASE = 'correct horse battery staple, but longer';

interface SlotRow { id: string; kind: string; kdf: string | null; created: string | null; current: boolean; problem?: string }
interface KeyList { repository: string; fingerprint: string; source: string; slots: SlotRow[] }
interface Added { id: string; key: string; kind: string; kdf: string; created: string; keyFile?: string; keyFileCreated?: boolean }

describe('shelter key add / key list against shelterd over HTTPS', () => {
  let gw: Gateway;
  let server: ReturnType<typeof createServer>;
  let s3: S3Client;
  let agent: Agent;
  let work: string;
  let snapshotId: string;
  let passSlot: Added;
  /** an environment-only configuration (no config file, no key file) plus `extra` */
  let envOnly: (extra: Record<string, string>) => NodeJS.ProcessEnv;

  let fx: AgentFixture | undefined;

  before(async () => {
    fx = await startAgentFixture('keys');
    ({ gw, server, s3, work, agent } = fx);
    const src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'file.txt'), 'opened by any slot\n');
    snapshotId = (await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'keys', '--json'])).snapshotId;
    const home = join(work, 'env-only');
    mkdirSync(join(home, 'config'), { recursive: true });
    envOnly = (extra) => agentEnv(home, {
      SHELTER_CONFIG_DIR: join(home, 'config'), SHELTER_ENDPOINT: gw.url, SHELTER_BUCKET: server.bucket, SHELTER_CA_CERT: gw.caFile,
      AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, ...extra,
    });
  });

  after(async () => { await fx?.stop(); });

  it('key list before any slot: the key file in use, no slots', async () => {
    const list = await agent.json<KeyList>(['key', 'list', '--json']);
    assert.match(list.repository, /^[0-9a-f]{32}$/);
    assert.match(list.source, /key file/);
    assert.deepEqual(list.slots, []);
    const text = await agent.ok(['key', 'list']);
    assert.match(text.stdout, /no key slots/);
  });

  it('key add --passphrase-stdin: a new keys/<SHA-256> object, listed as a passphrase slot', async () => {
    const r = await shelter(['key', 'add', '--passphrase-stdin', '--json'], agent.env, { input: `${PASSPHRASE}\n` });
    assertExit(r, 0, 'key add --passphrase-stdin');
    passSlot = JSON.parse(r.stdout) as Added;
    assert.equal(passSlot.kind, 'passphrase');
    assert.equal(passSlot.kdf, 'scrypt');
    assert.equal(passSlot.key, `keys/${passSlot.id}`);
    const objects = await listObjects(s3, server.bucket, 'keys/');
    assert.deepEqual(objects.map((o) => o.key), [passSlot.key]);
    const list = await agent.json<KeyList>(['key', 'list', '--json']);
    assert.equal(list.slots.length, 1);
    assert.deepEqual(list.slots[0], { id: passSlot.id, kind: 'passphrase', kdf: 'scrypt', created: passSlot.created, current: false });
    const text = await agent.ok(['key', 'list']);
    assert.ok(text.stdout.includes(`${passSlot.id.slice(0, 16)}  passphrase`), text.stdout);
  });

  it('the passphrase alone opens the repository (SHELTER_KEY_SLOT + SHELTER_PASSPHRASE, or SHELTER_PASSPHRASE only)', async () => {
    const configs: Array<Record<string, string>> = [{ SHELTER_KEY_SLOT: passSlot.id.slice(0, 12), SHELTER_PASSPHRASE: PASSPHRASE }, { SHELTER_PASSPHRASE: PASSPHRASE }];
    for (const extra of configs) {
      const what = `snapshots with ${Object.keys(extra).join(' + ')}`;
      const r = await shelter(['snapshots', '--json'], envOnly(extra));
      assertExit(r, 0, what);
      assert.deepEqual((JSON.parse(r.stdout) as SnapshotRow[]).map((s) => s.id), [snapshotId], what);
      const list = JSON.parse((await shelter(['key', 'list', '--json'], envOnly(extra))).stdout) as KeyList;
      assert.deepEqual(list.slots.map((s) => s.current), [true], `${what}: key list marks the slot in use`);
      assert.match(list.source, new RegExp(`key slot ${passSlot.id}`));
    }
  });

  it('a wrong passphrase: exit 5 (wrong key), a clear message, no stack trace, nothing written', async () => {
    const puts = serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length;
    const configs: Array<Record<string, string>> = [{ SHELTER_KEY_SLOT: passSlot.id, SHELTER_PASSPHRASE: 'not the passphrase' }, { SHELTER_PASSPHRASE: 'not the passphrase' }];
    for (const extra of configs) {
      for (const args of [['snapshots'], ['key', 'add', '--passphrase-stdin']]) {
        const what = `${args.join(' ')} with a wrong passphrase (${Object.keys(extra).join(' + ')})`;
        const r = await shelter(args, envOnly(extra), { input: 'another long passphrase\n' });
        assertNoStackTrace(r, what);
        assertExit(r, EXIT.wrongKey, what);
        assert.match(r.stderr, /wrong passphrase/, what);
      }
    }
    assert.equal(serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length, puts);
  });

  it('key add --key-file: a wrapping key file made (0600), the slot opens with `cat FILE` as the key command', async () => {
    const file = join(work, 'wrapping.key');
    const added = await agent.json<Added>(['key', 'add', '--key-file', file, '--json']);
    assert.equal(added.kind, 'wrapping-key');
    assert.equal(added.kdf, 'none');
    assert.equal(added.keyFileCreated, true);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(readFileSync(file, 'utf8'), /^[0-9a-f]{64}\n$/);
    const configs: Array<Record<string, string>> = [{ SHELTER_KEY_SLOT: added.id, SHELTER_KEY_COMMAND: `cat ${file}` }, { SHELTER_KEY_COMMAND: `cat ${file}` }];
    for (const extra of configs) {
      const r = await shelter(['snapshots', '--json'], envOnly(extra));
      assertExit(r, 0, `snapshots with ${Object.keys(extra).join(' + ')}`);
      assert.deepEqual((JSON.parse(r.stdout) as SnapshotRow[]).map((s) => s.id), [snapshotId]);
    }
    // another wrapping key opens nothing: exit 5
    const other = join(work, 'other.key');
    writeFileSync(other, randomBytes(32).toString('hex') + '\n');
    const r = await shelter(['snapshots'], envOnly({ SHELTER_KEY_SLOT: added.id, SHELTER_KEY_COMMAND: `cat ${other}` }));
    assertNoStackTrace(r, 'snapshots with a wrong wrapping key');
    assertExit(r, EXIT.wrongKey, 'snapshots with a wrong wrapping key');
    assert.match(r.stderr, /wrong wrapping key/);
  });

  it('key add --key-command, from a passphrase-opened configuration: a third slot, same master key', async () => {
    const hex = randomBytes(32).toString('hex');
    const env = envOnly({ SHELTER_PASSPHRASE: PASSPHRASE });
    const r = await shelter(['key', 'add', '--key-command', `echo ${hex}`, '--json'], env);
    assertExit(r, 0, 'key add --key-command');
    const added = JSON.parse(r.stdout) as Added;
    const s = await shelter(['snapshots', '--json'], envOnly({ SHELTER_KEY_SLOT: added.id.slice(0, 8), SHELTER_KEY_COMMAND: `echo ${hex}` }));
    assertExit(s, 0, 'snapshots with the key-command slot');
    const list = await agent.json<KeyList>(['key', 'list', '--json']);
    assert.deepEqual(list.slots.map((x) => x.kind).sort(), ['passphrase', 'wrapping-key', 'wrapping-key']);
    assert.ok(list.slots.every((x) => !x.problem && !x.current), JSON.stringify(list.slots));
  });

  it('usage errors: a short passphrase, two secrets at once, an unknown slot (exit 2, nothing written)', async () => {
    const before = (await listObjects(s3, server.bucket, 'keys/')).length;
    const short = await shelter(['key', 'add', '--passphrase-stdin'], agent.env, { input: 'short\n' });
    assertExit(short, EXIT.usage, 'key add with a short passphrase');
    assert.match(short.stderr, /at least 8 characters/);
    const two = await shelter(['key', 'add', '--passphrase-stdin', '--key-command', 'true'], agent.env, { input: `${PASSPHRASE}\n` });
    assertExit(two, EXIT.usage, 'key add with two secrets');
    const unknown = await shelter(['snapshots'], envOnly({ SHELTER_KEY_SLOT: 'ffffffffffff', SHELTER_PASSPHRASE: PASSPHRASE }));
    assertNoStackTrace(unknown, 'snapshots with an unknown slot id');
    assertExit(unknown, EXIT.usage, 'snapshots with an unknown slot id');
    assert.equal((await listObjects(s3, server.bucket, 'keys/')).length, before);
  });

  it('slots planted through S3 (another key, same passphrase; bytes under a wrong name) neither open nor hide the real one', async () => {
    const list = await agent.json<KeyList>(['key', 'list', '--json']);
    const other = createKeySlot(randomBytes(32), Buffer.from(list.repository, 'hex'), { passphrase: PASSPHRASE }, { params: { N: 1024, r: 8, p: 1 } });
    const otherKey = `keys/${other.id.toString('hex')}`;
    const garbageKey = `keys/${'ab'.repeat(32)}`;
    await s3.send(new PutObjectCommand({ Bucket: server.bucket, Key: otherKey, Body: other.bytes }));
    await s3.send(new PutObjectCommand({ Bucket: server.bucket, Key: garbageKey, Body: Buffer.from('{"v":1}') }));
    const r = await shelter(['snapshots', '--json'], envOnly({ SHELTER_PASSPHRASE: PASSPHRASE }));
    assertExit(r, 0, 'snapshots with the passphrase alone, planted slots present');
    assert.deepEqual((JSON.parse(r.stdout) as SnapshotRow[]).map((s) => s.id), [snapshotId]);
    // named explicitly, the planted slot opens (it is the attacker's key) but the fingerprint lock refuses it
    const named = await shelter(['snapshots'], envOnly({ SHELTER_KEY_SLOT: other.id.toString('hex'), SHELTER_PASSPHRASE: PASSPHRASE }));
    assertNoStackTrace(named, 'snapshots with a planted slot named');
    assertExit(named, EXIT.wrongKey, 'snapshots with a planted slot named');
    const after = await agent.json<KeyList>(['key', 'list', '--json']);
    const byId = new Map(after.slots.map((x) => [x.id, x]));
    assert.match(byId.get(other.id.toString('hex'))!.problem ?? '', /another key or repository/);
    assert.equal(byId.get('ab'.repeat(32))!.kind, 'damaged');
    assert.match(byId.get('ab'.repeat(32))!.problem ?? '', /do not match its name/);
  });

  it('every slot the agent wrote is a new object named by its SHA-256; nothing was deleted or overwritten', async () => {
    const keys = (await listObjects(s3, server.bucket, 'keys/')).filter((o) => o.key !== `keys/${'ab'.repeat(32)}`);
    assert.equal(keys.length, 4, 'three added by the agent, one planted with a valid name');
    const records = serverAudit(gw.dataDir, server.id);
    assert.ok(!records.some((r) => /^(Delete|Abort)/.test(r.operation)), 'no delete');
    const writes = records.filter((r) => r.operation === 'PutObject' && r.status >= 200 && r.status < 300).map((r) => r.key!);
    assert.equal(new Set(writes).size, writes.length, 'no key written twice');
    for (const o of keys) {
      const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: server.bucket, Key: o.key }))).Body!.transformToByteArray());
      assert.equal(`keys/${createHash('sha256').update(body).digest('hex')}`, o.key);
    }
  });
});
