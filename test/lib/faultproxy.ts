// A fault-injecting HTTPS proxy in front of a gateway, for the agent's fault tests (issue 3,
// "Fault tests"). It terminates TLS with the gateway's own certificate (DATA/tls/server.pem and
// server.key, valid for 127.0.0.1 and localhost, signed by DATA/tls/ca.pem), so a client that
// trusts the gateway's CA trusts the proxy too. It parses every request and either
//
//   - forwards it unchanged (method, path, query, headers incl. Host and the SigV4 signature, the
//     body streamed) to the gateway over HTTPS with a keep-alive agent, and streams the response
//     back unchanged (status, headers, body); or
//   - injects a fault (FaultKind below): an S3 error answered by the proxy itself (500
//     InternalError, 503 ServiceUnavailable, 503 SlowDown), a 500 answered AFTER the gateway
//     executed the request (a lost success: the retry then meets an object that already exists),
//     or a TCP reset (RST) in the middle of the request body or in the middle of the response body
//     (the latter after the gateway executed the request);
//   - or, when a test asks for it (`decide` returns 'hold'), never answers: the request hangs
//     until the client gives up or dies (kill tests use this to stop the agent at an exact step).
//
// Faults come from a seeded generator (`seed`, `faultRate`): one draw per request decides whether
// it fails, the kind is dealt from a shuffled deck (every kind once per round of the deck), so a run
// is reproducible up to the order in which concurrent requests arrive. `stats` counts what was
// injected, by kind and by S3 operation, so a test can prove that the faults really happened.
import { AssertionError } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { createSecureContext, TLSSocket } from 'node:tls';
import { nodeBin, repoRoot, shelterdBin, type AuditRecord, type S3Credentials } from './gateway.ts';

export type FaultKind =
  /** 500 InternalError from the proxy, the gateway never sees the request */
  | 'error500'
  /** 503 ServiceUnavailable from the proxy */
  | 'error503'
  /** 503 SlowDown (throttling) from the proxy */
  | 'slowDown'
  /** the gateway executes the request, the client gets 500 InternalError instead of its answer */
  | 'error500After'
  /** TCP reset after the request headers and about half of the request body (no body: at once) */
  | 'resetRequest'
  /** the gateway executes the request; its status, headers and about half of the body reach the client, then a TCP reset */
  | 'resetResponse';

export const ALL_FAULTS: readonly FaultKind[] = ['error500', 'error503', 'slowDown', 'error500After', 'resetRequest', 'resetResponse'];

/** what the proxy does with one request */
export type Decision = 'forward' | 'hold' | FaultKind;

export interface ProxyRequest {
  /** 1, 2, ... in order of arrival */
  seq: number;
  method: string;
  /** the request target as sent (path and query) */
  url: string;
  bucket: string | null;
  /** the object key (URL-decoded), null for bucket-level requests */
  key: string | null;
  /** a rough S3 operation name for reports: PutObject, GetObject, HeadObject, ListObjectsV2, ... */
  operation: string;
  /** declared request body length (content-length), if any */
  contentLength: number | null;
}

export interface FaultProxyOptions {
  /** the gateway's base URL (https://127.0.0.1:PORT) */
  target: string;
  /** the gateway's data directory: its tls/ holds ca.pem, server.pem and server.key */
  gatewayDataDir: string;
  /** probability that a request gets a fault (default 0: a transparent proxy) */
  faultRate?: number;
  /** seed of the fault generator (default 1) */
  seed?: number;
  /**
   * the faults to inject (default ALL_FAULTS). Which one a faulty request gets is dealt from a
   * seeded, shuffled deck of these kinds, refilled when empty: every kind comes up once in each
   * `kinds.length` consecutive faults, so a run with enough faults exercises all of them.
   */
  kinds?: readonly FaultKind[];
  /** overrides the random draw for a request: return a Decision, or undefined to draw */
  decide?: (r: ProxyRequest) => Decision | undefined;
  /** called once the gateway's answer to a forwarded, fault-free request was fully passed on */
  onResponse?: (r: ProxyRequest, status: number, bytes: number) => void;
}

export interface FaultRecord { seq: number; kind: FaultKind; method: string; operation: string; key: string | null; phase: string }

export interface FaultProxyStats {
  requests: number;
  forwarded: number;
  held: number;
  /** faults injected, by kind */
  faults: Record<FaultKind, number>;
  /** faults injected, by S3 operation */
  byOperation: Record<string, number>;
  /** requests and faults by phase (FaultProxy.phase when the request arrived) */
  byPhase: Record<string, { requests: number; faults: number }>;
  /** every fault, in order */
  log: FaultRecord[];
  /** proxy-side errors talking to the gateway (not injected) */
  upstreamErrors: string[];
}

export interface FaultProxy {
  /** https://127.0.0.1:PORT */
  url: string;
  port: number;
  /** the CA that signed the proxy's certificate (the gateway's ca.pem) */
  caFile: string;
  stats: FaultProxyStats;
  /** the fault rate can be changed between runs */
  faultRate: number;
  /** a label the test sets (e.g. 'backup', 'restore'): faults and requests are counted per phase */
  phase: string;
  /** the number of faults injected so far */
  totalFaults(): number;
  /** one line for logs: "37 faults in 402 requests (error500 6, ...; by operation: ...; by phase: ...)" */
  summary(): string;
  close(): Promise<void>;
}

/** mulberry32: a small, fast, seeded PRNG (uniform floats in [0, 1)) */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

/** raw header pairs minus hop-by-hop headers, as an object keeping repeated headers */
function forwardHeaders(raw: string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    const prev = out[lower];
    out[lower] = prev === undefined ? raw[i + 1]! : Array.isArray(prev) ? [...prev, raw[i + 1]!] : [String(prev), raw[i + 1]!];
  }
  return out;
}

function describe(req: IncomingMessage, seq: number): ProxyRequest {
  const u = new URL(req.url ?? '/', 'https://proxy.invalid');
  const parts = u.pathname.split('/').slice(1);
  const bucket = parts[0] ? decodeURIComponent(parts[0]) : null;
  const key = parts.length > 1 && parts.slice(1).join('/') !== '' ? decodeURIComponent(parts.slice(1).join('/')) : null;
  const method = req.method ?? 'GET';
  const q = u.searchParams;
  let operation: string;
  if (!bucket) operation = 'ListBuckets';
  else if (!key) operation = method === 'GET' ? (q.has('list-type') ? 'ListObjectsV2' : q.has('versions') ? 'ListObjectVersions' : 'ListObjects')
    : method === 'HEAD' ? 'HeadBucket' : `${method}Bucket`;
  else operation = method === 'PUT' ? (q.has('partNumber') ? 'UploadPart' : 'PutObject') : method === 'GET' ? 'GetObject'
    : method === 'HEAD' ? 'HeadObject' : method === 'POST' ? 'PostObject' : method === 'DELETE' ? 'DeleteObject' : `${method}Object`;
  const cl = req.headers['content-length'];
  return { seq, method, url: req.url ?? '/', bucket, key, operation, contentLength: cl === undefined ? null : Number(cl) };
}

const S3_ERRORS = {
  error500: { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  error500After: { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  error503: { status: 503, code: 'ServiceUnavailable', message: 'Please reduce your request rate.' },
  slowDown: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' },
} as const;

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const tlsDir = join(opts.gatewayDataDir, 'tls');
  const caFile = join(tlsDir, 'ca.pem');
  const ca = readFileSync(caFile, 'utf8');
  const secureContext = createSecureContext({ cert: readFileSync(join(tlsDir, 'server.pem')), key: readFileSync(join(tlsDir, 'server.key')) });
  const target = new URL(opts.target);
  const upstreamAgent = new HttpsAgent({ keepAlive: true, maxSockets: 64, ca });
  const random = seededRandom(opts.seed ?? 1);
  const kinds = opts.kinds ?? ALL_FAULTS;
  if (kinds.length === 0) throw new Error('faultproxy: no fault kinds to draw from');

  const stats: FaultProxyStats = {
    requests: 0, forwarded: 0, held: 0,
    faults: Object.fromEntries(ALL_FAULTS.map((k) => [k, 0])) as Record<FaultKind, number>,
    byOperation: {}, byPhase: {}, log: [], upstreamErrors: [],
  };

  // Each TLS socket wraps a TCP socket the proxy accepted itself, so that it can reset that TCP
  // connection (RST, as a crashing server or a middlebox would) rather than close it politely.
  const tcpOf = new WeakMap<Socket, Socket>();
  const sockets = new Set<Socket>();
  const heldResponses = new Set<ServerResponse>();

  const reset = (res: ServerResponse) => {
    const tlsSock = res.socket ?? res.req.socket;
    const tcp = tcpOf.get(tlsSock);
    try {
      if (tcp && !tcp.destroyed) tcp.resetAndDestroy();
      else tlsSock.destroy();
    } catch {
      tlsSock.destroy();
    }
  };

  const recordFault = (r: ProxyRequest, kind: FaultKind) => {
    stats.faults[kind]++;
    stats.byOperation[r.operation] = (stats.byOperation[r.operation] ?? 0) + 1;
    stats.log.push({ seq: r.seq, kind, method: r.method, operation: r.operation, key: r.key, phase: proxy.phase });
    phaseStats().faults++;
  };

  const sendS3Error = (req: IncomingMessage, res: ServerResponse, kind: keyof typeof S3_ERRORS) => {
    const e = S3_ERRORS[kind];
    const requestId = createHash('sha256').update(`${Date.now()}:${Math.random()}`).digest('hex').slice(0, 16).toUpperCase();
    const body = req.method === 'HEAD' ? '' : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${e.code}</Code><Message>${e.message}</Message>` +
      `<Resource>${(req.url ?? '/').replace(/&/g, '&amp;').replace(/</g, '&lt;')}</Resource><RequestId>${requestId}</RequestId><HostId>${requestId}</HostId></Error>`;
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/xml', 'x-amz-request-id': requestId, 'content-length': Buffer.byteLength(body) };
    if (kind === 'slowDown' || kind === 'error503') headers['retry-after'] = '1';
    res.writeHead(e.status, headers);
    res.end(body);
  };

  /** forwards the request; `after` decides what happens to the gateway's answer */
  const forward = (req: IncomingMessage, res: ServerResponse, r: ProxyRequest, after: 'pass' | 'error500After' | 'resetResponse') => {
    const up = httpsRequest({
      host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardHeaders(req.rawHeaders), agent: upstreamAgent,
    });
    // set once the proxy stops caring about the upstream exchange (client gone, or cut on purpose)
    let done = false;
    res.on('close', () => {
      if (!res.writableFinished) { done = true; up.destroy(); }
    });
    up.on('error', (e) => {
      if (done) return;
      stats.upstreamErrors.push(`${r.method} ${r.url}: ${e.message}`);
      // the proxy is not supposed to fail on its own: make it visible, then behave like a dead server
      reset(res);
    });
    up.on('response', (ur) => {
      if (after === 'error500After') {
        ur.resume();
        ur.on('end', () => { recordFault(r, 'error500After'); sendS3Error(req, res, 'error500After'); });
        return;
      }
      const headers = forwardHeaders(ur.rawHeaders);
      if (after === 'resetResponse') {
        recordFault(r, 'resetResponse');
        const declared = Number(ur.headers['content-length'] ?? NaN);
        const half = Number.isFinite(declared) && req.method !== 'HEAD' ? Math.floor(declared / 2) : 0;
        if (half === 0) {
          // nothing to cut in half (HEAD, an empty body): the answer is lost entirely
          done = true;
          ur.destroy();
          reset(res);
          return;
        }
        res.writeHead(ur.statusCode ?? 502, ur.statusMessage, headers);
        let sent = 0;
        ur.on('data', (chunk: Buffer) => {
          if (sent >= half) return;
          const part = chunk.subarray(0, half - sent);
          sent += part.length;
          if (sent < half) { res.write(part); return; }
          done = true;
          ur.destroy();
          // let the status, headers and first half reach the client, then reset the connection
          res.write(part, () => setTimeout(() => reset(res), 20));
        });
        return;
      }
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, headers);
      let bytes = 0;
      ur.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      ur.pipe(res);
      res.on('finish', () => { stats.forwarded++; opts.onResponse?.(r, ur.statusCode ?? 0, bytes); });
    });
    req.pipe(up);
  };

  let deck: FaultKind[] = [];
  const deal = (): FaultKind => {
    if (deck.length === 0) {
      deck = [...kinds];
      for (let i = deck.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [deck[i], deck[j]] = [deck[j]!, deck[i]!]; }
    }
    return deck.pop()!;
  };
  const phaseStats = () => (stats.byPhase[proxy.phase] ??= { requests: 0, faults: 0 });

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    phaseStats().requests++;
    const r = describe(req, stats.requests);
    let decision = opts.decide?.(r);
    if (decision === undefined) {
      decision = 'forward';
      if (proxy.faultRate > 0 && random() < proxy.faultRate) decision = deal();
    }
    req.on('error', () => { /* a client that goes away mid-body is expected here */ });
    switch (decision) {
      case 'forward': forward(req, res, r, 'pass'); return;
      case 'error500After': forward(req, res, r, 'error500After'); return;
      case 'resetResponse': forward(req, res, r, 'resetResponse'); return;
      case 'hold':
        stats.held++;
        heldResponses.add(res);
        req.resume();
        res.on('close', () => heldResponses.delete(res));
        return;
      case 'resetRequest': {
        recordFault(r, 'resetRequest');
        const len = r.contentLength ?? 0;
        if (len <= 1) { reset(res); return; }
        let got = 0;
        req.on('data', (chunk: Buffer) => { got += chunk.length; if (got >= len / 2) reset(res); });
        req.on('end', () => reset(res));
        return;
      }
      default: {
        // an error of our own: read (and drop) the body first, as a server that answers early would
        recordFault(r, decision);
        const kind = decision;
        req.resume();
        req.on('end', () => sendS3Error(req, res, kind));
        return;
      }
    }
  };

  const http = createHttpServer({ keepAliveTimeout: 30_000 }, handle);
  http.on('clientError', (_e, sock) => { sock.destroy(); });
  const net = createNetServer((tcp) => {
    sockets.add(tcp);
    tcp.on('close', () => sockets.delete(tcp));
    tcp.on('error', () => { /* resets, client deaths */ });
    const tlsSock = new TLSSocket(tcp, { isServer: true, secureContext });
    tcpOf.set(tlsSock, tcp);
    tlsSock.on('error', () => { tlsSock.destroy(); });
    http.emit('connection', tlsSock);
  });
  await new Promise<void>((resolve, reject) => { net.once('error', reject); net.listen(0, '127.0.0.1', () => resolve()); });
  const port = (net.address() as { port: number }).port;

  const proxy: FaultProxy = {
    url: `https://127.0.0.1:${port}`,
    port,
    caFile,
    stats,
    faultRate: opts.faultRate ?? 0,
    phase: '',
    totalFaults: () => Object.values(stats.faults).reduce((a, b) => a + b, 0),
    summary() {
      const kindsText = ALL_FAULTS.map((k) => `${k} ${stats.faults[k]}`).join(', ');
      const ops = Object.entries(stats.byOperation).sort().map(([k, v]) => `${k} ${v}`).join(', ');
      const phases = Object.entries(stats.byPhase).map(([k, v]) => `${k || '-'} ${v.faults}/${v.requests}`).join(', ');
      return `${proxy.totalFaults()} faults in ${stats.requests} requests (${kindsText}; by operation: ${ops || 'none'}; faults/requests by phase: ${phases})`;
    },
    async close() {
      for (const res of heldResponses) res.destroy();
      for (const s of sockets) s.destroy();
      upstreamAgent.destroy();
      await new Promise<void>((resolve) => net.close(() => resolve()));
    },
  };
  return proxy;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the agent's fault tests (test/agent-faults/): running `shelter` as a user
// would, a generated source tree, and comparing a restore with it.
// ---------------------------------------------------------------------------------------------

export const MiB = 1024 * 1024;

/** the agent's entry point (SHELTER_TEST_AGENT_BIN: another copy, e.g. an exported commit) */
export const shelterBin = process.env.SHELTER_TEST_AGENT_BIN || join(repoRoot, 'packages/agent/bin/shelter.js');

export interface AgentRun { cmd: string; status: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

export function formatAgentRun(r: AgentRun): string {
  const cut = (s: string) => (s.length > 4000 ? `[... ${s.length - 4000} chars cut ...]\n${s.slice(-4000)}` : s);
  return `$ ${r.cmd}\nexit status ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} after ${r.ms} ms\n--- stdout ---\n${cut(r.stdout.trimEnd())}\n--- stderr ---\n${cut(r.stderr.trimEnd())}`;
}

/** a running `shelter` process: `kill()` sends SIGKILL, `done` resolves when it exited */
export interface AgentProcess { child: ChildProcess; started: number; done: Promise<AgentRun>; kill(): void }

export interface FaultAgent {
  home: string;
  env: NodeJS.ProcessEnv;
  spawn(args: string[], opts?: { timeoutMs?: number }): AgentProcess;
  run(args: string[], opts?: { timeoutMs?: number }): Promise<AgentRun>;
  /** runs and asserts exit 0 */
  ok(args: string[], what?: string): Promise<AgentRun>;
}

/**
 * An agent with a private config directory, state directory (per-run logs) and key file, and an
 * environment from which nothing can configure it by accident (AWS_*, SHELTER_*, XDG_*).
 * `compileCache` (NODE_COMPILE_CACHE) only makes the many short runs of the tests start faster.
 */
export function faultAgent(home: string, opts: { compileCache?: string } = {}): FaultAgent {
  mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(AWS_|SHELTER_|XDG_|NODE_OPTIONS$|NODE_TEST_CONTEXT$)/.test(k)) env[k] = v;
  Object.assign(env, {
    HOME: home, SHELTER_CONFIG_DIR: join(home, 'config'), XDG_CONFIG_HOME: join(home, 'xdg-config'), XDG_STATE_HOME: join(home, 'state'),
    NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', LC_ALL: 'C.UTF-8',
    ...(opts.compileCache ? { NODE_COMPILE_CACHE: opts.compileCache } : {}),
  });
  const spawnAgent = (args: string[], o: { timeoutMs?: number } = {}): AgentProcess => {
    const started = Date.now();
    const cmd = ['shelter', ...args.map((x, i) => (args[i - 1] === '--secret-key' ? '***' : /[\s'"]/.test(x) ? JSON.stringify(x) : x))].join(' ');
    const child = spawn(nodeBin, [shelterBin, ...args], { env, cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => { err.push(Buffer.from(`\n[test: killed after ${o.timeoutMs ?? 120_000} ms]\n`)); child.kill('SIGKILL'); }, o.timeoutMs ?? 120_000);
    const done = new Promise<AgentRun>((resolve, reject) => {
      child.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot run ${cmd}: ${e.message}`)); });
      child.on('close', (status, signal) => {
        clearTimeout(timer);
        resolve({ cmd, status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: Date.now() - started });
      });
    });
    return { child, started, done, kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); } };
  };
  const agent: FaultAgent = {
    home, env,
    spawn: spawnAgent,
    run: (args, o) => spawnAgent(args, o).done,
    async ok(args, what = `shelter ${args.join(' ')}`) {
      const r = await agent.run(args);
      if (r.status !== 0) throw new AssertionError({ message: `${what}: expected exit status 0\n${formatAgentRun(r)}` });
      return r;
    },
  };
  return agent;
}

/** `shelterd server create NAME --json` without blocking the event loop (kill timers keep running) */
export async function createServerAsync(dataDir: string, name: string): Promise<S3Credentials & { id: string }> {
  const child = spawn(nodeBin, [shelterdBin, 'server', 'create', name, '--data', dataDir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (status !== 0) throw new Error(`shelterd server create ${name} failed (${status}): ${Buffer.concat(err).toString()}`);
  return JSON.parse(Buffer.concat(out).toString()) as S3Credentials & { id: string };
}

/** `shelter init` against `endpoint` (the gateway or a proxy in front of it), trusting `caFile` */
export async function initFaultAgent(agent: FaultAgent, endpoint: string, caFile: string, creds: S3Credentials): Promise<void> {
  await agent.ok(['init', '--endpoint', endpoint, '--bucket', creds.bucket, '--access-key', creds.accessKeyId, '--secret-key', creds.secretAccessKey,
    '--ca-cert', caFile, '--key-file', join(agent.home, 'master.key'), '--json'], 'shelter init');
}

/** the JSON summary of `shelter backup files --json` (fields the tests use) */
export interface BackupJson { snapshotId: string; parent: string | null; bytes: number; newBytes: number; storedBytes: number; newBlobs: number; files: number; [k: string]: unknown }

export function parseBackupJson(r: AgentRun): BackupJson {
  try { return JSON.parse(r.stdout) as BackupJson; }
  catch { throw new AssertionError({ message: `backup --json did not print one JSON document\n${formatAgentRun(r)}` }); }
}

/**
 * A source tree of about 49 MiB: 400 small files in 12 directories (pseudo-random and
 * text, 0-24 KiB), pseudo-random files of 10, 9, 8 and 7 MiB (incompressible: they span three
 * 16 MiB packs), two 3 MiB compressible text files, duplicate content, an empty file, an empty
 * directory and a symlink. Deterministic for a seed.
 */
export function makeFaultTree(root: string, seed: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const put = (rel: string, data: Buffer) => {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, data);
    files++;
    bytes += data.length;
  };
  const rnd = seededRandom(Number.parseInt(createHash('sha256').update(seed).digest('hex').slice(0, 8), 16));
  let dupSource: Buffer = Buffer.alloc(0);
  for (let i = 0; i < 400; i++) {
    const size = Math.floor(rnd() * rnd() * 24 * 1024);
    const text = i % 3 === 0;
    const data = text ? Buffer.from(`file ${i} of ${seed}\n`.repeat(Math.ceil(size / 20) + 1)).subarray(0, size) : pseudoBytes(`${seed}/small/${i}`, size);
    if (i === 7) dupSource = data;
    put(`dir-${String(i % 12).padStart(2, '0')}/${i % 5 === 0 ? `sub-${i % 4}/` : ''}file ${i}${text ? '.txt' : '.bin'}`, data);
  }
  for (const [i, mib] of [10, 9, 8, 7].entries()) put(`big/random-${i}.bin`, pseudoBytes(`${seed}/big/${i}`, mib * MiB));
  for (let i = 0; i < 2; i++) {
    const lines: string[] = [];
    for (let n = 0; lines.length < 3 * MiB / 40; n++) lines.push(`${seed} log line ${n} value=${(n * 7919) % 10007} status=ok`);
    put(`logs/app-${i}.log`, Buffer.from(lines.join('\n')).subarray(0, 3 * MiB));
  }
  put('dup/copy-of-file-7.bin', dupSource);
  put('dup/copy-of-random-3.bin', pseudoBytes(`${seed}/big/3`, 7 * MiB));
  put('empty-file', Buffer.alloc(0));
  mkdirSync(join(root, 'empty-dir'), { recursive: true });
  symlinkSync('big/random-0.bin', join(root, 'link-to-random-0'));
  return { files, bytes };
}

/** `size` pseudo-random bytes determined by `seed` (AES-256-CTR keystream) */
export function pseudoBytes(seed: string, size: number): Buffer {
  if (size === 0) return Buffer.alloc(0);
  const key = createHash('sha256').update(`shelter-fault-test:${seed}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/** rel path -> "file <size> <sha256>" | "dir" | "symlink <target>" (async, so kill timers stay on time) */
export async function digestTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (abs: string, rel: string): Promise<void> => {
    const st = await lstat(abs);
    if (st.isSymbolicLink()) out.set(rel, `symlink ${await readlink(abs)}`);
    else if (st.isDirectory()) {
      out.set(rel, 'dir');
      for (const name of (await readdir(abs)).sort()) await visit(join(abs, name), rel ? `${rel}/${name}` : name);
    } else if (st.isFile()) out.set(rel, `file ${st.size} ${createHash('sha256').update(await readFile(abs)).digest('hex')}`);
    else out.set(rel, 'other');
  };
  await visit(root, '');
  return out;
}

/** a readable list of the differences (empty when identical) */
export function diffDigests(expected: Map<string, string>, actual: Map<string, string>, max = 10): string[] {
  const d: string[] = [];
  for (const [k, v] of expected) {
    const a = actual.get(k);
    if (a === undefined) d.push(`missing: ${JSON.stringify(k)} (${v.slice(0, 80)})`);
    else if (a !== v) d.push(`differs: ${JSON.stringify(k)}: expected ${v.slice(0, 90)}, got ${a.slice(0, 90)}`);
  }
  for (const k of actual.keys()) if (!expected.has(k)) d.push(`unexpected: ${JSON.stringify(k)}`);
  return d.length > max ? [...d.slice(0, max), `... ${d.length - max} more`] : d;
}

/** the PutObject records of `bucket` whose key starts with `prefix` and that succeeded (200) */
export function successfulPuts(records: AuditRecord[], bucket: string, prefix: string): AuditRecord[] {
  return records.filter((r) => r.bucket === bucket && r.operation === 'PutObject' && r.status === 200 && (r.key ?? '').startsWith(prefix));
}

export const sumBytes = (records: AuditRecord[]): number => records.reduce((a, r) => a + r.bytes, 0);
