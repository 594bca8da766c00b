// Helpers for the end-to-end tests that drive real S3 clients (aws-cli v2, rclone, restic, the AWS
// SDK for JavaScript v3) against a `shelterd` started by ./gateway.ts.
//
// Everything here is deterministic: generated data comes from a seeded stream cipher, so a failure
// reproduces with the same bytes. Child processes run with a scrubbed environment (no AWS_*,
// RCLONE_*, RESTIC_* from the machine) so nothing outside the test leaks into a client.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { AssertionError } from 'node:assert';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Gateway, S3Credentials } from './gateway.ts';

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------------------------

/** `size` pseudo-random bytes fully determined by `seed` (AES-256-CTR keystream). */
export function pseudoRandomBytes(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(`shelter-test:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return size === 0 ? Buffer.alloc(0) : cipher.update(Buffer.alloc(size));
}

/**
 * A stream of `size` pseudo-random bytes emitted in chunks of varying sizes (between 1 and
 * `maxChunk` bytes), whose total length is NOT announced anywhere: what an upload of "unknown
 * length" looks like. `digest()` returns the SHA-256 of everything emitted once the stream ended.
 */
export function pseudoRandomStream(seed: string, size: number, maxChunk = 700 * KiB): { stream: Readable; digest: () => string } {
  const key = createHash('sha256').update(`shelter-test:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  let sent = 0;
  let n = 0;
  let digest: string | null = null;
  const stream = new Readable({
    read() {
      if (sent >= size) { this.push(null); return; }
      n += 1;
      const len = Math.min(size - sent, 1 + ((n * 2654435761) >>> 0) % maxChunk);
      const chunk = cipher.update(Buffer.alloc(len));
      hash.update(chunk);
      sent += len;
      if (sent >= size) digest = hash.digest('hex');
      this.push(chunk);
    },
  });
  return { stream, digest: () => { if (digest === null) throw new Error('stream not fully consumed'); return digest; } };
}

export function sha256(data: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function md5hex(data: Buffer | Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** SHA-256 and length of a stream or async iterable of bytes (e.g. an SDK GetObject Body). */
export async function sha256Stream(body: AsyncIterable<Uint8Array | string> | undefined | null): Promise<{ sha256: string; size: number }> {
  if (!body) throw new Error('no body');
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of body) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    h.update(b);
    size += b.length;
  }
  return { sha256: h.digest('hex'), size };
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of `data`, as a 4-byte big-endian buffer (the form S3 base64-encodes). */
export function crc32c(data: Uint8Array): Buffer {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out;
}

/** The ETag AWS gives a multipart object: md5(md5(part1) || md5(part2) ...) + "-N", quoted. */
export function multipartEtag(parts: Buffer[]): string {
  const md5s = parts.map((p) => createHash('md5').update(p).digest());
  return `"${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${parts.length}"`;
}

// ---------------------------------------------------------------------------------------------
// File trees
// ---------------------------------------------------------------------------------------------

export interface FileSpec { path: string; size: number; seed?: string; content?: Buffer }

/** Writes the files of `spec` under `root` (parent directories created); returns `root`. */
export function writeTree(root: string, spec: FileSpec[]): string {
  mkdirSync(root, { recursive: true });
  for (const f of spec) {
    const p = join(root, f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content ?? pseudoRandomBytes(f.seed ?? f.path, f.size));
  }
  return root;
}

export interface TreeEntry { size: number; sha256: string }

/** Every regular file under `root` (relative path with '/' separators) -> size and SHA-256. */
export async function readTree(root: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (dir: string): Promise<void> => {
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) out.set(relative(root, p).split(sep).join('/'), { size: statSync(p).size, sha256: await sha256File(p) });
    }
  };
  await walk(root);
  return out;
}

/** Fails, listing the differences, unless both trees hold the same files with the same bytes. */
export async function assertSameTree(expectedRoot: string, actualRoot: string, what: string): Promise<void> {
  const [a, b] = await Promise.all([readTree(expectedRoot), readTree(actualRoot)]);
  const problems: string[] = [];
  for (const [p, e] of a) {
    const g = b.get(p);
    if (!g) problems.push(`missing: ${JSON.stringify(p)} (${e.size} bytes)`);
    else if (g.sha256 !== e.sha256 || g.size !== e.size) problems.push(`different bytes: ${JSON.stringify(p)} expected ${e.size} bytes sha256 ${e.sha256}, got ${g.size} bytes sha256 ${g.sha256}`);
  }
  for (const p of b.keys()) if (!a.has(p)) problems.push(`unexpected: ${JSON.stringify(p)}`);
  if (problems.length) {
    throw new AssertionError({
      message: `${what}: ${expectedRoot} and ${actualRoot} differ (${problems.length} problems, ${a.size} files expected, ${b.size} found):\n  ${problems.slice(0, 30).join('\n  ')}`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

export interface RunResult { cmd: string; status: number | null; signal: string | null; stdout: string; stderr: string; ms: number }
export interface RunOptions { env?: NodeJS.ProcessEnv; cwd?: string; input?: string | Buffer; timeoutMs?: number }

let currentGateway: Gateway | null = null;
/** Failure messages of run()/mustRun() end with the last lines this gateway logged. */
export function reportGatewayLogs(gw: Gateway | null): void { currentGateway = gw; }

const tail = (s: string, max = 6000): string => (s.length > max ? `[... ${s.length - max} chars cut ...]\n${s.slice(-max)}` : s);
const shellQuote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export function formatRun(r: RunResult): string {
  const gw = currentGateway ? `\n--- last gateway log lines ---\n${currentGateway.logs.slice(-15).join('\n')}` : '';
  return `$ ${r.cmd}\nexit status ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} after ${r.ms} ms\n--- stdout ---\n${tail(r.stdout.trimEnd())}\n--- stderr ---\n${tail(r.stderr.trimEnd())}${gw}`;
}

/** Runs a command, capturing stdout and stderr; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  const cmdline = [cmd, ...args].map(shellQuote).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => { err.push(Buffer.from(`\n[test harness: killed after ${opts.timeoutMs} ms]\n`)); child.kill('SIGKILL'); }, opts.timeoutMs ?? 300_000);
    child.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot run ${cmdline}: ${e.message}`)); });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ cmd: cmdline, status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: Date.now() - started });
    });
    child.stdin.on('error', () => { /* the child may not read its stdin */ });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and fails (with its output in the message) unless it exits 0. */
export async function mustRun(what: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.status !== 0) throw new AssertionError({ message: `${what}: expected exit status 0\n${formatRun(r)}` });
  return r;
}

/** Runs a command that must FAIL with output matching `expected` (e.g. /AccessDenied/). */
export async function mustFail(what: string, expected: RegExp, cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.status === 0) throw new AssertionError({ message: `${what}: expected the command to fail with ${expected}, it succeeded\n${formatRun(r)}` });
  if (!expected.test(r.stderr + r.stdout)) throw new AssertionError({ message: `${what}: expected a failure matching ${expected}\n${formatRun(r)}` });
  return r;
}

/**
 * The environment of this process minus everything that could configure an S3 client from the
 * outside (AWS_*, RCLONE_*, RESTIC_*, ...), plus `extra`. Proxies are bypassed for loopback.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AWS_|RCLONE_|RESTIC_|B2_|AZURE_|GOOGLE_|GCS_|MINIO_|S3_|BOTO_)/i.test(k)) continue;
    env[k] = v;
  }
  const noProxy = ['127.0.0.1', 'localhost', '.localhost', env.NO_PROXY ?? env.no_proxy ?? ''].filter(Boolean).join(',');
  env.NO_PROXY = noProxy;
  env.no_proxy = noProxy;
  env.LC_ALL = 'C.UTF-8';
  env.LANG = 'C.UTF-8';
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------------
// HTTPS and the AWS SDK
// ---------------------------------------------------------------------------------------------

/** A DNS lookup that sends every name to 127.0.0.1 (for BUCKET.localhost virtual hosts). */
export const loopbackLookup: LookupFunction = (_host, options, callback) => {
  const cb = callback as unknown as (err: Error | null, address: string | { address: string; family: number }[], family?: number) => void;
  if (options.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
};

export interface HttpsResult { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** One HTTPS request trusting only the gateway's CA. */
export function httpsRequest(url: string, ca: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: opts.method ?? 'GET', headers: opts.headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export interface SdkOptions { endpoint?: string; forcePathStyle?: boolean; lookup?: LookupFunction }

/**
 * An S3Client with the SDK's DEFAULT checksum behaviour (CRC32 in aws-chunked trailers, response
 * checksum validation), trusting only the gateway's CA.
 */
export function s3Client(gw: Gateway, creds: { accessKeyId: string; secretAccessKey: string }, opts: SdkOptions = {}): S3Client {
  const agent = new https.Agent({ ca: gw.caPem, keepAlive: true, maxSockets: 16, ...(opts.lookup ? { lookup: opts.lookup } : {}) });
  return new S3Client({
    endpoint: opts.endpoint ?? gw.url,
    region: 'us-east-1',
    forcePathStyle: opts.forcePathStyle ?? true,
    credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: agent, connectionTimeout: 10_000, requestTimeout: 120_000 }),
    maxAttempts: 1,
  });
}

interface SdkError { name?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number; requestId?: string } }

/**
 * Awaits `p`, which must be rejected with one of the S3 error `codes` (when given) and the HTTP
 * `status` (when given). Returns the error.
 */
export async function expectS3Error(what: string, p: Promise<unknown>, expected: { codes?: string[]; status?: number }): Promise<SdkError> {
  let result: unknown;
  try {
    result = await p;
  } catch (e) {
    const err = e as SdkError;
    const code = err.Code ?? err.name;
    const status = err.$metadata?.httpStatusCode;
    const okCode = !expected.codes || expected.codes.includes(code ?? '');
    const okStatus = expected.status === undefined || status === expected.status;
    if (!okCode || !okStatus) {
      throw new AssertionError({
        message: `${what}: expected error ${expected.codes?.join('|') ?? '(any code)'} / HTTP ${expected.status ?? 'any'}, got ${code} / HTTP ${status}: ${err.message}`,
      });
    }
    return err;
  }
  throw new AssertionError({ message: `${what}: expected error ${expected.codes?.join('|') ?? ''} / HTTP ${expected.status ?? ''}, the call succeeded: ${JSON.stringify(result, (k, v) => (k === 'Body' ? '[body]' : v))?.slice(0, 500)}` });
}

/** Credentials and bucket of a server, as `createServer` returns them. */
export type ServerInfo = S3Credentials & { id: string; name?: string };

// ---------------------------------------------------------------------------------------------
// aws-cli v2
// ---------------------------------------------------------------------------------------------

/** Debian's aws-cli v2. Never the `aws` first on PATH (an old v1 under pyenv). */
export const AWS = '/usr/bin/aws';

/**
 * aws-cli v2 bound to one gateway and one key, with its own HOME, config file and (empty)
 * credentials file so nothing from the machine is read.
 */
export class AwsCli {
  readonly gw: Gateway;
  readonly env: NodeJS.ProcessEnv;
  readonly dir: string;

  private constructor(gw: Gateway, creds: { accessKeyId: string; secretAccessKey: string }, dir: string) {
    this.gw = gw;
    this.dir = dir;
    mkdirSync(join(dir, 'home'), { recursive: true });
    writeFileSync(join(dir, 'config'), '');
    writeFileSync(join(dir, 'credentials'), '');
    this.env = cleanEnv({
      HOME: join(dir, 'home'),
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: join(dir, 'config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
      AWS_CA_BUNDLE: gw.caFile,
      AWS_PAGER: '',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
  }

  /** `settings` are `aws configure set` pairs, e.g. ['default.s3.multipart_chunksize', '8MB']. */
  static async create(gw: Gateway, creds: { accessKeyId: string; secretAccessKey: string }, dir: string, settings: [string, string][] = []): Promise<AwsCli> {
    const cli = new AwsCli(gw, creds, dir);
    for (const [k, v] of [['default.region', 'us-east-1'], ['default.s3.addressing_style', 'path'], ...settings] as [string, string][]) {
      await mustRun(`aws configure set ${k}`, AWS, ['configure', 'set', k, v], { env: cli.env });
    }
    return cli;
  }

  private argv(args: string[]): string[] {
    return [...args, '--endpoint-url', this.gw.url, '--ca-bundle', this.gw.caFile, '--output', 'json', '--no-cli-pager'];
  }

  run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(AWS, this.argv(args), { env: this.env, ...opts });
  }

  ok(what: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return mustRun(what, AWS, this.argv(args), { env: this.env, ...opts });
  }

  fail(what: string, expected: RegExp, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return mustFail(what, expected, AWS, this.argv(args), { env: this.env, ...opts });
  }

  /** `aws s3api ...` that must succeed; returns its parsed JSON output ({} when empty). */
  async json<T = Record<string, unknown>>(what: string, args: string[]): Promise<T> {
    const r = await this.ok(what, args);
    if (!r.stdout.trim()) return {} as T;
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new AssertionError({ message: `${what}: output is not JSON\n${formatRun(r)}` });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// rclone
// ---------------------------------------------------------------------------------------------

/**
 * rclone with its own config file holding one remote named `shelter` (type s3, provider Other),
 * trusting only the gateway's CA. Extra flags go after the command's arguments.
 */
export class Rclone {
  readonly configFile: string;
  readonly env: NodeJS.ProcessEnv;
  readonly gw: Gateway;
  readonly flags: string[];

  constructor(gw: Gateway, creds: { accessKeyId: string; secretAccessKey: string }, dir: string, flags: string[] = []) {
    this.gw = gw;
    this.flags = flags;
    mkdirSync(join(dir, 'home'), { recursive: true });
    this.configFile = join(dir, 'rclone.conf');
    writeFileSync(this.configFile, [
      '[shelter]',
      'type = s3',
      'provider = Other',
      'env_auth = false',
      `access_key_id = ${creds.accessKeyId}`,
      `secret_access_key = ${creds.secretAccessKey}`,
      `endpoint = ${gw.url}`,
      'region = us-east-1',
      'force_path_style = true',
      '',
    ].join('\n'), { mode: 0o600 });
    this.env = cleanEnv({ HOME: join(dir, 'home'), XDG_CONFIG_HOME: join(dir, 'home', '.config'), XDG_CACHE_HOME: join(dir, 'home', '.cache') });
  }

  private argv(args: string[]): string[] {
    return [...args, '--config', this.configFile, '--ca-cert', this.gw.caFile, ...this.flags];
  }

  run(args: string[], opts: RunOptions = {}): Promise<RunResult> { return run('rclone', this.argv(args), { env: this.env, ...opts }); }
  ok(what: string, args: string[], opts: RunOptions = {}): Promise<RunResult> { return mustRun(what, 'rclone', this.argv(args), { env: this.env, ...opts }); }
  fail(what: string, expected: RegExp, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return mustFail(what, expected, 'rclone', this.argv(args), { env: this.env, ...opts });
  }
}

// ---------------------------------------------------------------------------------------------
// restic
// ---------------------------------------------------------------------------------------------

/** restic on `s3:URL/BUCKET`, with its password, cache and HOME in a temp dir. */
export class Restic {
  readonly repo: string;
  readonly env: NodeJS.ProcessEnv;
  readonly gw: Gateway;

  constructor(gw: Gateway, creds: S3Credentials, dir: string) {
    this.gw = gw;
    this.repo = `s3:${gw.url}/${creds.bucket}`;
    mkdirSync(join(dir, 'home'), { recursive: true });
    this.env = cleanEnv({
      HOME: join(dir, 'home'),
      RESTIC_PASSWORD: 'correct horse battery staple',
      RESTIC_CACHE_DIR: join(dir, 'cache'),
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    });
  }

  private argv(args: string[]): string[] {
    return ['-r', this.repo, '--cacert', this.gw.caFile, ...args];
  }

  run(args: string[], opts: RunOptions = {}): Promise<RunResult> { return run('restic', this.argv(args), { env: this.env, ...opts }); }
  ok(what: string, args: string[], opts: RunOptions = {}): Promise<RunResult> { return mustRun(what, 'restic', this.argv(args), { env: this.env, ...opts }); }
}
