import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, OTHER_KEYS, detRng, throwsCode, flip, streamBytes, mbps } from './helpers.ts';
import { seal, open, sealBlob, openBlob, sealObject, openObject, worthCompressing, ENVELOPE_OVERHEAD, FLAG_ZSTD, PROBE_MIN, PROBE_SAMPLE, PROBE_SAMPLES } from '../src/envelope.ts';
import { blobId, FINGERPRINT_BYTES } from '../src/derive.ts';
import { freeBuffer } from '../src/common.ts';

/** Text-like data (source-code-like tokens; zstd-3 compresses it ~2.4x per 256 KiB blob). */
function textLike(n: number, seed = 'text'): Buffer {
  // Blobs are compressed independently, so tiling a 4 MiB sample does not flatter the ratio.
  if (n > 4 << 20) { const tile = textLike(4 << 20, seed); return Buffer.concat(Array.from({ length: Math.ceil(n / tile.length) }, () => tile)).subarray(0, n); }
  const words = ['int', 'return', 'static', 'struct', 'the', 'if', '(', ')', '{', '}', ';', 'for', 'while', 'const', 'void', 'unsigned',
    'long', 'char', '*', '=', '==', '->', 'NULL', 'err', 'goto', 'out', 'dev', 'data', 'size', 'len', '/*', '*/', '\n', '\n\t', '\t\t'];
  const rng = detRng(seed)(n);
  const out = Buffer.alloc(n);
  let at = 0, i = 0;
  while (at < n) {
    const r = rng[i++ % n]!;
    const w = r < 40 ? `v${(r * 7919 + i) % 5000}` : words[r % words.length]!;
    at += out.write(w + (r & 1 ? ' ' : ''), at);
  }
  return out;
}

test('round trip: compressed when smaller, stored when not', () => {
  const text = textLike(300_000);
  const rnd = streamBytes(300_000);
  const a = sealBlob(KEYS, text);
  const b = sealBlob(KEYS, rnd);
  assert.equal(a.sealed[0]! & FLAG_ZSTD, FLAG_ZSTD);
  assert.ok(a.sealed.length < text.length / 2);
  assert.equal(b.sealed[0]! & FLAG_ZSTD, 0);
  assert.equal(b.sealed.length, rnd.length + ENVELOPE_OVERHEAD);
  assert.ok(openBlob(KEYS, a.id, a.sealed, 1 << 20).equals(text));
  assert.ok(openBlob(KEYS, b.id, b.sealed, 1 << 20).equals(rnd));
  const e = sealBlob(KEYS, Buffer.alloc(0));
  assert.equal(openBlob(KEYS, e.id, e.sealed, 0).length, 0);
  const none = sealBlob(KEYS, text, { compression: 'none' });
  assert.equal(none.sealed[0]! & FLAG_ZSTD, 0);
  assert.ok(openBlob(KEYS, none.id, none.sealed, 1 << 20).equals(text));
  // fresh nonce every time: same plaintext, different bytes, same id
  const a2 = sealBlob(KEYS, text);
  assert.ok(a2.id.equals(a.id));
  assert.ok(!a2.sealed.equals(a.sealed));
});

test('every flipped byte of a blob fails with a typed error', () => {
  for (const plain of [textLike(5000, 'flip'), streamBytes(3000)]) {
    const s = sealBlob(KEYS, plain, { rng: detRng('n') });
    for (let at = 0; at < s.sealed.length; at++) {
      throwsCode(() => openBlob(KEYS, s.id, flip(s.sealed, at), 1 << 20), ['Authentication', 'UnsupportedVersion', 'Corrupt'], `byte ${at}`);
    }
    // truncation and extension
    for (const cut of [0, 1, 13, 17, 32, s.sealed.length - 1]) throwsCode(() => openBlob(KEYS, s.id, s.sealed.subarray(0, cut), 1 << 20), ['Authentication', 'Corrupt']);
    throwsCode(() => openBlob(KEYS, s.id, Buffer.concat([s.sealed, Buffer.alloc(1)]), 1 << 20), 'Authentication');
  }
});

test('a blob stored under another id does not decrypt; the wrong key fails', () => {
  const a = sealBlob(KEYS, Buffer.from('alpha'));
  const b = sealBlob(KEYS, Buffer.from('beta'));
  throwsCode(() => openBlob(KEYS, b.id, a.sealed, 100), 'Authentication');
  throwsCode(() => openBlob(OTHER_KEYS, a.id, a.sealed, 100), 'Authentication');
  // a writer bug (right AAD, wrong plaintext) is still caught by the id re-check
  const wrong = seal(KEYS, Buffer.from('gamma'), a.id);
  throwsCode(() => openBlob(KEYS, a.id, wrong, 100), 'Authentication');
  assert.ok(blobId(KEYS, Buffer.from('alpha')).equals(a.id));
});

test('the compressibility probe: zstd skipped for incompressible blobs, kept for anything with compressible parts', () => {
  const n = 1 << 20;
  const rnd = streamBytes(n, 0x17);
  assert.equal(worthCompressing(rnd), false, 'random bytes: stored as they are');
  assert.equal(worthCompressing(textLike(n)), true, 'text');
  assert.equal(worthCompressing(Buffer.alloc(n)), true, 'zeros');
  // below PROBE_MIN the probe never decides: zstd runs, and the result is kept only when smaller
  assert.equal(worthCompressing(rnd.subarray(0, PROBE_MIN - 1)), true);
  // mostly random, one compressible stretch where a single sample lands: still compressed
  // (and text-like bytes in one sample of eight too)
  const step = Math.floor((n - PROBE_SAMPLE) / (PROBE_SAMPLES - 1));
  const mixed = Buffer.from(rnd);
  mixed.fill(0, 4 * step - 8192, 4 * step + 8192);
  assert.equal(worthCompressing(mixed), true, 'one compressible sample in eight');
  const withText = Buffer.from(rnd);
  textLike(16384).copy(withText, 4 * step - 8192);
  assert.equal(worthCompressing(withText), true, 'one sample of text in eight');
  // random bytes with zeros between the sample positions: the probe misses them (stored larger, still exact)
  const holes = Buffer.from(rnd);
  for (let k = 0; k < PROBE_SAMPLES - 1; k++) holes.fill(0, k * step + PROBE_SAMPLE, (k + 1) * step);
  assert.equal(worthCompressing(holes), false);
  const sealed = sealBlob(KEYS, holes);
  assert.equal(sealed.sealed[0]! & FLAG_ZSTD, 0);
  assert.ok(openBlob(KEYS, sealed.id, sealed.sealed, n).equals(holes));
  // a blob of text after random bytes in the same thread: the probe's buffer leaves nothing behind
  const text = textLike(300_000);
  const t = sealBlob(KEYS, text);
  assert.equal(t.sealed[0]! & FLAG_ZSTD, FLAG_ZSTD);
  assert.ok(openBlob(KEYS, t.id, t.sealed, n).equals(text));
});

test('decompression is bounded by the caller limit and the declared length', () => {
  const big = Buffer.alloc(4 << 20); // compresses to a few hundred bytes
  const s = sealBlob(KEYS, big);
  assert.ok(s.sealed.length < 1000);
  throwsCode(() => openBlob(KEYS, s.id, s.sealed, 1 << 20), 'TooLarge');
  throwsCode(() => openBlob(KEYS, s.id, s.sealed, 8 << 20, 1234), 'Corrupt');
  assert.equal(openBlob(KEYS, s.id, s.sealed, 4 << 20, 4 << 20).length, 4 << 20);
});

test('objects: wrong key is told apart from damage', () => {
  const o = sealObject(KEYS, 'snapshot', Buffer.from('{"v":1}'));
  assert.equal(open(KEYS, o.subarray(0, o.length - FINGERPRINT_BYTES), Buffer.concat([Buffer.from('shelter/v1 snapshot'), KEYS.fingerprintBytes]), 100).toString(), '{"v":1}');
  assert.equal(openObject(KEYS, 'snapshot', o, 100).toString(), '{"v":1}');
  throwsCode(() => openObject(OTHER_KEYS, 'snapshot', o, 100), 'WrongKey');
  throwsCode(() => openObject(KEYS, 'index', o, 100), 'Authentication', 'kind is bound');
  for (let at = 0; at < o.length; at++) {
    const code = throwsCode(() => openObject(KEYS, 'snapshot', flip(o, at), 100), ['Authentication', 'UnsupportedVersion', 'Corrupt']).code;
    if (at >= o.length - FINGERPRINT_BYTES) assert.equal(code, 'Corrupt', 'a damaged fingerprint is damage, not another key');
  }
});

test('throughput: compress + encrypt (sealBlob) and decrypt + decompress on 64 MiB', () => {
  const total = 64 << 20;
  for (const [kind, data] of [['text-like', textLike(total)], ['random', streamBytes(total)]] as const) {
    for (const chunk of [256 << 10]) {
      let t = performance.now();
      const sealed = [];
      for (let at = 0; at < total; at += chunk) sealed.push(sealBlob(KEYS, data.subarray(at, at + chunk)));
      const sealMs = performance.now() - t;
      const stored = sealed.reduce((a, s) => a + s.sealed.length, 0);
      t = performance.now();
      for (const s of sealed) openBlob(KEYS, s.id, s.sealed, chunk);
      const openMs = performance.now() - t;
      console.log(`# envelope ${kind} ${chunk >> 10} KiB blobs: seal (HMAC id + zstd-3 + AES-GCM) ${mbps(total, sealMs)}, open ${mbps(total, openMs)}, ratio ${(total / stored).toFixed(2)}`);
    }
  }
  const data = streamBytes(total);
  const t = performance.now();
  for (let at = 0; at < total; at += 256 << 10) sealBlob(KEYS, data.subarray(at, at + (256 << 10)), { compression: 'none' });
  console.log(`# envelope random 256 KiB blobs, compression 'none' (HMAC id + AES-GCM only): ${mbps(total, performance.now() - t)}`);
});

test('freeBuffer frees a buffer that is its whole ArrayBuffer, and leaves shared memory alone', () => {
  const own = Buffer.allocUnsafeSlow(1 << 20).fill(7);
  freeBuffer(own);
  assert.equal(own.length, 0, 'detached: its memory is gone');
  // a slice of Node's pool, a view into a larger buffer, an empty one: untouched
  const pooled = Buffer.from('a few bytes');
  const big = Buffer.alloc(4096, 1);
  const view = big.subarray(0, 100);
  freeBuffer(pooled);
  freeBuffer(view);
  freeBuffer(Buffer.alloc(0));
  assert.equal(pooled.toString(), 'a few bytes');
  assert.equal(view.length, 100);
  assert.equal(big.length, 4096);
  // opening into the caller's memory frees the decrypted frame and returns the right plaintext
  const keys = KEYS;
  const plain = Buffer.from('compressible '.repeat(5000));
  const sealed = seal(keys, plain, Buffer.alloc(32, 3));
  const into = Buffer.alloc(plain.length + 1);
  assert.ok(open(keys, sealed, Buffer.alloc(32, 3), plain.length, plain.length, into).equals(plain));
  assert.ok(open(keys, sealed, Buffer.alloc(32, 3), plain.length).equals(plain), 'the sealed bytes are untouched');
});
