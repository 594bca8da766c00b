// The agent's in-memory index: blob id -> (pack number, offset, length, plaintext length).
//
// Memory is the constraint (a large repository has tens of millions of blobs), so there are no
// per-entry JS objects. Entries live in two typed arrays, sorted by id:
//   ids  Uint32Array, 8 words per entry (the full 32-byte id, so a match is a match: no
//        truncated-id false positive can ever make a backup skip storing a new chunk)
//   vals Uint32Array, 4 words per entry (pack number, offset, length, raw length)
// = 48 bytes per blob, no empty slots, no pointers. Blob ids are HMAC outputs, uniformly
// distributed, so a lookup interpolates on the first word and lands within a few probes.
// Blobs added during a run go to a small unsorted overflow with an open-addressing table
// (56 bytes per entry + table), merged into the sorted arrays when it reaches 1/8 of them.
import { FormatError } from './errors.ts';
import { toHex } from './common.ts';
import type { EncodedIndexedPack, IndexedPack } from './indexfile.ts';
import { encodeEntries, PACK_ENTRY_BYTES } from './pack.ts';

export interface BlobLocation {
  pack: number;
  offset: number;
  length: number;
  rawLength: number;
}

const W = 8; // id words per entry
const V = 4; // value words per entry
const MIN_OVERFLOW = 65536;

function readWords(id: Uint8Array, out: Uint32Array): void {
  if (id.length !== 32) throw new FormatError('Invalid', 'blob id must be 32 bytes');
  for (let w = 0, p = 0; w < W; w++, p += 4) out[w] = (id[p]! | id[p + 1]! << 8 | id[p + 2]! << 16 | id[p + 3]! << 24) >>> 0;
}

/** Compares entry i of `a` with entry j of `b` (word by word, unsigned). */
function cmp(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  let x = i * W, y = j * W;
  for (let w = 0; w < W; w++, x++, y++) {
    const p = a[x]!, q = b[y]!;
    if (p !== q) return p < q ? -1 : 1;
  }
  return 0;
}

function swap(ids: Uint32Array, vals: Uint32Array, i: number, j: number): void {
  let x = i * W, y = j * W;
  for (let w = 0; w < W; w++, x++, y++) { const t = ids[x]!; ids[x] = ids[y]!; ids[y] = t; }
  x = i * V; y = j * V;
  for (let w = 0; w < V; w++, x++, y++) { const t = vals[x]!; vals[x] = vals[y]!; vals[y] = t; }
}

/** In-place quicksort of entries lo..hi (inclusive); insertion sort for short ranges. */
function quicksort(ids: Uint32Array, vals: Uint32Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const mid = (lo + hi) >>> 1;
    // median of three to `hi`
    if (cmp(ids, mid, ids, lo) < 0) swap(ids, vals, mid, lo);
    if (cmp(ids, hi, ids, lo) < 0) swap(ids, vals, hi, lo);
    if (cmp(ids, mid, ids, hi) < 0) swap(ids, vals, mid, hi);
    let i = lo - 1;
    for (let j = lo; j < hi; j++) if (cmp(ids, j, ids, hi) < 0) swap(ids, vals, ++i, j);
    swap(ids, vals, ++i, hi);
    // recurse into the smaller side: O(log n) stack
    if (i - lo < hi - i) { quicksort(ids, vals, lo, i - 1); lo = i + 1; } else { quicksort(ids, vals, i + 1, hi); hi = i - 1; }
  }
  for (let i = lo + 1; i <= hi; i++) for (let j = i; j > lo && cmp(ids, j, ids, j - 1) < 0; j--) swap(ids, vals, j, j - 1);
}

/**
 * Sorts n entries in place in O(n) for uniformly random ids: an in-place radix pass (American
 * flag sort, ~16 entries per bucket) on the bits of the first word below the top `known` bits
 * (which the caller says every entry shares), then each bucket alone. Transient memory: one
 * counter array of ~n/4 bytes. Its swaps wait on memory one at a time: fast while the entries fit
 * in the CPU's caches, slow beyond (fromEncoded sorts millions of entries a cache-sized range at a time).
 */
function sortEntries(ids: Uint32Array, vals: Uint32Array, n: number, known = 0): void {
  if (n < 2) return;
  const bits = Math.max(1, Math.min(24, 32 - known, Math.ceil(Math.log2(n / 16))));
  const shift = 32 - known - bits;
  const mask = (1 << bits) - 1;
  const nb = 1 << bits;
  const next = new Uint32Array(nb + 1);
  for (let i = 0; i < n; i++) next[((ids[i * W]! >>> shift) & mask) + 1]!++;
  for (let b = 0; b < nb; b++) next[b + 1]! += next[b]!;
  const end = next.slice(1);
  for (let b = 0; b < nb; b++) {
    while (next[b]! < end[b]!) {
      const i = next[b]!;
      const d = (ids[i * W]! >>> shift) & mask;
      if (d === b) next[b]!++;
      else swap(ids, vals, i, next[d]!++);
    }
  }
  let start = 0;
  for (let b = 0; b < nb; b++) {
    const stop = end[b]!;
    if (stop - start > 1) quicksort(ids, vals, start, stop - 1);
    start = stop;
  }
}

/** entries per range that fromEncoded sorts at once: ~1 MiB of them, within the CPU's caches */
const SORT_RANGE_ENTRIES = (1 << 20) / ((W + V) * 4);

export class BlobIndex {
  private ids = new Uint32Array(0);
  private vals = new Uint32Array(0);
  private n = 0;
  // overflow: unsorted, with a linear-probing table of (entry index + 1), keyed by word 0
  private oIds = new Uint32Array(0);
  private oVals = new Uint32Array(0);
  private m = 0;
  private table = new Int32Array(0);
  private readonly packIds: Buffer[] = [];
  private readonly packNumbers = new Map<string, number>();
  private readonly key = new Uint32Array(W);

  /** Builds the index from decoded index objects in one pass: exact-size arrays, sorted once. */
  static fromIndexes(lists: Iterable<readonly IndexedPack[]>): BlobIndex {
    return BlobIndex.fromEncoded([...lists].map((packs) => packs.map((p) => ({ id: p.id, size: p.size, encodedEntries: encodeEntries(p.entries) }))));
  }

  /**
   * Builds the index from index objects as decodeIndexCompact gives them (entries as their 45-byte
   * records, validated): no object per blob on the way, exact-size arrays, sorted once.
   */
  static fromEncoded(lists: Iterable<readonly EncodedIndexedPack[]>): BlobIndex {
    const ix = new BlobIndex();
    const all: (readonly EncodedIndexedPack[])[] = [...lists];
    let total = 0;
    for (const packs of all) for (const p of packs) total += p.encodedEntries.length / PACK_ENTRY_BYTES;
    const ids = new Uint32Array(total * W);
    const vals = new Uint32Array(total * V);
    // A record: type (1) | id (32) | offset, length, raw length (u32le each); an id's words are
    // read as readWords makes them. Each entry is copied into its range by the top bits of its
    // first word (ranges of ~1 MiB, counted first; the copies are a few hundred sequential
    // streams), then each range is sorted alone, in the CPU's caches. One sort of all the
    // entries in place took 6 of the 7 s that loading 10 million blobs took (bench/index.ts).
    const rangeBits = Math.max(0, Math.min(16, Math.ceil(Math.log2(total / SORT_RANGE_ENTRIES))));
    const shift = 32 - rangeBits;
    const first = (b: Buffer, at: number) => (rangeBits === 0 ? 0 : b.readUInt32LE(at + 1) >>> shift);
    const next = new Uint32Array((1 << rangeBits) + 1);
    for (const packs of all) {
      for (const p of packs) {
        const b = p.encodedEntries;
        for (let at = 0; at < b.length; at += PACK_ENTRY_BYTES) next[first(b, at) + 1]!++;
      }
    }
    for (let r = 0; r + 1 < next.length; r++) next[r + 1]! += next[r]!;
    const ends = next.slice(1);
    for (const packs of all) {
      for (const p of packs) {
        const pn = ix.addPack(p.id);
        const b = p.encodedEntries;
        for (let at = 0; at < b.length; at += PACK_ENTRY_BYTES) {
          const i = next[first(b, at)]!++;
          const x = i * W, y = i * V;
          for (let w = 0; w < W; w++) ids[x + w] = b.readUInt32LE(at + 1 + 4 * w);
          vals[y] = pn; vals[y + 1] = b.readUInt32LE(at + 33); vals[y + 2] = b.readUInt32LE(at + 37); vals[y + 3] = b.readUInt32LE(at + 41);
        }
      }
    }
    for (let r = 0, start = 0; r < ends.length; start = ends[r++]!) {
      const stop = ends[r]!;
      sortEntries(ids.subarray(start * W, stop * W), vals.subarray(start * V, stop * V), stop - start, rangeBits);
    }
    const k = total;
    // A blob stored twice (concurrent or resumed backups) keeps one location.
    let out = 0;
    for (let i = 0; i < k; i++) {
      if (out > 0 && cmp(ids, i, ids, out - 1) === 0) continue;
      if (out !== i) { ids.copyWithin(out * W, i * W, i * W + W); vals.copyWithin(out * V, i * V, i * V + V); }
      out++;
    }
    ix.ids = out === k ? ids : ids.slice(0, out * W);
    ix.vals = out === k ? vals : vals.slice(0, out * V);
    ix.n = out;
    return ix;
  }

  /**
   * Every entry, sorted by id (the overflow merged first), and the pack table its pack numbers
   * index: what a local copy of the index needs (the agent's index cache). Views, not copies.
   */
  sorted(): { packIds: readonly Buffer[]; ids: Uint32Array<ArrayBuffer>; vals: Uint32Array<ArrayBuffer> } {
    this.flush();
    return { packIds: this.packIds, ids: this.ids.subarray(0, this.n * W), vals: this.vals.subarray(0, this.n * V) };
  }

  /**
   * The index sorted() gave (the arrays are used as they are, not copied). Throws Corrupt unless
   * the ids are strictly increasing and every pack number is in the table: a lookup then finds
   * exactly what was stored.
   */
  static fromSorted(packIds: readonly Uint8Array[], ids: Uint32Array<ArrayBuffer>, vals: Uint32Array<ArrayBuffer>): BlobIndex {
    const n = ids.length / W;
    if (!Number.isInteger(n) || vals.length !== n * V) throw new FormatError('Corrupt', 'index: entry arrays of different lengths');
    // (the first words decide nearly always: the whole ids are compared only when those are equal)
    for (let i = 1; i < n; i++) if (ids[(i - 1) * W]! >= ids[i * W]! && (ids[(i - 1) * W]! > ids[i * W]! || cmp(ids, i - 1, ids, i) >= 0)) throw new FormatError('Corrupt', 'index: entries not in order');
    for (let i = 0; i < n; i++) if (vals[i * V]! >= packIds.length) throw new FormatError('Corrupt', `index: unknown pack number ${vals[i * V]}`);
    const ix = new BlobIndex();
    for (const id of packIds) ix.addPack(id);
    if (ix.packIds.length !== packIds.length) throw new FormatError('Corrupt', 'index: a pack listed twice');
    ix.ids = ids; ix.vals = vals; ix.n = n;
    return ix;
  }

  /** Number of a pack id (assigned on first sight). */
  addPack(id: Uint8Array): number {
    if (id.length !== 32) throw new FormatError('Invalid', 'pack id must be 32 bytes');
    const hex = toHex(id);
    let n = this.packNumbers.get(hex);
    if (n === undefined) {
      n = this.packIds.length;
      if (n > 0xfffffffe) throw new FormatError('TooLarge', 'too many packs');
      this.packIds.push(Buffer.from(id));
      this.packNumbers.set(hex, n);
    }
    return n;
  }

  packId(n: number): Buffer {
    const id = this.packIds[n];
    if (id === undefined) throw new FormatError('Invalid', `no pack number ${n}`);
    return id;
  }

  /** Number of a pack id already known, else undefined. */
  packNumber(id: Uint8Array): number | undefined { return this.packNumbers.get(toHex(id)); }

  get packCount(): number { return this.packIds.length; }
  get size(): number { return this.n + this.m; }

  /** Adds a blob location; false (and no change) if the id is already indexed. */
  add(id: Uint8Array, pack: number, offset: number, length: number, rawLength: number): boolean {
    if (pack >= this.packIds.length) throw new FormatError('Invalid', `unknown pack number ${pack}`);
    const key = this.key;
    readWords(id, key);
    if (this.findMain(key) >= 0 || this.findOverflow(key) >= 0) return false;
    if (this.m * W === this.oIds.length) this.growOverflow();
    const i = this.m++;
    this.oIds.set(key, i * W);
    this.oVals[i * V] = pack; this.oVals[i * V + 1] = offset; this.oVals[i * V + 2] = length; this.oVals[i * V + 3] = rawLength;
    this.tableInsert(i);
    if (this.m >= Math.max(MIN_OVERFLOW, this.n >>> 3)) this.flush();
    return true;
  }

  /** Adds every entry of a pack (e.g. one just uploaded); returns how many were new. */
  addPackEntries(pack: Pick<IndexedPack, 'id' | 'entries'>): number {
    const pn = this.addPack(pack.id);
    let added = 0;
    for (const e of pack.entries) if (this.add(e.id, pn, e.offset, e.length, e.rawLength)) added++;
    return added;
  }

  has(id: Uint8Array): boolean {
    readWords(id, this.key);
    return this.findMain(this.key) >= 0 || this.findOverflow(this.key) >= 0;
  }

  lookup(id: Uint8Array): BlobLocation | undefined {
    readWords(id, this.key);
    let i = this.findMain(this.key);
    let v = this.vals;
    if (i < 0) { i = this.findOverflow(this.key); v = this.oVals; }
    if (i < 0) return undefined;
    const at = i * V;
    return { pack: v[at]!, offset: v[at + 1]!, length: v[at + 2]!, rawLength: v[at + 3]! };
  }

  /** Bytes held by the typed arrays (the index proper; pack ids add 32 bytes + a map entry per pack). */
  memoryBytes(): number {
    return this.ids.byteLength + this.vals.byteLength + this.oIds.byteLength + this.oVals.byteLength + this.table.byteLength;
  }

  /** Merges the overflow into the sorted arrays (exact size). Transient: old + new arrays. */
  flush(): void {
    const m = this.m;
    if (m === 0) return;
    const n = this.n;
    const oIds = this.oIds, oVals = this.oVals;
    sortEntries(oIds, oVals, m);
    const a = this.ids, av = this.vals;
    const ids = new Uint32Array((n + m) * W);
    const vals = new Uint32Array((n + m) * V);
    // Linear merge of two sorted runs (ids are unique across them: add() checked).
    let i = 0, j = 0, k = 0;
    while (i < n || j < m) {
      const fromA = j >= m || (i < n && cmp(a, i, oIds, j) < 0);
      const src = fromA ? a : oIds, srcV = fromA ? av : oVals, at = fromA ? i++ : j++;
      for (let w = 0, x = at * W, y = k * W; w < W; w++) ids[y++] = src[x++]!;
      for (let w = 0, x = at * V, y = k * V; w < V; w++) vals[y++] = srcV[x++]!;
      k++;
    }
    this.ids = ids; this.vals = vals; this.n = n + m;
    this.oIds = new Uint32Array(0); this.oVals = new Uint32Array(0); this.table = new Int32Array(0); this.m = 0;
  }

  private findMain(key: Uint32Array): number {
    const ids = this.ids;
    let lo = 0, hi = this.n - 1;
    const k0 = key[0]!;
    let probes = 0;
    while (lo <= hi) {
      const a = ids[lo * W]!, b = ids[hi * W]!;
      if (k0 < a || k0 > b) return -1;
      // Interpolate while the ids look uniform (they are HMAC outputs); bisect if that stalls.
      const mid = probes++ < 8 && b > a ? lo + Math.floor((k0 - a) / (b - a) * (hi - lo)) : (lo + hi) >>> 1;
      const c = cmp(key, 0, ids, mid);
      if (c === 0) return mid;
      if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
  }

  private findOverflow(key: Uint32Array): number {
    const t = this.table;
    if (t.length === 0) return -1;
    const mask = t.length - 1;
    for (let s = key[0]! & mask; ; s = (s + 1) & mask) {
      const e = t[s]!;
      if (e === 0) return -1;
      if (cmp(key, 0, this.oIds, e - 1) === 0) return e - 1;
    }
  }

  private tableInsert(i: number): void {
    const t = this.table;
    const mask = t.length - 1;
    let s = this.oIds[i * W]! & mask;
    while (t[s] !== 0) s = (s + 1) & mask;
    t[s] = i + 1;
  }

  private growOverflow(): void {
    const cap = Math.max(4096, (this.oIds.length / W) * 2);
    const ids = new Uint32Array(cap * W); ids.set(this.oIds);
    const vals = new Uint32Array(cap * V); vals.set(this.oVals);
    this.oIds = ids; this.oVals = vals;
    this.table = new Int32Array(cap * 2); // load factor <= 1/2
    for (let i = 0; i < this.m; i++) this.tableInsert(i);
  }
}

/** Bytes per blob of the sorted index (what a loaded repository costs). */
export const INDEX_BYTES_PER_BLOB = (W + V) * 4;
