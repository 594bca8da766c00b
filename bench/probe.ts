// The compressibility probe (packages/format/src/envelope.ts worthCompressing) on real files: each
// file is cut with the repository's chunker (default parameters, a fixed gear table), and every
// chunk is compressed whole (zstd level 3, the agent's, one reused context) and, separately, first
// probed and compressed only when the probe says so. Prints per file: chunks, chunks the probe
// stores raw, stored bytes either way (the smaller of frame and plaintext, as the envelope keeps)
// and the time spent in zstd either way (and in the probe alone). A measurement, not a test.
//
//   node_modules/.bin/node bench/probe.ts [FILE...]     (default: the large-files dataset)
import { fstatSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Chunker, DEFAULT_CHUNKER, gearTable } from '../packages/format/src/chunker.ts';
import { DEFAULT_ZSTD_LEVEL, worthCompressing } from '../packages/format/src/envelope.ts';
import { compressFrame } from '../packages/format/src/zstd.ts';

const dataDir = join(process.env.BENCH_DIR ?? '/tmp/shelter-bench', 'data', 'big');
const files = process.argv.slice(2).length ? process.argv.slice(2) : ['random.bin', 'dedup.bin', 'usrlib.tar'].map((f) => join(dataDir, f));
const gear = gearTable(Buffer.alloc(32, 7));
const level = DEFAULT_ZSTD_LEVEL;
const MB = (n: number) => (n / 1e6).toFixed(1);
console.log('| file | chunks | stored raw by the probe | stored MB, zstd on all | stored MB, probe | zstd s, all | zstd s, probe (of which the probe) |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const file of files) {
  const fd = openSync(file, 'r');
  const size = fstatSync(fd).size;
  const buf = Buffer.allocUnsafe(size);
  for (let at = 0; at < size;) at += readSync(fd, buf, at, size - at, at);
  closeSync(fd);
  const chunker = new Chunker(gear, DEFAULT_CHUNKER);
  const cuts = [...chunker.push(buf), size];
  chunker.end();
  let start = 0, chunks = 0, skipped = 0, storedAll = 0, storedProbe = 0, msAll = 0, msProbe = 0, msProbeOnly = 0;
  for (const cut of cuts) {
    if (cut <= start) continue;
    const p = buf.subarray(start, cut);
    start = cut;
    chunks++;
    // (the two ways in turns, first one then the other: the second finds the chunk in the CPU's caches)
    const all = () => {
      const t = performance.now();
      storedAll += Math.min(p.length, compressFrame(p, level, { transient: true }).length);
      msAll += performance.now() - t;
    };
    const probed = () => {
      let t = performance.now();
      const worth = worthCompressing(p);
      msProbeOnly += performance.now() - t;
      storedProbe += worth ? Math.min(p.length, compressFrame(p, level, { transient: true }).length) : p.length;
      msProbe += performance.now() - t;
      if (!worth) skipped++;
    };
    if (chunks % 2) { all(); probed(); } else { probed(); all(); }
  }
  console.log(`| ${file} | ${chunks} | ${skipped} | ${MB(storedAll)} | ${MB(storedProbe)} | ${(msAll / 1000).toFixed(2)} | ${(msProbe / 1000).toFixed(2)} (${(msProbeOnly / 1000).toFixed(2)}) |`);
}
