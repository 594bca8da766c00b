// Controlled deletion (G8), end to end against a real shelterd over HTTPS with the real agent:
// reference manifests checked and write-once; `shelter forget` files a request with the server's
// own credentials; cancel; the 14-day delay with a moved clock (13 days: nothing; 14: deleted);
// shared packs survive and the newer snapshot restores byte-identically and passes check
// --read-data; a server cannot make anything disappear early by any S3 or API call; kill -9 of
// the executor (before and after its transaction) completes exactly once; a retention policy and
// the collection of unreferenced leftovers go through the same delayed path; storage use before
// and after; the audit log holds every step and verifies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  CopyObjectCommand, CreateMultipartUploadCommand, DeleteObjectCommand, PutObjectLegalHoldCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { pseudoRandomBytes, reportGatewayLogs, s3Client } from '../lib/clients.ts';
import { auditRecords, createOperatorKey, createServer, filesUnder, nodeBin, removeDir, shelterd, shelterdBin, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import { MiB, assertSameTrees, initAgent, scanTree, type Agent, type BackupSummary, type SnapshotRow } from '../lib/agent.ts';

const DAY = 24 * 60 * 60 * 1000;
const keep = process.env.SHELTER_TEST_KEEP === '1';

interface Request { id: string; status: string; kind: string; target: string | null; objects: string[] | null; createdAt: string; dueAt: string; requestedBy: string; statusReason: string | null; result: Record<string, unknown> | null }
interface Usage { server: string; bytes: number; objects: number; versions: number; names: Array<{ name: string; snapshots: number; objects: number; bytes: number }> }

function cli(gw: Gateway, args: string[], offsetMs = 0, env: Record<string, string> = {}): string {
  const r = shelterd([...args, '--data', gw.dataDir], { SHELTERD_CLOCK_OFFSET_MS: String(offsetMs), ...env });
  assert.equal(r.status, 0, `shelterd ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const cliJson = <T>(gw: Gateway, args: string[], offsetMs = 0): T => JSON.parse(cli(gw, [...args, '--json'], offsetMs)) as T;
const deletions = (gw: Gateway, server: string) => cliJson<Request[]>(gw, ['deletion', 'list', '--server', server]);
const usage = (gw: Gateway, server: string) => cliJson<Usage[]>(gw, ['usage', server])[0]!;
/** one deletion cycle with the gateway's clock moved by `offsetMs` */
const runCycle = (gw: Gateway, offsetMs: number) => cliJson<{ executed: string[]; waiting: string[]; filedByPolicy: string[]; filedForOrphans: string[] }>(gw, ['deletion', 'run'], offsetMs);

async function versionsOf(s3: S3Client, bucket: string, prefix = ''): Promise<Array<{ key: string; versionId: string }>> {
  const out: Array<{ key: string; versionId: string }> = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const r = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    for (const v of [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])]) out.push({ key: v.Key!, versionId: v.VersionId! });
    if (!r.IsTruncated) return out;
    keyMarker = r.NextKeyMarker;
    versionMarker = r.NextVersionIdMarker;
  }
}

async function getManifest(s3: S3Client, bucket: string, snapshot: string): Promise<{ packs: string[]; indexes: string[]; snapshot: string }> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `manifests/${snapshot}` }));
  return JSON.parse(await r.Body!.transformToString()) as { packs: string[]; indexes: string[]; snapshot: string };
}

async function status(s3: S3Client, bucket: string, key: string): Promise<number> {
  try { await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })); return 200; } catch (e) { return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0; }
}

/** a tree whose second version shares most packs with the first */
function writeTree(dir: string, generation: number): void {
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'big-a.bin'), pseudoRandomBytes('deletion a', 3 * MiB));
  writeFileSync(join(dir, 'sub/big-b.bin'), pseudoRandomBytes('deletion b', 2 * MiB + 77));
  writeFileSync(join(dir, 'notes.txt'), `generation ${generation}\n`.repeat(100));
  if (generation >= 2) writeFileSync(join(dir, `new-${generation}.bin`), pseudoRandomBytes(`deletion gen ${generation}`, 1 * MiB + 5));
}

interface Setup { name: string; agent: Agent; s3: S3Client; bucket: string; id: string; src: string; snaps: string[] }

describe('controlled deletion: requests, delay, cancel, executor, retention, GC (real shelterd over HTTPS)', () => {
  let gw: Gateway;
  let work: string;
  const setups = new Map<string, Setup>();

  async function setup(name: string, backups: number): Promise<Setup> {
    const server = createServer(gw.dataDir, name);
    const agent = await initAgent(gw, server, { home: join(work, `agent-${name}`) });
    const src = join(work, `src-${name}`);
    const snaps: string[] = [];
    for (let g = 1; g <= backups; g++) {
      writeTree(src, g);
      snaps.push((await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'files', '--json'])).snapshotId);
    }
    const s: Setup = { name, agent, s3: s3Client(gw, server), bucket: server.bucket, id: server.id, src, snaps };
    setups.set(name, s);
    return s;
  }

  before(async () => {
    gw = await startGateway({ env: { SHELTERD_DELETION_INTERVAL_MS: '3600000' } }); // cycles run by the tests, with a moved clock
    reportGatewayLogs(gw);
    work = tempDir('shelter-deletion-');
  });

  after(async () => {
    reportGatewayLogs(null);
    for (const s of setups.values()) s.s3.destroy();
    await gw?.stop();
    if (!keep) { removeDir(work); removeDir(gw.dataDir); }
  });

  it('reference manifests are registered when valid, refused when they list missing objects, are malformed or already exist', async () => {
    const s = await setup('del-manifest', 1);
    const u = usage(gw, s.name);
    assert.deepEqual(u.names.map((n) => [n.name, n.snapshots]), [['files', 1]], JSON.stringify(u));
    const m = await getManifest(s.s3, s.bucket, s.snaps[0]!);
    const put = (key: string, body: string | Buffer) => s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: key, Body: body }));
    const code = async (p: Promise<unknown>) => { try { await p; return 'OK'; } catch (e) { return (e as Error).name; } };
    // write-once: the same bytes again, and a shorter list, are both refused
    const same = JSON.stringify({ v: 1, name: 'files', time: new Date().toISOString(), snapshot: m.snapshot, packs: m.packs, indexes: m.indexes });
    assert.equal(await code(put(`manifests/${s.snaps[0]}`, same)), 'AccessDenied');
    // a new snapshot id whose manifest lists a pack that does not exist
    const fake = randomBytes(32).toString('hex');
    const missingPack = `data/${fake.slice(0, 2)}/${fake}`;
    const bad = JSON.stringify({ v: 1, name: 'files', time: new Date().toISOString(), snapshot: `snapshots/${fake}`, packs: [missingPack], indexes: m.indexes });
    assert.equal(await code(put(`manifests/${fake}`, bad)), 'InvalidRequest');
    assert.equal(await code(put(`manifests/${fake}`, 'not json')), 'InvalidRequest');
    // copies and multipart uploads cannot create manifests
    assert.equal(await code(s.s3.send(new CopyObjectCommand({ Bucket: s.bucket, Key: `manifests/${fake}`, CopySource: `${s.bucket}/manifests/${s.snaps[0]}` }))), 'InvalidRequest');
    assert.equal(await code(s.s3.send(new CreateMultipartUploadCommand({ Bucket: s.bucket, Key: `manifests/${fake}` }))), 'InvalidRequest');
    assert.equal(await status(s.s3, s.bucket, `manifests/${fake}`), 404);
    assert.equal(usage(gw, s.name).names[0]!.snapshots, 1);
  });

  it('forget then cancel deletes nothing; a request does nothing at 13 days and deletes at 14; shared packs survive and the newer snapshot restores and checks', async () => {
    const s = await setup('del-main', 2);
    const [older, newer] = s.snaps as [string, string];
    const before = usage(gw, s.name);
    const versionsBefore = await versionsOf(s.s3, s.bucket);

    // 1. request with the server's own credentials, then cancel: nothing is deleted, even long after
    const first = await s.agent.json<Request & { created: boolean }>(['forget', older, '--reason', 'test: cancel me', '--json']);
    assert.equal(first.status, 'pending');
    assert.equal(first.created, true);
    assert.ok(Date.parse(first.dueAt) - Date.parse(first.createdAt) >= 14 * DAY, `due 14 days later: ${first.createdAt} -> ${first.dueAt}`);
    assert.equal((await s.agent.json<SnapshotRow[]>(['snapshots', '--json'])).length, 2, 'the snapshot stays listed while the request is pending');
    const cancelled = cliJson<Request>(gw, ['deletion', 'cancel', first.id, '--reason', 'changed my mind']);
    assert.equal(cancelled.status, 'cancelled');
    const c1 = runCycle(gw, 30 * DAY);
    assert.deepEqual(c1.executed, []);
    assert.equal(deletions(gw, s.name).find((r) => r.id === first.id)!.status, 'cancelled');
    assert.deepEqual(await versionsOf(s.s3, s.bucket), versionsBefore, 'a cancelled request removes nothing');

    // 2. a new request: 13 days later nothing happens, 14 days later the snapshot is gone
    const req = await s.agent.json<Request & { created: boolean }>(['forget', older, '--reason', 'test: delete the older one', '--json']);
    assert.notEqual(req.id, first.id);
    const again = await s.agent.json<Request & { created: boolean }>(['forget', older, '--json']);
    assert.equal(again.id, req.id, 'filing twice returns the open request');
    assert.equal(again.created, false);
    const c13 = runCycle(gw, 13 * DAY);
    assert.deepEqual(c13.executed, []);
    assert.equal(deletions(gw, s.name).find((r) => r.id === req.id)!.status, 'pending');
    assert.deepEqual(await versionsOf(s.s3, s.bucket), versionsBefore, 'nothing is removed before the delay');
    assert.equal((await s.agent.json<SnapshotRow[]>(['snapshots', '--json'])).length, 2);

    const olderManifest = await getManifest(s.s3, s.bucket, older);
    const newerManifest = await getManifest(s.s3, s.bucket, newer);
    const shared = olderManifest.packs.filter((p) => newerManifest.packs.includes(p));
    const onlyOlder = olderManifest.packs.filter((p) => !newerManifest.packs.includes(p));
    assert.ok(shared.length >= 1, 'the two snapshots share packs');
    const c14 = runCycle(gw, 14 * DAY + 60_000);
    assert.deepEqual(c14.executed, [req.id]);
    const done = cliJson<Request>(gw, ['deletion', 'show', req.id]);
    assert.equal(done.status, 'done');

    // gone from storage: every version of the older snapshot's own objects and of packs only it used
    const after = await versionsOf(s.s3, s.bucket);
    for (const key of [`manifests/${older}`, olderManifest.snapshot, ...onlyOlder]) {
      assert.equal(after.filter((v) => v.key === key).length, 0, `${key} is removed (every version)`);
    }
    // everything the newer snapshot references is intact
    for (const key of [`manifests/${newer}`, newerManifest.snapshot, ...newerManifest.packs, ...newerManifest.indexes]) {
      assert.equal(await status(s.s3, s.bucket, key), 200, `${key} survives`);
    }
    const u = usage(gw, s.name);
    assert.ok(u.versions < before.versions && u.bytes < before.bytes, `usage drops: ${JSON.stringify(before)} -> ${JSON.stringify(u)}`);
    assert.deepEqual(u.names.map((n) => [n.name, n.snapshots]), [['files', 1]]);
    const result = done.result as { usageBefore: { bytes: number }; usageAfter: { bytes: number }; versions: number };
    assert.equal(result.usageBefore.bytes, before.bytes);
    assert.equal(result.usageAfter.bytes, u.bytes);
    assert.equal(result.versions, versionsBefore.length - after.length);

    const snaps = await s.agent.json<SnapshotRow[]>(['snapshots', '--json']);
    assert.deepEqual(snaps.map((x) => x.id), [newer]);
    const target = join(work, 'restore-main');
    await s.agent.ok(['restore', newer, '--target', target]);
    assertSameTrees(scanTree(s.src), scanTree(join(target, s.src)), 'restore of the newer snapshot after the older was deleted');
    const check = await s.agent.json<{ ok: boolean; problems: string[] }>(['check', '--read-data', '--json']);
    assert.deepEqual(check.problems, []);

    // every step is in the audit log, the execution exactly once, and the log verifies
    const audit = auditRecords(gw.dataDir);
    assert.ok(audit.some((r) => r.operation === 'CreateDeletionRequest' && r.source === `server:${s.id}` && r.status === 201), 'request by the server');
    assert.ok(audit.some((r) => r.operation === 'admin.CancelDeletionRequest' && (r.detail as { request?: string })?.request === first.id), 'cancel');
    assert.equal(audit.filter((r) => r.operation === 'DeletionExecuted' && (r.detail as { request?: string })?.request === req.id).length, 1, 'executed once');
    assert.ok(audit.some((r) => r.operation === 'DeletionRemoveObject' && r.key === olderManifest.snapshot), 'each removed object audited');
    cli(gw, ['audit', 'verify']);
  });

  it("a server's credentials can file a request but cannot make anything disappear before the delay", async () => {
    const s = await setup('del-attacker', 1);
    const other = setups.get('del-manifest')!;
    const [snap] = s.snaps as [string];
    const req = await s.agent.json<Request>(['forget', snap, '--json']);
    const before = await versionsOf(s.s3, s.bucket);
    const pack = (await getManifest(s.s3, s.bucket, snap)).packs[0]!;
    const packVersion = before.find((v) => v.key === pack)!.versionId;
    const code = async (p: Promise<unknown>) => { try { await p; return 'OK'; } catch (e) { return (e as Error).name; } };
    assert.equal(await code(s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: pack, VersionId: packVersion }))), 'AccessDenied');
    const multi = await s.s3.send(new DeleteObjectsCommand({ Bucket: s.bucket, Delete: { Objects: [{ Key: pack, VersionId: packVersion }, { Key: `manifests/${snap}`, VersionId: before.find((v) => v.key === `manifests/${snap}`)!.versionId }] } }));
    assert.equal(multi.Deleted?.length ?? 0, 0);
    assert.deepEqual(multi.Errors?.map((e) => e.Code), ['AccessDenied', 'AccessDenied']);
    // a plain DELETE only adds a delete marker; overwriting a manifest is refused
    await s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: pack }));
    assert.equal(await code(s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: `manifests/${snap}`, Body: '{}' }))), 'AccessDenied');
    // another server's snapshot, or its bucket
    const res = await fetch(`${gw.url}/${other.bucket}?deletion-request=`, { method: 'POST', body: '{}' }).catch(() => null);
    assert.ok(!res || res.status === 403, 'anonymous deletion requests are refused');
    const cross = await s.agent.run(['forget', other.snaps[0]!]);
    assert.notEqual(cross.status, 0, 'a snapshot of another repository is unknown to this agent');
    // the admin API needs an admin token, which no server has
    const admin = await fetch(`${gw.url}/_admin/deletions`, { method: 'POST', body: JSON.stringify({ server: s.name, allData: true, reason: 'x', delayDays: 0 }), dispatcher: undefined } as RequestInit).catch(() => null);
    assert.ok(!admin || admin.status === 401);
    // a delay below 14 days is refused even to the operator
    const short = shelterd(['deletion', 'request', '--server', s.name, '--all-data', '--reason', 'too soon', '--delay-days', '3', '--data', gw.dataDir]);
    assert.notEqual(short.status, 0);
    assert.match(short.stderr, /at least 14/);
    // nothing due yet: a cycle now, or 13 days on, removes nothing
    for (const offset of [0, 13 * DAY]) assert.deepEqual(runCycle(gw, offset).executed, []);
    const after = await versionsOf(s.s3, s.bucket);
    for (const v of before) assert.ok(after.some((a) => a.key === v.key && a.versionId === v.versionId), `${v.key}@${v.versionId} is still there`);
    assert.equal(deletions(gw, s.name).find((r) => r.id === req.id)!.status, 'pending');
  });

  it('kill -9 of the executor before and after its transaction: the request completes exactly once', async () => {
    const s = await setup('del-crash', 2);
    const req = await s.agent.json<Request>(['forget', s.snaps[0]!, '--json']);
    const db = new DatabaseSync(join(gw.dataDir, 'meta.db'), { readOnly: true });
    const statusOf = () => (db.prepare('SELECT status FROM deletion_requests WHERE id = ?').get(req.id) as { status: string }).status;
    const trash = () => Number((db.prepare('SELECT COUNT(*) AS n FROM blob_trash').get() as { n: number }).n);
    const startRun = () => spawn(nodeBin, [shelterdBin, 'deletion', 'run', '--data', gw.dataDir], {
      env: { ...process.env, SHELTERD_CLOCK_OFFSET_MS: String(15 * DAY), SHELTERD_DELETION_PAUSE_MS: '400' }, stdio: 'ignore' });
    const kill = async (p: ReturnType<typeof spawn>) => { p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); };
    try {
      // 1. killed while it pauses before the transaction: nothing happened
      const p1 = startRun();
      await new Promise((r) => setTimeout(r, 150));
      await kill(p1);
      assert.equal(statusOf(), 'pending');
      // 2. killed after the commit, while storage removes the blobs one by one
      const p2 = startRun();
      const t0 = Date.now();
      while (!(statusOf() === 'done' && trash() > 1) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
      await kill(p2);
      assert.equal(statusOf(), 'done');
      assert.ok(trash() > 0, 'blobs were left in the trash by the kill');
    } finally { db.close(); }
    // the next run finishes the job; the execution is recorded once
    runCycle(gw, 15 * DAY);
    const db2 = new DatabaseSync(join(gw.dataDir, 'meta.db'), { readOnly: true });
    assert.equal(Number((db2.prepare('SELECT COUNT(*) AS n FROM blob_trash').get() as { n: number }).n), 0);
    db2.close();
    const audit = auditRecords(gw.dataDir);
    assert.equal(audit.filter((r) => r.operation === 'DeletionExecuted' && (r.detail as { request?: string })?.request === req.id).length, 1);
    cli(gw, ['audit', 'verify']);
    assert.equal(await status(s.s3, s.bucket, `manifests/${s.snaps[0]}`), 404);
    const target = join(work, 'restore-crash');
    await s.agent.ok(['restore', 'latest', '--target', target]);
    assertSameTrees(scanTree(s.src), scanTree(join(target, s.src)), 'restore after the crashed deletion');
  });

  it('a retention policy and the collection of unreferenced leftovers only file requests, which wait out the same delay', async () => {
    const s = await setup('del-policy', 3);
    // an unreferenced "pack" left by an interrupted backup
    const orphanId = randomBytes(32).toString('hex');
    const orphan = `data/${orphanId.slice(0, 2)}/${orphanId}`;
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: orphan, Body: randomBytes(1000) }));
    cli(gw, ['retention', 'set', s.name, '--backup', 'files', '--policy', JSON.stringify({ tiers: [{ span: '1d', keep: 1, per: 'day' }] })]);
    assert.ok(auditRecords(gw.dataDir).some((r) => r.operation === 'admin.SetRetentionPolicy' && r.bucket === s.bucket), 'policy change audited');
    // 10 days on: the policy expires every snapshot but the newest (the 7-day floor keeps nothing that old);
    // the orphan, untouched for over 7 days, gets its own request
    const c = runCycle(gw, 10 * DAY);
    const mine = deletions(gw, s.name);
    const byPolicy = mine.filter((r) => c.filedByPolicy.includes(r.id));
    assert.deepEqual(byPolicy.map((r) => r.target).sort(), s.snaps.slice(0, 2).sort(), 'the two older snapshots are requested, the newest kept');
    assert.ok(byPolicy.every((r) => r.requestedBy === 'policy' && r.status === 'pending'));
    const orphans = mine.filter((r) => r.kind === 'orphans');
    assert.equal(orphans.length, 1);
    assert.deepEqual(orphans[0]!.objects, [orphan], 'only the unreferenced object');
    assert.deepEqual(c.executed.filter((id) => mine.some((r) => r.id === id)), [], 'filing executes nothing');
    // a cancelled policy request stays cancelled: the policy does not file it again
    const spared = byPolicy[0]!;
    cli(gw, ['deletion', 'cancel', spared.id, '--reason', 'keep this one']);
    const again = runCycle(gw, 10 * DAY + 60_000);
    assert.deepEqual(again.filedByPolicy.filter((id) => deletions(gw, s.name).find((r) => r.id === id)?.target === spared.target), [], 'not re-filed');
    const stillPending = byPolicy.slice(1);
    // the requests are due 14 days after they were filed (at +10 days)
    assert.deepEqual(runCycle(gw, 23 * DAY).executed.filter((id) => mine.some((r) => r.id === id)), []);
    const executed = runCycle(gw, 24 * DAY + 60_000).executed;
    for (const r of [...stillPending, ...orphans]) assert.ok(executed.includes(r.id), `${r.id} executed`);
    assert.ok(!executed.includes(spared.id));
    assert.equal(await status(s.s3, s.bucket, orphan), 404);
    const snaps = await s.agent.json<SnapshotRow[]>(['snapshots', '--json']);
    assert.deepEqual(snaps.map((x) => x.id).sort(), [spared.target!, s.snaps[2]!].sort(), 'the spared snapshot and the newest remain');
    const target = join(work, 'restore-policy');
    await s.agent.ok(['restore', 'latest', '--target', target]);
    assertSameTrees(scanTree(s.src), scanTree(join(target, s.src)), 'restore of the kept snapshot');
    cli(gw, ['audit', 'verify']);
  });

  it('clearing a policy withdraws the requests it filed', async () => {
    const s = await setup('del-policy-clear', 2);
    cli(gw, ['retention', 'set', s.name, '--policy', JSON.stringify({ keepWithin: '1d' })]);
    const c = runCycle(gw, 10 * DAY);
    const filed = deletions(gw, s.name).filter((r) => c.filedByPolicy.includes(r.id));
    assert.deepEqual(filed.map((r) => r.target), [s.snaps[0]]);
    cli(gw, ['retention', 'clear', s.name]);
    assert.equal(cliJson<Request>(gw, ['deletion', 'show', filed[0]!.id]).status, 'cancelled');
    assert.deepEqual(runCycle(gw, 30 * DAY).executed.filter((id) => id === filed[0]!.id), []);
    assert.equal((await s.agent.json<SnapshotRow[]>(['snapshots', '--json'])).length, 2);
  });

  it('a manifest without its snapshot object is no snapshot for a policy; changing one name\'s policy withdraws only its requests', async () => {
    const s = await setup('del-policy-scope', 2);
    // a backup killed between its two uploads: a registered manifest whose snapshot object never came
    const got = await s.s3.send(new GetObjectCommand({ Bucket: s.bucket, Key: `manifests/${s.snaps[1]}` }));
    const half = randomBytes(32).toString('hex');
    const body = Buffer.from((await got.Body!.transformToString()).replaceAll(s.snaps[1]!, half));
    await new Promise((r) => setTimeout(r, 20)); // it arrives last
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: `manifests/${half}`, Body: body }));
    assert.equal(await status(s.s3, s.bucket, `snapshots/${half}`), 404);
    // a second backup name with two snapshots
    writeTree(s.src, 7);
    const others: string[] = [];
    for (const g of [8, 9]) { writeTree(s.src, g); others.push((await s.agent.json<BackupSummary>(['backup', 'files', s.src, '--name', 'other', '--json'])).snapshotId); }
    for (const name of ['files', 'other']) cli(gw, ['retention', 'set', s.name, '--backup', name, '--policy', JSON.stringify({ keepWithin: '1d' })]);
    const c = runCycle(gw, 10 * DAY);
    const filed = deletions(gw, s.name).filter((r) => c.filedByPolicy.includes(r.id));
    // the newest real snapshot of `files` is kept: the half-written one does not take its place
    assert.deepEqual(filed.map((r) => r.target).sort(), [s.snaps[0]!, others[0]!].sort());
    // a new policy for `files` withdraws the request it filed, not the one for `other`
    cli(gw, ['retention', 'set', s.name, '--backup', 'files', '--policy', JSON.stringify({ keepWithin: '2d' })]);
    const byTarget = new Map(filed.map((r) => [r.target, cliJson<Request>(gw, ['deletion', 'show', r.id]).status]));
    assert.equal(byTarget.get(s.snaps[0]!), 'cancelled');
    assert.equal(byTarget.get(others[0]!), 'pending');
    assert.ok(auditRecords(gw.dataDir).some((r) => r.operation === 'admin.CancelDeletionRequest' && r.bucket === s.bucket), 'each withdrawal is audited');
  });

  it('deleting all of a server\'s data keeps what later snapshots need to be read (config, key slots)', async () => {
    const s = await setup('del-server', 1);
    const req = cliJson<Request>(gw, ['deletion', 'request', '--server', s.name, '--all-data', '--reason', 'decommissioned (but it went on backing up)']);
    await new Promise((r) => setTimeout(r, 20)); // a later arrival time than the request
    writeTree(s.src, 5);
    const later = (await s.agent.json<BackupSummary>(['backup', 'files', s.src, '--name', 'files', '--json'])).snapshotId;
    const c = runCycle(gw, 15 * DAY);
    assert.ok(c.executed.includes(req.id));
    assert.equal(await status(s.s3, s.bucket, `manifests/${s.snaps[0]}`), 404, 'the earlier snapshot is gone');
    assert.equal(await status(s.s3, s.bucket, 'config'), 200, 'config stays for the later snapshot');
    const target = join(work, 'restore-server');
    await s.agent.ok(['restore', later, '--target', target]);
    assertSameTrees(scanTree(s.src), scanTree(join(target, s.src)), 'restore of the snapshot made after the request');
  });

  it('manifests stored before the gateway registered them are registered before anything counts as unreferenced', async () => {
    const s = await setup('del-upgrade', 1);
    // an upgraded data directory: the manifest is stored, but not registered
    const db = new DatabaseSync(join(gw.dataDir, 'meta.db'));
    try {
      db.prepare('DELETE FROM manifest_refs WHERE bucket = ?').run(s.bucket);
      db.prepare('DELETE FROM manifests WHERE bucket = ?').run(s.bucket);
      db.prepare("DELETE FROM settings WHERE name = 'manifests_registered'").run();
    } finally { db.close(); }
    const c = runCycle(gw, 30 * DAY);
    const mine = deletions(gw, s.name);
    assert.deepEqual(mine.filter((r) => r.kind === 'orphans' && c.filedForOrphans.includes(r.id)), [], 'no pack of the stored snapshot is taken for a leftover');
    assert.equal(usage(gw, s.name).names[0]?.snapshots, 1, 'registered again');
  });

  it('a collection of leftovers removes what it can and waits only for the objects under legal hold', async () => {
    const s = await setup('del-hold', 1);
    const leftover = () => { const id = randomBytes(32).toString('hex'); return `data/${id.slice(0, 2)}/${id}`; };
    const [free, held] = [leftover(), leftover()];
    for (const key of [free, held]) await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: key, Body: randomBytes(500) }));
    // a server may place a legal hold (only an operator may lift it)
    await s.s3.send(new PutObjectLegalHoldCommand({ Bucket: s.bucket, Key: held, LegalHold: { Status: 'ON' } }));
    const c = runCycle(gw, 8 * DAY);
    const req = deletions(gw, s.name).find((r) => r.kind === 'orphans' && c.filedForOrphans.includes(r.id))!;
    assert.deepEqual(req.objects, [free, held].sort());
    const c2 = runCycle(gw, 22 * DAY + 60_000);
    assert.ok(c2.waiting.includes(req.id));
    assert.equal(await status(s.s3, s.bucket, free), 404, 'the free leftover is removed');
    assert.equal(await status(s.s3, s.bucket, held), 200, 'the held one stays');
    const waiting = cliJson<Request>(gw, ['deletion', 'show', req.id]);
    assert.equal(waiting.status, 'waiting');
    assert.deepEqual(waiting.objects, [held]);
    assert.match(waiting.statusReason ?? '', /legal hold/);
    assert.ok(auditRecords(gw.dataDir).some((r) => r.operation === 'DeletionPartial' && (r.detail as { request?: string })?.request === req.id));
    const op = createOperatorKey(gw.dataDir);
    const ops3 = s3Client(gw, op);
    try { await ops3.send(new PutObjectLegalHoldCommand({ Bucket: s.bucket, Key: held, LegalHold: { Status: 'OFF' } })); } finally { ops3.destroy(); }
    assert.ok(runCycle(gw, 22 * DAY + 120_000).executed.includes(req.id));
    assert.equal(await status(s.s3, s.bucket, held), 404);
    assert.equal((await s.agent.json<SnapshotRow[]>(['snapshots', '--json'])).length, 1, 'the snapshot itself is untouched');
    cli(gw, ['audit', 'verify']);
  });

  it('a bucket whose policy no longer parses, and blobs the storage refuses to remove, hold up nothing else', async () => {
    const [x, y] = [await setup('del-robust-x', 2), await setup('del-robust-y', 2)];
    // the bucket examined first gets the damaged policy: the other one comes after it
    const [broken, healthy] = x.bucket < y.bucket ? [x, y] : [y, x];
    for (const s of [broken, healthy]) cli(gw, ['retention', 'set', s.name, '--policy', JSON.stringify({ keepWithin: '1d' })]);
    // a policy that no longer parses (written by hand, or by a version that knew more)
    const db = new DatabaseSync(join(gw.dataDir, 'meta.db'));
    try { db.prepare('UPDATE retention_policies SET policy = ? WHERE bucket = ?').run('{"tiers":"not a list"}', broken.bucket); } finally { db.close(); }
    const run = (offsetMs: number) => {
      const r = shelterd(['deletion', 'run', '--data', gw.dataDir, '--json'], { SHELTERD_CLOCK_OFFSET_MS: String(offsetMs) });
      return { status: r.status, stderr: r.stderr, summary: JSON.parse(r.stdout) as { executed: string[]; filedByPolicy: string[]; failed: string[]; trashFailed: number; trashFailures: string[]; blobsRemoved: number } };
    };
    const filing = run(40 * DAY);
    assert.equal(filing.status, 1, 'a failed step makes the exit code 1');
    assert.ok(filing.stderr.includes(`retention policy of bucket ${broken.bucket} failed`), filing.stderr);
    const filed = deletions(gw, healthy.name).filter((r) => filing.summary.filedByPolicy.includes(r.id));
    assert.deepEqual(filed.map((r) => r.target), [healthy.snaps[0]], 'the bucket after the broken one still had its policy applied');
    assert.deepEqual(deletions(gw, broken.name), [], 'nothing filed for the broken one');
    cli(gw, ['retention', 'set', broken.name, '--policy', JSON.stringify({ keepWithin: '1d' })]);

    // storage refuses to remove every blob (immutable files: as a failing disk or store would)
    const blobs = filesUnder(join(gw.dataDir, 'objects'));
    const chattr = (flag: string) => { for (let i = 0; i < blobs.length; i += 200) execFileSync('chattr', [flag, ...blobs.slice(i, i + 200)]); };
    chattr('+i');
    let leftInTrash = 0;
    try {
      const due = run(55 * DAY);
      leftInTrash = due.summary.trashFailed;
      assert.ok(due.summary.executed.includes(filed[0]!.id), 'the due request executed though the trash could not be emptied');
      // (each emptying of the trash stops after 10 failures in a row, and tries no blob twice in a run)
      assert.ok(due.summary.trashFailed > 0, 'blobs left in the trash');
      assert.equal(new Set(due.summary.trashFailures).size, due.summary.trashFailures.length, 'no blob reported twice');
      assert.ok(due.summary.trashFailures.length <= 20 && due.summary.trashFailures.every((f) => /^blob \S+: /.test(f)), due.summary.trashFailures.join('\n'));
      assert.equal(due.status, 1);
      assert.deepEqual((await healthy.agent.json<SnapshotRow[]>(['snapshots', '--json'])).map((r) => r.id), [healthy.snaps[1]]);
    } finally { chattr('-i'); }
    // storage healthy again: the next run empties the trash
    const after = run(55 * DAY + 60_000);
    assert.equal(after.summary.trashFailed, 0);
    assert.ok(after.summary.blobsRemoved >= leftInTrash, 'what was left in the trash is removed');
    assert.equal(after.status, 0, after.stderr);
    const target = join(work, 'restore-robust');
    await healthy.agent.ok(['restore', 'latest', '--target', target]);
    assertSameTrees(scanTree(healthy.src), scanTree(join(target, healthy.src)), 'restore of the kept snapshot');
    cli(gw, ['audit', 'verify']);
  });
});
