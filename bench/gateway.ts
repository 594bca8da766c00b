// Gateway benchmark (issue 2, "How we will know", last bullet): the same lean S3 client drives, in
// one run, shelterd over plain HTTP, shelterd over HTTPS, a real Ceph RADOS Gateway
// (../shared/ceph/start.sh, plain HTTP) and the raw floor (the same bytes written with fsync to
// local files by a plain Node loop), with 1, 8 and 32 concurrent clients:
//   PUT and GET throughput (MiB/s) of 16 MiB objects, PUT and GET operations/s of 4 KiB objects.
// Usage: node bench/gateway.ts [--quick] [--out FILE] [--targets LIST] ... (see --help, bench/README.md)
import { benchThreadPoolSize } from './lib/threadpool.ts';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createServer, shelterdBin, startGateway, tempDir, type Gateway } from '../test/lib/gateway.ts';
import { formatSummary, profilesIn, summarizeProfile, type ProfileSummary, type Window } from './lib/cpuprofile.ts';
import { OtherCpu, processTree, statusKiB, sumCpuSeconds } from './lib/proc.ts';
import { LeanS3, selfTestSigner, type PayloadMode, type SignerKind, type TransportKind } from './lib/s3.ts';

const MiB = 1 << 20;
const ALL_TARGETS = ['shelterd-http', 'shelterd-https', 'ceph-rgw', 'raw-fs', 'null-http'] as const;
const DEFAULT_TARGETS = ['shelterd-http', 'shelterd-https', 'ceph-rgw', 'raw-fs'];
type TargetName = (typeof ALL_TARGETS)[number];
const ALL_WORKLOADS = ['put16m', 'get16m', 'put4k', 'get4k'] as const;
type WorkloadName = (typeof ALL_WORKLOADS)[number];

interface Workload { name: WorkloadName; op: 'put' | 'get'; size: number; label: string; unit: 'MiB/s' | 'ops/s' }
const WORKLOADS: Record<WorkloadName, Workload> = {
  put16m: { name: 'put16m', op: 'put', size: 16 * MiB, label: 'PUT 16 MiB', unit: 'MiB/s' },
  get16m: { name: 'get16m', op: 'get', size: 16 * MiB, label: 'GET 16 MiB', unit: 'MiB/s' },
  put4k: { name: 'put4k', op: 'put', size: 4096, label: 'PUT 4 KiB', unit: 'ops/s' },
  get4k: { name: 'get4k', op: 'get', size: 4096, label: 'GET 4 KiB', unit: 'ops/s' },
};

// ------------------------------------------------------------------------------------ options
const HELP = `usage: node bench/gateway.ts [options]
  --quick               smoke run (~1-2 min): short cells, small seeds
  --out FILE            also write all results as JSON to FILE
  --targets LIST        comma list of shelterd-http,shelterd-https,ceph-rgw,raw-fs
                        (aliases: shelterd = both shelterd targets, ceph = ceph-rgw, raw = raw-fs); default all
                        four; optional extra: null-http (a do-nothing Node HTTP server: the ceiling
                        of any Node server with this client on this machine)
  --workloads LIST      comma list of put16m,get16m,put4k,get4k; default all
  --concurrency LIST    default 1,8,32
  --seconds N           time budget of one cell (default 5; --quick 1)
  --max-ops-big N       op cap of one 16 MiB cell (default 128; --quick 32)
  --max-ops-small N     op cap of one 4 KiB cell (default 20000; --quick 3000)
  --payload MODE        unsigned (x-amz-content-sha256: UNSIGNED-PAYLOAD, default) or sha256 (hex
                        SHA-256 of the body, computed by the client, verified by the server)
  --transport T         http1 (default: bench/lib/http1.ts, minimal keep-alive HTTP/1.1 client) or
                        node (node:http / node:https with a keep-alive agent; ~3x the client CPU)
  --signer S            native (default: SigV4 on node:crypto, checked against @smithy/signature-v4
                        at startup) or smithy (@smithy/signature-v4 for every request)
  --ceph-bucket MODE    lock (default: versioned + Object Lock, the semantics shelterd always has)
                        or plain (unversioned, Ceph's fastest case)
  --ceph-nagle          keep start.sh's radosgw as is (Nagle on: ~40 ms per small GET); by default the
                        bench restarts radosgw with beast's tcp_nodelay=1, Ceph's own tuning for this
  --ceph-running        use an already running Ceph (CEPH_DIR/s3.env) instead of start.sh/stop.sh
  --profile DIR         run shelterd under node --cpu-prof, write profiles to DIR and summarize them
  --quiet-cores X       before each cell, wait until the rest of the machine uses < X cores (default
                        0.15) for 0.5 s, at most --max-wait s (default 120) per cell
  --noisy-cores X       rerun a cell (at most --reruns times, default 2) when the rest of the machine
                        used >= X cores during it (default 0.35); the attempt with the least
                        interference is kept
  --keep                keep the data directories (default: removed at the end)
  --help`;

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    targets: { type: 'string', default: DEFAULT_TARGETS.join(',') },
    workloads: { type: 'string', default: ALL_WORKLOADS.join(',') },
    concurrency: { type: 'string', default: '1,8,32' },
    seconds: { type: 'string' },
    'max-ops-big': { type: 'string' },
    'max-ops-small': { type: 'string' },
    payload: { type: 'string', default: 'unsigned' },
    transport: { type: 'string', default: 'http1' },
    signer: { type: 'string', default: 'native' },
    'ceph-bucket': { type: 'string', default: 'lock' },
    'ceph-running': { type: 'boolean', default: false },
    'ceph-nagle': { type: 'boolean', default: false },
    profile: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'quiet-cores': { type: 'string', default: '0.15' },
    'max-wait': { type: 'string', default: '120' },
    'noisy-cores': { type: 'string', default: '0.35' },
    reruns: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) { console.log(HELP); process.exit(0); }

function die(msg: string): never { console.error(`bench/gateway: ${msg}`); process.exit(2); }
const ALIASES: Record<string, TargetName[]> = {
  shelterd: ['shelterd-http', 'shelterd-https'], http: ['shelterd-http'], https: ['shelterd-https'],
  ceph: ['ceph-rgw'], rgw: ['ceph-rgw'], raw: ['raw-fs'], fs: ['raw-fs'], null: ['null-http'],
};
const wanted = new Set<TargetName>();
for (const t of opt.targets.split(',').map((s) => s.trim()).filter(Boolean)) {
  if ((ALL_TARGETS as readonly string[]).includes(t)) wanted.add(t as TargetName);
  else if (ALIASES[t]) ALIASES[t].forEach((x) => wanted.add(x));
  else die(`unknown target ${t}`);
}
const targetNames = ALL_TARGETS.filter((t) => wanted.has(t));
const workloads = opt.workloads.split(',').map((w) => {
  if (!(w in WORKLOADS)) die(`unknown workload ${w}`);
  return WORKLOADS[w as WorkloadName];
});
const concurrencies = opt.concurrency.split(',').map(Number);
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1)) die('bad --concurrency');
const maxConc = Math.max(...concurrencies);
const payload = opt.payload as PayloadMode;
if (payload !== 'unsigned' && payload !== 'sha256') die('--payload is unsigned or sha256');
const transport = opt.transport as TransportKind;
if (transport !== 'http1' && transport !== 'node') die('--transport is http1 or node');
const signer = opt.signer as SignerKind;
if (signer !== 'native' && signer !== 'smithy') die('--signer is native or smithy');
const clientOpts = { payload, transport, signer, maxSockets: Math.max(64, maxConc) };
const cephBucketMode = opt['ceph-bucket'];
if (cephBucketMode !== 'lock' && cephBucketMode !== 'plain') die('--ceph-bucket is lock or plain');
const cellSeconds = Number(opt.seconds ?? (opt.quick ? 1 : 5));
const maxOpsBig = Math.max(maxConc, Number(opt['max-ops-big'] ?? (opt.quick ? 32 : 128)));
const maxOpsSmall = Math.max(maxConc, Number(opt['max-ops-small'] ?? (opt.quick ? 3000 : 20000)));
const seedBig = opt.quick ? 8 : Math.max(maxConc, 32);
const seedSmall = opt.quick ? 64 : 512;
const CEPH_SCRIPTS = resolve(import.meta.dirname, '../../shared/ceph');
const CEPH_DIR = process.env.CEPH_DIR ?? '/tmp/shelter-ceph';
const quietCores = Number(opt['quiet-cores']);
const maxWait = Number(opt['max-wait']);
const noisyCores = Number(opt['noisy-cores']);
const reruns = Number(opt.reruns);
const profileDir = opt.profile ? resolve(opt.profile) : undefined;

// ------------------------------------------------------------------------------------ targets
interface Target {
  name: TargetName;
  describe: string;
  /** false: the target stores nothing (null-http), skip the read-back check */
  verify?: boolean;
  /** resolves with the ms the server took after the body was sent, when known */
  put(key: string, body: Uint8Array): Promise<number | undefined | void>;
  /** reads the whole object, returns its length */
  get(key: string, worker: number): Promise<number>;
  getBody(key: string): Promise<Buffer>;
  /** server processes whose CPU time is charged to this target (none for raw-fs) */
  pids(): number[];
  /** peak RSS figures, read just before stopping */
  rss(): Record<string, number>;
  stop(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
let cleaning: Promise<void> | undefined;
async function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try { await c(); } catch (e) { console.error('cleanup:', (e as Error).message); }
    }
  })();
  await cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => { console.error(`\n${sig}: cleaning up`); void cleanupAll().finally(() => process.exit(130)); });
}

function log(msg: string): void { console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`); }

function s3Target(name: TargetName, describe: string, client: LeanS3, bucket: string, pids: () => number[],
  rss: () => Record<string, number>, stop: () => Promise<void>): Target {
  return {
    name, describe, pids, rss, stop,
    put: (key, body) => client.putObject(bucket, key, body),
    get: (key) => client.getObject(bucket, key),
    getBody: (key) => client.getObjectBody(bucket, key),
  };
}

async function startNull(): Promise<Target> {
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'lib/nullserver.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM'); await exited; };
  cleanups.push(stop);
  const url = await new Promise<string>((res, rej) => {
    proc.once('exit', (c) => rej(new Error(`null server exited ${c}`)));
    proc.stdout!.once('data', (d: Buffer) => res((JSON.parse(d.toString().split('\n')[0]!) as { url: string }).url));
  });
  const client = new LeanS3({ endpoint: url, accessKeyId: 'x', secretAccessKey: 'y', ...clientOpts });
  cleanups.push(() => client.close());
  const pid = proc.pid!;
  const t = s3Target('null-http', `${url} (bench/lib/nullserver.ts: no auth, no storage)`, client, 'null', () => [pid],
    () => ({ [`pid ${pid} VmHWM MiB`]: Math.round(statusKiB(pid, 'VmHWM') / 1024) }), stop);
  return { ...t, verify: false };
}

async function startShelterd(https: boolean): Promise<Target> {
  const name: TargetName = https ? 'shelterd-https' : 'shelterd-http';
  if (!existsSync(shelterdBin)) die(`${shelterdBin} does not exist yet (the gateway is not built); use --targets ceph,raw`);
  const dataDir = tempDir(`shelter-bench-${name}-`);
  const env: Record<string, string> = {};
  if (profileDir) {
    const dir = join(profileDir, name);
    mkdirSync(dir, { recursive: true });
    env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${dir}`.trim();
  }
  const gw: Gateway = await startGateway({ http: !https, dataDir, env });
  let stopped = false;
  const stop = async () => { if (!stopped) { stopped = true; await gw.stop(); } };
  cleanups.push(async () => { await stop(); if (!opt.keep) rmSync(dataDir, { recursive: true, force: true }); });
  const creds = createServer(dataDir, 'bench');
  const client = new LeanS3({
    endpoint: gw.url, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey,
    ...(https ? { ca: readFileSync(gw.caFile, 'utf8') } : {}), ...clientOpts,
  });
  cleanups.push(() => client.close());
  const pid = gw.proc.pid!;
  return s3Target(name, `${gw.url} (data ${dataDir}${https ? ', CA DATA/tls/ca.pem' : ''})`, client, creds.bucket,
    () => processTree(pid),
    () => Object.fromEntries(processTree(pid).map((p) => [`pid ${p} VmHWM MiB`, Math.round(statusKiB(p, 'VmHWM') / 1024)])),
    stop);
}

function readEnvFile(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of readFileSync(file, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  return env;
}

function cephPids(): number[] {
  const run = join(CEPH_DIR, 'run');
  try {
    return readdirSync(run).filter((f) => f.endsWith('.pid'))
      .map((f) => Number(readFileSync(join(run, f), 'utf8').trim())).filter(Boolean);
  } catch { return []; }
}

/**
 * start.sh's radosgw leaves Nagle's algorithm on: a small GET then waits for the client's delayed
 * ACK (~40 ms each, measured: 44 ms vs 3 ms per 4 KiB GET). Ceph's documented fix is the beast
 * frontend option tcp_nodelay=1; restart radosgw with it, in the cluster's own ceph.conf.
 */
async function cephNoDelay(endpoint: string): Promise<void> {
  const conf = join(CEPH_DIR, 'ceph.conf');
  const text = readFileSync(conf, 'utf8');
  if (/^rgw frontends = .*tcp_nodelay=1/m.test(text)) return;
  const pidFile = join(CEPH_DIR, 'run/client.rgw.a.pid');
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!pid || !readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('radosgw')) throw new Error(`no radosgw at pid ${pid}`);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 150 && existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  writeFileSync(conf, text.replace(/^(rgw frontends = beast .*)$/m, '$1 tcp_nodelay=1'));
  const r = spawnSync('radosgw', ['-n', 'client.rgw.a'], { env: { ...process.env, CEPH_CONF: conf }, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`radosgw restart failed: ${r.stderr}`);
  for (let i = 0; i < 300; i++) {
    try { await fetch(endpoint); return; } catch { await new Promise((res) => setTimeout(res, 100)); }
  }
  throw new Error('radosgw did not come back');
}

async function startCeph(): Promise<Target> {
  if (!opt['ceph-running']) {
    log(`starting Ceph: bash ${CEPH_SCRIPTS}/start.sh`);
    const stopCeph = () => {
      log(`stopping Ceph: bash ${CEPH_SCRIPTS}/stop.sh`);
      const s = spawnSync('bash', ['stop.sh'], { cwd: CEPH_SCRIPTS, encoding: 'utf8' });
      if (s.status !== 0) console.error(s.stdout, s.stderr);
    };
    cleanups.push(stopCeph); // registered first: also stops a half-started cluster
    const r = spawnSync('bash', ['start.sh'], { cwd: CEPH_SCRIPTS, encoding: 'utf8', env: { ...process.env, CEPH_DIR } });
    if (r.status !== 0) {
      if (/a cluster may still be running/.test(r.stdout)) {
        cleanups.pop(); // not ours: leave it alone
        throw new Error(`a Ceph cluster already runs in ${CEPH_DIR}: pass --ceph-running to use it, or stop it with ${CEPH_SCRIPTS}/stop.sh`);
      }
      throw new Error(`start.sh failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    }
    log(r.stdout.trim().split('\n').slice(-2).join(' | '));
  }
  const env = readEnvFile(join(CEPH_DIR, 's3.env'));
  if (!opt['ceph-nagle']) await cephNoDelay(env.S3_ENDPOINT!);
  const client = new LeanS3({
    endpoint: env.S3_ENDPOINT!, accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
    region: env.AWS_DEFAULT_REGION ?? 'us-east-1', ...clientOpts,
  });
  cleanups.push(() => client.close());
  // Ceph keeps bucket names across runs of --ceph-running and locked buckets cannot be deleted
  const bucket = `bench-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  await client.createBucket(bucket, { objectLock: cephBucketMode === 'lock' });
  const pids = cephPids();
  return s3Target('ceph-rgw',
    `${env.S3_ENDPOINT} bucket ${bucket} (${cephBucketMode === 'lock' ? 'versioned, Object Lock enabled' : 'unversioned'}; radosgw ${opt['ceph-nagle'] ? 'as start.sh leaves it (Nagle on)' : 'with tcp_nodelay=1'}; daemons pids ${pids.join(' ')})`,
    client, bucket, () => pids,
    () => ({ 'all Ceph daemons VmHWM MiB': Math.round(pids.reduce((s, p) => s + statusKiB(p, 'VmHWM'), 0) / 1024) }),
    async () => { /* stopped by cleanup */ });
}

/** The floor: open, write, fsync, close one local file per object; GET reads it back. */
function rawTarget(): Target {
  const dir = tempDir('shelter-bench-raw-');
  cleanups.push(() => { if (!opt.keep) rmSync(dir, { recursive: true, force: true }); });
  // allocated (and touched) now, so that no timed cell pays for page faults of fresh buffers
  const readBufs: Buffer[] = Array.from({ length: maxConc }, () => Buffer.allocUnsafe(16 * MiB).fill(0x5a)); // fill: calloc pages are lazy
  const path = (key: string) => join(dir, key.replaceAll('/', '_'));
  return {
    name: 'raw-fs',
    describe: `${dir}: open(w), write, fsync, close per PUT; open, read to EOF, close per GET (fs.promises, ${benchThreadPoolSize} libuv threads)`,
    async put(key, body) {
      const fh = await open(path(key), 'w');
      try {
        let off = 0;
        while (off < body.length) off += (await fh.write(body, off, body.length - off, off)).bytesWritten;
        await fh.sync();
      } finally { await fh.close(); }
    },
    async get(key, worker) {
      const buf = (readBufs[worker] ??= Buffer.allocUnsafe(16 * MiB));
      const fh = await open(path(key), 'r');
      try {
        let total = 0;
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, total);
          if (bytesRead === 0) return total;
          total += bytesRead;
        }
      } finally { await fh.close(); }
    },
    async getBody(key) { return readFileSync(path(key)); },
    pids: () => [],
    rss: () => ({}),
    async stop() { /* nothing runs */ },
  };
}

// ------------------------------------------------------------------------------------ measurement
/** Per-worker bodies, filled once with random (incompressible) bytes, stamped per op. */
const bodies = { big: [] as Buffer[], small: [] as Buffer[] };
function body(size: number, worker: number): Buffer {
  const arr = size === 4096 ? bodies.small : bodies.big;
  return (arr[worker] ??= randomBytes(size));
}
let stampSeq = 0;
/** Makes every PUT's bytes unique (a 16-byte header), so no server can dedupe identical bodies. */
function stamp(buf: Buffer): void {
  buf.writeDoubleLE(++stampSeq, 0);
  buf.writeDoubleLE(Date.now(), 8);
}

interface Cell {
  target: TargetName; workload: WorkloadName; concurrency: number;
  ops: number; bytes: number; seconds: number; rate: number; unit: string;
  p50ms: number; p99ms: number; maxms: number;
  /** PUTs: p50 of the time from the end of the upload (request handed to the kernel) to the response */
  afterSendP50ms?: number;
  /** CPU seconds of the server processes per wall second (1.0 = one core busy) */
  serverCores: number | null;
  /** CPU of this (client) process per wall second */
  clientCores: number;
  errors: number; firstError?: string;
  /** CPU used by everything else on the machine during the cell (cores): noise */
  otherCores?: number;
  /** attempts run (reruns when the machine was busy) and seconds waited for a quiet machine */
  attempts?: number; waitedSeconds?: number;
}

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** time windows of the timed cells, per target and workload (to cut CPU profiles to them) */
const cellWindows = new Map<string, Window[]>();
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

const runId = `r${Date.now().toString(36)}`;
async function runCell(t: Target, w: Workload, conc: number, seconds: number, maxOps: number, tag: string): Promise<Cell> {
  const deadline = performance.now() + seconds * 1000;
  const lat: number[] = [];
  const after: number[] = [];
  let issued = 0, okOps = 0, bytes = 0, errors = 0;
  let firstError: string | undefined;
  const poolSize = w.size === 4096 ? seedSmall : seedBig;
  const pids = t.pids();
  const cpu0 = pids.length ? sumCpuSeconds(pids) : 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const w0 = monoUs();
  await Promise.all(Array.from({ length: conc }, async (_, worker) => {
    let mine = 0;
    while (issued < maxOps && errors < 10 && (mine === 0 || performance.now() < deadline)) {
      const n = issued++;
      mine++;
      const s = performance.now();
      try {
        if (w.op === 'put') {
          const b = body(w.size, worker);
          stamp(b);
          const a = await t.put(`${runId}/${tag}/${w.name}-c${conc}/${worker}-${mine}`, b);
          if (typeof a === 'number') after.push(a);
        } else {
          const got = await t.get(`${runId}/seed/${w.size === 4096 ? 'small' : 'big'}-${n % poolSize}`, worker);
          if (got !== w.size) throw new Error(`GET returned ${got} bytes, expected ${w.size}`);
        }
        lat.push(performance.now() - s);
        okOps++;
        bytes += w.size;
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  if (tag.startsWith('run')) {
    const k = `${t.name}|${w.name}`;
    cellWindows.set(k, [...(cellWindows.get(k) ?? []), [w0, monoUs()]]);
  }
  const cu = process.cpuUsage(c0);
  const serverCpu = pids.length ? sumCpuSeconds(pids) - cpu0 : NaN;
  lat.sort((a, b) => a - b);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    target: t.name, workload: w.name, concurrency: conc, ops: okOps, bytes, seconds: r2(secs),
    rate: w.unit === 'MiB/s' ? r2(bytes / MiB / secs) : r2(okOps / secs), unit: w.unit,
    p50ms: r2(pct(lat, 50)), p99ms: r2(pct(lat, 99)), maxms: r2(lat.at(-1) ?? NaN),
    ...(after.length ? { afterSendP50ms: r2(pct(after.sort((a, b) => a - b), 50)) } : {}),
    serverCores: pids.length ? r2(serverCpu / secs) : null,
    clientCores: r2((cu.user + cu.system) / 1e6 / secs),
    errors, ...(firstError ? { firstError } : {}),
  };
}

/** Waits until the rest of the machine is quiet (or --max-wait passed); returns the seconds waited. */
async function waitQuiet(pids: () => number[]): Promise<number> {
  const t0 = performance.now();
  let warned = false;
  for (;;) {
    const o = new OtherCpu(pids);
    o.start();
    await new Promise((r) => setTimeout(r, 500));
    const cores = o.stop();
    const waited = (performance.now() - t0) / 1000;
    if (cores < quietCores) return waited;
    if (waited >= maxWait) { log(`machine still busy (${cores.toFixed(2)} cores used by others) after ${maxWait} s: running anyway`); return waited; }
    if (!warned && waited > 5) { log(`waiting for a quiet machine (others use ${cores.toFixed(2)} cores)`); warned = true; }
  }
}

/** Warm-up and seeding: connections, caches, JIT; checks that what was PUT comes back identical. */
async function prepare(t: Target): Promise<void> {
  const big = randomBytes(16 * MiB), small = randomBytes(4096);
  await t.put(`${runId}/check/big`, big);
  await t.put(`${runId}/check/small`, small);
  if (t.verify !== false && !(await t.getBody(`${runId}/check/big`)).equals(big)) throw new Error(`${t.name}: 16 MiB object read back differs`);
  if (t.verify !== false && !(await t.getBody(`${runId}/check/small`)).equals(small)) throw new Error(`${t.name}: 4 KiB object read back differs`);
  // seed the objects the GET cells read (8 writers), then warm up every workload briefly
  const seed = async (kind: 'big' | 'small', count: number, size: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = next++; i < count; i = next++) {
        const b = body(size, w);
        stamp(b);
        await t.put(`${runId}/seed/${kind}-${i}`, b);
      }
    }));
  };
  await seed('big', seedBig, 16 * MiB);
  await seed('small', seedSmall, 4096);
  const warm = opt.quick ? 0.3 : 1;
  for (const w of Object.values(WORKLOADS)) {
    const c = await runCell(t, w, Math.min(8, maxConc), warm, w.size === 4096 ? 2000 : 16, 'warmup');
    if (c.errors) throw new Error(`${t.name}: warm-up ${w.name} failed: ${c.firstError}`);
  }
}

// ------------------------------------------------------------------------------------ output
function fmtRate(c: Cell | undefined): string {
  if (!c) return '-';
  const v = c.rate;
  const s = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return c.errors ? `${s} (${c.errors} err)` : s;
}
function ratio(a: Cell | undefined, b: Cell | undefined): number | null {
  return a && b && b.rate > 0 && !a.errors && !b.errors ? a.rate / b.rate : null;
}
const fmtRatio = (r: number | null) => (r === null ? '-' : `${r.toFixed(2)}x`);

interface Verdict { goal: string; variant: string; minRatio: number | null; pass: boolean | null; rows: string[] }

function report(cells: Cell[]): { text: string; verdicts: Verdict[] } {
  const find = (t: TargetName, w: WorkloadName, c: number) => cells.find((x) => x.target === t && x.workload === w && x.concurrency === c);
  const hasCeph = targetNames.includes('ceph-rgw');
  const lines: string[] = [];
  const ratioCols = hasCeph ? (['shelterd-https', 'shelterd-http'] as const).filter((t) => targetNames.includes(t)) : [];
  lines.push(`| workload | clients | ${targetNames.join(' | ')} |${ratioCols.map((t) => ` ${t.replace('shelterd-', '')}/ceph |`).join('')}`);
  lines.push(`|---|---:|${targetNames.map(() => '---:|').join('')}${ratioCols.map(() => '---:|').join('')}`);
  for (const w of workloads) {
    for (const c of concurrencies) {
      const row = targetNames.map((t) => fmtRate(find(t, w.name, c)));
      const rs = ratioCols.map((t) => fmtRatio(ratio(find(t, w.name, c), find('ceph-rgw', w.name, c))));
      lines.push(`| ${w.label} (${w.unit}) | ${c} | ${row.join(' | ')} |${rs.map((r) => ` ${r} |`).join('')}`);
    }
  }
  // secondary table: latency and CPU, to tell a server bottleneck from a client one
  lines.push('', 'p50 latency ms (PUTs: in parentheses, p50 of the part after the upload was handed to the kernel: storing, fsync, commit) / server CPU / client CPU / CPU of all other processes of the machine (cores), per cell:', '');
  lines.push(`| workload | clients | ${targetNames.join(' | ')} |`);
  lines.push(`|---|---:|${targetNames.map(() => '---|').join('')}`);
  for (const w of workloads) {
    for (const c of concurrencies) {
      const row = targetNames.map((t) => {
        const x = find(t, w.name, c);
        return x ? `${x.p50ms}${x.afterSendP50ms !== undefined ? ` (${x.afterSendP50ms})` : ''} / ${x.serverCores ?? '-'} / ${x.clientCores} / ${x.otherCores ?? '-'}` : '-';
      });
      lines.push(`| ${w.label} | ${c} | ${row.join(' | ')} |`);
    }
  }
  const verdicts: Verdict[] = [];
  if (hasCeph) {
    const goals = [
      { goal: '16 MiB throughput >= 1.5x Ceph (PUT and GET, every concurrency)', min: 1.5, ws: ['put16m', 'get16m'] as WorkloadName[] },
      { goal: '4 KiB PUTs/s >= 2x Ceph (every concurrency)', min: 2, ws: ['put4k'] as WorkloadName[] },
    ];
    lines.push('', 'Targets of issue 2 (every write durable):', '');
    for (const g of goals) {
      for (const v of ratioCols) {
        const rows: string[] = [];
        let minR: number | null = null, missing = false;
        for (const w of g.ws) {
          if (!workloads.some((x) => x.name === w)) { missing = true; continue; }
          for (const c of concurrencies) {
            const r = ratio(find(v, w, c), find('ceph-rgw', w, c));
            rows.push(`${w} c=${c}: ${fmtRatio(r)}`);
            if (r === null) missing = true; else minR = minR === null ? r : Math.min(minR, r);
          }
        }
        const pass = missing || minR === null ? null : minR >= g.min;
        verdicts.push({ goal: g.goal, variant: v, minRatio: minR, pass, rows });
        lines.push(`- ${g.goal}, ${v}: ${pass === null ? 'INCOMPLETE' : pass ? 'PASS' : 'FAIL'} (min ${fmtRatio(minR)}; ${rows.join(', ')})`);
      }
    }
  }
  return { text: lines.join('\n'), verdicts };
}

// ------------------------------------------------------------------------------------ main
async function main(): Promise<void> {
  const started = Date.now();
  const free = statfsSync(tmpdir());
  const freeGiB = (free.bavail * free.bsize) / 2 ** 30;
  const needGiB = ((maxOpsBig * 16 * concurrencies.length + seedBig * 16 + 40) / 1024) * targetNames.length;
  if (freeGiB < needGiB) log(`WARNING: ${freeGiB.toFixed(0)} GiB free in ${tmpdir()}, this run may write up to ~${needGiB.toFixed(0)} GiB`);

  const machine = {
    nproc: availableParallelism(), cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version,
    date: new Date().toISOString(),
  };
  log(`nproc ${machine.nproc}, ${machine.cpu}, node ${machine.node}; targets ${targetNames.join(', ')}; payload ${payload}; cells ${cellSeconds} s / <= ${maxOpsBig} x 16 MiB / <= ${maxOpsSmall} x 4 KiB`);

  await selfTestSigner();
  // every worker's bodies exist before anything is timed
  for (let w = 0; w < Math.max(maxConc, 8); w++) { body(16 * MiB, w); body(4096, w); }
  const targets: Target[] = [];
  for (const name of targetNames) {
    if (name === 'shelterd-http') targets.push(await startShelterd(false));
    else if (name === 'shelterd-https') targets.push(await startShelterd(true));
    else if (name === 'ceph-rgw') targets.push(await startCeph());
    else if (name === 'null-http') targets.push(await startNull());
    else targets.push(rawTarget());
  }
  for (const t of targets) log(`${t.name}: ${t.describe}`);

  for (const t of targets) {
    const s = performance.now();
    await prepare(t);
    log(`${t.name}: checked, seeded (${seedBig} x 16 MiB, ${seedSmall} x 4 KiB) and warmed up in ${((performance.now() - s) / 1000).toFixed(1)} s`);
  }
  // background CPU of the idle servers (they all run during every cell)
  const idle: Record<string, number> = {};
  {
    const before = targets.map((t) => sumCpuSeconds(t.pids()));
    await new Promise((r) => setTimeout(r, 2000));
    targets.forEach((t, i) => { if (t.pids().length) idle[t.name] = Math.round(((sumCpuSeconds(t.pids()) - before[i]!) / 2) * 1000) / 1000; });
    log(`idle CPU (cores): ${JSON.stringify(idle)}`);
  }

  const allPids = () => targets.flatMap((t) => t.pids());
  // cells: for each workload x concurrency, every target in turn (rotated), so that slow drifts
  // of this shared machine hit all targets alike
  const cells: Cell[] = [];
  let k = 0;
  for (const w of workloads) {
    for (const c of concurrencies) {
      const order = targets.map((_, i) => targets[(i + k) % targets.length]!);
      k++;
      for (const t of order) {
        let best: Cell | undefined;
        let waited = 0;
        for (let attempt = 1; attempt <= 1 + reruns; attempt++) {
          waited += await waitQuiet(allPids);
          const other = new OtherCpu(allPids);
          other.start();
          const cell = await runCell(t, w, c, cellSeconds, w.size === 4096 ? maxOpsSmall : maxOpsBig, `run${attempt}`);
          cell.otherCores = Math.round(other.stop() * 100) / 100;
          cell.attempts = attempt;
          if (!best || cell.otherCores < best.otherCores!) best = cell;
          if (cell.otherCores < noisyCores) break;
          log(`${t.name} ${w.name} c=${c}: other processes used ${cell.otherCores} cores during the cell (${fmtRate(cell)} ${w.unit})${attempt <= reruns ? ', rerunning' : ''}`);
        }
        const cell = best!;
        cell.waitedSeconds = Math.round(waited);
        cells.push(cell);
        log(`${w.label.padEnd(10)} c=${String(c).padEnd(2)} ${t.name.padEnd(14)} ${fmtRate(cell).padStart(8)} ${w.unit}  (${cell.ops} ops in ${cell.seconds} s, p50 ${cell.p50ms} ms${cell.afterSendP50ms !== undefined ? ` (after upload ${cell.afterSendP50ms})` : ''}, p99 ${cell.p99ms} ms, server ${cell.serverCores ?? '-'} cores, client ${cell.clientCores} cores, others ${cell.otherCores} cores)${cell.firstError ? ' first error: ' + cell.firstError : ''}`);
      }
    }
  }

  const rss: Record<string, Record<string, number>> = {};
  for (const t of targets) { const r = t.rss(); if (Object.keys(r).length) rss[t.name] = r; }
  for (const t of targets) await t.stop();

  const { text, verdicts } = report(cells);
  const out: string[] = [];
  out.push('', `## Gateway benchmark, ${machine.date}`, '');
  out.push(`machine: nproc ${machine.nproc} (${machine.cpu}), kernel ${machine.kernel}, node ${machine.node}; client and servers share these cores`);
  out.push(`client: bench/lib/s3.ts, one keep-alive connection per concurrent client, ${transport === 'http1' ? 'minimal HTTP/1.1 client over node:net/node:tls (bench/lib/http1.ts)' : `node:http(s) agent (${clientOpts.maxSockets} sockets)`}, SigV4 ${signer === 'native' ? 'on node:crypto (checked against @smithy/signature-v4)' : 'by @smithy/signature-v4'}, payload ${payload === 'unsigned' ? 'UNSIGNED-PAYLOAD' : 'hex SHA-256 (signed)'} over HTTP and HTTPS alike`);
  out.push(`cells: ${cellSeconds} s or ${maxOpsBig} x 16 MiB / ${maxOpsSmall} x 4 KiB ops, whichever first; GETs read ${seedBig} x 16 MiB / ${seedSmall} x 4 KiB seeded objects round-robin`);
  out.push(`ceph bucket: ${cephBucketMode === 'lock' ? 'versioned with Object Lock (as every shelterd bucket)' : 'unversioned'}`);
  out.push('');
  out.push(text);
  out.push('');
  for (const [name, r] of Object.entries(rss)) out.push(`peak RSS ${name}: ${Object.entries(r).map(([k2, v]) => `${k2.replace(' MiB', '')} ${v} MiB`).join(', ')}`);
  if (Object.keys(idle).length) out.push(`idle CPU of the servers (cores, running during every cell): ${Object.entries(idle).map(([n, v]) => `${n} ${v}`).join(', ')}`);
  const noisy = cells.filter((c) => (c.otherCores ?? 0) >= noisyCores);
  out.push(`interference: before each cell the bench waited for other processes to use < ${quietCores} cores (${cells.reduce((a, c) => a + (c.waitedSeconds ?? 0), 0)} s waited in all); ${cells.filter((c) => (c.attempts ?? 1) > 1).length} cells rerun; ${noisy.length} of ${cells.length} cells still had others using >= ${noisyCores} cores${noisy.length ? ` (${noisy.map((c) => `${c.target} ${c.workload} c=${c.concurrency}: ${c.otherCores}`).join(', ')})` : ''}`);
  out.push(`total run time ${((Date.now() - started) / 1000).toFixed(0)} s`);

  const profiles: ProfileSummary[] = [];
  if (profileDir) {
    await new Promise((r) => setTimeout(r, 500));
    for (const name of targetNames.filter((t) => t.startsWith('shelterd'))) {
      const files = profilesIn(join(profileDir, name));
      if (!files.length) out.push(`no .cpuprofile in ${join(profileDir, name)} (does shelterd exit normally on SIGTERM?)`);
      const all = workloads.flatMap((w) => cellWindows.get(`${name}|${w.name}`) ?? []);
      for (const f of files) {
        const s = summarizeProfile(f, 25, all, `${name}, all timed cells`);
        profiles.push(s);
        out.push('', `### CPU profile of ${name} (main thread; fs calls and fsync run on libuv's pool and show only as their JS callers)`, '', formatSummary(s));
        for (const w of workloads) {
          const ws = summarizeProfile(f, 15, cellWindows.get(`${name}|${w.name}`) ?? [], `${name}, ${w.label} cells`);
          profiles.push(ws);
          out.push('', formatSummary(ws, ['byFunction']));
        }
      }
    }
  }
  console.log(out.join('\n'));

  if (opt.out) {
    writeFileSync(opt.out, JSON.stringify({
      machine, options: { quick: opt.quick, targets: targetNames, workloads: workloads.map((w) => w.name), concurrencies, cellSeconds, maxOpsBig, maxOpsSmall, seedBig, seedSmall, payload, transport, signer, cephBucket: cephBucketMode, cephNoDelay: !opt["ceph-nagle"], quietCores, maxWait, noisyCores, reruns },
      targets: Object.fromEntries(targets.map((t) => [t.name, t.describe])),
      cells, verdicts, peakRssMiB: rss, idleCpuCores: idle, profiles, seconds: (Date.now() - started) / 1000,
    }, null, 2) + '\n');
    log(`results written to ${opt.out}`);
  }
}

try {
  await main();
} catch (e) {
  console.error(`bench/gateway: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
