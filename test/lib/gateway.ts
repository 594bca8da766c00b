// Test harness: starts a real `shelterd serve` process on a fresh data directory over its own HTTPS,
// and runs the `shelterd` CLI. Every end-to-end test goes through here, so the process is started
// exactly as a user would start it (same binary, same flags).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const repoRoot = resolve(import.meta.dirname, '../..');
export const shelterdBin = join(repoRoot, 'packages/gateway/bin/shelterd.js');
/** The Node 24 binary installed by the `node` npm package (the system node is older). */
export const nodeBin = process.execPath;

export interface Gateway {
  /** base URL, e.g. https://127.0.0.1:43123 */
  url: string;
  port: number;
  dataDir: string;
  /** path of the gateway's CA certificate (DATA/tls/ca.pem) */
  caFile: string;
  caPem: string;
  proc: ChildProcess;
  /** stderr+stdout lines seen so far */
  logs: string[];
  /** graceful stop (SIGTERM) and wait */
  stop(): Promise<void>;
  /** SIGKILL and wait */
  kill9(): Promise<void>;
}

export interface StartOptions {
  dataDir?: string;
  /** plain HTTP (passes --insecure-http) */
  http?: boolean;
  /** fixed port; default 0 (the kernel picks one) */
  port?: number;
  args?: string[];
  env?: Record<string, string>;
}

export function tempDir(prefix = 'shelter-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startGateway(opts: StartOptions = {}): Promise<Gateway> {
  const dataDir = opts.dataDir ?? tempDir();
  const args = [shelterdBin, 'serve', '--data', dataDir, '--listen', `127.0.0.1:${opts.port ?? 0}`];
  if (opts.http) args.push('--insecure-http');
  args.push(...(opts.args ?? []));
  const proc = spawn(nodeBin, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const errLines = createInterface({ input: proc.stderr! });
  errLines.on('line', (l) => logs.push(l));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`shelterd did not start in 20 s:\n${logs.join('\n')}`)), 20_000);
    proc.once('exit', (code) => { clearTimeout(timer); rej(new Error(`shelterd exited ${code}:\n${logs.join('\n')}`)); });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      logs.push(line);
      try {
        const ev = JSON.parse(line) as { msg?: string; url?: string };
        if (ev.msg === 'listening' && ev.url) { clearTimeout(timer); res(ev.url); }
      } catch { /* not a JSON line */ }
    });
  });
  const caFile = join(dataDir, 'tls', 'ca.pem');
  const caPem = opts.http ? '' : readFileSync(caFile, 'utf8');
  const port = Number(new URL(url).port);
  const stopWith = async (sig: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    await exited;
  };
  return { url, port, dataDir, caFile, caPem, proc, logs, stop: () => stopWith('SIGTERM'), kill9: () => stopWith('SIGKILL') };
}

export interface CliResult { status: number | null; stdout: string; stderr: string }

/** Runs `shelterd ARGS` synchronously (the CLI works whether or not the gateway is running). */
export function shelterd(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(nodeBin, [shelterdBin, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface S3Credentials { bucket: string; accessKeyId: string; secretAccessKey: string }

/** `shelterd server create NAME --json`: a server with its own bucket and access key. */
export function createServer(dataDir: string, name: string): S3Credentials & { id: string } {
  const r = shelterd(['server', 'create', name, '--data', dataDir, '--json']);
  if (r.status !== 0) throw new Error(`server create failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as S3Credentials & { id: string };
}

/** `shelterd key create --operator --json`: an operator key (may create buckets). */
export function createOperatorKey(dataDir: string): { accessKeyId: string; secretAccessKey: string } {
  const r = shelterd(['key', 'create', '--operator', '--data', dataDir, '--json']);
  if (r.status !== 0) throw new Error(`key create failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { accessKeyId: string; secretAccessKey: string };
}

export interface AuditRecord {
  seq: number; time: string; requestId: string; source: string; remote: string; operation: string;
  bucket: string | null; key: string | null; versionId: string | null; bytes: number; status: number;
  error: string | null; detail: Record<string, unknown> | null; hash: string; prevHash: string;
}

/** `shelterd audit export`: every audit record, oldest first. */
export function auditRecords(dataDir: string): AuditRecord[] {
  const r = shelterd(['audit', 'export', '--data', dataDir]);
  if (r.status !== 0) throw new Error(`audit export failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** every file (not directory) below `dir`, recursively */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name));
}
