// Table-driven CRC32C and CRC64/NVME (slicing-by-8), the two S3 checksums node:zlib lacks.
// Both are reflected CRCs with init and xorout all ones. Tables are Int32Array so V8 keeps every
// value a small integer (no heap numbers, no BigInt in the loop); the 64-bit CRC is carried as two
// 32-bit halves. Input is read byte by byte and folded 8 bytes per round.

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli), reflected polynomial 0x82F63B78. Check value ("123456789"): 0xE3069283.
// ---------------------------------------------------------------------------------------------

const C32 = new Int32Array(8 * 256);
(() => {
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    C32[n] = c;
  }
  // Table k: CRC of byte n followed by k zero bytes.
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const prev = C32[(k - 1) * 256 + n]!;
      C32[k * 256 + n] = (prev >>> 8) ^ C32[prev & 0xff]!;
    }
  }
})();

/** Continues a CRC32C over `buf`. `crc` is the running register (pre-inverted); start with ~0. */
export function crc32cUpdate(crc: number, buf: Uint8Array): number {
  const t = C32;
  let c = crc | 0;
  let i = 0;
  const end8 = buf.length - (buf.length & 7);
  while (i < end8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    const b = buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24);
    c = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]!
      ^ t[768 + (b & 0xff)]! ^ t[512 + ((b >>> 8) & 0xff)]! ^ t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
    i += 8;
  }
  while (i < buf.length) {
    c = (c >>> 8) ^ t[(c ^ buf[i]!) & 0xff]!;
    i++;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// CRC64/NVME, reflected polynomial 0x9A6C9329AC4BC9B5. Check value ("123456789"): 0xAE8B14860A799888.
// ---------------------------------------------------------------------------------------------

const LO = new Int32Array(8 * 256);
const HI = new Int32Array(8 * 256);
(() => {
  // BigInt only here, once, to build the tables.
  const poly = 0x9a6c9329ac4bc9b5n;
  const mask = 0xffffffffffffffffn;
  const t0: bigint[] = [];
  for (let n = 0; n < 256; n++) {
    let c = BigInt(n);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ poly : c >> 1n;
    t0.push(c);
  }
  let prev = t0;
  for (let k = 0; k < 8; k++) {
    const cur = k === 0 ? t0 : prev.map((v) => ((v >> 8n) ^ t0[Number(v & 0xffn)]!) & mask);
    for (let n = 0; n < 256; n++) {
      LO[k * 256 + n] = Number(cur[n]! & 0xffffffffn) | 0;
      HI[k * 256 + n] = Number(cur[n]! >> 32n) | 0;
    }
    prev = cur;
  }
})();

/** Running CRC64/NVME register as two 32-bit halves (pre-inverted: start with both ~0). */
export interface Crc64State { lo: number; hi: number }

export function crc64nvmeUpdate(state: Crc64State, buf: Uint8Array): void {
  const tl = LO;
  const th = HI;
  let lo = state.lo | 0;
  let hi = state.hi | 0;
  let i = 0;
  const end8 = buf.length - (buf.length & 7);
  while (i < end8) {
    const a = lo ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    const b = hi ^ (buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24));
    const i0 = 1792 + (a & 0xff); const i1 = 1536 + ((a >>> 8) & 0xff);
    const i2 = 1280 + ((a >>> 16) & 0xff); const i3 = 1024 + (a >>> 24);
    const i4 = 768 + (b & 0xff); const i5 = 512 + ((b >>> 8) & 0xff);
    const i6 = 256 + ((b >>> 16) & 0xff); const i7 = b >>> 24;
    lo = tl[i0]! ^ tl[i1]! ^ tl[i2]! ^ tl[i3]! ^ tl[i4]! ^ tl[i5]! ^ tl[i6]! ^ tl[i7]!;
    hi = th[i0]! ^ th[i1]! ^ th[i2]! ^ th[i3]! ^ th[i4]! ^ th[i5]! ^ th[i6]! ^ th[i7]!;
    i += 8;
  }
  while (i < buf.length) {
    const idx = (lo ^ buf[i]!) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx]!;
    hi = (hi >>> 8) ^ th[idx]!;
    i++;
  }
  state.lo = lo;
  state.hi = hi;
}
