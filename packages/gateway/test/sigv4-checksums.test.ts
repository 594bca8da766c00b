// Flexible checksums: catalogue check values, and a cross-check against the AWS SDK's own
// implementations (@aws-sdk/checksums, a transitive dependency of @aws-sdk/client-s3) when present.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createChecksum, isValidChecksumValue, parseChecksumAlgorithm, type ChecksumAlgorithm } from '../src/sigv4/index.ts';

const ALGS: readonly ChecksumAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'];

function digest(alg: ChecksumAlgorithm, parts: Buffer[]): Buffer {
  const c = createChecksum(alg);
  for (const p of parts) c.update(p);
  return c.digest();
}

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Splits at pseudo-random points (including empty pieces) to exercise the incremental paths. */
function split(buf: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  let x = seed;
  while (i < buf.length) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = x % 23 === 0 ? 0 : 1 + (x % 37);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('checksum catalogue values ("123456789")', () => {
  const check = Buffer.from('123456789');
  it('CRC32 0xCBF43926, CRC32C 0xE3069283, CRC64NVME 0xAE8B14860A799888', () => {
    assert.equal(digest('CRC32', [check]).toString('hex'), 'cbf43926');
    assert.equal(digest('CRC32C', [check]).toString('hex'), 'e3069283');
    assert.equal(digest('CRC64NVME', [check]).toString('hex'), 'ae8b14860a799888');
  });
  it('SHA1 and SHA256 are the standard digests', () => {
    assert.equal(digest('SHA1', [check]).toString('hex'), createHash('sha1').update(check).digest('hex'));
    assert.equal(digest('SHA256', [check]).toString('hex'), createHash('sha256').update(check).digest('hex'));
  });
  it('empty input', () => {
    assert.equal(digest('CRC32', []).toString('hex'), '00000000');
    assert.equal(digest('CRC32C', [Buffer.alloc(0)]).toString('hex'), '00000000');
    assert.equal(digest('CRC64NVME', []).toString('hex'), '0000000000000000');
  });
  it('incremental updates give the one-shot value, for every length 0..300 and any split', () => {
    for (const alg of ALGS) {
      for (let n = 0; n <= 300; n++) {
        const b = bytes(n, n + 1);
        assert.ok(digest(alg, split(b, n)).equals(digest(alg, [b])), `${alg} n=${n}`);
      }
    }
  });
});

describe('cross-check against the AWS SDK checksum implementations', async () => {
  type SdkHash = { update(b: Uint8Array): void; digest(): Promise<Uint8Array> };
  type Ctor = new () => SdkHash;
  type SdkCrc = { Crc32?: Ctor; Crc32cJs?: Ctor; Crc64NvmeJs?: Ctor };
  // A transitive dependency: used when installed, skipped otherwise.
  const sdk: SdkCrc | null = await import('@aws-sdk/checksums/crc').then((m) => m as unknown as SdkCrc, () => null);
  const pairs: Array<[ChecksumAlgorithm, Ctor | undefined]> = [
    ['CRC32', sdk?.Crc32], ['CRC32C', sdk?.Crc32cJs], ['CRC64NVME', sdk?.Crc64NvmeJs],
  ];
  for (const [alg, Ctor] of pairs) {
    it(`${alg} equals the SDK's value on random data`, { skip: Ctor === undefined ? '@aws-sdk/checksums not installed' : false }, async () => {
      for (const n of [1, 7, 8, 9, 63, 64, 1000, 65536, 1_000_003]) {
        const b = bytes(n, n * 31 + 7);
        const h = new Ctor!();
        h.update(b);
        const expected = Buffer.from(await h.digest());
        assert.ok(digest(alg, split(b, n)).equals(expected), `${alg} n=${n}`);
        assert.ok(digest(alg, [b]).equals(expected), `${alg} n=${n} (one shot)`);
      }
    });
  }
});

describe('checksum values and names', () => {
  it('isValidChecksumValue wants canonical base64 of the digest size', () => {
    assert.equal(isValidChecksumValue('CRC32', 'yZRlqg=='), true);
    assert.equal(isValidChecksumValue('CRC32', 'yZRlqg'), false);
    assert.equal(isValidChecksumValue('CRC32', 'yZRlqgAA'), false);
    assert.equal(isValidChecksumValue('CRC64NVME', 'AAAAAAAAAAA='), true);
    assert.equal(isValidChecksumValue('SHA256', Buffer.alloc(32).toString('base64')), true);
    assert.equal(isValidChecksumValue('SHA1', Buffer.alloc(32).toString('base64')), false);
    assert.equal(isValidChecksumValue('CRC32', 'yZR-qg=='), false);
  });
  it('algorithm names are case-insensitive', () => {
    assert.equal(parseChecksumAlgorithm('crc64nvme'), 'CRC64NVME');
    assert.equal(parseChecksumAlgorithm('Sha256'), 'SHA256');
    assert.equal(parseChecksumAlgorithm('md5'), undefined);
  });
});

describe('checksum speed (printed, not asserted)', () => {
  it('CRC32C and CRC64NVME over 64 MiB', () => {
    const b = bytes(1 << 20, 99);
    for (const alg of ['CRC32', 'CRC32C', 'CRC64NVME'] as const) {
      const c = createChecksum(alg);
      const t0 = performance.now();
      for (let i = 0; i < 64; i++) c.update(b);
      c.digest();
      const s = (performance.now() - t0) / 1000;
      console.log(`# ${alg}: ${(64 * 1048576 / s / 1e6).toFixed(0)} MB/s`);
    }
  });
});
