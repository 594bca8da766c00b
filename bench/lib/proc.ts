// Linux /proc readings for the benchmark: CPU time and peak RSS of server processes.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 0;
function ticksPerSecond(): number {
  if (!clkTck) {
    try { clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { clkTck = 100; }
  }
  return clkTck;
}

/** user+system CPU seconds of one process (all its threads), or NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name (which may contain spaces) start at ") "
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state); utime is field 14, stime field 15
    return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
  } catch { return NaN; }
}

export function sumCpuSeconds(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuSeconds(p), 0);
}

/** A field of /proc/PID/status in KiB (VmHWM = peak RSS, VmRSS = current RSS), or NaN. */
export function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch { return NaN; }
}

/** The process and all its descendants (shelterd may run workers as child processes). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      }
    } catch { /* gone */ }
  }
  return out;
}

/** CPU seconds spent by the whole machine (all CPUs, everything but idle and iowait) since boot. */
export function systemBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return busy / ticksPerSecond();
}

/**
 * Measures the CPU used on this machine by processes other than `ours` (pids, plus this process)
 * over a window: the noise of a shared machine. Call start(), then stop() -> cores.
 */
export class OtherCpu {
  private sys0 = 0;
  private ours0 = 0;
  private t0 = 0;
  private readonly pids: () => number[];
  constructor(pids: () => number[]) { this.pids = pids; }
  private ours(): number {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6 + this.pids().reduce((s, p) => s + (cpuSeconds(p) || 0), 0);
  }
  start(): void { this.sys0 = systemBusySeconds(); this.ours0 = this.ours(); this.t0 = performance.now(); }
  /** cores used by others since start() */
  stop(): number {
    const secs = (performance.now() - this.t0) / 1000;
    const other = systemBusySeconds() - this.sys0 - (this.ours() - this.ours0);
    return Math.max(0, other / secs);
  }
}
