// A/B of two agent versions on one kept repository: one gateway, one initial backup, then the
// chosen operation run alternately by each version, N times (same data, same repository, so
// differences are the code's). For profiling-driven work between full bench/agent.ts runs.
//
//   node_modules/.bin/node bench/ab.ts --op nochange|change|restore|export|initial|reread [--a REV] [--runs N] [--dataset linux|big]
// change: on a copy of the dataset, each run first undoes the previous modification (appended
// bytes truncated, new files removed) and backs that up untimed, then modifies ~1% like
// ../shared/bench/modify.py (800 files get ~1 KiB appended, 50 x 1 MiB new files) but with fresh
// random bytes each run, so that no run finds the new chunks already stored, and times the backup.
// reread: a backup under a new name (no parent): every file read again, every chunk a duplicate.
// export: `restore latest --export FILE.tar.gz` of the last snapshot (the archive is deleted after each run).
// --a REV: the baseline (default HEAD); B is the working tree.
import { parseArgs } from 'node:util';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { startBenchGateway } from './lib/agent-gateway.ts';
import { agentCommand, run, timed, median } from './lib/agent-run.ts';
import { snapshot, workingTree } from './lib/agent-snapshot.ts';

const { values: args } = parseArgs({ options: {
  op: { type: 'string', default: 'nochange' }, a: { type: 'string', default: 'HEAD' }, runs: { type: 'string', default: '3' },
  dataset: { type: 'string', default: 'linux' }, 'bench-dir': { type: 'string' }, profile: { type: 'string' },
  'b-env': { type: 'string', multiple: true }, 'restore-dir': { type: 'string' }, 'no-cache': { type: 'boolean', default: false },
} });
// --profile DIR: B runs under --cpu-prof (summarise with bench/lib/cpuprofile.ts)
// --no-cache: timed backups run with --no-cache (every directory compared with the parent's trees)
// --restore-dir DIR: restores go there (a tmpfs: /dev/shm), not under the scratch directory (see bench/agent.ts)
// --b-env NAME=VALUE (repeatable): set for B's timed runs only (an experiment behind a variable, A/B'd on the same code)
const profDir = (v: 'A' | 'B') => (args.profile && v === 'B' ? resolve(args.profile) : undefined);
const root = resolve(import.meta.dirname, '..');
const benchDir = resolve(args['bench-dir'] ?? process.env.BENCH_DIR ?? '/tmp/shelter-bench');
const work = join(benchDir, `ab-${process.pid}`);
mkdirSync(work, { recursive: true });
const original = join(benchDir, 'data', args.dataset!);
const restoreDir = args['restore-dir'] ? resolve(args['restore-dir']) : work;
/** this run's restores (in the scratch directory or --restore-dir), removed */
const removeRestores = () => {
  if (!existsSync(restoreDir)) return;
  for (const old of readdirSync(restoreDir).filter((n) => n.startsWith(`restore-${process.pid}-`))) rmSync(join(restoreDir, old), { recursive: true, force: true });
};
// change: a copy this script may modify (never the kit's dataset)
const data = args.op === 'change' ? join(work, 'data', args.dataset!) : original;
if (args.op === 'change') { mkdirSync(join(work, 'data')); execFileSync('cp', ['-a', original, data]); }
/** every regular file under dir, sorted (modify.py's order) */
const filesOf = (dir: string): string[] => readdirSync(dir, { withFileTypes: true, recursive: true })
  .filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)).sort();
const picked = args.op === 'change' ? pick(filesOf(data), 800) : [];
const sizes = new Map(picked.map((f) => [f, statSync(f).size]));
function pick(files: string[], n: number): string[] {
  if (files.length <= n) return files;
  // a fixed pseudo-random choice (the same files every run)
  let x = 4242;
  const rnd = () => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648; };
  const a = [...files];
  for (let i = 0; i < n; i++) { const j = i + Math.floor(rnd() * (a.length - i)); [a[i], a[j]] = [a[j]!, a[i]!]; }
  return a.slice(0, n);
}
const newDir = join(data, 'bench-new-data');
const undoChange = () => { for (const [f, n] of sizes) truncateSync(f, n); rmSync(newDir, { recursive: true, force: true }); };
const applyChange = () => {
  for (const f of picked) appendFileSync(f, `/* bench modification ${randomBytes(8).toString('hex')} */\n`.repeat(24));
  mkdirSync(newDir, { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(newDir, `new${String(i).padStart(2, '0')}.bin`), randomBytes(1 << 20));
};
const node = process.execPath;
const versions = { A: snapshot(root, args.a!, work), B: workingTree(root, ['packages']) };
const gw = await startBenchGateway(versions.B.packages, join(work, 'gateway'));
const say = (m: string) => process.stderr.write(`${m}\n`);
try {
  const cred = gw.createServer('ab');
  const env = { ...process.env, SHELTER_CONFIG_DIR: join(work, 'config'), XDG_CACHE_HOME: join(work, 'cache') };
  const bEnv = Object.fromEntries((args['b-env'] ?? []).map((kv) => {
    if (kv.indexOf('=') < 1) throw new Error(`--b-env ${kv}: expected NAME=VALUE`);
    return [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)];
  }));
  const envOf = (v: 'A' | 'B') => (v === 'B' ? { ...env, ...bEnv } : env);
  const log = join(work, 'log');
  const shelter = (v: 'A' | 'B') => join(versions[v].packages, 'agent/bin/shelter.js');
  /** a timed command of version v, run as users run it (bench/lib/agent-run.ts agentCommand); `profile`: B under --cpu-prof */
  const agent = (v: 'A' | 'B', argv: string[], e: NodeJS.ProcessEnv, profile = true) => {
    const c = agentCommand(shelter(v), e, profile ? profDir(v) : undefined);
    return timed(c.cmd, argv, { env: c.env, logFile: log, serverPid: gw.proc.pid });
  };
  await run(node, [shelter('B'), 'init', '--endpoint', gw.url, '--bucket', cred.bucket, '--access-key', cred.accessKeyId, '--secret-key', cred.secretAccessKey, '--ca-cert', gw.caFile, '--key-file', join(work, 'key')], env);
  // a backup name per version: each one's parent is its own last snapshot (and its local cache)
  const backup = (v: 'A' | 'B', p = true) => agent(v, ['backup', 'files', data, '--name', `ab-${v}`, '--json', ...(p && args['no-cache'] ? ['--no-cache'] : [])], envOf(v), p);
  if (args.op !== 'initial') {
    say(`initial backup (B): ${(await backup('B', false)).wall} s`);
    say(`initial backup (A, everything stored already): ${(await backup('A', false)).wall} s`);
  }
  const figures: Record<string, number[][]> = { A: [], B: [] };
  for (let i = 0; i < Number(args.runs); i++) {
    for (const v of (i % 2 ? ['B', 'A'] : ['A', 'B']) as Array<'A' | 'B'>) {
      let t;
      if (args.op === 'restore') {
        const target = join(restoreDir, `restore-${process.pid}-${v}-${i}`);
        // the previous restore's files deleted and every dirty page written first (untimed): else
        // creating files stalls in the kernel behind them, for one version or the other
        removeRestores();
        execFileSync('sync');
        t = await agent(v, ['restore', 'latest', '--name', 'ab-B', '--target', target], envOf(v));
      } else if (args.op === 'export') {
        const archive = join(work, `export-${v}-${i}.tar.gz`);
        t = await agent(v, ['restore', 'latest', '--name', 'ab-B', '--export', archive], envOf(v));
        rmSync(archive, { force: true });
      } else if (args.op === 'initial') {
        // a fresh bucket per run
        const c = gw.createServer(`ab-${v.toLowerCase()}${i}`);
        const e2 = { ...envOf(v), SHELTER_CONFIG_DIR: join(work, `config-${v}${i}`) };
        await run(node, [shelter('B'), 'init', '--endpoint', gw.url, '--bucket', c.bucket, '--access-key', c.accessKeyId, '--secret-key', c.secretAccessKey, '--ca-cert', gw.caFile, '--key-file', join(work, 'key')], e2);
        t = await agent(v, ['backup', 'files', data, '--name', 'ab', '--json'], e2);
      } else if (args.op === 'reread') {
        t = await agent(v, ['backup', 'files', data, '--name', `reread-${v.toLowerCase()}${i}`, '--json'], envOf(v));
      } else if (args.op === 'change') {
        undoChange();
        await backup(v, false);
        applyChange();
        // the change's own writes on disk before the timed backup (untimed), as bench/agent.ts does:
        // written back during the backup, they held up the gateway's fsyncs (linux: 3.4 s -> 2.8 s)
        execFileSync('sync');
        t = await backup(v);
      } else t = await backup(v);
      if (t.exitCode !== 0) throw new Error(`${v} exited ${t.exitCode}; see ${log}`);
      figures[v]!.push([t.wall, t.cpu, t.rssKiB / 1024, t.serverCpu]);
      say(`${args.op} ${v} run ${i + 1}: ${t.wall.toFixed(2)} s, CPU ${t.cpu.toFixed(2)} s, RSS ${(t.rssKiB / 1024).toFixed(0)} MiB, gateway CPU ${t.serverCpu.toFixed(2)} s`);
    }
  }
  for (const v of ['A', 'B'] as const) {
    const col = (k: number) => figures[v]!.map((f) => f[k]!);
    say(`${v} (${versions[v].label}): median wall ${median(col(0)).toFixed(2)} [min ${Math.min(...col(0)).toFixed(2)}] s, CPU ${median(col(1)).toFixed(2)} s, RSS ${median(col(2)).toFixed(0)} MiB`);
  }
  writeFileSync(join(benchDir, 'ab-last.json'), JSON.stringify(figures));
} finally {
  await gw.stop();
  rmSync(work, { recursive: true, force: true });
  removeRestores();
}
