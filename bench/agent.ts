// The agent benchmark of issue 3 ("How we will know", Benchmark bullet): `shelter` against restic,
// both through the same `shelterd` over HTTPS, alternated in one run, on the datasets of
// ../shared/bench (make-data.sh). See bench/README.md, section "Agent benchmark".
//
//   node_modules/.bin/node bench/agent.ts [--dataset linux|big|all] [--runs N] [--quick] [--out FILE]
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ListObjectVersionsCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent as HttpsAgent } from 'node:https';
import { startBenchGateway, type BenchGateway as Gateway } from './lib/agent-gateway.ts';
import { agentCommand, killRunning, median, run, timed, type Timed } from './lib/agent-run.ts';
import { snapshot, workingTree, type CodeSource } from './lib/agent-snapshot.ts';
import { compareTrees, digestTree, treeStats, type TreeComparison, type TreeStats } from './lib/agent-tree.ts';
import { formatSummary, profilesIn, summarizeProfile, type ProfileSummary } from './lib/cpuprofile.ts';

const USAGE = `node bench/agent.ts [options]
  --dataset linux|big|all   datasets (default all; big with --quick)
  --runs N                  runs per dataset, each on a fresh copy and fresh buckets (default 3; 1 with --quick)
  --quick                   smoke run: --runs 1 --dataset big unless given
  --tools shelter,restic    which tools (default both; ratios need both)
  --out FILE                write every figure as JSON
  --bench-dir DIR           datasets and scratch space (default $BENCH_DIR or /tmp/shelter-bench)
  --profile DIR             run shelter under --cpu-prof (profiles in DIR/<dataset>-run<N>-<op>/,
                            summarised on stderr and in the JSON; the profiler costs time)
  --agent-rev REV           run the agent (packages/agent, packages/format) of git revision REV, extracted
                            into the scratch space, instead of the working tree
  --gateway-rev REV         the same for shelterd (packages/gateway)
  --rev REV                 both
  --agent-dir DIR           run the agent from DIR/agent/bin/shelter.js (DIR = a packages/ directory, e.g.
                            an experimental copy made with --agent-rev ... --keep, then edited)
  --restore-dir DIR         restore into DIR (e.g. a tmpfs, /dev/shm) rather than the run's scratch directory:
                            on a disk whose allocator state makes creating files cost the kernel 5 s one
                            minute and 50 s the next (cp -a of the linux tree, this VM), restores measure the
                            disk, not the tools
  --timeout SECS            kill a command running longer than this (default 1800)
  --report FILE.json        print the tables again from the JSON of an earlier run (nothing is run)
  --keep                    keep the scratch copies, restores and the gateway's data
  --help`;

const { values: args } = parseArgs({
  options: {
    dataset: { type: 'string' }, runs: { type: 'string' }, quick: { type: 'boolean', default: false }, tools: { type: 'string', default: 'shelter,restic' },
    out: { type: 'string' }, 'bench-dir': { type: 'string' }, profile: { type: 'string' }, 'agent-rev': { type: 'string' }, 'gateway-rev': { type: 'string' }, rev: { type: 'string' }, 'agent-dir': { type: 'string' }, report: { type: 'string' }, 'restore-dir': { type: 'string' }, timeout: { type: 'string', default: '1800' }, keep: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
  },
});
if (args.help) { process.stdout.write(USAGE + '\n'); process.exit(0); }

type Tool = 'shelter' | 'restic';
type Op = 'initial' | 'nochange' | 'change' | 'restore';
const OPS: Op[] = ['initial', 'nochange', 'change', 'restore'];
const OP_LABEL: Record<Op, string> = { initial: 'initial backup', nochange: 'no-change backup', change: 'backup after 1% change', restore: 'full restore' };
/** minimum restic/shelter time ratio of each operation (issue 3) */
const TARGET: Record<Op, number> = { initial: 1.5, nochange: 3, change: 2, restore: 1.5 };
const RSS_LIMIT_MIB = 250;

const KIT = '/work/shared/bench';
// --report: the results of an earlier run (its JSON), printed again with this version's report
const saved = args.report ? JSON.parse(readFileSync(args.report, 'utf8')) as {
  runs: number; tools: Tool[]; datasets: Record<string, { original: TreeStats; modified?: TreeStats }>; measurements: Measurement[]; runErrors?: string[];
  endedAt: string; agent: { label: string; dirty: string }; gateway: { label: string; dirty: string };
  machine: { restic: string; loadAtStart: number[]; loadAtEnd: number[]; nproc: number; cpu: string; kernel: string; node: string };
} : undefined;
const benchDir = resolve(args['bench-dir'] ?? process.env.BENCH_DIR ?? '/tmp/shelter-bench');
const datasets = saved ? ['linux', 'big'].filter((d) => d in saved.datasets || saved.measurements.some((m) => m.dataset === d))
  : (args.dataset ?? (args.quick ? 'big' : 'all')) === 'all' ? ['linux', 'big'] : [args.dataset ?? 'big'];
for (const d of datasets) if (d !== 'linux' && d !== 'big') { process.stderr.write(`unknown dataset ${d}\n${USAGE}\n`); process.exit(2); }
const runs = saved ? saved.runs : Number(args.runs ?? (args.quick ? 1 : 3));
if (!Number.isInteger(runs) || runs < 1) { process.stderr.write(`--runs takes a positive integer\n`); process.exit(2); }
const tools = saved ? saved.tools : args.tools!.split(',').map((t) => t.trim()) as Tool[];
for (const t of tools) if (t !== 'shelter' && t !== 'restic') { process.stderr.write(`unknown tool ${t}\n`); process.exit(2); }
const profileDir = args.profile ? resolve(args.profile) : undefined;
const timeoutSec = Number(args.timeout);
const repoRoot = resolve(import.meta.dirname, '..');
const nodeBin = process.execPath;

const say = (m: string) => process.stderr.write(`${m}\n`);
const mib = (kib: number) => kib / 1024;

// ---- the datasets -------------------------------------------------------------------------
function ensureData(): void {
  const d = join(benchDir, 'data');
  const have = (ds: string) => ds === 'linux' ? existsSync(join(d, 'linux')) : ['random.bin', 'dedup.bin', 'usrlib.tar'].every((f) => existsSync(join(d, 'big', f)));
  if (datasets.every(have)) { say(`datasets present in ${d} (reused)`); return; }
  say(`generating the datasets with ${KIT}/make-data.sh into ${d} (downloads linux-source-6.1 with apt the first time; a few minutes)`);
  execFileSync('bash', [join(KIT, 'make-data.sh')], { env: { ...process.env, BENCH_DIR: benchDir }, stdio: ['ignore', 2, 2] });
}

// ---- environment of the tools: nothing from this machine's AWS_/RESTIC_/SHELTER_ settings
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(AWS_|RESTIC_|SHELTER_|NODE_OPTIONS$|XDG_)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

// ---- repository size: every object version in the bucket (restic's deleted locks included)
function s3Client(gw: Gateway, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({
    endpoint: gw.url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: new HttpsAgent({ keepAlive: true, ca: gw.caPem }) }),
  });
}
async function bucketUsage(c: S3Client, bucket: string): Promise<{ bytes: number; objects: number }> {
  let bytes = 0, objects = 0;
  let KeyMarker: string | undefined, VersionIdMarker: string | undefined;
  for (;;) {
    const r = await c.send(new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker, VersionIdMarker }));
    for (const v of r.Versions ?? []) { bytes += v.Size ?? 0; objects++; }
    if (!r.IsTruncated) break;
    KeyMarker = r.NextKeyMarker; VersionIdMarker = r.NextVersionIdMarker;
  }
  return { bytes, objects };
}

// ---- one tool on one repository --------------------------------------------------------------
interface Driver {
  tool: Tool;
  bucket: string;
  s3: S3Client;
  init(): Promise<void>;
  backup(src: string, log: string, prof?: string): Promise<Timed>;
  restore(target: string, log: string, prof?: string): Promise<Timed>;
}

function shelterDriver(gw: Gateway, runDir: string, name: string): Driver {
  const cred = gw.createServer(name);
  const env = cleanEnv({ SHELTER_CONFIG_DIR: join(runDir, 'shelter-config'), XDG_STATE_HOME: join(runDir, 'shelter-state'), XDG_CACHE_HOME: join(runDir, 'shelter-cache') });
  const agent = (args: string[], log: string, prof?: string) => {
    const c = agentCommand(shelterBin, env, prof);
    return timed(c.cmd, args, { env: c.env, logFile: log, serverPid: gw.proc.pid, timeoutSec });
  };
  return {
    tool: 'shelter', bucket: cred.bucket, s3: s3Client(gw, cred.accessKeyId, cred.secretAccessKey),
    async init() {
      await run(nodeBin, [shelterBin, 'init', '--endpoint', gw.url, '--bucket', cred.bucket, '--access-key', cred.accessKeyId, '--secret-key', cred.secretAccessKey,
        '--ca-cert', gw.caFile, '--key-file', join(runDir, 'shelter.key'), '--json'], env);
    },
    backup: (src, log, prof) => agent(['backup', 'files', src, '--name', 'bench', '--json'], log, prof),
    restore: (target, log, prof) => agent(['restore', 'latest', '--name', 'bench', '--target', target, '--json'], log, prof),
  };
}

function resticDriver(gw: Gateway, runDir: string, name: string): Driver {
  const cred = gw.createServer(name);
  const env = cleanEnv({
    AWS_ACCESS_KEY_ID: cred.accessKeyId, AWS_SECRET_ACCESS_KEY: cred.secretAccessKey, RESTIC_PASSWORD: 'bench-password',
    RESTIC_CACHE_DIR: join(runDir, 'restic-cache'),
  });
  const repo = ['-r', `s3:${gw.url}/${cred.bucket}`, '--cacert', gw.caFile];
  return {
    tool: 'restic', bucket: cred.bucket, s3: s3Client(gw, cred.accessKeyId, cred.secretAccessKey),
    async init() { await run('restic', [...repo, 'init', '--repository-version', '2'], env); },
    backup: (src, log) => timed('restic', [...repo, 'backup', '--compression', 'auto', src], { env, logFile: log, serverPid: gw.proc.pid, timeoutSec }),
    restore: (target, log) => timed('restic', [...repo, 'restore', 'latest', '--target', target], { env, logFile: log, serverPid: gw.proc.pid, timeoutSec }),
  };
}

// ---- results ---------------------------------------------------------------------------------
interface Measurement extends Partial<Timed> {
  dataset: string; run: number; tool: Tool; op: Op;
  /** bytes of the tree backed up or restored (the dataset before / after the 1% change) */
  bytes: number;
  failed?: string;
  /** after a backup: the bucket's size */
  repoBytes?: number; repoObjects?: number;
  /** after a restore: the comparison with the source */
  verify?: TreeComparison;
  profile?: ProfileSummary[];
}
const measurements: Measurement[] = [];
const runErrors: string[] = [];
const datasetInfo: Record<string, { original: TreeStats; modified?: TreeStats }> = {};
const startedAt = new Date().toISOString();
const loadAtStart = loadavg();

function tail(file: string, n = 3000): string {
  try { const s = readFileSync(file, 'utf8'); return s.slice(-n); } catch { return ''; }
}

function profileOf(dir: string | undefined): ProfileSummary[] | undefined {
  if (!dir) return undefined;
  const out = profilesIn(dir).map((f) => summarizeProfile(f, 15));
  for (const s of out) say(formatSummary(s, ['byFunction', 'byFile', 'projectInclusive']));
  return out;
}

async function benchRun(gw: Gateway, ds: string, r: number, work: string): Promise<void> {
  const orig = join(benchDir, 'data', ds);
  const runDir = join(work, `${ds}-run${r}`);
  mkdirSync(runDir, { recursive: true });
  const src = join(runDir, ds);
  const tag = `[${ds} run ${r}/${runs}]`;
  say(`${tag} copying ${orig} to ${src}`);
  await run('cp', ['-a', orig, src], process.env);
  // read every file once before the first timed command: cp -a left atimes older than the new
  // ctimes, so (relatime) the first reader would change every atime and whichever tool backs up
  // first would make the other see changed metadata; this also warms the page cache for both
  const before = treeStats(digestTree(src, true));
  // the copy's 1.3 GB (linux) on disk before the first timed command (untimed): else it is
  // written back during the first backups, and every fsync of the gateway's (ext4, data=ordered)
  // waits behind it, for whichever tool comes first
  execFileSync('sync');
  // alternate which tool goes first, run to run
  const order = r % 2 === 1 ? tools : [...tools].reverse();
  const drivers = new Map<Tool, Driver>();
  for (const t of order) {
    const d = (t === 'shelter' ? shelterDriver : resticDriver)(gw, join(runDir, t), `b-${ds}-${r}-${t}-${process.pid}`);
    mkdirSync(join(runDir, t), { recursive: true });
    await d.init();
    drivers.set(t, d);
  }
  const failed = new Set<Tool>();
  const logOf = (t: Tool, op: Op) => join(runDir, t, `${op}.log`);
  const profOf = (t: Tool, op: Op) => (t === 'shelter' && profileDir ? join(profileDir, `${ds}-run${r}-${op}`) : undefined);
  const record = (m: Measurement) => {
    measurements.push(m);
    const x = m.failed ? `FAILED: ${m.failed.split('\n')[0]}` :
      `${m.wall!.toFixed(2)} s (${(m.bytes / 1e6 / m.wall!).toFixed(0)} MB/s), CPU ${m.cpu!.toFixed(1)} s, RSS ${mib(m.rssKiB!).toFixed(0)} MiB, ` +
      `shelterd ${m.serverCpu!.toFixed(1)} CPU s, others ${m.otherCores!.toFixed(2)} cores, load ${m.load1}` +
      (m.repoBytes !== undefined ? `, repo ${(m.repoBytes / 1e6).toFixed(1)} MB in ${m.repoObjects} objects` : '') +
      (m.verify ? `, restore ${m.verify.identical ? 'identical' : `WRONG (${m.verify.problemCount} problems: ${m.verify.problems.slice(0, 3).join('; ')})`}` +
        (m.verify.metadataDiffCount ? ` (${m.verify.metadataDiffCount} metadata differences, e.g. ${m.verify.metadataDiffs[0]})` : '') : '');
    say(`${tag} ${m.tool.padEnd(7)} ${OP_LABEL[m.op].padEnd(22)} ${x}`);
  };

  const backupAll = async (op: Op, bytes: number) => {
    for (const t of order) {
      if (interrupted) throw new Error('interrupted');
      if (failed.has(t)) continue;
      const d = drivers.get(t)!;
      const m: Measurement = { dataset: ds, run: r, tool: t, op, bytes };
      const tm = await d.backup(src, logOf(t, op), profOf(t, op));
      Object.assign(m, tm);
      if (tm.exitCode !== 0) { m.failed = `exit ${tm.exitCode}: ${tail(logOf(t, op))}`; failed.add(t); }
      else Object.assign(m, (({ bytes: repoBytes, objects: repoObjects }) => ({ repoBytes, repoObjects }))(await bucketUsage(d.s3, d.bucket)));
      m.profile = profileOf(profOf(t, op));
      record(m);
    }
  };

  await backupAll('initial', before.bytes);
  await backupAll('nochange', before.bytes);
  say(`${tag} ${execFileSync('python3', [join(KIT, 'modify.py'), src], { encoding: 'utf8' }).trim()}`);
  // the change's own writes on disk first (untimed), for the same reason: in bench/ab.ts the linux
  // 1% change took 3.4 s without this sync and 2.8 s with it, for either version of the agent
  execFileSync('sync');
  await backupAll('change', treeStats(digestTree(src, false)).bytes);
  const source = digestTree(src, true);
  const after = treeStats(source);
  datasetInfo[ds] = { original: before, modified: after };
  for (const t of order) {
    if (interrupted) throw new Error('interrupted');
    if (failed.has(t)) continue;
    const target = args['restore-dir'] ? join(resolve(args['restore-dir']), `${ds}-run${r}-restore-${t}-${process.pid}`) : join(runDir, `restore-${t}`);
    const m: Measurement = { dataset: ds, run: r, tool: t, op: 'restore', bytes: after.bytes };
    // each restore starts with no dirty pages of the commands before it (the other tool's restore
    // among them): with ~1.5 GB of them, creating files stalled in the kernel for whichever
    // restore came second, 23-30 s instead of 6-10 (this machine's disk)
    execFileSync('sync');
    const tm = await drivers.get(t)!.restore(target, logOf(t, 'restore'), profOf(t, 'restore'));
    Object.assign(m, tm);
    if (tm.exitCode !== 0) m.failed = `exit ${tm.exitCode}: ${tail(logOf(t, 'restore'))}`;
    // both tools recreate the absolute path of what was backed up under the target
    const restored = join(target, src);
    if (existsSync(restored)) m.verify = compareTrees(source, digestTree(restored, true));
    else m.failed ??= `nothing restored at ${restored}`;
    m.profile = profileOf(profOf(t, 'restore'));
    record(m);
    if (args['restore-dir'] && !args.keep) rmSync(target, { recursive: true, force: true });
  }
  for (const d of drivers.values()) d.s3.destroy();
  if (!args.keep) {
    rmSync(runDir, { recursive: true, force: true });
    execFileSync('sync'); // let the discards of the deletion happen now, not in the next timed command
  }
}

// ---- report ----------------------------------------------------------------------------------
const fmtS = (s: number) => (s < 10 ? s.toFixed(2) : s.toFixed(1));
const fmtRatio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a');

interface Cell { n: number; med: number; min: number; mbps: number; cpu: number; rssMiB: number; serverCpu: number; other: number; verified?: string; repoBytes?: number }
function cell(ds: string, tool: Tool, op: Op): Cell | undefined {
  const ms = measurements.filter((m) => m.dataset === ds && m.tool === tool && m.op === op && !m.failed);
  if (ms.length === 0) return undefined;
  const walls = ms.map((m) => m.wall!);
  const med = median(walls);
  const c: Cell = {
    n: ms.length, med, min: Math.min(...walls), mbps: median(ms.map((m) => m.bytes)) / 1e6 / med, cpu: median(ms.map((m) => m.cpu!)),
    rssMiB: Math.max(...ms.map((m) => mib(m.rssKiB!))), serverCpu: median(ms.map((m) => m.serverCpu!)), other: median(ms.map((m) => m.otherCores!)),
  };
  if (op === 'restore') {
    const ok = ms.filter((m) => m.verify?.identical).length;
    const metaDiffs = ms.reduce((s, m) => s + (m.verify?.metadataDiffCount ?? 0), 0);
    c.verified = `${ok}/${ms.length} identical${metaDiffs ? `, ${metaDiffs} metadata diffs` : ''}`;
  }
  const repo = ms.filter((m) => m.repoBytes !== undefined).map((m) => m.repoBytes!);
  if (repo.length) c.repoBytes = median(repo);
  return c;
}
/** '' when no command failed, else e.g. "1 timed out (> 300 s)", "2 failed" */
const failures = (ds: string, tool: Tool, op: Op): string => {
  const f = measurements.filter((m) => m.dataset === ds && m.tool === tool && m.op === op && m.failed);
  if (f.length === 0) return '';
  const to = f.filter((m) => m.exitCode === 124);
  return [to.length ? `${to.length} timed out (> ${Math.min(...to.map((m) => Math.floor(m.wall!)))} s)` : '', f.length - to.length ? `${f.length - to.length} failed` : ''].filter(Boolean).join(', ');
};

interface Verdict { dataset: string; what: string; shelter?: number; restic?: number; ratio?: number; target: string; pass: boolean | null }
const verdicts: Verdict[] = [];

interface ReportMeta {
  time: string; restic: string; agent: { label: string; dirty: string }; gateway: { label: string; dirty: string };
  machine: string; loadAtStart: number[]; loadAtEnd: number[]; profileDir?: string;
}
function report(meta: ReportMeta): string {
  const lines: string[] = [];
  const both = tools.includes('shelter') && tools.includes('restic');
  lines.push(`## Agent benchmark: shelter vs ${meta.restic} through the same shelterd (HTTPS), ${runs} run(s), ${meta.time}`, '');
  lines.push('Seconds: median [min] of the runs; MB/s = dataset bytes (1e6) / median; CPU = user+sys s (median); RSS = peak over the runs; ratio = restic median / shelter median (>1: shelter faster).', '');
  lines.push('| dataset | operation | shelter s | MB/s | CPU s | RSS MiB | restic s | MB/s | CPU s | RSS MiB | restic/shelter | target | result |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
  const cols = (c: Cell | undefined, fails: string) => c
    ? [`${fmtS(c.med)} [${fmtS(c.min)}]${fails ? ` (${fails})` : ''}`, c.mbps.toFixed(0), c.cpu.toFixed(1), c.rssMiB.toFixed(0)]
    : [fails || '-', '-', '-', '-'];
  for (const ds of datasets) {
    for (const op of OPS) {
      const s = cell(ds, 'shelter', op), r = cell(ds, 'restic', op);
      const ratio = s && r ? r.med / s.med : NaN;
      const wrong = op === 'restore' && s && !s.verified?.startsWith(`${s.n}/`);
      const shelterFailed = failures(ds, 'shelter', op) !== '';
      const pass = !both ? null : shelterFailed ? false : !s || !r ? null : ratio >= TARGET[op] && !wrong;
      verdicts.push({ dataset: ds, what: OP_LABEL[op], shelter: s?.med, restic: r?.med, ratio, target: `>= ${TARGET[op]}x`, pass });
      lines.push(`| ${ds} | ${OP_LABEL[op]} | ${cols(s, failures(ds, 'shelter', op)).join(' | ')} | ${cols(r, failures(ds, 'restic', op)).join(' | ')} | ${fmtRatio(ratio)} | ` +
        `>= ${TARGET[op]}x | ${pass === null ? '-' : pass ? 'PASS' : wrong ? 'FAIL (restore not identical)' : shelterFailed && !s ? 'FAIL (shelter failed)' : 'FAIL'} |`);
    }
    for (const [op, label] of [['initial', 'repo size after initial, MB'], ['change', 'repo size after the 3 backups, MB']] as const) {
      const s = cell(ds, 'shelter', op)?.repoBytes, r = cell(ds, 'restic', op)?.repoBytes;
      const ratio = s !== undefined && r !== undefined ? r / s : NaN;
      const pass = s === undefined || r === undefined ? null : s <= r;
      verdicts.push({ dataset: ds, what: label, shelter: s, restic: r, ratio, target: '<= restic', pass });
      lines.push(`| ${ds} | ${label} | ${s !== undefined ? (s / 1e6).toFixed(1) : '-'} | | | | ${r !== undefined ? (r / 1e6).toFixed(1) : '-'} | | | | ${fmtRatio(ratio)} | <= restic | ${pass === null ? '-' : pass ? 'PASS' : 'FAIL'} |`);
    }
    const rss = OPS.map((op) => cell(ds, 'shelter', op)?.rssMiB).filter((x): x is number => x !== undefined);
    const rrss = OPS.map((op) => cell(ds, 'restic', op)?.rssMiB).filter((x): x is number => x !== undefined);
    if (rss.length) {
      const peak = Math.max(...rss);
      verdicts.push({ dataset: ds, what: 'peak RSS MiB', shelter: peak, restic: rrss.length ? Math.max(...rrss) : undefined, target: `< ${RSS_LIMIT_MIB} MiB`, pass: peak < RSS_LIMIT_MIB });
      lines.push(`| ${ds} | peak RSS, all operations | | | | ${peak.toFixed(0)} | | | | ${rrss.length ? Math.max(...rrss).toFixed(0) : '-'} | | < ${RSS_LIMIT_MIB} MiB | ${peak < RSS_LIMIT_MIB ? 'PASS' : 'FAIL'} |`);
    }
  }
  lines.push('', 'Context (medians): shelterd CPU s spent serving the command; cores used by other processes meanwhile (the machine is shared); restore verification (contents and symlinks byte for byte; metadata = mode and mtime).', '');
  lines.push('| dataset | operation | shelter: shelterd CPU s | others, cores | restic: shelterd CPU s | others, cores | restore check shelter | restore check restic |');
  lines.push('|---|---|---:|---:|---:|---:|---|---|');
  for (const ds of datasets) for (const op of OPS) {
    const s = cell(ds, 'shelter', op), r = cell(ds, 'restic', op);
    lines.push(`| ${ds} | ${OP_LABEL[op]} | ${s?.serverCpu.toFixed(1) ?? '-'} | ${s?.other.toFixed(2) ?? '-'} | ${r?.serverCpu.toFixed(1) ?? '-'} | ${r?.other.toFixed(2) ?? '-'} | ${s?.verified ?? ''} | ${r?.verified ?? ''} |`);
  }
  lines.push('');
  for (const ds of datasets) {
    const i = datasetInfo[ds];
    if (i) lines.push(`- ${ds}: ${i.original.files} files, ${(i.original.bytes / 1e6).toFixed(1)} MB; after modify.py ${i.modified!.files} files, ${(i.modified!.bytes / 1e6).toFixed(1)} MB`);
  }
  const { agent: a, gateway: g } = meta;
  lines.push(`- shelter: ${a.label}${a.dirty ? ` (${a.dirty.split('\n').join(', ')})` : ''}; shelterd: ${g.label}${g.dirty ? ` (${g.dirty.split('\n').join(', ')})` : ''}`);
  lines.push(`- machine: ${meta.machine}; load average at start ${meta.loadAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${meta.loadAtEnd.map((x) => x.toFixed(2)).join(' ')}`);
  if (meta.profileDir) lines.push(`- shelter ran under --cpu-prof (profiles in ${meta.profileDir}): its times include the profiler's cost`);
  for (const e of runErrors) lines.push(`- ERROR: ${e.split('\n')[0]}`);
  const pass = verdicts.filter((v) => v.pass === true).length, fail = verdicts.filter((v) => v.pass === false).length;
  if (both) lines.push(`- targets of issue 3: ${pass} PASS, ${fail} FAIL`);
  return lines.join('\n');
}

// ---- main ------------------------------------------------------------------------------------
if (saved) {
  measurements.push(...saved.measurements);
  Object.assign(datasetInfo, saved.datasets);
  runErrors.push(...(saved.runErrors ?? []));
  const m = saved.machine;
  process.stdout.write(report({ time: saved.endedAt, restic: m.restic, agent: saved.agent, gateway: saved.gateway,
    machine: `${m.nproc} x ${m.cpu}, Linux ${m.kernel}, Node ${m.node}`, loadAtStart: m.loadAtStart, loadAtEnd: m.loadAtEnd }) + '\n');
  process.exit(0);
}
const resticVersion = (() => { try { return execFileSync('restic', ['version'], { encoding: 'utf8' }).split(' ').slice(0, 2).join(' '); } catch { return 'restic (not found)'; } })();
ensureData();
const work = join(benchDir, `agent-work-${process.pid}`);
mkdirSync(work, { recursive: true });
let gw: Gateway | undefined;
let stopping = false;
let interrupted = false;
const cleanup = async () => {
  if (stopping) return;
  stopping = true;
  await gw?.stop();
  if (!args.keep) rmSync(work, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    say(`${sig}: stopping the running command and shelterd, removing the scratch space`);
    killRunning();
    void cleanup().then(() => process.exit(130));
  });
}
const agentRev = args['agent-rev'] ?? args.rev, gatewayRev = args['gateway-rev'] ?? args.rev;
const agent: CodeSource = args['agent-dir'] ? { packages: resolve(args['agent-dir']), commit: '', dirty: '', label: `packages in ${resolve(args['agent-dir'])}` }
  : agentRev ? snapshot(repoRoot, agentRev, work) : workingTree(repoRoot, ['packages/agent', 'packages/format']);
const gateway: CodeSource = gatewayRev ? snapshot(repoRoot, gatewayRev, work) : workingTree(repoRoot, ['packages/gateway']);
const shelterBin = join(agent.packages, 'agent/bin/shelter.js');

try {
  gw = await startBenchGateway(gateway.packages, join(work, 'gateway'));
  say(`shelterd listening at ${gw.url} (data ${gw.dataDir}); shelter: ${agent.label}; shelterd: ${gateway.label}; ${resticVersion}; tools ${tools.join(', ')}; datasets ${datasets.join(', ')}; ${runs} run(s); load ${loadavg()[0]!.toFixed(2)}`);
  for (const ds of datasets) {
    for (let r = 1; r <= runs && !interrupted; r++) {
      try { await benchRun(gw, ds, r, work); }
      catch (e) { runErrors.push(`${ds} run ${r}: ${(e as Error).message}`); say(`[${ds} run ${r}/${runs}] ERROR, run abandoned: ${(e as Error).stack}`); }
    }
  }
} finally {
  await cleanup();
}

const table = report({ time: new Date().toISOString(), restic: resticVersion, agent, gateway, profileDir,
  machine: `${cpus().length} x ${cpus()[0]?.model ?? '?'}, Linux ${release()}, Node ${process.version}`, loadAtStart, loadAtEnd: loadavg() });
process.stdout.write(table + '\n');
if (args.out) {
  writeFileSync(args.out, JSON.stringify({
    command: process.argv.slice(1).join(' '), startedAt, endedAt: new Date().toISOString(), benchDir, runs, tools, datasets: datasetInfo,
    agent: { commit: agent.commit, dirty: agent.dirty, label: agent.label }, gateway: { commit: gateway.commit, dirty: gateway.dirty, label: gateway.label },
    machine: { nproc: cpus().length, cpu: cpus()[0]?.model, kernel: release(), node: process.version, restic: resticVersion, loadAtStart, loadAtEnd: loadavg() },
    targets: { ...TARGET, rssMiB: RSS_LIMIT_MIB }, verdicts, runErrors, measurements, table,
  }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
  say(`results written to ${args.out}`);
}
