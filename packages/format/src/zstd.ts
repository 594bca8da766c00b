// zstd frames for the envelope, with one compression context per level and one decompression
// context per thread, reused from blob to blob. Node's one-shot calls (zstdCompressSync,
// zstdDecompressSync) build a stream object and a zstd context for every call: on the source
// files of a kernel tree (~20 KiB each) that was ~30% of the compression time. Node has no public
// way to reuse a context synchronously, so this drives the stream's native handle the way those
// one-shot calls do internally (writeSync with the whole input and an output buffer large enough
// for the whole result). The frames are byte for byte the one-shot calls' (zstd.test.ts checks
// it); a context is used only after a round trip proved that it works, and anything unexpected
// falls back to the one-shot call, so a Node whose internals differ is slower, never wrong.
import { constants as zc, createZstdCompress, createZstdDecompress, zstdCompressSync, zstdDecompressSync, type ZstdCompress, type ZstdDecompress } from 'node:zlib';

/** zstd's worst case is a little above the input size */
export const zstdBound = (n: number) => Math.max(64, n + (n >> 7) + 1024);

interface Engine {
  stream: ZstdCompress | ZstdDecompress;
  handle: { writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void; reset(): void };
  /** [output bytes left, input bytes left] after writeSync */
  state: Uint32Array;
}

function engineOf(stream: ZstdCompress | ZstdDecompress): Engine | undefined {
  const internals = stream as unknown as { _handle?: Engine['handle']; _writeState?: Uint32Array };
  if (typeof internals._handle?.writeSync !== 'function' || typeof internals._handle.reset !== 'function' || !(internals._writeState instanceof Uint32Array)) return undefined;
  // a zstd error destroys the stream at once (and emits 'error' later: listened to, not thrown)
  stream.on('error', () => { /* seen as stream.destroyed */ });
  return { stream, handle: internals._handle, state: internals._writeState };
}

/** output bytes written by one writeSync of all of `input`, or -1 on an error or an unexpected state */
function run(e: Engine, input: Uint8Array, out: Uint8Array): number {
  try { e.handle.writeSync(zc.ZSTD_e_end, input, 0, input.length, out, 0, out.length); }
  catch { return -1; }
  if (e.stream.destroyed || e.state[1] !== 0) return -1;
  return out.length - e.state[0]!;
}

const compressors = new Map<number, Engine | null>();
const CHECK = Buffer.from('shelter zstd context check '.repeat(40));

function compressorOf(level: number): Engine | null {
  let e = compressors.get(level);
  if (e === undefined) {
    e = null;
    try {
      const candidate = engineOf(createZstdCompress({ params: { [zc.ZSTD_c_compressionLevel]: level } }));
      if (candidate) {
        const out = Buffer.allocUnsafe(zstdBound(CHECK.length));
        const n = run(candidate, CHECK, out);
        if (n > 0 && n < out.length && out.subarray(0, n).equals(oneShotCompress(CHECK, level))) e = candidate;
      }
    } catch { /* one-shot calls then */ }
    compressors.set(level, e);
  }
  return e;
}

function oneShotCompress(plaintext: Uint8Array, level: number): Buffer {
  // pledgedSrcSize: zstd sizes its tables for the input; chunkSize: one output piece for the whole result
  return zstdCompressSync(plaintext, { params: { [zc.ZSTD_c_compressionLevel]: level }, chunkSize: zstdBound(plaintext.length), pledgedSrcSize: plaintext.length });
}

/** compressFrame's output when `transient`: kept from call to call (up to SCRATCH_MAX bytes) */
let scratch = Buffer.alloc(0);
const SCRATCH_MAX = 4 * 1024 * 1024;

/**
 * One zstd frame of `plaintext` (content size in its header). `transient`: the frame is a view of
 * a buffer this thread reuses, valid until the next call (a caller that encrypts it at once: a
 * fresh output per blob cost the kernel's page faults and the GC, on hundreds of MiB).
 */
export function compressFrame(plaintext: Uint8Array, level: number, opts: { transient?: boolean } = {}): Buffer {
  const e = compressorOf(level);
  if (e) {
    const bound = zstdBound(plaintext.length);
    if (opts.transient && scratch.length < bound && bound <= SCRATCH_MAX) scratch = Buffer.allocUnsafeSlow(Math.max(bound, 1024 * 1024 + 16 * 1024));
    const out = opts.transient && bound <= scratch.length ? scratch.subarray(0, bound) : Buffer.allocUnsafe(bound);
    const n = run(e, plaintext, out);
    // the whole frame fits with room to spare; a full buffer would mean it may not be complete
    if (n > 0 && n < out.length) return out.subarray(0, n);
    compressors.delete(level); // in an unknown state: a fresh context next time
    e.stream.close();
  }
  return oneShotCompress(plaintext, level);
}

let decompressor: Engine | null | undefined;
/**
 * Whether the decompression context must be reset before the next frame. Node's reset() builds a
 * new zstd context (ZSTD_createDCtx): ~10 us, a third of the time of a 16 KiB frame of source
 * text (600 vs 860 MB/s). A context that has just decoded one whole frame is ready for the next
 * one as it is (zstd's own streaming state machine), so it is reset only after anything else.
 * "Whole" is read from the frame's own headers (isWholeFrameOf), not inferred from how Node's
 * binding happens to report a frame cut short: a change there must not leave a stale context.
 */
let decompressorDirty = true;

function decompressorOf(): Engine | null {
  if (decompressor === undefined) {
    decompressor = null;
    decompressorDirty = true;
    try {
      const candidate = engineOf(createZstdDecompress());
      const frame = oneShotCompress(CHECK, 3);
      const out = Buffer.allocUnsafe(CHECK.length + 1);
      if (candidate && run(candidate, frame, out) === CHECK.length && out.subarray(0, CHECK.length).equals(CHECK)) decompressor = candidate;
    } catch { /* one-shot calls then */ }
  }
  return decompressor;
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Whether `b` is exactly one zstd frame (RFC 8878: header, blocks up to the last, checksum) that
 * declares `size` bytes of content, no dictionary: zstd then decodes it in one pass, all or error,
 * and its context ends ready for the next frame. Only the headers are read, not the contents.
 */
export function isWholeFrameOf(b: Uint8Array, size: number): boolean {
  if (b.length < 6 || (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0 !== ZSTD_MAGIC) return false;
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6, single = (fhd >> 5) & 1, checksum = (fhd >> 2) & 1;
  if ((fhd & 0x0b) !== 0) return false; // reserved bit, or a dictionary id
  let at = 5 + (single ? 0 : 1);
  const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
  if (fcsBytes === 0 || at + fcsBytes > b.length) return false;
  let fcs = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + b[at + i]!;
  if (fcsBytes === 2) fcs += 256;
  if (fcs !== size) return false;
  at += fcsBytes;
  for (;;) {
    if (at + 3 > b.length) return false;
    const h = b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
    const type = (h >> 1) & 3;
    if (type === 3) return false;
    at += 3 + (type === 1 ? 1 : h >>> 3);
    if (h & 1) break;
  }
  return at + (checksum ? 4 : 0) === b.length;
}

/**
 * The plaintext of a zstd frame that must hold exactly `declared` bytes: a frame that holds more,
 * fewer, or is not a valid frame throws (nothing larger than declared + 1 bytes is allocated).
 * `into` (at least declared + 1 bytes): the plaintext is written there, a caller's reused memory
 * (a fresh buffer per blob cost a restore ~15% of its decompression time, in page faults).
 */
export function decompressFrame(payload: Uint8Array, declared: number, into?: Uint8Array): Buffer {
  // (nothing may follow the frame: one call decodes one frame, and leaves what follows unread)
  const e = decompressorOf();
  if (e) {
    // one byte more than declared: a frame that holds more fills it, and is refused below
    const out = into && into.length > declared ? Buffer.from(into.buffer, into.byteOffset, declared + 1) : Buffer.allocUnsafe(declared + 1);
    // a new frame: from a fresh state unless the last call decoded exactly one whole frame
    if (decompressorDirty) e.handle.reset();
    decompressorDirty = true;
    let failed = false;
    try { e.handle.writeSync(zc.ZSTD_e_end, payload, 0, payload.length, out, 0, out.length); } catch { failed = true; }
    if (!failed && !e.stream.destroyed) {
      const n = out.length - e.state[0]!;
      if (e.state[1] !== 0) throw new Error('bytes after the end of the frame');
      if (n !== declared) throw new Error(`the frame holds ${n > declared ? 'more' : 'fewer'} than ${declared} bytes`);
      decompressorDirty = !isWholeFrameOf(payload, declared);
      return out.subarray(0, n);
    }
    // an error or an unexpected state: the one-shot call below says what is wrong
    decompressor = undefined;
    e.stream.close();
  }
  const plain = zstdDecompressSync(payload, { maxOutputLength: Math.max(1, declared), chunkSize: Math.max(64, declared + 1) });
  if (plain.length !== declared) throw new Error(`the frame holds ${plain.length} bytes, not ${declared}`);
  return plain;
}
