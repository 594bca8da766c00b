import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, OTHER_KEYS, detRng, flip, streamBytes, throwsCode } from './helpers.ts';
import { sealIndex, openIndex, openIndexCompact, encodeIndex, decodeIndex, decodeIndexCompact, type IndexedPack } from '../src/indexfile.ts';
import { BlobIndex, INDEX_BYTES_PER_BLOB } from '../src/memindex.ts';
import { ENVELOPE_OVERHEAD } from '../src/envelope.ts';
import { encodeEntries, onlyTreeEntries, type PackEntry } from '../src/pack.ts';

/** Fake packs with random ids and contiguous entries (no real pack needed for the index). */
function fakePacks(nPacks: number, perPack: number, seed: string): IndexedPack[] {
  const rng = detRng(seed);
  const packs: IndexedPack[] = [];
  for (let p = 0; p < nPacks; p++) {
    const entries: PackEntry[] = [];
    let off = 0;
    for (let i = 0; i < perPack; i++) {
      const raw = 1000 + ((p * 31 + i * 7) % 300000);
      const length = ENVELOPE_OVERHEAD + raw;
      entries.push({ type: i === 0 ? 'tree' : 'data', id: rng(32), offset: off, length, rawLength: raw });
      off += length;
    }
    packs.push({ id: rng(32), size: off + 200, entries });
  }
  return packs;
}

test('index objects round trip and are named by their SHA-256', () => {
  const packs = fakePacks(5, 40, 'ix');
  assert.deepEqual(decodeIndex(encodeIndex(packs)), packs);
  const s = sealIndex(KEYS, packs);
  assert.deepEqual(openIndex(KEYS, s.bytes, s.id), packs);
  throwsCode(() => openIndex(KEYS, s.bytes, Buffer.alloc(32)), 'Authentication');
  throwsCode(() => openIndex(OTHER_KEYS, s.bytes), 'WrongKey');
  assert.deepEqual(decodeIndex(encodeIndex([])), []);
});

test('a pack given with its entries encoded (what a writer keeps until the index is written) is encoded the same', () => {
  const packs = fakePacks(3, 25, 'enc');
  const encoded = packs.map((p) => ({ id: p.id, size: p.size, encodedEntries: encodeEntries(p.entries) }));
  assert.ok(encodeIndex(encoded).equals(encodeIndex(packs)));
  assert.ok(encodeIndex([packs[0]!, encoded[1]!, packs[2]!]).equals(encodeIndex(packs)), 'both forms in one object');
  assert.deepEqual(decodeIndex(encodeIndex(encoded)), packs);
  throwsCode(() => encodeIndex([{ ...encoded[0]!, encodedEntries: encoded[0]!.encodedEntries.subarray(1) }]), 'Invalid');
  throwsCode(() => encodeIndex([{ ...encoded[0]!, encodedEntries: Buffer.alloc(0) }]), 'Invalid');
});

test('a flipped byte anywhere in an index object fails with a typed error', () => {
  const s = sealIndex(KEYS, fakePacks(2, 5, 'flip'));
  for (let at = 0; at < s.bytes.length; at++) {
    throwsCode(() => openIndex(KEYS, flip(s.bytes, at)), ['Authentication', 'Corrupt', 'UnsupportedVersion'], `byte ${at}`);
    throwsCode(() => openIndex(KEYS, flip(s.bytes, at), s.id), 'Authentication', `byte ${at} with name check`);
  }
});

test('index plaintext is validated (a key-holding writer bug cannot crash a reader)', () => {
  const good = encodeIndex(fakePacks(1, 3, 'v'));
  throwsCode(() => decodeIndex(good.subarray(0, good.length - 1)), 'Corrupt');
  throwsCode(() => decodeIndex(Buffer.concat([good, Buffer.alloc(1)])), 'Corrupt');
  const gap = Buffer.from(good); gap.writeUInt32LE(gap.readUInt32LE(44 + 45 + 33) + 1, 44 + 45 + 33); // 2nd entry offset
  throwsCode(() => decodeIndex(gap), 'Corrupt');
  const type = Buffer.from(good); type[44] = 7;
  throwsCode(() => decodeIndex(type), 'Corrupt');
  const huge = Buffer.from(good); huge.writeUInt32LE(0xffffffff, 0);
  throwsCode(() => decodeIndex(huge), 'Corrupt');
  // the compact decode (what the agent loads its index from) refuses each of them too
  for (const bad of [good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.alloc(1)]), gap, type, huge]) throwsCode(() => decodeIndexCompact(bad), 'Corrupt');
  const short = Buffer.from(good); short.writeUInt32LE(ENVELOPE_OVERHEAD - 1, 44 + 2 * 45 + 37); // last entry shorter than an envelope
  throwsCode(() => decodeIndexCompact(short), 'Corrupt');
});

test('the compact index path (openIndexCompact, BlobIndex.fromEncoded) finds what the object path finds', () => {
  const objects = [fakePacks(40, 700, 'c1'), fakePacks(20, 900, 'c2')]; // 46,000 blobs: several sort ranges
  objects[1]!.push(objects[0]![3]!); // a pack listed by two index objects
  const sealed = objects.map((packs) => sealIndex(KEYS, packs));
  const compact = sealed.map((s) => openIndexCompact(KEYS, s.bytes, s.id));
  compact.forEach((l, k) => {
    assert.equal(l.length, objects[k]!.length);
    l.forEach((p, j) => {
      const o = objects[k]![j]!;
      assert.ok(p.id.equals(o.id));
      assert.equal(p.size, o.size);
      assert.ok(p.encodedEntries.equals(encodeEntries(o.entries)), 'the entries as stored');
    });
  });
  throwsCode(() => openIndexCompact(KEYS, sealed[0]!.bytes, Buffer.alloc(32)), 'Authentication');
  throwsCode(() => openIndexCompact(OTHER_KEYS, sealed[0]!.bytes), 'WrongKey');
  const fromCompact = BlobIndex.fromEncoded(compact);
  const fromObjects = BlobIndex.fromIndexes(sealed.map((s) => openIndex(KEYS, s.bytes, s.id)));
  assert.equal(fromCompact.size, 40 * 700 + 20 * 900);
  assert.equal(fromObjects.size, fromCompact.size);
  for (const packs of objects) {
    for (const p of packs) {
      for (const e of p.entries) {
        const loc = fromCompact.lookup(e.id);
        assert.ok(loc, 'every blob found');
        assert.ok(fromCompact.packId(loc.pack).equals(p.id), 'in its pack');
        assert.deepEqual({ offset: loc.offset, length: loc.length, rawLength: loc.rawLength }, { offset: e.offset, length: e.length, rawLength: e.rawLength });
        assert.deepEqual(fromObjects.lookup(e.id), loc);
      }
    }
  }
  const rng = detRng('absent-compact');
  for (let i = 0; i < 5000; i++) assert.equal(fromCompact.has(rng(32)), false);
});

test('onlyTreeEntries: a pack of tree blobs only; encodeEntries refuses an id that is not 32 bytes', () => {
  const [p] = fakePacks(1, 4, 'types');
  const trees = p!.entries.map((e) => ({ ...e, type: 'tree' as const }));
  assert.equal(onlyTreeEntries(encodeEntries(trees)), true);
  assert.equal(onlyTreeEntries(encodeEntries([...trees.slice(0, 3), { ...trees[3]!, type: 'data' }])), false);
  assert.equal(onlyTreeEntries(encodeEntries(p!.entries)), false);
  assert.equal(onlyTreeEntries(Buffer.alloc(0)), false);
  throwsCode(() => encodeEntries([{ ...p!.entries[0]!, id: Buffer.alloc(31) }]), 'Invalid');
});

test('BlobIndex: lookups agree with a Map through adds, merges and bulk loads', () => {
  const packs = fakePacks(300, 500, 'mem'); // 150,000 blobs
  const half = packs.slice(0, 150);
  const ix = BlobIndex.fromIndexes([half, half.slice(0, 10)]); // duplicates across index objects
  assert.equal(ix.size, 75_000);
  const truth = new Map<string, { pack: number; offset: number; length: number; rawLength: number }>();
  for (const [pn, p] of half.entries()) for (const e of p.entries) truth.set(e.id.toString('hex'), { pack: pn, offset: e.offset, length: e.length, rawLength: e.rawLength });
  for (const p of packs.slice(150)) {
    const pn = ix.addPack(p.id);
    for (const e of p.entries) {
      assert.equal(ix.add(e.id, pn, e.offset, e.length, e.rawLength), true);
      truth.set(e.id.toString('hex'), { pack: pn, offset: e.offset, length: e.length, rawLength: e.rawLength });
    }
  }
  assert.equal(ix.add(packs[0]!.entries[0]!.id, 0, 1, 2, 3), false, 'an existing id is not added again');
  assert.equal(ix.size, 150_000);
  for (const [hex, loc] of truth) assert.deepEqual(ix.lookup(Buffer.from(hex, 'hex')), loc);
  ix.flush();
  let probe = 0;
  for (const [hex, loc] of truth) if (probe++ % 7 === 0) assert.deepEqual(ix.lookup(Buffer.from(hex, 'hex')), loc);
  const rng = detRng('absent');
  for (let i = 0; i < 20_000; i++) assert.equal(ix.has(rng(32)), false);
  // a near miss: same first 8 bytes, different rest
  const id = Buffer.from(packs[3]!.entries[5]!.id);
  id[31] = id[31]! ^ 1;
  assert.equal(ix.lookup(id), undefined);
  assert.ok(ix.packId(0).equals(packs[0]!.id));
  assert.equal(ix.packCount, 300);
});

test('BlobIndex.sorted / fromSorted: the same lookups from the arrays alone; disorder, a duplicate and an unknown pack are refused', () => {
  const packs = fakePacks(40, 300, 'sorted');
  const ix = BlobIndex.fromIndexes([packs.slice(0, 30)]);
  for (const p of packs.slice(30)) { const pn = ix.addPack(p.id); for (const e of p.entries) ix.add(e.id, pn, e.offset, e.length, e.rawLength); }
  const { packIds, ids, vals } = ix.sorted(); // (the overflow merged first)
  const copy = BlobIndex.fromSorted(packIds, ids.slice(), vals.slice());
  assert.equal(copy.size, 12_000);
  for (const p of packs) for (const e of p.entries) assert.deepEqual(copy.lookup(e.id), ix.lookup(e.id));
  assert.ok(copy.packId(35).equals(packs[35]!.id));
  const swapped = ids.slice();
  swapped.copyWithin(8 * 100, 8 * 101, 8 * 102); // entry 100 now equals entry 101
  throwsCode(() => BlobIndex.fromSorted(packIds, swapped, vals), 'Corrupt');
  const sameFirstWord = ids.slice();
  sameFirstWord[8 * 101] = sameFirstWord[8 * 100]!; // first words equal, the rest decides
  if (sameFirstWord[8 * 101 + 1]! > sameFirstWord[8 * 100 + 1]!) BlobIndex.fromSorted(packIds, sameFirstWord, vals);
  sameFirstWord[8 * 101 + 1] = 0; sameFirstWord[8 * 100 + 1] = 1;
  throwsCode(() => BlobIndex.fromSorted(packIds, sameFirstWord, vals), 'Corrupt');
  const badPack = vals.slice();
  badPack[4 * 7] = packIds.length;
  throwsCode(() => BlobIndex.fromSorted(packIds, ids, badPack), 'Corrupt');
  throwsCode(() => BlobIndex.fromSorted(packIds, ids, vals.subarray(4)), 'Corrupt');
});

test(`BlobIndex memory: ${INDEX_BYTES_PER_BLOB} bytes per blob`, () => {
  const n = 1_000_000;
  const ids = streamBytes(32 * n, 0x61);
  const packIds = streamBytes(32 * (n / 1000), 0x62);
  const entries: PackEntry[] = [];
  for (let i = 0; i < n; i++) entries.push({ type: 'data', id: ids.subarray(32 * i, 32 * i + 32), offset: 0, length: 0, rawLength: 0 });
  const packs: IndexedPack[] = [];
  for (let p = 0; p < n / 1000; p++) packs.push({ id: packIds.subarray(32 * p, 32 * p + 32), size: 0, entries: entries.slice(p * 1000, p * 1000 + 1000) });
  // as openRepo loads it: the entries as their 45-byte records (decodeIndexCompact), no object per blob
  const encoded = packs.map((p) => ({ id: p.id, size: p.size, encodedEntries: encodeEntries(p.entries) }));
  let t = performance.now();
  const ix = BlobIndex.fromEncoded([encoded]);
  const loadMs = performance.now() - t;
  assert.equal(ix.size, n);
  const loaded = ix.memoryBytes();
  assert.equal(loaded, n * INDEX_BYTES_PER_BLOB);
  t = performance.now();
  for (let i = 0; i < n; i += 3) assert.ok(ix.has(ids.subarray(32 * i, 32 * i + 32)));
  const lookupNs = ((performance.now() - t) * 1e6) / (n / 3);
  t = performance.now();
  const fresh = streamBytes(32 * 100_000, 0x63);
  for (let i = 0; i < 100_000; i++) ix.add(fresh.subarray(32 * i, 32 * i + 32), 0, 0, 0, 0);
  ix.flush();
  const addMs = performance.now() - t;
  assert.equal(ix.memoryBytes(), ix.size * INDEX_BYTES_PER_BLOB, 'after a merge: exact arrays again');
  const tenM = 10_000_000 * INDEX_BYTES_PER_BLOB;
  console.log(`# in-memory index: ${loaded / n} bytes/blob (typed arrays, no per-entry objects),`
    + ` 10 million blobs = ${(tenM / 1e6).toFixed(0)} MB (${(tenM / 2 ** 20).toFixed(0)} MiB) + ~80 B per pack;`
    + ` load 1M ${loadMs.toFixed(0)} ms, random lookup ${lookupNs.toFixed(0)} ns, 100k adds + merge ${addMs.toFixed(0)} ms`);
  assert.ok(INDEX_BYTES_PER_BLOB <= 48);
});
