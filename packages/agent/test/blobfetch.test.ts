// groupRanges (blobfetch.ts): blobs of a pack fetched together by one ranged GET while the bytes
// between them are at most 64 KiB, and at most maxPlaintext of plaintext per range. Gaps are kept
// small: in a restore, whose batches' blobs interleave in the packs, a wide gap is another batch's
// blobs, fetched twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PackEntry } from '@shelter/format';
import { groupRanges } from '../src/blobfetch.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const entry = (offset: number, length: number, rawLength = length): PackEntry => ({ type: 'data', id: Buffer.alloc(32, offset % 251), offset, length, rawLength });
const spans = (ranges: ReturnType<typeof groupRanges>) => ranges.map((r) => [r.pack, r.start, r.end, r.entries.map((e) => e.offset)]);

test('groupRanges: entries sorted, gaps up to 64 KiB fetched along, wider ones split the range', () => {
  // offsets given out of order; gaps of 16 KiB, 100 KiB and 3 MiB between them
  const a = entry(0, 10 * KiB), b = entry(26 * KiB, 10 * KiB), c = entry(136 * KiB, 10 * KiB), d = entry(146 * KiB + 3 * MiB, 10 * KiB);
  // the 100 KiB and 3 MiB gaps are not fetched
  assert.deepEqual(spans(groupRanges(new Map([[7, [c, a, d, b]]]))), [
    [7, 0, b.offset + b.length - 1, [a.offset, b.offset]],
    [7, c.offset, c.offset + c.length - 1, [c.offset]],
    [7, d.offset, d.offset + d.length - 1, [d.offset]],
  ]);
  // a gap of exactly 64 KiB is fetched along, one byte more is not
  const e = entry(10 * KiB + 64 * KiB, 10 * KiB), f = entry(20 * KiB + 128 * KiB + 1, 10 * KiB);
  assert.deepEqual(spans(groupRanges(new Map([[1, [f, e, a]]]))), [[1, 0, e.offset + e.length - 1, [a.offset, e.offset]], [1, f.offset, f.offset + f.length - 1, [f.offset]]]);
  // adjacent blobs share a range
  const g = entry(10 * KiB, 16 * KiB);
  assert.deepEqual(spans(groupRanges(new Map([[1, [a, g, b]]]))), [[1, 0, b.offset + b.length - 1, [a.offset, g.offset, b.offset]]]);
});

test('groupRanges: at most maxPlaintext of plaintext a range, packs apart', () => {
  // 6 blobs of 3 MiB plaintext (1 MiB stored) back to back: 8 MiB allows two per range
  const blobs = Array.from({ length: 6 }, (_, i) => entry(i * MiB, MiB, 3 * MiB));
  const ranges = groupRanges(new Map([[1, blobs.slice(0, 4)], [2, blobs.slice(4)]]), 8 * MiB);
  assert.deepEqual(ranges.map((r) => [r.pack, r.entries.length, r.entries.reduce((n, x) => n + x.rawLength, 0)]), [[1, 2, 6 * MiB], [1, 2, 6 * MiB], [2, 2, 6 * MiB]]);
});
