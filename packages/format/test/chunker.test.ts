import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, OTHER_KEYS, streamBytes, throwsCode, mbps } from './helpers.ts';
import { Chunker, ChunkSplitter, chunkLengths, gearTable, validateChunkerParams, DEFAULT_CHUNKER } from '../src/chunker.ts';
import { createHash } from 'node:crypto';

const P = DEFAULT_CHUNKER;
const data20 = streamBytes(20 << 20, 0x11);

function cutsOf(c: Chunker, pieces: Uint8Array[]): number[] {
  const cuts: number[] = [];
  let base = 0;
  for (const p of pieces) { for (const x of c.push(p)) cuts.push(base + x); base += p.length; }
  const last = c.end();
  if (last > 0) cuts.push(base);
  return cuts;
}

test('cut points are deterministic, key-dependent and independent of how input is fed', () => {
  const a = chunkLengths(new Chunker(KEYS), data20);
  assert.deepEqual(chunkLengths(new Chunker(KEYS), data20), a);
  assert.notDeepEqual(chunkLengths(new Chunker(OTHER_KEYS), data20), a, 'the gear table is secret: another key, other boundaries');
  let acc = 0;
  const whole = a.map((l) => (acc += l));
  let x = 2463534242;
  const c = new Chunker(KEYS);
  for (const maxPiece of [1, 7, 4096, 65535, 300_001, 3 << 20]) {
    const pieces: Uint8Array[] = [];
    // tiny pieces on a prefix only (it still spans several chunks), to keep the test fast
    const small = maxPiece === 1 ? data20.subarray(0, 300_000) : maxPiece < 4096 ? data20.subarray(0, 2 << 20) : data20;
    for (let at = 0; at < small.length;) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5; // xorshift32: cheap deterministic piece sizes
      const n = Math.min(small.length - at, 1 + ((x >>> 0) % maxPiece));
      pieces.push(small.subarray(at, at + n)); at += n;
    }
    const expect = small === data20 ? whole : cutsOf(new Chunker(KEYS), [small]);
    assert.deepEqual(cutsOf(c, pieces), expect, `pieces up to ${maxPiece}`);
  }
});

test('min and max are respected; small inputs are one chunk; empty input is no chunk', () => {
  for (const data of [data20, Buffer.alloc(5 << 20), Buffer.alloc(3 << 20, 0xab), streamBytes(P.min * 3 + 5, 3)]) {
    const lens = chunkLengths(new Chunker(KEYS), data);
    assert.equal(lens.reduce((a, b) => a + b, 0), data.length);
    for (const [i, l] of lens.entries()) {
      assert.ok(l <= P.max, `chunk ${i} of ${l} bytes exceeds max`);
      if (i < lens.length - 1) assert.ok(l >= P.min, `chunk ${i} of ${l} bytes is below min`);
    }
  }
  assert.deepEqual(chunkLengths(new Chunker(KEYS), Buffer.alloc(5 << 20)), [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20], 'zeros cut at max: holes dedup');
  assert.deepEqual(chunkLengths(new Chunker(KEYS), streamBytes(P.min - 1)), [P.min - 1]);
  assert.deepEqual(chunkLengths(new Chunker(KEYS), streamBytes(1000)), [1000]);
  assert.deepEqual(chunkLengths(new Chunker(KEYS), Buffer.alloc(0)), []);
  const lens = chunkLengths(new Chunker(KEYS), data20);
  const mean = data20.length / lens.length;
  console.log(`# chunker ${P.min >> 10}/${P.avg >> 10}/${P.max >> 10} KiB on 20 MiB random: ${lens.length} chunks, mean ${(mean / 1024).toFixed(0)} KiB, smallest ${Math.min(...lens.slice(0, -1)) >> 10} KiB, largest ${Math.max(...lens) >> 10} KiB`);
  assert.ok(mean > P.avg * 0.8 && mean < P.avg * 1.6, `mean chunk ${mean} is near avg`);
});

test('boundaries re-synchronise after an insertion: >= 90% of chunks are shared', () => {
  const hashes = (d: Buffer) => {
    const out: string[] = [];
    let at = 0;
    for (const l of chunkLengths(new Chunker(KEYS), d)) { out.push(createHash('sha256').update(d.subarray(at, at + l)).digest('hex')); at += l; }
    return out;
  };
  const before = hashes(data20);
  for (const [what, edited] of [
    ['1 byte inserted at 1000', Buffer.concat([data20.subarray(0, 1000), Buffer.from([0x5a]), data20.subarray(1000)])],
    ['1 byte deleted at 777777', Buffer.concat([data20.subarray(0, 777777), data20.subarray(777778)])],
    ['4 KiB inserted at 10 MiB', Buffer.concat([data20.subarray(0, 10 << 20), streamBytes(4096, 9), data20.subarray(10 << 20)])],
  ] as const) {
    const after = hashes(edited);
    const set = new Set(before);
    const shared = after.filter((h) => set.has(h)).length;
    const ratio = shared / after.length;
    console.log(`# ${what}: ${shared}/${after.length} chunks shared (${(ratio * 100).toFixed(1)}%)`);
    assert.ok(ratio >= 0.9, `${what}: only ${(ratio * 100).toFixed(1)}% shared`);
  }
});

test('ChunkSplitter returns the same chunks as the cut points', () => {
  const d = data20.subarray(0, 6 << 20);
  const lens = chunkLengths(new Chunker(KEYS), d);
  const s = new ChunkSplitter(new Chunker(KEYS));
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < d.length; at += 100_000) chunks.push(...s.push(d.subarray(at, at + 100_000)));
  const last = s.end();
  if (last) chunks.push(last);
  assert.deepEqual(chunks.map((c) => c.length), lens);
  assert.ok(Buffer.concat(chunks).equals(d));
  assert.equal(s.end(), null);
});

test('parameters are validated; the gear table is 256 words derived from the key', () => {
  validateChunkerParams(P);
  throwsCode(() => validateChunkerParams({ min: 1000, avg: 1 << 18, max: 1 << 20 }), 'Invalid');
  throwsCode(() => validateChunkerParams({ min: 1 << 19, avg: 1 << 18, max: 1 << 20 }), 'Invalid');
  throwsCode(() => validateChunkerParams({ min: 1 << 16, avg: 1 << 10, max: 1 << 20 }), 'Invalid');
  throwsCode(() => new Chunker(KEYS, { min: 1 << 16, avg: 1 << 18, max: 1 << 27 }), 'Invalid');
  const g = gearTable(KEYS.chunker);
  assert.equal(g.length, 256);
  assert.equal(new Set(g).size, 256);
  // 1 MiB average also works (repositories that prefer fewer, larger blobs)
  const big = { min: 256 << 10, avg: 1 << 20, max: 4 << 20 };
  const lens = chunkLengths(new Chunker(KEYS, big), data20);
  assert.ok(lens.every((l, i) => l <= big.max && (i === lens.length - 1 || l >= big.min)));
});

test('throughput: chunker on 64 MiB', () => {
  const d = streamBytes(64 << 20, 0x21);
  for (const params of [P, { min: 256 << 10, avg: 1 << 20, max: 4 << 20 }]) {
    const c = new Chunker(KEYS, params);
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      for (let at = 0; at < d.length; at += 1 << 20) c.push(d.subarray(at, at + (1 << 20)));
      c.end();
      best = Math.min(best, performance.now() - t);
    }
    console.log(`# chunker ${params.min >> 10}/${params.avg >> 10}/${params.max >> 10} KiB, 1 MiB feeds: ${mbps(d.length, best)} (best of 3)`);
  }
});
