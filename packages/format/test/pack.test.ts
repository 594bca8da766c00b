import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, OTHER_KEYS, detRng, flip, streamBytes, throwsCode } from './helpers.ts';
import { sealBlob } from '../src/envelope.ts';
import { PackWriter, readPackHeader, extractBlob, verifyPackId, PACK_ENTRY_BYTES, type FinishedPack } from '../src/pack.ts';
import { FormatError } from '../src/errors.ts';
import { sha256 } from '../src/common.ts';

function makePack(n: number, size = 3000, target?: number): { pack: FinishedPack; plains: Buffer[] } {
  const rng = detRng(`pack ${n} ${size}`);
  const w = new PackWriter(KEYS, target ? { targetSize: target } : {});
  const plains: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const p = i % 3 === 0 ? Buffer.from(`text blob ${i} `.repeat(size / 12)) : rng(size + i);
    plains.push(p);
    const s = sealBlob(KEYS, p);
    w.add(i === n - 1 ? 'tree' : 'data', s.id, s.sealed, s.rawLength);
  }
  return { pack: w.finish(), plains };
}

test('write a pack, read its header from the tail, extract every blob', () => {
  const { pack, plains } = makePack(50);
  assert.ok(pack.id.equals(sha256(pack.bytes)));
  assert.ok(verifyPackId(pack.bytes, pack.id));
  const entries = readPackHeader(KEYS, pack.bytes, pack.bytes.length);
  assert.deepEqual(entries, pack.entries);
  assert.equal(entries.at(-1)!.type, 'tree');
  for (const [i, e] of entries.entries()) {
    assert.ok(extractBlob(KEYS, pack.bytes, e).equals(plains[i]!));
    // a ranged read of just this blob works the same
    const range = pack.bytes.subarray(e.offset, e.offset + e.length);
    assert.ok(extractBlob(KEYS, range, e, e.offset).equals(plains[i]!));
  }
});

test('tail reads: too short a tail asks for exactly the bytes needed', () => {
  const { pack } = makePack(200);
  const size = pack.bytes.length;
  const e = throwsCode(() => readPackHeader(KEYS, pack.bytes.subarray(size - 100), size), 'NeedMoreBytes');
  const need = e.needed!;
  assert.equal(need, 4 + pack.bytes.readUInt32LE(size - 4));
  assert.ok(need <= 4 + 16 + 33 + 200 * PACK_ENTRY_BYTES);
  assert.deepEqual(readPackHeader(KEYS, pack.bytes.subarray(size - need), size), pack.entries);
  throwsCode(() => readPackHeader(KEYS, pack.bytes.subarray(size - 2), size), 'NeedMoreBytes');
});

test('writer: target size, reuse after finish, refuses an empty pack', () => {
  const w = new PackWriter(KEYS, { targetSize: 10_000 });
  throwsCode(() => w.finish(), 'Invalid');
  let packs = 0;
  for (let i = 0; i < 30; i++) {
    const s = sealBlob(KEYS, streamBytes(1000 + i, i));
    w.add('data', s.id, s.sealed, s.rawLength);
    if (w.full) { const p = w.finish(); packs++; assert.ok(p.bytes.length >= 10_000 && p.entries.length === 10); assert.equal(w.count, 0); }
  }
  assert.equal(packs, 3);
});

test('a flipped byte anywhere in a pack header fails with a typed error, never a crash', () => {
  const { pack } = makePack(20, 500);
  const size = pack.bytes.length;
  const headerStart = pack.entries.at(-1)!.offset + pack.entries.at(-1)!.length;
  for (let at = headerStart; at < size; at++) {
    throwsCode(() => readPackHeader(KEYS, flip(pack.bytes, at), size), ['Authentication', 'Corrupt', 'UnsupportedVersion', 'NeedMoreBytes'], `byte ${at}`);
    throwsCode(() => readPackHeader(KEYS, flip(pack.bytes, at, 0x80), size), ['Authentication', 'Corrupt', 'UnsupportedVersion', 'NeedMoreBytes'], `byte ${at}`);
  }
  // truncated or padded packs
  throwsCode(() => readPackHeader(KEYS, pack.bytes.subarray(0, size - 1), size - 1), ['Authentication', 'Corrupt', 'NeedMoreBytes']);
  throwsCode(() => readPackHeader(KEYS, Buffer.concat([pack.bytes, Buffer.alloc(3)]), size + 3), ['Authentication', 'Corrupt', 'NeedMoreBytes']);
  throwsCode(() => readPackHeader(KEYS, Buffer.alloc(10), 10), 'Corrupt');
  throwsCode(() => readPackHeader(KEYS, Buffer.alloc(100), 100), 'Corrupt');
});

test('a flipped byte in the blob section: the header still reads, that blob fails, the others read', () => {
  const { pack, plains } = makePack(10, 400);
  const entries = readPackHeader(KEYS, pack.bytes, pack.bytes.length);
  for (let at = 0; at < entries.at(-1)!.offset + entries.at(-1)!.length; at += 7) {
    const bad = flip(pack.bytes, at);
    assert.equal(verifyPackId(bad, pack.id), false, 'the pack id catches it without the key');
    for (const [i, e] of entries.entries()) {
      const inside = at >= e.offset && at < e.offset + e.length;
      if (inside) throwsCode(() => extractBlob(KEYS, bad, e), ['Authentication', 'Corrupt', 'UnsupportedVersion'], `byte ${at}`);
      else if (i % 4 === 0) assert.ok(extractBlob(KEYS, bad, e).equals(plains[i]!));
    }
  }
});

test('the wrong key is reported as such', () => {
  const { pack } = makePack(3);
  const e = throwsCode(() => readPackHeader(OTHER_KEYS, pack.bytes, pack.bytes.length), 'WrongKey');
  assert.match(e.message, new RegExp(KEYS.fingerprint));
  assert.ok(e instanceof FormatError);
});

test('a 16 MiB pack of 256 KiB blobs', () => {
  const w = new PackWriter(KEYS);
  const data = streamBytes(20 << 20, 0x31);
  let at = 0;
  while (!w.full) {
    const s = sealBlob(KEYS, data.subarray(at, at + (256 << 10)), { compression: 'none' });
    w.add('data', s.id, s.sealed, s.rawLength);
    at += 256 << 10;
  }
  const p = w.finish();
  assert.equal(p.entries.length, 64);
  assert.ok(p.bytes.length >= 16 << 20 && p.bytes.length < (16 << 20) + 8192);
  const tail = p.bytes.subarray(p.bytes.length - 64 * 1024);
  assert.equal(readPackHeader(KEYS, tail, p.bytes.length).length, 64);
});

test('finishParts: the same pack as its parts (what the agent streams), named by the hash of their concatenation', () => {
  const rng = detRng('parts');
  const w = new PackWriter(KEYS, { rng: detRng('parts header') });
  const sealed = Array.from({ length: 7 }, (_, i) => sealBlob(KEYS, rng(1000 + i * 333)));
  for (const s of sealed) w.add('data', s.id, s.sealed, s.rawLength);
  const p = w.finishParts();
  assert.equal(w.count, 0);
  const bytes = Buffer.concat(p.parts);
  assert.equal(p.size, bytes.length);
  assert.ok(p.id.equals(sha256(bytes)));
  assert.equal(p.parts.length, sealed.length + 2); // the blobs, the header, its length
  assert.deepEqual(readPackHeader(KEYS, bytes, bytes.length), p.entries);
  // finish() is the concatenation of the same parts: same header rng, same bytes
  const w2 = new PackWriter(KEYS, { rng: detRng('parts header') });
  for (const s of sealed) w2.add('data', s.id, s.sealed, s.rawLength);
  const whole = w2.finish();
  assert.ok(whole.bytes.equals(bytes));
  assert.ok(whole.id.equals(p.id));
});

test('spill: blobs handed out in order, then only the header and its length; same pack, same id; the next pack starts afresh', () => {
  const rng = detRng('spill');
  const sealed = Array.from({ length: 5 }, (_, i) => sealBlob(KEYS, rng(2000 + i * 111)));
  const spilled: Buffer[] = [];
  const w = new PackWriter(KEYS, { rng: detRng('spill header'), spill: (b) => spilled.push(Buffer.from(b)) });
  for (const s of sealed) w.add('data', s.id, s.sealed, s.rawLength);
  assert.throws(() => w.finish(), /finishParts/);
  const p = w.finishParts();
  assert.equal(p.parts.length, 2);
  assert.equal(p.spilled, sealed.reduce((n, s) => n + s.sealed.length, 0));
  const bytes = Buffer.concat([...spilled, ...p.parts]);
  assert.equal(p.size, bytes.length);
  assert.ok(p.id.equals(sha256(bytes)));
  assert.deepEqual(readPackHeader(KEYS, bytes, bytes.length), p.entries);
  // the same pack as a writer that keeps its blobs makes
  const w2 = new PackWriter(KEYS, { rng: detRng('spill header') });
  for (const s of sealed) w2.add('data', s.id, s.sealed, s.rawLength);
  assert.ok(w2.finish().bytes.equals(bytes));
  // a second pack from the same writer: its own hash, offsets from 0
  spilled.length = 0;
  w.add('data', sealed[0]!.id, sealed[0]!.sealed, sealed[0]!.rawLength);
  const q = w.finishParts();
  const qb = Buffer.concat([...spilled, ...q.parts]);
  assert.ok(q.id.equals(sha256(qb)));
  assert.equal(q.entries[0]!.offset, 0);
});

test('spill: a blob whose spill throws leaves the writer as it was (no entry, not hashed, offsets unchanged)', () => {
  const rng = detRng('spill throws');
  const sealed = Array.from({ length: 4 }, (_, i) => sealBlob(KEYS, rng(3000 + i)));
  const spilled: Buffer[] = [];
  let fail = false;
  const w = new PackWriter(KEYS, { rng: detRng('hdr'), spill: (b) => { if (fail) throw new Error('no spool file'); spilled.push(Buffer.from(b)); } });
  w.add('data', sealed[0]!.id, sealed[0]!.sealed, sealed[0]!.rawLength);
  fail = true;
  assert.throws(() => w.add('data', sealed[1]!.id, sealed[1]!.sealed, sealed[1]!.rawLength), /no spool file/);
  assert.equal(w.count, 1);
  fail = false;
  for (const s of sealed.slice(2)) w.add('data', s.id, s.sealed, s.rawLength);
  const p = w.finishParts();
  const bytes = Buffer.concat([...spilled, ...p.parts]);
  assert.ok(p.id.equals(sha256(bytes)), 'named by the bytes it holds');
  assert.deepEqual(readPackHeader(KEYS, bytes, bytes.length).map((e) => e.id), [sealed[0]!.id, sealed[2]!.id, sealed[3]!.id]);
});

test("entries' ids are copies kept side by side in the writer's own memory, holding nothing else alive", () => {
  // an agent's tree pack lives for a whole backup: its ids must not pin the pool slabs they were
  // copied from (Buffer.from), which hold whatever else was allocated then
  const w = new PackWriter(KEYS, { spill: () => { /* spilled: only the entries stay */ } });
  const entries = [];
  for (let i = 0; i < 1200; i++) {
    const id = Buffer.alloc(32, i % 251);
    const s = sealBlob(KEYS, Buffer.from(`blob ${i}`));
    Buffer.from(`other short-lived bytes ${i}`); // what else a caller copies meanwhile
    entries.push(w.add('data', id, s.sealed, s.rawLength));
    id.fill(0xff); // a copy: the caller may reuse its buffer
  }
  entries.forEach((e, i) => assert.ok(e.id.equals(Buffer.alloc(32, i % 251)), `entry ${i}'s id`));
  const byBuffer = new Map<ArrayBufferLike, number>();
  for (const e of entries) byBuffer.set(e.id.buffer, (byBuffer.get(e.id.buffer) ?? 0) + 1);
  const full = [...byBuffer].slice(0, -1);
  assert.ok(full.length >= 2);
  for (const [buffer, count] of full) assert.equal(count * 32, buffer.byteLength, 'a memory block of ids and nothing else');
});
