// Shared test fixtures: a deterministic RNG (tests only: production always uses
// crypto.randomBytes) and the fixed repository the test vectors are built from.
import { createCipheriv, createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { FormatError, type FormatErrorCode } from '../src/errors.ts';
import type { Rng } from '../src/common.ts';
import { deriveKeys } from '../src/derive.ts';

/** block i = SHA-256("shelter test rng" || seed || u32be(i)); the stream is the blocks concatenated. */
export function detRng(seed: string): Rng {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n: number) => {
    if (pool.length < n) {
      const blocks = [pool];
      for (let have = pool.length; have < n; have += 32) {
        const c = Buffer.alloc(4); c.writeUInt32BE(counter++, 0);
        blocks.push(createHash('sha256').update('shelter test rng').update(seed).update(c).digest());
      }
      pool = Buffer.concat(blocks);
    }
    const out = pool.subarray(0, n);
    pool = pool.subarray(n);
    return Buffer.from(out);
  };
}

/** Deterministic pseudo-random bytes: AES-256-CTR keystream (key = 32 x `keyByte`, iv = 0). */
export function streamBytes(n: number, keyByte = 0x42): Buffer {
  const c = createCipheriv('aes-256-ctr', Buffer.alloc(32, keyByte), Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

export const MASTER = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
export const REPO_ID = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex');
export const KEYS = deriveKeys(MASTER, REPO_ID);
export const OTHER_KEYS = deriveKeys(Buffer.alloc(32, 0x77), REPO_ID);

/** Asserts fn throws a FormatError with this code (and nothing else: no TypeError, no RangeError). */
export function throwsCode(fn: () => unknown, code: FormatErrorCode | FormatErrorCode[], msg?: string): FormatError {
  const codes = Array.isArray(code) ? code : [code];
  let caught: unknown;
  try { fn(); } catch (e) { caught = e; }
  if (!(caught instanceof FormatError)) assert.fail(`${msg ?? ''} expected FormatError ${codes.join('|')}, got ${caught === undefined ? 'no error' : String((caught as Error)?.stack ?? caught)}`);
  if (!codes.includes(caught.code)) assert.fail(`${msg ?? ''} expected ${codes.join('|')}, got ${caught.code}: ${caught.message}`);
  return caught;
}

/** Returns a copy with byte `at` XOR `mask`. */
export function flip(b: Uint8Array, at: number, mask = 0x01): Buffer {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ mask;
  return c;
}

export function mbps(bytes: number, ms: number): string {
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
}
