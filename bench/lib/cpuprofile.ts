// Summarizes V8 .cpuprofile files (written by `node --cpu-prof`): where the time goes, by
// function (self time) and by source file / package.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

export interface ProfileRow { name: string; ms: number; pct: number }
/** [start, end) in microseconds of CLOCK_MONOTONIC (process.hrtime / V8 profile timestamps) */
export type Window = [number, number];

export interface ProfileSummary {
  file: string;
  /** what the samples were restricted to */
  label: string;
  totalMs: number;
  /** share of the sampled time the main thread was not idle */
  busyPct: number;
  /** share of samples that were not idle/program/GC */
  byFunction: ProfileRow[];
  byFile: ProfileRow[];
  /** inclusive (total) time of functions of the project (paths under packages/) */
  projectInclusive: ProfileRow[];
  /** for the heaviest self-time functions: the call paths (nearest project frames) they are reached from */
  callers: ProfileRow[];
}

function shortUrl(url: string): string {
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 13).split('/');
    return 'npm:' + (rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]);
  }
  const pk = u.indexOf('/packages/');
  if (pk >= 0) return u.slice(pk + 1);
  return u;
}

const cache = new Map<string, Profile>();
export function loadProfile(file: string): Profile {
  let p = cache.get(file);
  if (!p) { p = JSON.parse(readFileSync(file, 'utf8')) as Profile; cache.set(file, p); }
  return p;
}

/** Summary of the samples of `file`, only those inside `windows` when given. */
export function summarizeProfile(file: string, top = 25, windows?: Window[], label = 'whole process'): ProfileSummary {
  const p = loadProfile(file);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  // self time per node from samples and time deltas (more exact than hitCount x interval)
  const selfUs = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  let ts = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    ts += deltas[i] ?? 0;
    if (windows && !windows.some(([a, b]) => ts >= a && ts < b)) continue;
    const dt = deltas[i + 1] ?? deltas[i] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, dt));
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const fnAgg = new Map<string, number>();
  const fileAgg = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    const loc = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const name = `${cf.functionName || '(anonymous)'}${loc ? ' ' + loc : ''}`;
    fnAgg.set(name, (fnAgg.get(name) ?? 0) + us);
    const f = cf.url ? shortUrl(cf.url) : (cf.functionName.startsWith('(') ? cf.functionName : '(native)');
    fileAgg.set(f, (fileAgg.get(f) ?? 0) + us);
  }
  // inclusive time of project functions: walk the tree, attribute each node's subtree once per
  // distinct project frame on its path (recursion counted once)
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!cf.url.includes('/packages/')) continue;
      const name = `${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
      if (seen.has(name)) continue;
      seen.add(name);
      incl.set(name, (incl.get(name) ?? 0) + us);
    }
  }
  // callers: for every sampled node, its function plus the chain of frames above it up to (and
  // including) the first two frames from the project, which says which project code pays for it
  const frameName = (cf: ProfileNode['callFrame']) => `${cf.functionName || '(anonymous)'}${cf.url ? ' ' + shortUrl(cf.url) + ':' + (cf.lineNumber + 1) : ''}`;
  const callerAgg = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName.startsWith('(') && !cf.url) continue; // idle, program, gc
    const chain: string[] = [];
    let proj = 0;
    for (let cur = parent.get(id); cur !== undefined && proj < 2 && chain.length < 12; cur = parent.get(cur)) {
      const pf = byId.get(cur)!.callFrame;
      if (pf.url.includes('/packages/')) { chain.push(frameName(pf)); proj++; } else if (proj === 0 && chain.length < 2) chain.push(frameName(pf));
    }
    const k = `${frameName(cf)}  <-  ${chain.join('  <-  ') || '(root)'}`;
    callerAgg.set(k, (callerAgg.get(k) ?? 0) + us);
  }
  const rows = (m: Map<string, number>): ProfileRow[] => [...m.entries()]
    .sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: Math.round((us / totalUs) * 1000) / 10 }));
  let idleUs = 0;
  for (const [id, us] of selfUs) if (byId.get(id)!.callFrame.functionName === '(idle)') idleUs += us;
  return { file, label, totalMs: Math.round(totalUs / 1000), busyPct: Math.round((1 - idleUs / totalUs) * 1000) / 10, byFunction: rows(fnAgg), byFile: rows(fileAgg), projectInclusive: rows(incl), callers: rows(callerAgg) };
}

export function profilesIn(dir: string): string[] {
  try { return readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f)); } catch { return []; }
}

type Section = 'byFunction' | 'byFile' | 'projectInclusive' | 'callers';
export function formatSummary(s: ProfileSummary, sections: Section[] = ['byFunction', 'byFile', 'projectInclusive', 'callers']): string {
  const titles = {
    byFunction: 'self time by function', byFile: 'self time by file / package', projectInclusive: 'inclusive time of project functions',
    callers: 'self time by function and call path (nearest callers, up to the second project frame)',
  };
  const t = (title: string, rows: ProfileRow[]) =>
    [`${title}:`, '', '| % | ms | where |', '|---:|---:|---|', ...rows.map((r) => `| ${r.pct} | ${r.ms} | \`${r.name}\` |`)].join('\n');
  const out = [`${s.label}: ${(s.totalMs / 1000).toFixed(1)} s of main-thread samples, busy ${s.busyPct}% (the rest is (idle)); ${s.file}`];
  for (const k of sections) out.push('', t(titles[k], s[k]));
  return out.join('\n');
}

// `node bench/lib/cpuprofile.ts FILE_OR_DIR...` prints the summaries
if (import.meta.main) {
  for (const arg of process.argv.slice(2)) {
    const files = arg.endsWith('.cpuprofile') ? [arg] : profilesIn(arg);
    for (const f of files) console.log(formatSummary(summarizeProfile(f)) + '\n');
  }
}
