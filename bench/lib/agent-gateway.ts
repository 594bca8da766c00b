// shelterd for the agent benchmark, started from a given packages/ directory (the working tree or
// a snapshot of a revision, see agent-snapshot.ts) exactly as test/lib/gateway.ts starts it:
// `shelterd serve --data DIR --listen 127.0.0.1:0` over its own HTTPS, `server create NAME --json`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface BenchGateway {
  url: string;
  dataDir: string;
  caFile: string;
  caPem: string;
  proc: ChildProcess;
  /** `shelterd server create NAME --json`: a server with its own bucket and access key */
  createServer(name: string): { bucket: string; accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

export async function startBenchGateway(packages: string, dataDir: string): Promise<BenchGateway> {
  const bin = join(packages, 'gateway/bin/shelterd.js');
  const node = process.execPath;
  // BENCH_GATEWAY_PROFILE=DIR: shelterd runs under --cpu-prof (written when it stops; bench/lib/cpuprofile.ts)
  const prof = process.env.BENCH_GATEWAY_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_GATEWAY_PROFILE] : [];
  const proc = spawn(node, [...prof, bin, 'serve', '--data', dataDir, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const early: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => { if (early.length < 200) early.push(l); });
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`shelterd did not start in 20 s:\n${early.join('\n')}`)), 20_000);
    proc.once('exit', (code) => { clearTimeout(timer); rej(new Error(`shelterd exited ${code}:\n${early.join('\n')}`)); });
    // keep reading stdout (one JSON line per event) so that shelterd never blocks on a full pipe
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (early.length < 200) early.push(line);
      if (!line.includes('"listening"')) return;
      try {
        const ev = JSON.parse(line) as { msg?: string; url?: string };
        if (ev.msg === 'listening' && ev.url) { clearTimeout(timer); res(ev.url); }
      } catch { /* not a JSON line */ }
    });
  });
  const caFile = join(dataDir, 'tls', 'ca.pem');
  return {
    url, dataDir, caFile, caPem: readFileSync(caFile, 'utf8'), proc,
    createServer(name) {
      const r = spawnSync(node, [bin, 'server', 'create', name, '--data', dataDir, '--json'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`shelterd server create ${name} failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as { bucket: string; accessKeyId: string; secretAccessKey: string };
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
