// The reused zstd contexts (zstd.ts) must make exactly the frames Node's one-shot calls make, and
// a bad frame must neither pass nor spoil the context for the next one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { compressFrame, decompressFrame, isWholeFrameOf } from '../src/zstd.ts';

const text = (n: number, seed = 0) => Buffer.from(Array.from({ length: Math.ceil(n / 40) }, (_, i) => `line ${i * 7 + seed} of some source text;\n`).join('')).subarray(0, n);
const oneShot = (b: Buffer, level: number) => zstdCompressSync(b, { params: { [zc.ZSTD_c_compressionLevel]: level }, pledgedSrcSize: b.length });

test('compressFrame: the same bytes as a one-shot zstdCompressSync, call after call, at each level', () => {
  const inputs = [text(1), text(100), text(5000, 1), randomBytes(3000), text(300_000, 2), Buffer.concat([randomBytes(600_000), text(424_576, 3)]), text(20_000, 4)];
  for (const level of [1, 3, 9]) {
    for (const b of [...inputs, ...inputs.toReversed()]) {
      const frame = compressFrame(b, level);
      assert.ok(frame.equals(oneShot(b, level)), `level ${level}, ${b.length} bytes`);
      assert.ok(zstdDecompressSync(frame).equals(b));
    }
  }
});

test('compressFrame transient: the same frames, in one reused buffer (a view valid until the next call); sizes past it get their own', () => {
  const a = text(200_000, 5), b = text(300_000, 6), huge = Buffer.concat([text(3_000_000, 7), randomBytes(2_000_000)]);
  const fa = compressFrame(a, 3, { transient: true });
  assert.ok(fa.equals(oneShot(a, 3)));
  const copy = Buffer.from(fa);
  const fb = compressFrame(b, 3, { transient: true });
  assert.ok(fb.equals(oneShot(b, 3)));
  assert.equal(fa.buffer, fb.buffer, 'the same buffer, reused');
  assert.ok(!fa.equals(copy), 'the first view was overwritten by the second frame');
  const fh = compressFrame(huge, 3, { transient: true });
  assert.ok(zstdDecompressSync(fh).equals(huge));
  assert.notEqual(fh.buffer, fb.buffer, 'a frame larger than the kept buffer gets its own');
  assert.ok(compressFrame(a, 3).buffer !== fb.buffer, 'not transient: never the shared buffer');
});

test('decompressFrame: round trips; a frame of another length or a damaged frame throws, and the next frame still opens', () => {
  const a = text(70_000, 5), b = randomBytes(1000);
  const fa = compressFrame(a, 3), fb = compressFrame(b, 3);
  assert.ok(decompressFrame(fa, a.length).equals(a));
  assert.ok(decompressFrame(fb, b.length).equals(b));
  assert.throws(() => decompressFrame(fa, a.length - 1), /more than/);
  assert.ok(decompressFrame(fb, b.length).equals(b), 'after a frame longer than declared');
  assert.throws(() => decompressFrame(fa, a.length + 1), /fewer than/);
  assert.ok(decompressFrame(fa, a.length).equals(a), 'after a frame shorter than declared');
  const bad = Buffer.from(fa);
  bad[4]! ^= 0xff; // the frame header
  assert.throws(() => decompressFrame(bad, a.length));
  assert.throws(() => decompressFrame(fa.subarray(0, fa.length >> 1), a.length));
  assert.throws(() => decompressFrame(Buffer.from('not a zstd frame at all'), 10));
  assert.ok(decompressFrame(fa, a.length).equals(a), 'after damaged frames');
  assert.ok(decompressFrame(Buffer.concat([fb]), b.length).equals(b));
  assert.throws(() => decompressFrame(Buffer.concat([fb, fb]), b.length), /after the end of the frame/, 'two frames');
  assert.ok(decompressFrame(fb, b.length).equals(b));
});

test('decompressFrame into caller memory: the plaintext is written there, in place; a frame holding more is still refused', () => {
  const a = text(70_000, 8), b = text(5_000, 9);
  const fa = compressFrame(a, 3), fb = compressFrame(b, 3);
  const arena = Buffer.alloc(a.length + b.length + 1, 0xee);
  const pa = decompressFrame(fa, a.length, arena);
  const pb = decompressFrame(fb, b.length, arena.subarray(a.length));
  assert.equal(pa.buffer, arena.buffer);
  assert.equal(pb.byteOffset, arena.byteOffset + a.length, 'written where it was asked');
  assert.ok(pa.equals(a) && pb.equals(b));
  assert.ok(arena.subarray(0, a.length + b.length).equals(Buffer.concat([a, b])), 'end to end in the arena');
  assert.throws(() => decompressFrame(fa, a.length - 1, arena), /more than/);
  assert.throws(() => decompressFrame(fa, a.length + 1, Buffer.alloc(a.length + 2)), /fewer than/);
  // too small a space (fewer than declared + 1 bytes): a buffer of its own
  const own = decompressFrame(fb, b.length, Buffer.alloc(b.length));
  assert.ok(own.equals(b));
});

test('isWholeFrameOf: exactly one frame declaring that content size, read from its headers', () => {
  const inputs = [text(1), text(100), text(16_384, 1), randomBytes(5000), text(300_000, 2), Buffer.alloc(200_000), Buffer.concat([randomBytes(600_000), text(424_576, 3)])];
  for (const b of inputs) {
    const f = compressFrame(b, 3);
    assert.ok(isWholeFrameOf(f, b.length), `${b.length} bytes`);
    assert.ok(!isWholeFrameOf(f, b.length + 1) && !isWholeFrameOf(f, b.length - 1), 'another declared size');
    assert.ok(!isWholeFrameOf(f.subarray(0, f.length - 1), b.length), 'truncated');
    assert.ok(!isWholeFrameOf(Buffer.concat([f, Buffer.from([0])]), b.length), 'a byte after it');
    assert.ok(!isWholeFrameOf(Buffer.concat([f, f]), b.length), 'two frames');
  }
  // a frame with a checksum: its 4 bytes are part of it
  const b = text(50_000, 4);
  const withSum = zstdCompressSync(b, { params: { [zc.ZSTD_c_checksumFlag]: 1 }, pledgedSrcSize: b.length });
  assert.ok(isWholeFrameOf(withSum, b.length));
  assert.ok(!isWholeFrameOf(withSum.subarray(0, withSum.length - 4), b.length), 'checksum cut off');
  // no content size in the header (a stream of unknown length): not known to be whole
  const noSize = zstdCompressSync(b, { params: { [zc.ZSTD_c_contentSizeFlag]: 0 } });
  assert.ok(zstdDecompressSync(noSize).equals(b));
  assert.ok(!isWholeFrameOf(noSize, b.length));
  assert.ok(!isWholeFrameOf(Buffer.from('not a zstd frame at all'), 10));
  assert.ok(!isWholeFrameOf(Buffer.alloc(0), 0));
});

test('decompressFrame: frame after frame on one context (no reset between whole frames), and after every kind of failure', () => {
  const plain = Array.from({ length: 40 }, (_, i) => (i % 5 === 0 ? randomBytes(2000 + i) : text(500 + i * 997, i)));
  const frames = plain.map((p) => compressFrame(p, 3));
  const b = text(50_000, 4);
  const checked = zstdCompressSync(b, { params: { [zc.ZSTD_c_checksumFlag]: 1 }, pledgedSrcSize: b.length });
  const noSize = zstdCompressSync(b, { params: { [zc.ZSTD_c_contentSizeFlag]: 0 } });
  const failures: Array<() => unknown> = [
    () => decompressFrame(frames[3]!, plain[3]!.length - 1), // holds more (decoded whole, then refused)
    () => decompressFrame(frames[3]!, plain[3]!.length - 2), // holds more than the space given: stopped mid-frame
    () => decompressFrame(frames[3]!.subarray(0, frames[3]!.length - 7), plain[3]!.length), // cut short
    () => decompressFrame(Buffer.concat([frames[1]!, frames[2]!]), plain[1]!.length), // a second frame after it
    () => decompressFrame(frames[3]!, plain[3]!.length + 1), // holds fewer
  ];
  // a frame whose last block is not marked last (as if cut between blocks): every declared byte
  // comes out, but the frame never ends (Node reports it; isWholeFrameOf would not call it whole)
  const open = Buffer.from(noSize);
  assert.equal(open[4]! & 0xe3, 0, 'no content size, no dictionary: a 6-byte header');
  let at = 6;
  for (;;) {
    const h = open[at]! | (open[at + 1]! << 8) | (open[at + 2]! << 16);
    if (h & 1) { open[at] = open[at]! & 0xfe; at += 3 + (((h >> 1) & 3) === 1 ? 1 : h >>> 3); break; }
    at += 3 + (((h >> 1) & 3) === 1 ? 1 : h >>> 3);
  }
  assert.equal(at, open.length);
  assert.ok(!isWholeFrameOf(open, b.length));
  failures.push(() => decompressFrame(open, b.length));
  for (let round = 0; round < 3; round++) {
    plain.forEach((p, i) => {
      assert.ok(decompressFrame(frames[i]!, p.length).equals(p), `round ${round}, frame ${i}`);
      if (i % 7 === 3) assert.throws(failures[(i + round) % failures.length]!);
      if (i % 11 === 5) {
        // frames not known to be whole (checksum: whole; no content size: not) decode, and so does the next one
        assert.ok(decompressFrame(checked, b.length).equals(b));
        assert.ok(decompressFrame(noSize, b.length).equals(b));
      }
    });
  }
});
