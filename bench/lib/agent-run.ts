// Timed commands for the agent benchmark: `/usr/bin/time -f '%e %U %S %M'` around the command
// (wall seconds, user and system CPU seconds, peak RSS in KiB of the largest process waited for),
// plus what else happened on the machine meanwhile: CPU of the gateway's process tree and of
// everything that is neither the command, the gateway nor this script (a shared machine's noise).
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { cpuSeconds, processTree, systemBusySeconds } from './proc.ts';

export interface Timed {
  /** /usr/bin/time's figures */
  wall: number;
  user: number;
  sys: number;
  cpu: number;
  rssKiB: number;
  exitCode: number;
  /** CPU seconds of the gateway's process tree during the command */
  serverCpu: number;
  /** cores used by other processes during the command (machine busy - command - gateway - this script) */
  otherCores: number;
  /** 1-minute load average when the command started */
  load1: number;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr of the command are appended to this file */
  logFile: string;
  /** pid whose process tree is the gateway */
  serverPid?: number;
  /** kill the command (its whole process group) after this many seconds; exitCode is then 124 */
  timeoutSec?: number;
}

/** process groups of the commands still running (killed by killRunning on interruption) */
const running = new Set<number>();
export function killRunning(): void {
  for (const pid of running) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }
}

/**
 * The agent run as its users run it (`shelter ...`, `npx shelter ...`): its bin executed, its #!
 * line giving Node its V8 flags (run as `node bin/shelter.js` it would re-execute itself for them),
 * this script's Node first on PATH. `prof`: a directory for --cpu-prof profiles (NODE_OPTIONS).
 */
export function agentCommand(bin: string, env: NodeJS.ProcessEnv, prof?: string): { cmd: string; env: NodeJS.ProcessEnv } {
  const profiling = prof ? { NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${prof}`.trim() } : {};
  return { cmd: bin, env: { ...env, PATH: `${dirname(process.execPath)}:${env.PATH ?? ''}`, ...profiling } };
}

const serverCpuOf = (pid: number | undefined) => (pid ? processTree(pid).reduce((s, p) => s + (cpuSeconds(p) || 0), 0) : 0);

export async function timed(cmd: string, args: string[], o: RunOptions): Promise<Timed> {
  const timeFile = `${o.logFile}.time`;
  rmSync(timeFile, { force: true });
  const out = openSync(o.logFile, 'a');
  const load1 = loadavg()[0]!;
  const busy0 = systemBusySeconds();
  const srv0 = serverCpuOf(o.serverPid);
  const me0 = process.cpuUsage();
  const t0 = performance.now();
  let timedOut = false;
  try {
    await new Promise<void>((res, rej) => {
      // its own process group, so that a hung command can be killed with everything it started
      const p = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, cmd, ...args], { env: o.env, cwd: o.cwd, stdio: ['ignore', out, out], detached: true });
      running.add(p.pid!);
      const timer = o.timeoutSec ? setTimeout(() => { timedOut = true; try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ } }, o.timeoutSec * 1000) : undefined;
      p.once('error', rej);
      p.once('exit', () => { clearTimeout(timer); running.delete(p.pid!); res(); });
    });
  } finally { closeSync(out); }
  if (timedOut) {
    const secs = (performance.now() - t0) / 1000;
    return { wall: secs, user: NaN, sys: NaN, cpu: NaN, rssKiB: NaN, exitCode: 124, serverCpu: NaN, otherCores: NaN, load1 };
  }
  const secs = (performance.now() - t0) / 1000;
  const srv = serverCpuOf(o.serverPid) - srv0;
  const me = process.cpuUsage(me0);
  let text = '';
  try { text = readFileSync(timeFile, 'utf8').trim(); } catch { /* /usr/bin/time itself was killed */ }
  const lines = text.split('\n');
  const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(lines[lines.length - 1]!.trim());
  if (!m) {
    if (text === '') return { wall: secs, user: NaN, sys: NaN, cpu: NaN, rssKiB: NaN, exitCode: 137, serverCpu: NaN, otherCores: NaN, load1 };
    throw new Error(`cannot parse /usr/bin/time output: ${lines.join(' | ')}`);
  }
  const exit = /exited with non-zero status (\d+)/.exec(lines.join('\n'));
  const sig = /terminated by signal (\d+)/.exec(lines.join('\n'));
  const [wall, user, sys, rssKiB] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  const busy = systemBusySeconds() - busy0;
  const other = Math.max(0, (busy - user - sys - srv - (me.user + me.system) / 1e6) / secs);
  rmSync(timeFile, { force: true });
  return {
    wall, user, sys, cpu: Math.round((user + sys) * 100) / 100, rssKiB, exitCode: exit ? Number(exit[1]) : sig ? 128 + Number(sig[1]) : 0,
    serverCpu: Math.round(srv * 100) / 100, otherCores: Math.round(other * 100) / 100, load1: Math.round(load1 * 100) / 100,
  };
}

/** Runs a command (not timed) and returns its stdout; throws with its output on a non-zero exit. */
export async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    running.add(p.pid!);
    const chunks: Buffer[] = [];
    const errs: Buffer[] = [];
    p.stdout!.on('data', (c: Buffer) => chunks.push(c));
    p.stderr!.on('data', (c: Buffer) => errs.push(c));
    p.once('error', rej);
    p.once('close', (code, signal) => {
      running.delete(p.pid!);
      const stdout = Buffer.concat(chunks).toString();
      if (code === 0) res(stdout);
      else rej(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}:\n${stdout.slice(-2000)}${Buffer.concat(errs).toString().slice(-4000)}`));
    });
  });
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
