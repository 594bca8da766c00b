// How much the first touch of memory costs on this machine, against memory reused: the figure
// behind several of the agent's memory decisions (buffers kept and reused, collections that free
// what other threads sent, peak RSS as a cost in time, not only in memory).
//
//   node_modules/.bin/node bench/fresh-pages.ts [--mib 64]
//
// Each pass allocates --mib buffers of 1 MiB and fills them. "fresh": memory new to the process
// (its pages faulted in one by one), "reused": the same amount again after the first pass's
// buffers were freed (glibc hands the same memory back). Run with the agent's malloc settings
// (as bin/shelter.js sets them) and with glibc's defaults (its first 1 MiB buffers are mappings
// of their own; once one is freed its dynamic threshold moves up and later ones reuse its heap).
//
// Session 23 on the benchmark VM (2 vCPU, Firecracker): fresh 180-240 MiB/s (~17-22 us per 4 KiB
// page), reused 15-19 GiB/s, either way; a plain mmap touched page by page the same (~16-24 us a page, with
// or without MADV_HUGEPAGE). On a bare-metal Linux machine a fresh page costs well under 1 us.
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '64' }, child: { type: 'boolean', default: false } } });
const mib = Number(args.mib);

if (args.child) {
  const src = Buffer.alloc(1 << 20, 7);
  const pass = (): number => {
    const t0 = performance.now();
    const kept: Buffer[] = [];
    for (let i = 0; i < mib; i++) { const b = Buffer.allocUnsafeSlow(1 << 20); b.set(src); kept.push(b); }
    const s = (performance.now() - t0) / 1000;
    for (const b of kept) (b.buffer as ArrayBuffer).transfer(0); // freed now, not at a collection
    return mib / s;
  };
  const fresh = pass();
  const reused = pass();
  process.stdout.write(JSON.stringify({ fresh, reused }));
} else {
  const agentMalloc = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '1073741824' };
  console.log(`| malloc settings | fresh MiB/s | reused MiB/s | us per fresh 4 KiB page |`);
  console.log(`|---|---|---|---|`);
  for (const [label, env] of [['the agent\'s (bin/shelter.js)', agentMalloc], ['glibc defaults', {}]] as const) {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_')));
    const out = execFileSync(process.execPath, [import.meta.filename, '--child', '--mib', String(mib)], { env: { ...base, ...env }, encoding: 'utf8' });
    const r = JSON.parse(out) as { fresh: number; reused: number };
    console.log(`| ${label} | ${r.fresh.toFixed(0)} | ${r.reused.toFixed(0)} | ${(1e6 / (r.fresh * 256)).toFixed(1)} |`);
  }
}
