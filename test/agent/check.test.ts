// `shelter check` and the agent's failure modes, end to end against a real shelterd over HTTPS:
// a good repository passes `check --read-data`; then, each on its own repository (one server and
// bucket each, all in one gateway), damage the agent must report clearly, with a non-zero exit and
// never a stack trace: a missing pack (deleted through S3: a delete marker), a flipped byte in a
// pack, a truncated pack and a flipped byte in an index object (edited on the gateway's disk,
// gateway stopped; check reads the bucket, not the agent's local copies), a truncated pack
// written as a new version through S3, a wrong key (exit 5, nothing written). Then environment-only
// configuration (no config file) and the refusal of plain http:// without --insecure-http (exit 2).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { formatRun, pseudoRandomBytes, reportGatewayLogs, s3Client } from '../lib/clients.ts';
import { createServer, removeDir, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  EXIT, MiB, agentEnv, assertExit, assertNoStackTrace, assertSameTrees, initAgent, listObjects, makeAgent, objectFiles, scanTree,
  serverAudit, shelter, type Agent, type BackupSummary, type RunResult, type SnapshotRow,
} from '../lib/agent.ts';

const keep = process.env.SHELTER_TEST_KEEP === '1';

/** a small tree: two random files (several blobs, one data pack), text, a nested dir */
function smallTree(dir: string, seed: string): string {
  mkdirSync(join(dir, 'sub/deeper'), { recursive: true });
  writeFileSync(join(dir, 'a.bin'), pseudoRandomBytes(`${seed} a`, 3 * MiB));
  writeFileSync(join(dir, 'sub/b.bin'), pseudoRandomBytes(`${seed} b`, 2 * MiB + 123));
  writeFileSync(join(dir, 'sub/deeper/notes.txt'), `notes of ${seed}\n`.repeat(200));
  writeFileSync(join(dir, 'empty'), '');
  return dir;
}

/** the largest data pack of a bucket (blobs of file contents, not the trees' pack) */
async function largestPack(s3: S3Client, bucket: string): Promise<{ key: string; size: number }> {
  const packs = await listObjects(s3, bucket, 'data/');
  assert.ok(packs.length > 0, 'the bucket holds no pack');
  return packs.sort((a, b) => b.size - a.size)[0]!;
}

function assertMentions(r: RunResult, what: string, ...patterns: Array<RegExp | string>): void {
  const text = r.stdout + r.stderr;
  for (const p of patterns) {
    const ok = typeof p === 'string' ? text.includes(p) : p.test(text);
    assert.ok(ok, `${what}: the output should mention ${p}\n${formatRun(r)}`);
  }
}

/** check must fail with exit 4, name `packKey`, and print no stack trace */
function assertCheckFound(r: RunResult, what: string, packKey: string, ...patterns: RegExp[]): void {
  assertNoStackTrace(r, what);
  assertExit(r, EXIT.checkFailed, what);
  assertMentions(r, what, packKey, ...patterns);
}

interface Repo { name: string; agent: Agent; src: string; server: ReturnType<typeof createServer>; s3: S3Client; backup: BackupSummary }

describe('shelter check and failure modes (real shelterd over HTTPS)', () => {
  let gw: Gateway;
  let work: string;
  const repos = new Map<string, Repo>();
  const repo = (name: string) => repos.get(name)!;

  before(async () => {
    gw = await startGateway();
    reportGatewayLogs(gw);
    work = tempDir('shelter-agent-check-');
    for (const name of ['good', 'missing', 'treeloss', 'flip', 'trunc-disk', 'trunc-s3', 'wrongkey', 'index-flip']) {
      const server = createServer(gw.dataDir, `check-${name}`);
      const agent = await initAgent(gw, server, { home: join(work, `agent-${name}`) });
      const src = smallTree(join(work, `src-${name}`), name);
      const backup = await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'files', '--json'], `backup of ${name}`);
      repos.set(name, { name, agent, src, server, s3: s3Client(gw, server), backup });
    }
  });

  after(async () => {
    reportGatewayLogs(null);
    for (const r of repos.values()) r.s3.destroy();
    await gw?.stop();
    if (!keep) { removeDir(work); removeDir(gw.dataDir); }
  });

  it('check and check --read-data pass on a good repository', async () => {
    const { agent } = repo('good');
    const plain = await agent.ok(['check']);
    assertNoStackTrace(plain, 'check');
    const r = await agent.json<{ ok: boolean; problems: string[]; snapshots: number; packs: number; packsRead: number }>(['check', '--read-data', '--json']);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(r.problems, []);
    assert.equal(r.snapshots, 1);
    assert.ok(r.packs >= 1 && r.packsRead === r.packs, `every pack read: ${JSON.stringify(r)}`);
    const text = await agent.ok(['check', '--read-data']);
    assertNoStackTrace(text, 'check --read-data');
  });

  it('key list, key export and config validate work', async () => {
    const { agent } = repo('good');
    const list = await agent.json<{ repository: string; fingerprint: string }>(['key', 'list', '--json']);
    assert.match(list.repository, /^[0-9a-f]{32}$/);
    assert.match(list.fingerprint, /^[0-9a-f]{32}$/);
    const kit = await agent.ok(['key', 'export']);
    assert.match(kit.stdout, /master key:/i);
    assert.ok(kit.stdout.includes(list.fingerprint), `the recovery kit names the fingerprint\n${kit.stdout}`);
    const key = readFileSync(agent.keyFile, 'utf8');
    assert.ok(!kit.stdout.includes(key.replace(/^#.*\n/gm, '').trim()), 'the kit holds the key in base32, not the key file text');
    await agent.ok(['config', 'validate']);
  });

  it('a missing pack (deleted through S3: a delete marker) is reported by check, and restore does not pretend success', async () => {
    const { agent, server, s3 } = repo('missing');
    const pack = await largestPack(s3, server.bucket);
    await s3.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: pack.key }));
    const plain = await agent.run(['check']);
    assertCheckFound(plain, 'check after a pack was deleted', pack.key, /missing/i);
    const full = await agent.run(['check', '--read-data']);
    assertCheckFound(full, 'check --read-data after a pack was deleted', pack.key, /missing/i);
    const target = join(work, 'restore-missing');
    const rr = await agent.run(['restore', 'latest', '--name', 'files', '--target', target]);
    assertNoStackTrace(rr, 'restore with a missing pack');
    // the files whose chunks were in it are named and not written; the others are restored (exit 3)
    assertExit(rr, EXIT.warnings, 'restore with a missing pack');
    assertMentions(rr, 'restore with a missing pack', /missing/i, pack.key.slice(pack.key.lastIndexOf('/') + 1));
  });

  it('a missing tree pack is reported by check (the root tree named), and ls fails clearly', async () => {
    const { agent, server, s3 } = repo('treeloss');
    // trees have packs of their own; in this small repository the trees' pack is the smallest
    const treePack = (await listObjects(s3, server.bucket, 'data/')).sort((a, b) => a.size - b.size)[0]!;
    await s3.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: treePack.key }));
    const r = await agent.run(['check']);
    assertCheckFound(r, 'check after the tree pack was deleted', treePack.key, /missing/i, /first needed by snapshot [0-9a-f]{12}:\)/);
    const ls = await agent.run(['ls', 'latest']);
    assertNoStackTrace(ls, 'ls with a missing tree pack');
    assert.notEqual(ls.status, 0, `ls with a missing tree pack must not exit 0\n${formatRun(ls)}`);
    assertMentions(ls, 'ls with a missing tree pack', treePack.key, /missing/i);
  });

  it('a truncated pack written as a new version through S3 is reported by check --read-data', async () => {
    const { agent, server, s3 } = repo('trunc-s3');
    const pack = await largestPack(s3, server.bucket);
    const got = await s3.send(new GetObjectCommand({ Bucket: server.bucket, Key: pack.key }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    assert.equal(bytes.length, pack.size);
    await s3.send(new PutObjectCommand({ Bucket: server.bucket, Key: pack.key, Body: bytes.subarray(0, Math.floor(bytes.length / 2)) }));
    const r = await agent.run(['check', '--read-data']);
    assertCheckFound(r, 'check --read-data after a pack was truncated (new version)', pack.key, /truncat|size|length|bytes|corrupt/i);
  });

  describe('damage on the gateway\'s disk (gateway stopped while editing)', () => {
    const damaged: Record<string, string> = {};
    before(async () => {
      const flipPack = await largestPack(repo('flip').s3, repo('flip').server.bucket);
      const truncPack = await largestPack(repo('trunc-disk').s3, repo('trunc-disk').server.bucket);
      const [indexObject] = await listObjects(repo('index-flip').s3, repo('index-flip').server.bucket, 'index/');
      const port = gw.port;
      await gw.stop();
      // one flipped byte in the middle of the pack (inside a blob)
      const [f] = objectFiles(gw.dataDir, repo('flip').server.bucket, flipPack.key);
      const mid = Math.floor(f!.size / 2);
      const fd = openSync(f!.path, 'r+');
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, mid);
      b[0] = b[0]! ^ 0x04;
      writeSync(fd, b, 0, 1, mid);
      closeSync(fd);
      damaged.flip = flipPack.key;
      // the pack's file cut to a third (a damaged disk: the gateway's metadata still says the full size)
      const files = objectFiles(gw.dataDir, repo('trunc-disk').server.bucket, truncPack.key);
      const last = files[files.length - 1]!;
      truncateSync(last.path, Math.floor(last.size / 3));
      damaged.truncDisk = truncPack.key;
      // one flipped byte in an index object (the agent that wrote it keeps a good local copy)
      const [ix] = objectFiles(gw.dataDir, repo('index-flip').server.bucket, indexObject!.key);
      const ixBytes = readFileSync(ix!.path);
      ixBytes[ixBytes.length >> 1] = ixBytes[ixBytes.length >> 1]! ^ 0x10;
      writeFileSync(ix!.path, ixBytes);
      damaged.indexFlip = indexObject!.key;
      gw = await startGateway({ dataDir: gw.dataDir, port });
      reportGatewayLogs(gw);
    });

    it('a flipped byte in a pack: check --read-data exits 4 naming the pack', async () => {
      const { agent } = repo('flip');
      const r = await agent.run(['check', '--read-data']);
      assertCheckFound(r, 'check --read-data after a flipped byte', damaged.flip!, /corrupt|does not match|decrypt|authenticat|checksum/i);
    });

    it('a flipped byte in a pack: restore does not exit 0 and writes no wrong data silently', async () => {
      const { agent } = repo('flip');
      const target = join(work, 'restore-flip');
      const r = await agent.run(['restore', 'latest', '--name', 'files', '--target', target]);
      assertNoStackTrace(r, 'restore after a flipped byte');
      assert.notEqual(r.status, 0, `restore of a damaged pack must not exit 0\n${formatRun(r)}`);
      assertMentions(r, 'restore after a flipped byte', /corrupt|decrypt|checksum|authenticat|mismatch|damaged/i);
    });

    it('a flipped byte in an index object: check reads the bucket, not the agent\'s local copy, and names it', async () => {
      const { agent } = repo('index-flip');
      // bounded: the agent must exit once it has said so (its seal workers had started)
      const r = await agent.run(['check'], {}, { timeoutMs: 30_000 });
      assertNoStackTrace(r, 'check after a flipped byte in an index object');
      assert.notEqual(r.status, 0, `check must fail\n${formatRun(r)}`);
      assertMentions(r, 'check after a flipped byte in an index object', damaged.indexFlip!, /corrupt|decrypt|does not match|damaged/i);
    });

    it('a truncated pack on disk: check --read-data exits 4 naming the pack', async () => {
      const { agent } = repo('trunc-disk');
      // bounded: a 5 MiB repository must be checked in far less than this
      const r = await agent.run(['check', '--read-data'], {}, { timeoutMs: 45_000 });
      // what the agent can say depends on how the gateway serves a short file (an error, a cut
      // connection): naming the pack with exit 4 is what counts
      assertCheckFound(r, 'check --read-data after a pack was truncated on disk', damaged.truncDisk!);
    });
  });

  describe('wrong key (fingerprint lock)', () => {
    it('init with another key file on an existing repository: exit 5, "wrong key", nothing written', async () => {
      const { server } = repo('wrongkey');
      const other = makeAgent(join(work, 'agent-wrongkey-other'));
      mkdirSync(other.home, { recursive: true });
      writeFileSync(other.keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
      const putsBefore = serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length;
      const r = await other.run(['init', '--endpoint', gw.url, '--bucket', server.bucket, '--access-key', server.accessKeyId,
        '--secret-key', server.secretAccessKey, '--ca-cert', gw.caFile, '--key-file', other.keyFile]);
      assertNoStackTrace(r, 'init with a wrong key');
      assertExit(r, EXIT.wrongKey, 'init with a wrong key');
      assertMentions(r, 'init with a wrong key', /wrong key|fingerprint/i);
      assert.ok(!existsSync(join(other.configDir, 'config.yaml')), 'init with a wrong key must not write a configuration');
      const putsAfter = serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length;
      assert.equal(putsAfter, putsBefore, 'init with a wrong key must not write to the bucket');
    });

    it('every command with a replaced key file: exit 5, "wrong key", no write; the right key works again', async () => {
      const { agent, server, src, s3 } = repo('wrongkey');
      const original = readFileSync(agent.keyFile);
      const objectsBefore = (await listObjects(s3, server.bucket)).map((o) => o.key);
      const putsBefore = serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length;
      writeFileSync(agent.keyFile, randomBytes(32).toString('hex') + '\n');
      try {
        writeFileSync(join(src, 'new-file.txt'), 'would be new\n');
        for (const args of [['backup', 'files', src, '--name', 'files', '--json'], ['snapshots', '--json'], ['check', '--read-data'],
          ['restore', 'latest', '--name', 'files', '--target', join(work, 'restore-wrongkey')], ['config', 'validate'], ['key', 'list']]) {
          const r = await agent.run(args);
          const what = `shelter ${args[0]} with a wrong key file`;
          assertNoStackTrace(r, what);
          assertExit(r, EXIT.wrongKey, what);
          assertMentions(r, what, /wrong key|fingerprint/i);
        }
        assert.ok(!existsSync(join(work, 'restore-wrongkey')) || readdirSync(join(work, 'restore-wrongkey')).length === 0, 'restore with a wrong key wrote files');
        // the key from the environment wins over the file: a wrong SHELTER_KEY is refused as well
        const envKey = await agent.run(['snapshots'], { SHELTER_KEY: randomBytes(32).toString('hex') });
        assertExit(envKey, EXIT.wrongKey, 'snapshots with a wrong SHELTER_KEY');
      } finally {
        writeFileSync(agent.keyFile, original);
      }
      const putsAfter = serverAudit(gw.dataDir, server.id).filter((a) => a.operation === 'PutObject').length;
      assert.equal(putsAfter, putsBefore, 'nothing may be written with a wrong key');
      assert.deepEqual((await listObjects(s3, server.bucket)).map((o) => o.key), objectsBefore);
      await agent.ok(['check', '--read-data'], 'check with the right key again');
      const rows = await agent.json<SnapshotRow[]>(['snapshots', '--json']);
      assert.equal(rows.length, 1);
    });
  });

  it('environment-only configuration: backup, snapshots, restore, check without any config file', async () => {
    const server = createServer(gw.dataDir, 'check-envonly');
    // the repository is created once (any machine); this one then runs from the environment alone
    const creator = await initAgent(gw, server, { home: join(work, 'agent-envonly-creator') });
    const keyHex = readFileSync(creator.keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))[0]!.trim();
    assert.match(keyHex, /^[0-9a-fA-F]{64}$/, 'the key file holds 64 hex digits');
    const home = join(work, 'envonly-home');
    const configDir = join(home, 'empty-config');
    mkdirSync(configDir, { recursive: true });
    const env = agentEnv(home, {
      SHELTER_CONFIG_DIR: configDir, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      SHELTER_ENDPOINT: gw.url, SHELTER_BUCKET: server.bucket, SHELTER_CA_CERT: gw.caFile, SHELTER_KEY: keyHex,
    });
    const src = smallTree(join(work, 'src-envonly'), 'envonly');
    const b = await shelter(['backup', 'files', src, '--name', 'env', '--json'], env);
    assertExit(b, 0, 'backup from the environment alone');
    const summary = JSON.parse(b.stdout) as BackupSummary;
    assert.match(summary.snapshotId, /^[0-9a-f]{64}$/);
    const s = await shelter(['snapshots', '--json'], env);
    assertExit(s, 0, 'snapshots from the environment alone');
    assert.deepEqual((JSON.parse(s.stdout) as SnapshotRow[]).map((r) => r.id), [summary.snapshotId]);
    const target = join(work, 'restore-envonly');
    const r = await shelter(['restore', 'latest', '--name', 'env', '--target', target], env);
    assertExit(r, 0, 'restore from the environment alone');
    assertSameTrees(scanTree(src), scanTree(join(target, src)), 'restore from the environment alone');
    const c = await shelter(['check', '--read-data'], env);
    assertExit(c, 0, 'check --read-data from the environment alone');
    assert.deepEqual(readdirSync(configDir), [], 'no configuration file was written');
    assert.ok(!existsSync(join(home, 'xdg-config', 'shelter')), 'no configuration file was written under XDG_CONFIG_HOME');
    // the creator sees the snapshot too (same repository, same key)
    const rows = await creator.json<SnapshotRow[]>(['snapshots', '--json']);
    assert.equal(rows.length, 1);
  });

  it('an AWS profile or AWS_* settings of the shell do not change where or how the agent talks (its own config decides)', async () => {
    const { agent, src } = repo('good');
    // settings the AWS SDK would otherwise take from ~/.aws/config and the environment: FIPS and
    // dual-stack endpoints (refused with a custom endpoint), another endpoint, another profile
    mkdirSync(join(agent.home, '.aws'), { recursive: true });
    writeFileSync(join(agent.home, '.aws', 'config'), '[default]\nuse_fips_endpoint = true\nuse_dualstack_endpoint = true\nendpoint_url = https://127.0.0.1:9\nrequest_checksum_calculation = bogus\n');
    const hostile = { AWS_USE_FIPS_ENDPOINT: 'true', AWS_USE_DUALSTACK_ENDPOINT: 'true', AWS_ENDPOINT_URL: 'https://127.0.0.1:9', AWS_ENDPOINT_URL_S3: 'https://127.0.0.1:9' };
    try {
      const b = await agent.run(['backup', 'files', src, '--name', 'profile', '--json'], hostile);
      assertExit(b, 0, 'backup under a hostile AWS profile');
      const rows = JSON.parse((await agent.run(['snapshots', '--name', 'profile', '--json'], hostile)).stdout) as SnapshotRow[];
      assert.deepEqual(rows.map((r) => r.id), [(JSON.parse(b.stdout) as BackupSummary).snapshotId]);
    } finally { removeDir(join(agent.home, '.aws')); }
  });

  describe('plain http:// needs --insecure-http', () => {
    it('init with an http:// endpoint and no flag: exit 2, nothing sent, no config written', async () => {
      const server = createServer(gw.dataDir, 'check-http');
      const agent = makeAgent(join(work, 'agent-http'));
      const httpUrl = gw.url.replace(/^https:/, 'http:');
      const r = await agent.run(['init', '--endpoint', httpUrl, '--bucket', server.bucket, '--access-key', server.accessKeyId,
        '--secret-key', server.secretAccessKey, '--key-file', agent.keyFile]);
      assertNoStackTrace(r, 'init with http://');
      assertExit(r, EXIT.usage, 'init with http://');
      assertMentions(r, 'init with http://', /https|insecure-http/i);
      assert.ok(!existsSync(join(agent.configDir, 'config.yaml')), 'no configuration written');
      // the environment-only path refuses it too
      const env = await agent.run(['snapshots'], {
        SHELTER_ENDPOINT: httpUrl, SHELTER_BUCKET: server.bucket, AWS_ACCESS_KEY_ID: server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.secretAccessKey, SHELTER_KEY: randomBytes(32).toString('hex'),
      });
      assertNoStackTrace(env, 'snapshots with SHELTER_ENDPOINT=http://');
      assertExit(env, EXIT.usage, 'snapshots with SHELTER_ENDPOINT=http://');
      // and so does the deletion-request path, which signs its own requests
      const dels = await agent.run(['deletions'], {
        SHELTER_ENDPOINT: httpUrl, SHELTER_BUCKET: server.bucket, AWS_ACCESS_KEY_ID: server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.secretAccessKey, SHELTER_KEY: randomBytes(32).toString('hex'),
      });
      assertNoStackTrace(dels, 'deletions with SHELTER_ENDPOINT=http://');
      assertExit(dels, EXIT.usage, 'deletions with SHELTER_ENDPOINT=http://');
      assert.deepEqual(serverAudit(gw.dataDir, server.id), [], 'the agent sent nothing to the endpoint it refused');
    });

    it('with --insecure-http, an http:// gateway works (the flag is what decides)', async () => {
      const plain = await startGateway({ http: true });
      try {
        const server = createServer(plain.dataDir, 'check-http-ok');
        const agent = makeAgent(join(work, 'agent-http-ok'));
        await agent.ok(['init', '--endpoint', plain.url, '--bucket', server.bucket, '--access-key', server.accessKeyId,
          '--secret-key', server.secretAccessKey, '--key-file', agent.keyFile, '--insecure-http']);
        const src = smallTree(join(work, 'src-http'), 'http');
        await agent.ok(['backup', 'files', src, '--name', 'files', '--json']);
        await agent.ok(['check', '--read-data']);
      } finally {
        await plain.stop();
        if (!keep) removeDir(plain.dataDir);
      }
    });
  });

  describe('storage errors', () => {
    it('a wrong secret key: exit 6 (access denied), a clear message', async () => {
      const { agent } = repo('good');
      const r = await agent.run(['snapshots'], { AWS_SECRET_ACCESS_KEY: 'x'.repeat(40) });
      assertNoStackTrace(r, 'snapshots with a wrong secret key');
      assertExit(r, EXIT.storage, 'snapshots with a wrong secret key');
      assertMentions(r, 'snapshots with a wrong secret key', /denied|signature|forbidden|403/i);
    });

    it('an endpoint where nothing listens: exit 6, a clear message', async () => {
      const { agent } = repo('good');
      const r = await agent.run(['snapshots'], { SHELTER_ENDPOINT: 'https://127.0.0.1:9' });
      assertNoStackTrace(r, 'snapshots with an unreachable endpoint');
      assertExit(r, EXIT.storage, 'snapshots with an unreachable endpoint');
      assertMentions(r, 'snapshots with an unreachable endpoint', /ECONNREFUSED|unreachable|connect/i);
    });
  });
});
