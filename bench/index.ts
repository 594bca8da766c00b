// The agent's in-memory index at scale: how long opening a repository's index objects takes, and
// the memory it needs on the way and after, for N blobs (default 10 million), through the path
// `openRepo` uses (each index object's SHA-256 name checked, decrypted, decompressed, validated,
// then one BlobIndex built from the compact entries) next to decoding every entry into an object
// first (the agent's load path before session 12: its memory; its time here also includes
// encoding the objects again for fromEncoded, which the old path did not do). Each path runs in
// a fresh process so that its peak RSS is its own. "index cache" is what openRepo does when the
// agent's local index cache (packages/agent/src/indexcache.ts) matches the bucket: one file read,
// authenticated and checked, its arrays used as the index (the cache is written once, untimed).
//
//   node_modules/.bin/node bench/index.ts [--blobs 10000000] [--dir /tmp/shelter-index-bench]
//
// Index objects hold 65,536 blobs each (INDEX_TARGET_BLOBS, as the agent writes them), 1,000
// blobs per pack, random ids (blob ids are HMAC outputs). The objects are written once to --dir
// and read back from files, as the agent reads its local copies.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readIndexCache, writeIndexCache } from '../packages/agent/src/indexcache.ts';
import {
  BlobIndex, INDEX_BYTES_PER_BLOB, INDEX_TARGET_BLOBS, deriveKeys, encodeEntries, indexKey, openIndex, openIndexCompact, sealIndex, toHex,
  type EncodedIndexedPack, type IndexedPack,
} from '@shelter/format';

const { values: args } = parseArgs({ options: {
  blobs: { type: 'string', default: '10000000' }, dir: { type: 'string', default: '/tmp/shelter-index-bench' }, mode: { type: 'string' },
} });
const blobs = Number(args.blobs);
const dir = join(args.dir!, String(blobs));
const master = Buffer.alloc(32, 7), repoId = Buffer.alloc(16, 9);
const keys = deriveKeys(master, repoId);
const PER_PACK = 1000;
const MiB = (n: number) => (n / 2 ** 20).toFixed(0);

if (args.mode === 'write-cache') {
  // the index cache of these objects, as openRepo writes it
  const files = readdirSync(dir).filter((f) => /^[0-9a-f]{64}$/.test(f));
  const lists = files.map((f) => ({ key: indexKey(f), packs: openIndexCompact(keys, readFileSync(join(dir, f)), Buffer.from(f, 'hex')) }));
  const index = BlobIndex.fromEncoded(lists.map((l) => l.packs));
  const objects = new Map<string, number[]>();
  for (const l of lists) objects.set(l.key, l.packs.map((p) => index.addPack(p.id)));
  mkdirSync(join(dir, 'cache'), { recursive: true, mode: 0o700 });
  writeIndexCache(join(dir, 'cache'), keys, { index, objects, treePacks: new Set() });
  writeFileSync(join(dir, 'cache', 'listing.json'), JSON.stringify({ indexKeys: lists.map((l) => l.key) }));
  process.exit(0);
}

if (args.mode) {
  // one measured load, in this process
  const files = readdirSync(dir).filter((f) => /^[0-9a-f]{64}$/.test(f));
  const t = performance.now();
  // in a function: its lists are garbage once it returns
  const load = (): BlobIndex => {
    if (args.mode === 'cache') {
      const listing = JSON.parse(readFileSync(join(dir, 'cache', 'listing.json'), 'utf8')) as { indexKeys: string[] };
      const state = readIndexCache(join(dir, 'cache'), keys, listing.indexKeys);
      if (!state) throw new Error('the index cache was not used');
      return state.index;
    }
    if (args.mode === 'compact') {
      const lists: EncodedIndexedPack[][] = files.map((f) => openIndexCompact(keys, readFileSync(join(dir, f)), Buffer.from(f, 'hex')));
      return BlobIndex.fromEncoded(lists);
    }
    const lists: IndexedPack[][] = files.map((f) => openIndex(keys, readFileSync(join(dir, f)), Buffer.from(f, 'hex')));
    return BlobIndex.fromIndexes(lists);
  };
  const ix = load();
  const ms = performance.now() - t;
  // what stays: the index itself (the lists are garbage now; whatever the allocator keeps of them counts)
  globalThis.gc?.();
  const after = process.memoryUsage().rss;
  process.stdout.write(JSON.stringify({ blobs: ix.size, ms, peakRss: process.resourceUsage().maxRSS * 1024, rssAfter: after, indexBytes: ix.memoryBytes() }) + '\n');
  process.exit(0);
}

if (!existsSync(join(dir, 'done'))) {
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`writing index objects for ${blobs} blobs to ${dir} ...\n`);
  for (let first = 0; first < blobs; first += INDEX_TARGET_BLOBS) {
    const n = Math.min(INDEX_TARGET_BLOBS, blobs - first);
    const packs: Array<{ id: Buffer; size: number; encodedEntries: Buffer }> = [];
    for (let at = 0; at < n; at += PER_PACK) {
      const m = Math.min(PER_PACK, n - at);
      const entries = Array.from({ length: m }, (_, k) => ({ type: 'data' as const, id: randomBytes(32), offset: k * 4096, length: 4096, rawLength: 12000 }));
      packs.push({ id: randomBytes(32), size: m * 4096 + 4096, encodedEntries: encodeEntries(entries) });
    }
    const s = sealIndex(keys, packs);
    writeFileSync(join(dir, toHex(s.id)), s.bytes);
  }
  writeFileSync(join(dir, 'done'), '');
}

// (in a process of its own: a child's peak RSS counts the parent's RSS at fork, so the parent stays small)
if (!existsSync(join(dir, 'cache', 'index'))) execFileSync(process.execPath, ['--max-old-space-size=16384', import.meta.filename, '--mode', 'write-cache', '--blobs', String(blobs), '--dir', args.dir!], { stdio: 'inherit' });

const run = (mode: string) => JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=16384', import.meta.filename, '--mode', mode, '--blobs', String(blobs), '--dir', args.dir!], { encoding: 'utf8' })) as
  { blobs: number; ms: number; peakRss: number; rssAfter: number; indexBytes: number };
const objectCount = readdirSync(dir).filter((f) => /^[0-9a-f]{64}$/.test(f)).length;
process.stdout.write(`${blobs} blobs in ${objectCount} index objects; the index itself: ${INDEX_BYTES_PER_BLOB} bytes per blob = ${MiB(blobs * INDEX_BYTES_PER_BLOB)} MiB\n\n`);
process.stdout.write('| path | load s | peak RSS MiB | RSS after MiB |\n|---|---:|---:|---:|\n');
for (const [mode, label] of [['cache', 'index cache (openRepo, cache up to date)'], ['compact', 'compact entries (openRepo, index objects)'], ['objects', 'an object per entry first (decodeIndex)']] as const) {
  const r = run(mode);
  if (r.blobs !== blobs) throw new Error(`${mode}: ${r.blobs} blobs loaded, expected ${blobs}`);
  process.stdout.write(`| ${label} | ${(r.ms / 1000).toFixed(2)} | ${MiB(r.peakRss)} | ${MiB(r.rssAfter)} |\n`);
}
