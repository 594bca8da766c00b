// Fault tests of the agent (issue 3, "Fault tests"): a fault-injecting proxy (test/lib/faultproxy.ts)
// between `shelter` and the gateway fails a seeded 10% of requests with 500 InternalError, 503
// ServiceUnavailable, 503 SlowDown, a 500 after the gateway executed the request, or a TCP reset in
// the middle of the request or of the response. The agent is configured with the proxy's URL and
// trusts the gateway's CA (the proxy serves the gateway's certificate).
//
// Three rounds (a full backup, then two after adding and changing files), each: the backup
// completes, `check --read-data` passes, `restore latest` gives the tree back byte for byte, all
// through the proxy. The faults injected are printed by kind, operation and phase, and the test
// requires that every kind was injected and that backups, checks and restores all met faults.
//
// Then faults at exact places where a client is most likely to get retries wrong:
//   - `shelter init` whose config PUT succeeded on the gateway but whose answer was lost (the retry
//     finds the object it just wrote);
//   - a reset in the middle of the body of a GET of pack data (the SDK's retries end when the
//     headers arrive: reading the body is the caller's business), during check and restore.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditRecords, startGateway, tempDir, type Gateway } from '../lib/gateway.ts';
import {
  ALL_FAULTS, createServerAsync, diffDigests, digestTree, faultAgent, initFaultAgent, makeFaultTree, MiB, parseBackupJson,
  pseudoBytes, startFaultProxy, type AgentRun, type Decision, type FaultAgent, type FaultProxy, type ProxyRequest,
} from '../lib/faultproxy.ts';

const SEED = Number(process.env.SHELTER_FAULT_SEED ?? 20261127);
const FAULT_RATE = 0.1;
const NAME = 'files';

let gw: Gateway;
let proxy: FaultProxy;
let work: string;
let src: string;
let compileCache: string;
let agent: FaultAgent;
let bucket: string;
/** the digest of the tree as of the last backup that succeeded */
let backedUp: Map<string, string> | undefined;
/** a per-test override of the proxy's random decision */
let decide: ((r: ProxyRequest) => Decision | undefined) | undefined;

/** a run for a problem list: the command, its status and the first lines of its output */
function show(r: AgentRun): string {
  const lines = (t: string, n: number) => {
    const all = t.trimEnd().split('\n').filter(Boolean);
    return all.length > n ? [...all.slice(0, n), `[... ${all.length - n} more lines]`] : all;
  };
  return [`$ ${r.cmd}`, `exit status ${r.status} after ${r.ms} ms`, ...lines(r.stdout, 4).map((l) => `  out: ${l}`), ...lines(r.stderr, 4).map((l) => `  err: ${l}`)]
    .map((l) => (l.length > 400 ? `${l.slice(0, 400)}...` : l)).join('\n');
}

async function restoreAndCompare(a: FaultAgent, expected: Map<string, string>, what: string): Promise<string[]> {
  const target = join(a.home, 'restore');
  rmSync(target, { recursive: true, force: true });
  const r = await a.run(['restore', 'latest', '--name', NAME, '--target', target]);
  if (r.status !== 0) return [`${what}: restore exited ${r.status} (expected 0)\n${show(r)}`];
  const diffs = diffDigests(expected, await digestTree(join(target, src)));
  rmSync(target, { recursive: true, force: true });
  return diffs.length ? [`${what}: the restore differs from the source tree:\n  ${diffs.join('\n  ')}`] : [];
}

before(async () => {
  work = tempDir('shelter-proxy-');
  src = join(work, 'src');
  compileCache = join(work, 'compile-cache');
  gw = await startGateway();
  proxy = await startFaultProxy({ target: gw.url, gatewayDataDir: gw.dataDir, seed: SEED, faultRate: 0, decide: (r) => decide?.(r) });
  makeFaultTree(src, `proxy-${SEED}`);
  const creds = await createServerAsync(gw.dataDir, 'proxied');
  bucket = creds.bucket;
  agent = faultAgent(join(work, 'agent'), { compileCache });
  proxy.phase = 'init';
  await initFaultAgent(agent, proxy.url, proxy.caFile, creds);
});

after(async () => {
  await proxy?.close();
  await gw?.stop();
  if (!process.env.SHELTER_KEEP_TEST_DIRS) {
    if (work) rmSync(work, { recursive: true, force: true });
    if (gw) rmSync(gw.dataDir, { recursive: true, force: true });
  }
});

describe('shelter through a proxy that fails 10% of requests', () => {
  it('backups complete, check --read-data passes and restores are byte-identical, over three rounds', async () => {
    const problems: string[] = [];
    const t0 = Date.now();
    const timings: string[] = [];
    proxy.faultRate = FAULT_RATE;
    for (let round = 1; round <= 3; round++) {
      if (round > 1) {
        // new data (a new pack or more), changed and removed files
        writeFileSync(join(src, `new-${round}.bin`), pseudoBytes(`proxy-${SEED}/new/${round}`, 12 * MiB));
        for (let i = round; i < 400; i += 37) {
          const dir = join(src, `dir-${String(i % 12).padStart(2, '0')}`);
          const p = join(dir, `${i % 5 === 0 ? `sub-${i % 4}/` : ''}file ${i}${i % 3 === 0 ? '.txt' : '.bin'}`);
          if (existsSync(p)) appendFileSync(p, `changed in round ${round}\n`);
        }
        const gone = join(src, `dir-0${round}`, `file ${round}.bin`);
        if (existsSync(gone)) unlinkSync(gone);
        mkdirSync(join(src, `added-${round}`), { recursive: true });
        writeFileSync(join(src, `added-${round}`, 'small.txt'), `round ${round}\n`);
      }
      const expected = await digestTree(src);
      let t = Date.now();

      proxy.phase = `backup ${round}`;
      const b = await agent.run(['backup', 'files', src, '--name', NAME, '--json']);
      timings.push(`backup ${round} ${Date.now() - t} ms`); t = Date.now();
      if (b.status !== 0) { problems.push(`round ${round}: backup exited ${b.status} (expected 0)\n${show(b)}`); continue; }
      const summary = parseBackupJson(b);
      assert.equal(summary.warnings, 0, `round ${round}: backup warnings\n${show(b)}`);
      backedUp = expected;

      proxy.phase = `check ${round}`;
      const c = await agent.run(['check', '--read-data']);
      timings.push(`check ${round} ${Date.now() - t} ms`); t = Date.now();
      if (c.status !== 0) problems.push(`round ${round}: check --read-data exited ${c.status} (expected 0)\n${show(c)}`);

      proxy.phase = `restore ${round}`;
      problems.push(...await restoreAndCompare(agent, expected, `round ${round}`));
      timings.push(`restore ${round} ${Date.now() - t} ms`);
    }
    proxy.faultRate = 0;
    proxy.phase = '';

    console.log(`# ${proxy.summary()}\n# ${timings.join(', ')}; ${Date.now() - t0} ms in all`);
    console.log(`# faults: ${proxy.stats.log.map((f) => `${f.phase}: ${f.kind} on ${f.operation} ${(f.key ?? '').slice(0, 14)}`).join('; ')}`);
    assert.deepEqual(proxy.stats.upstreamErrors, [], 'the proxy itself failed to reach the gateway');
    assert.deepEqual(problems, [], 'operations failed or restored wrong data behind a faulty network');
    // the test really exercised the faults
    for (const k of ALL_FAULTS) assert.ok(proxy.stats.faults[k] > 0, `no ${k} fault was injected: ${proxy.summary()}`);
    for (const phase of ['backup', 'check', 'restore']) {
      const faults = Object.entries(proxy.stats.byPhase).filter(([p]) => p.startsWith(phase)).reduce((a, [, v]) => a + v.faults, 0);
      assert.ok(faults > 0, `no fault was injected during a ${phase}: ${proxy.summary()}`);
    }
    // and never caused a deletion or an overwrite
    const audit = auditRecords(gw.dataDir).filter((r) => r.bucket === bucket);
    assert.ok(audit.length > 0 && !audit.some((r) => r.operation.startsWith('Delete')), 'the agent sent a DELETE');
  });

  it('every pack upload fails (500, retries exhausted): a backup without parent stops with a clear error, no crash, nothing half-done left unreported', async () => {
    proxy.faultRate = 0;
    // data no earlier test stored: more than a pack's worth must be uploaded
    const extra = join(src, 'uploads-fail.bin');
    writeFileSync(extra, pseudoBytes(`proxy-${SEED}/uploads-fail`, 20 * MiB));
    decide = (r) => (r.method === 'PUT' && r.key?.startsWith('data/') ? 'error500' : undefined);
    try {
      const r = await agent.run(['backup', 'files', src, '--name', 'uploads-fail', '--json']);
      assert.ok(r.status !== 0 && r.status !== 3 && r.status !== null, `the backup must fail, not pass or pass with warnings\n${show(r)}`);
      // a crash (an unhandled rejection) prints Node's own report and a stack trace instead
      assert.doesNotMatch(r.stderr, /unhandled|Node\.js v\d|^\s+at /m, `a clear error, not a crash\n${show(r)}`);
      assert.match(r.stderr, /500|InternalError|data\//, `the error says what failed\n${show(r)}`);
    } finally { decide = undefined; }
    const again = await agent.run(['backup', 'files', src, '--name', 'uploads-fail', '--json']);
    assert.equal(again.status, 0, `with uploads working again, the backup completes\n${show(again)}`);
    assert.ok(parseBackupJson(again).newBytes >= 20 * MiB, 'the data the failed backup could not store');
    unlinkSync(extra);
  });

  it('init: the config PUT succeeded on the gateway but its answer was lost (500 after the write, or a reset) — init completes and its key opens the repository', async () => {
    const problems: string[] = [];
    for (const kind of ['error500After', 'resetResponse'] as const) {
      const creds = await createServerAsync(gw.dataDir, `init-${kind.toLowerCase()}`);
      const a = faultAgent(join(work, `init-${kind}`), { compileCache });
      let seen = 0;
      decide = (r) => (r.operation === 'PutObject' && r.key === 'config' && ++seen === 1 ? kind : undefined);
      proxy.phase = `init (${kind})`;
      const keyFile = join(a.home, 'master.key');
      const r = await a.run(['init', '--endpoint', proxy.url, '--bucket', creds.bucket, '--access-key', creds.accessKeyId,
        '--secret-key', creds.secretAccessKey, '--ca-cert', proxy.caFile, '--key-file', keyFile, '--json']);
      decide = undefined;
      proxy.phase = '';
      assert.ok(seen >= 1, `the config PUT was to be hit by ${kind}`);
      const configStored = auditRecords(gw.dataDir).some((x) => x.bucket === creds.bucket && x.operation === 'PutObject' && x.key === 'config' && x.status === 200);
      assert.ok(configStored, 'the gateway stored the config (the fault only lost the answer)');
      if (r.status !== 0) {
        problems.push(`${kind} on the config PUT: init exited ${r.status} (expected 0: the object its retry finds is the one it wrote); the key file ` +
          `${existsSync(keyFile) ? 'exists' : 'was NEVER WRITTEN, while the bucket now holds a repository made with that key'}\n${show(r)}`);
        continue;
      }
      const s = await a.run(['snapshots', '--json']);
      if (s.status !== 0) problems.push(`${kind} on the config PUT: after init, the key file must open the repository\n${show(s)}`);
    }
    assert.deepEqual(problems, [], 'a lost answer to the config PUT breaks init');
  });

  it('a reset in the middle of a pack GET\'s body is retried: check --read-data and restore succeed', async (t) => {
    if (!backedUp) { t.skip('no backup succeeded in the first test'); return; }
    const expected = backedUp;
    const problems: string[] = [];
    for (const phase of ['check', 'restore'] as const) {
      let injected = 0;
      // the first GET of pack data (whole pack or a range of it) loses its connection halfway through the body
      decide = (r) => (r.operation === 'GetObject' && r.key?.startsWith('data/') && ++injected === 1 ? 'resetResponse' : undefined);
      proxy.phase = `${phase} (reset mid-body)`;
      if (phase === 'check') {
        const c = await agent.run(['check', '--read-data']);
        if (c.status !== 0) problems.push(`check --read-data exited ${c.status} after one reset mid-body (expected 0)\n${show(c)}`);
      } else {
        problems.push(...await restoreAndCompare(agent, expected, 'restore after one reset mid-body'));
      }
      decide = undefined;
      assert.equal(injected > 0, true, `no pack GET during ${phase}`);
    }
    proxy.phase = '';
    assert.deepEqual(problems, [], 'a connection reset while reading a response body is not retried');
  });
});
