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

function decompressorOf(): Engine | null {
  if (decompressor === undefined) {
    decompressor = null;
    try {
      const candidate = engineOf(createZstdDecompress());
      const frame = oneShotCompress(CHECK, 3);
      const out = Buffer.allocUnsafe(CHECK.length + 1);
      if (candidate && run(candidate, frame, out) === CHECK.length && out.subarray(0, CHECK.length).equals(CHECK)) decompressor = candidate;
    } catch { /* one-shot calls then */ }
  }
  return decompressor;
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
    e.handle.reset(); // a new frame, whatever the previous call left
    let failed = false;
    try { e.handle.writeSync(zc.ZSTD_e_end, payload, 0, payload.length, out, 0, out.length); } catch { failed = true; }
    if (!failed && !e.stream.destroyed) {
      const n = out.length - e.state[0]!;
      if (e.state[1] !== 0) throw new Error('bytes after the end of the frame');
      if (n !== declared) throw new Error(`the frame holds ${n > declared ? 'more' : 'fewer'} than ${declared} bytes`);
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
