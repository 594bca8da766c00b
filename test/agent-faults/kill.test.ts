// Fault tests of the agent (issue 3, "Fault tests"): `shelter backup` killed with SIGKILL.
//
// Random trials (SHELTER_KILL_TRIALS, default 20; seed SHELTER_FAULT_SEED): each trial gets a
// fresh repository (its own bucket on one shared gateway), starts a full backup of a ~50 MiB tree
// (several hundred small files, multi-MiB random and compressible files: three 16 MiB packs) and
// kills the agent after a seeded random delay between 50 ms and the measured duration of an
// uninterrupted backup. Then:
//   - `shelter check --read-data` exits 0 (the leftovers of a killed run, e.g. packs that no index
//     lists, are not problems);
//   - the next backup completes, and `shelter restore latest` gives back the tree byte for byte;
//   - the killed run's uploaded packs are reused: the packs the gateway acknowledged before the
//     kill (its audit log) are not uploaded again, so the next backup uploads that much less.
// Two trials run at a time (each in its own bucket) to keep the test short.
//
// Targeted trials use the fault proxy (test/lib/faultproxy.ts) as a tripwire to kill the agent
// at an exact step: right after the gateway stored its first pack, the other pack uploads held
// back (the next backup must upload that pack's bytes less than a full one), and while the
// snapshot object's PUT (the commit point) is in flight (its manifest exists, the snapshot object
// does not: per docs/FORMAT.md that snapshot does not exist).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { auditRecords, startGateway, tempDir, type Gateway, type S3Credentials } from '../lib/gateway.ts';
import {
  createServerAsync, diffDigests, digestTree, faultAgent, formatAgentRun, initFaultAgent, makeFaultTree, MiB, parseBackupJson, seededRandom,
  startFaultProxy, successfulPuts, sumBytes, type BackupJson, type FaultAgent, type FaultProxy,
} from '../lib/faultproxy.ts';

const TRIALS = Number(process.env.SHELTER_KILL_TRIALS ?? 20);
const SEED = Number(process.env.SHELTER_FAULT_SEED ?? 20261127);
const LANES = 2;
const NAME = 'files';

let gw: Gateway;
let work: string;
let src: string;
let srcDigest: Map<string, string>;
let compileCache: string;
/** an uninterrupted full backup of the tree into an empty repository */
let full: { durations: number[]; dataBytes: number; summary: BackupJson };
let serial = 0;

interface Repo { name: string; creds: S3Credentials; agent: FaultAgent }

async function freshRepo(label: string, endpoint?: { url: string; caFile: string }): Promise<Repo> {
  const name = `${label}-${++serial}`;
  const creds = await createServerAsync(gw.dataDir, name);
  const home = join(work, name);
  mkdirSync(home, { recursive: true });
  const agent = faultAgent(home, { compileCache });
  await initFaultAgent(agent, endpoint?.url ?? gw.url, endpoint?.caFile ?? gw.caFile, creds);
  return { name, creds, agent };
}

/** restore latest into a fresh directory and compare with the source tree byte for byte */
async function restoreAndCompare(repo: Repo, what: string): Promise<void> {
  const target = join(repo.agent.home, 'restore');
  await repo.agent.ok(['restore', 'latest', '--name', NAME, '--target', target], `${what}: restore`);
  const diffs = diffDigests(srcDigest, await digestTree(join(target, src)));
  assert.deepEqual(diffs, [], `${what}: the restore differs from the source tree`);
  rmSync(target, { recursive: true, force: true });
}

async function checkReadData(repo: Repo, what: string): Promise<void> {
  const r = await repo.agent.run(['check', '--read-data']);
  assert.equal(r.status, 0, `${what}: check --read-data must pass after a killed backup\n${formatAgentRun(r)}`);
}

before(async () => {
  work = tempDir('shelter-kill-');
  compileCache = join(work, 'compile-cache');
  src = join(work, 'src');
  gw = await startGateway();
  const t = makeFaultTree(src, `kill-${SEED}`);
  srcDigest = await digestTree(src);
  // calibration: LANES uninterrupted backups at once (as the trials run), each into an empty repository
  const runs = await Promise.all(Array.from({ length: LANES }, async () => {
    const repo = await freshRepo('full');
    const p = repo.agent.spawn(['backup', 'files', src, '--name', NAME, '--json']);
    const r = await p.done;
    assert.equal(r.status, 0, `uninterrupted backup\n${formatAgentRun(r)}`);
    return { repo, ms: r.ms, summary: parseBackupJson(r) };
  }));
  const audit = auditRecords(gw.dataDir);
  const dataBytes = runs.map((x) => sumBytes(successfulPuts(audit, x.repo.creds.bucket, 'data/')));
  full = { durations: runs.map((x) => x.ms), dataBytes: Math.max(...dataBytes), summary: runs[0]!.summary };
  console.log(`# tree: ${t.files} files, ${(t.bytes / MiB).toFixed(1)} MiB; uninterrupted backup: ${runs.map((x) => x.ms).join(' / ')} ms, ` +
    `${dataBytes.map((b) => (b / MiB).toFixed(1)).join(' / ')} MiB of packs, ${runs[0]!.summary.packs} packs`);
  assert.ok(Number(runs[0]!.summary.packs) >= 3, 'the tree must span several packs');
  await restoreAndCompare(runs[0]!.repo, 'uninterrupted backup');
});

after(async () => {
  await gw?.stop();
  if (!process.env.SHELTER_KEEP_TEST_DIRS) {
    if (work) rmSync(work, { recursive: true, force: true });
    if (gw) rmSync(gw.dataDir, { recursive: true, force: true });
  }
});

interface TrialResult {
  trial: number; delayMs: number; killed: boolean; bucket: string; nextStarted: string;
  nextSummary: BackupJson; ms: number; steps: string;
}

describe('shelter backup killed with SIGKILL', () => {
  it(`${TRIALS} random kills: check --read-data passes, the next backup completes and restores identically, uploaded packs are reused`, async () => {
    // Kill moments: one seeded random point in each of TRIALS equal slices of [0, 1) (so early,
    // middle and late kills are all covered), shuffled, scaled to [50 ms, D], where D is the
    // duration of an uninterrupted backup: the median of the latest full backups, because the
    // machine's load (and with it the duration) may change during the test.
    const random = seededRandom(SEED);
    const fractions = Array.from({ length: TRIALS }, (_, k) => (k + random()) / TRIALS);
    for (let k = fractions.length - 1; k > 0; k--) { const j = Math.floor(random() * (k + 1)); [fractions[k], fractions[j]] = [fractions[j]!, fractions[k]!]; }
    const durations = [...full.durations];
    const estimate = () => { const last = durations.slice(-5).sort((a, b) => a - b); return Math.max(100, last[Math.floor(last.length / 2)]!); };
    const results: TrialResult[] = [];
    const failures: string[] = [];
    const t0 = Date.now();

    const trial = async (i: number) => {
      const started = Date.now();
      const steps: string[] = [];
      let t = started;
      const step = (name: string) => { const now = Date.now(); steps.push(`${name} ${now - t}`); t = now; };
      const delay = Math.round(50 + fractions[i]! * (estimate() - 50));
      const what = `trial ${i} (kill after ${delay} ms)`;
      const repo = await freshRepo('kill');
      step('init');
      const p = repo.agent.spawn(['backup', 'files', src, '--name', NAME, '--json']);
      const timer = setTimeout(() => p.kill(), delay);
      const killedRun = await p.done;
      clearTimeout(timer);
      step('killed');
      const killed = killedRun.signal === 'SIGKILL';
      if (!killed) assert.equal(killedRun.status, 0, `${what}: the backup ended before the kill, and failed\n${formatAgentRun(killedRun)}`);
      await checkReadData(repo, what);
      step('check');
      const nextStarted = new Date().toISOString();
      const next = await repo.agent.run(['backup', 'files', src, '--name', NAME, '--json']);
      assert.equal(next.status, 0, `${what}: the backup after the kill must complete\n${formatAgentRun(next)}`);
      const nextSummary = parseBackupJson(next);
      // a backup that found nothing to reuse was a full one: its duration updates the estimate
      if (nextSummary.newBytes >= 0.99 * full.summary.newBytes) durations.push(next.ms);
      step('backup');
      await restoreAndCompare(repo, what);
      step('restore');
      rmSync(repo.agent.home, { recursive: true, force: true });
      results.push({ trial: i, delayMs: delay, killed, bucket: repo.creds.bucket, nextStarted, nextSummary, ms: Date.now() - started, steps: steps.join(', ') });
    };

    let next = 0;
    await Promise.all(Array.from({ length: LANES }, async () => {
      while (next < TRIALS) {
        const i = next++;
        try { await trial(i); } catch (e) { failures.push((e as Error).message); }
      }
    }));

    // reuse: what the gateway acknowledged for each bucket before and during the next backup
    const audit = auditRecords(gw.dataDir);
    const rows: string[] = [];
    let resumed = 0;
    for (const r of results.sort((a, b) => a.trial - b.trial)) {
      const puts = successfulPuts(audit, r.bucket, 'data/');
      const before = sumBytes(puts.filter((x) => x.time < r.nextStarted));
      const during = sumBytes(puts.filter((x) => x.time >= r.nextStarted));
      const repeated = puts.filter((x) => x.time >= r.nextStarted && puts.some((y) => y.time < r.nextStarted && y.key === x.key)).length;
      rows.push(`#  trial ${String(r.trial).padStart(2)}: kill at ${String(r.delayMs).padStart(4)} ms${r.killed ? '' : ' (backup had finished)'}: ` +
        `${(before / MiB).toFixed(1)} MiB of packs before, next backup ${(during / MiB).toFixed(1)} MiB ` +
        `(newBytes ${(r.nextSummary.newBytes / MiB).toFixed(1)} MiB${r.nextSummary.parent ? ', with a parent' : ''}); ${r.ms} ms: ${r.steps}`);
      if (repeated) failures.push(`trial ${r.trial}: ${repeated} pack(s) uploaded again by the next backup`);
      if (r.killed && before > 0) {
        resumed++;
        // the next run stores only what the killed run had not: together about one full backup
        const tolerance = 0.03 * full.dataBytes + MiB;
        if (during > full.dataBytes - before + tolerance) {
          failures.push(`trial ${r.trial}: the killed run had stored ${before} bytes of packs, yet the next backup uploaded ${during} bytes ` +
            `(a full backup uploads ${full.dataBytes}): the interrupted backup's packs were not reused`);
        }
        if (r.nextSummary.newBytes >= full.summary.newBytes) {
          failures.push(`trial ${r.trial}: newBytes ${r.nextSummary.newBytes} after a kill that left ${before} bytes of packs, a full backup has ${full.summary.newBytes}`);
        }
      }
    }
    console.log(`# ${results.length}/${TRIALS} trials completed in ${Date.now() - t0} ms; ${resumed} resumed from packs of the killed run\n${rows.join('\n')}`);
    // The agent uploads its packs in the last tenth or so of a backup (chunking and sealing come
    // first), so only the latest random kills leave packs behind; the tripwire test below makes
    // sure a kill after stored packs is always exercised.
    assert.deepEqual(failures, [], 'failed trials');
  });

  describe('kills at exact steps (the fault proxy as a tripwire)', () => {
    let proxy: FaultProxy;
    /** what the tripwire does for the current test */
    let tripwire: {
      onRequest?: (operation: string, key: string | null) => 'hold' | undefined;
      onResponse?: (operation: string, key: string | null, status: number) => void;
    } = {};
    before(async () => {
      proxy = await startFaultProxy({
        target: gw.url, gatewayDataDir: gw.dataDir, faultRate: 0,
        decide: (r) => tripwire.onRequest?.(r.operation, r.key),
        onResponse: (r, status) => tripwire.onResponse?.(r.operation, r.key, status),
      });
    });
    after(async () => { await proxy?.close(); });

    it('killed after its first pack was stored (the other uploads held back): the next backup reuses that pack and uploads the rest', async () => {
      const repo = await freshRepo('late-kill', proxy);
      let packPuts = 0;
      let kill = () => {};
      tripwire = {
        // the first pack goes through; every later pack upload is held, so exactly one pack is stored
        onRequest: (op, key) => (op === 'PutObject' && key?.startsWith('data/') && ++packPuts > 1 ? 'hold' : undefined),
        onResponse: (op, key, status) => { if (op === 'PutObject' && key?.startsWith('data/') && status === 200) kill(); },
      };
      const p = repo.agent.spawn(['backup', 'files', src, '--name', NAME, '--json']);
      kill = p.kill;
      const killedRun = await p.done;
      tripwire = {};
      assert.equal(killedRun.signal, 'SIGKILL', `the backup was to be killed after its first pack\n${formatAgentRun(killedRun)}`);
      await checkReadData(repo, 'late kill');
      const nextStarted = new Date().toISOString();
      const next = await repo.agent.run(['backup', 'files', src, '--name', NAME, '--json']);
      assert.equal(next.status, 0, `the backup after the kill must complete\n${formatAgentRun(next)}`);
      const summary = parseBackupJson(next);
      const puts = successfulPuts(auditRecords(gw.dataDir), repo.creds.bucket, 'data/');
      const before = puts.filter((x) => x.time < nextStarted);
      const during = sumBytes(puts.filter((x) => x.time >= nextStarted));
      const stored = sumBytes(before);
      console.log(`# late kill: ${before.length} pack(s), ${(stored / MiB).toFixed(1)} MiB, stored before the kill; the next backup uploaded ` +
        `${(during / MiB).toFixed(1)} MiB (a full one: ${(full.dataBytes / MiB).toFixed(1)} MiB), newBytes ${(summary.newBytes / MiB).toFixed(1)} MiB ` +
        `(full: ${(full.summary.newBytes / MiB).toFixed(1)} MiB)`);
      assert.equal(before.length, 1, 'exactly one pack was stored before the kill');
      const tolerance = 0.03 * full.dataBytes + MiB;
      assert.ok(during <= full.dataBytes - stored + tolerance,
        `the next backup uploaded ${during} bytes of packs; a full one uploads ${full.dataBytes}, and ${stored} were already stored: not reused`);
      assert.ok(summary.newBytes < full.summary.newBytes, `newBytes ${summary.newBytes}: a full backup has ${full.summary.newBytes}`);
      await restoreAndCompare(repo, 'late kill');
    });

    it('killed while the snapshot object (the commit point) is being written: no snapshot exists, check passes, the next backup completes', async () => {
      const repo = await freshRepo('commit-kill', proxy);
      let kill = () => {};
      let held = 0;
      tripwire = {
        onRequest: (op, key) => {
          if (op === 'PutObject' && key?.startsWith('snapshots/')) { held++; setTimeout(() => kill(), 20); return 'hold'; }
          return undefined;
        },
      };
      const p = repo.agent.spawn(['backup', 'files', src, '--name', NAME, '--json']);
      kill = p.kill;
      const killedRun = await p.done;
      tripwire = {};
      assert.equal(killedRun.signal, 'SIGKILL', `the backup was to be killed at its snapshot PUT\n${formatAgentRun(killedRun)}`);
      assert.equal(held, 1, 'exactly one snapshot PUT was held');
      const manifestPuts = successfulPuts(auditRecords(gw.dataDir), repo.creds.bucket, 'manifests/');
      assert.equal(manifestPuts.length, 1, 'the manifest was written before its snapshot object');

      // docs/FORMAT.md: "A snapshot exists if and only if both its manifest and its snapshot object
      // exist." Every step runs, then every violation is reported together.
      const problems: string[] = [];
      const list = await repo.agent.ok(['snapshots', '--json']);
      const listed = JSON.parse(list.stdout) as { id: string }[];
      if (listed.length) problems.push(`\`shelter snapshots --json\` lists ${listed.map((s) => s.id.slice(0, 12)).join(', ')}, whose snapshot object was never written`);
      await checkReadData(repo, 'kill at the commit point');
      const next = await repo.agent.run(['backup', 'files', src, '--name', NAME, '--json']);
      assert.equal(next.status, 0, `the backup after the kill must complete\n${formatAgentRun(next)}`);
      const summary = parseBackupJson(next);
      if (summary.parent !== null) problems.push(`the next backup took the uncommitted snapshot ${summary.parent.slice(0, 12)} as its parent`);
      await restoreAndCompare(repo, 'kill at the commit point');
      assert.deepEqual(problems, [], 'a manifest without its snapshot object was treated as a snapshot');
    });
  });
});
