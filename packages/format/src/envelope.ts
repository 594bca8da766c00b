// The encryption envelope: how one plaintext (a chunk, a tree, a pack header, an index, a
// snapshot) becomes bytes at rest.
//
//   byte 0      version (high nibble, 1) | flags (low nibble: bit 0 = zstd, bits 1-3 = 0)
//   1..12       nonce, 12 random bytes, fresh for every envelope
//   13..n-17    AES-256-GCM ciphertext of:  u32le plaintext length || payload
//   n-16..n-1   GCM tag
//   AAD         byte 0 || context
//
// The payload is the zstd frame of the plaintext when that is smaller, else the plaintext.
// The declared length sits inside the ciphertext: only the key holder can set it, and it bounds
// decompression (no zstd bomb can make a reader allocate more than the caller allows). The
// header byte is in the AAD, so flipping the compression flag fails authentication too.
// `context` binds the ciphertext to what it claims to be: for a blob its id (a blob moved under
// another id does not decrypt), for an object its kind and key fingerprint.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { FormatError } from './errors.ts';
import { compressFrame, decompressFrame } from './zstd.ts';
import { asBuffer, freeBuffer, label, secretKeyOf, systemRng, type Rng } from './common.ts';
import { blobId, FINGERPRINT_BYTES, type RepoKeys } from './derive.ts';

export const ENVELOPE_VERSION = 1;
export const FLAG_ZSTD = 0x01;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES;
/** Bytes an envelope adds to its payload: header byte, nonce, length field, tag. */
export const ENVELOPE_OVERHEAD = HEADER_BYTES + 4 + TAG_BYTES;
/** Largest plaintext an envelope can declare. */
export const MAX_PLAINTEXT = 0xffffffff;
export const DEFAULT_ZSTD_LEVEL = 3;

/**
 * The compressibility probe ('auto'): of a plaintext of PROBE_MIN bytes or more, PROBE_SAMPLES
 * pieces of PROBE_SAMPLE bytes spread evenly over it are counted byte by byte; when every one of
 * them has a Shannon entropy of PROBE_MAX_BITS bits per byte or more (random, encrypted or
 * already compressed bytes: ~7.6 as measured on 512 random bytes, text ~4.5-5, machine code ~6),
 * the whole is stored as it is, without a zstd pass. zstd level 3 gains nothing there and still
 * costs ~0.2 s of CPU per 300 MiB (`node bench/probe.ts`: the large-files set's random.bin 0.22 ->
 * 0.03 s). The probe costs ~20 us per blob, ~2% of compressing a 256 KiB blob of text (sampling
 * compressed with zstd cost ~12%). A single sample of text, zeros or code among random bytes
 * keeps zstd. What it cannot see: compressible stretches between the samples, and bytes that look
 * random but repeat (the same random block twice in one blob): such a blob is stored
 * uncompressed, larger, never wrong (readers follow the flag).
 */
export const PROBE_MIN = 128 * 1024;
export const PROBE_SAMPLES = 8;
export const PROBE_SAMPLE = 512;
export const PROBE_MAX_BITS = 7.2;
const probeCounts = new Uint32Array(256);

/** Whether zstd is worth running on the whole of `plaintext` (always, below PROBE_MIN bytes). */
export function worthCompressing(plaintext: Uint8Array): boolean {
  if (plaintext.length < PROBE_MIN) return true;
  const step = Math.floor((plaintext.length - PROBE_SAMPLE) / (PROBE_SAMPLES - 1));
  for (let k = 0; k < PROBE_SAMPLES; k++) {
    probeCounts.fill(0);
    for (let i = k * step, end = i + PROBE_SAMPLE; i < end; i++) probeCounts[plaintext[i]!]!++;
    let bits = 0;
    for (let j = 0; j < 256; j++) {
      const c = probeCounts[j]!;
      if (c) bits -= c * Math.log2(c / PROBE_SAMPLE);
    }
    if (bits / PROBE_SAMPLE < PROBE_MAX_BITS) return true;
  }
  return false;
}

export interface SealOptions {
  /** 'auto' (default): zstd, kept only when smaller, unless the probe (worthCompressing) finds the plaintext incompressible. 'none': never compress (e.g. known-incompressible data). */
  compression?: 'auto' | 'none';
  /** zstd level, default 3. */
  level?: number;
  /** Tests only: deterministic nonces. */
  rng?: Rng;
}

/** Seals `plaintext` under the data key with AAD = header byte || context. */
export function seal(keys: RepoKeys, plaintext: Uint8Array, context: Uint8Array, opts: SealOptions = {}): Buffer {
  if (plaintext.length > MAX_PLAINTEXT) throw new FormatError('TooLarge', 'an envelope holds at most 4 GiB - 1 of plaintext');
  let payload: Uint8Array = plaintext;
  let flags = 0;
  const level = opts.level ?? DEFAULT_ZSTD_LEVEL;
  if (opts.compression !== 'none' && plaintext.length > 0 && worthCompressing(plaintext)) {
    // transient: encrypted (copied) below, before any other frame is made on this thread
    const z = compressFrame(plaintext, level, { transient: true });
    if (z.length < plaintext.length) { payload = z; flags = FLAG_ZSTD; }
  }
  const nonce = (opts.rng ?? systemRng)(NONCE_BYTES);
  if (nonce.length !== NONCE_BYTES) throw new FormatError('Invalid', 'rng returned the wrong number of bytes');
  const header = (ENVELOPE_VERSION << 4) | flags;
  const out = Buffer.allocUnsafe(HEADER_BYTES + 4 + payload.length + TAG_BYTES);
  out[0] = header;
  nonce.copy(out, 1);
  const cipher = createCipheriv('aes-256-gcm', secretKeyOf(keys.data), nonce);
  cipher.setAAD(Buffer.concat([out.subarray(0, 1), context]));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(plaintext.length, 0);
  let at = HEADER_BYTES;
  at += cipher.update(len).copy(out, at);
  const ciphertext = cipher.update(payload);
  at += ciphertext.copy(out, at);
  freeBuffer(ciphertext);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

export interface Opened {
  plaintext: Buffer;
  flags: number;
  /** The payload as stored (zstd frame or plaintext): used by the test vectors only. */
  payload: Buffer;
}

/**
 * Opens an envelope. `maxLength` is the caller's limit on the plaintext (e.g. the chunker's max
 * size for data blobs); `exactLength`, when known from a pack header or index, must match.
 */
export function openEnvelope(keys: RepoKeys, sealed: Uint8Array, context: Uint8Array, maxLength: number, exactLength?: number, into?: Uint8Array): Opened {
  const b = asBuffer(sealed);
  if (b.length < ENVELOPE_OVERHEAD) throw new FormatError('Corrupt', `envelope of ${b.length} bytes is shorter than its ${ENVELOPE_OVERHEAD}-byte overhead`);
  const header = b[0]!;
  if (header >> 4 !== ENVELOPE_VERSION) {
    throw new FormatError('UnsupportedVersion', `envelope version ${header >> 4} is not ${ENVELOPE_VERSION} (newer writer, or a damaged byte)`);
  }
  const flags = header & 0x0f;
  if ((flags & ~FLAG_ZSTD) !== 0) throw new FormatError('Corrupt', `envelope has unknown flags ${flags}`);
  let body: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', secretKeyOf(keys.data), b.subarray(1, HEADER_BYTES));
    d.setAAD(Buffer.concat([b.subarray(0, 1), context]));
    d.setAuthTag(b.subarray(b.length - TAG_BYTES));
    const first = d.update(b.subarray(HEADER_BYTES, b.length - TAG_BYTES));
    const last = d.final();
    body = last.length === 0 ? first : Buffer.concat([first, last]);
  } catch {
    throw new FormatError('Authentication', 'envelope does not authenticate: altered bytes, wrong key, or stored under another id');
  }
  // From here on the bytes are authentic: any inconsistency means a writer bug, still reported as a typed error.
  const declared = body.readUInt32LE(0);
  if (exactLength !== undefined && declared !== exactLength) {
    throw new FormatError('Corrupt', `envelope declares ${declared} bytes, its index entry says ${exactLength}`);
  }
  if (declared > maxLength) throw new FormatError('TooLarge', `envelope declares ${declared} bytes, the limit here is ${maxLength}`);
  const payload = body.subarray(4);
  let plaintext: Buffer;
  if (flags & FLAG_ZSTD) {
    try {
      plaintext = decompressFrame(payload, declared, into);
    } catch {
      throw new FormatError('Corrupt', 'envelope payload is not a valid zstd frame of the declared length');
    }
    // decompressed into the caller's memory: the decrypted frame is dead (the test vectors, which
    // read `payload`, pass no `into`)
    if (into) freeBuffer(body);
  } else {
    plaintext = payload;
  }
  if (plaintext.length !== declared) throw new FormatError('Corrupt', `envelope holds ${plaintext.length} bytes but declares ${declared}`);
  return { plaintext, flags, payload };
}

/** `into`: where a compressed plaintext is written (at least its length + 1 bytes; see decompressFrame) */
export function open(keys: RepoKeys, sealed: Uint8Array, context: Uint8Array, maxLength: number, exactLength?: number, into?: Uint8Array): Buffer {
  return openEnvelope(keys, sealed, context, maxLength, exactLength, into).plaintext;
}

// ---- blobs: context = blob id -------------------------------------------------------------

export interface SealedBlob {
  id: Buffer;
  sealed: Buffer;
  rawLength: number;
}

/** id = HMAC(id key, plaintext); envelope with AAD context = id. */
export function sealBlob(keys: RepoKeys, plaintext: Uint8Array, opts: SealOptions = {}): SealedBlob {
  const id = blobId(keys, plaintext);
  return { id, sealed: seal(keys, plaintext, id, opts), rawLength: plaintext.length };
}

/** Opens a blob and re-checks that its plaintext really has this id (catches a writer that stored the wrong bytes). */
export function openBlob(keys: RepoKeys, id: Uint8Array, sealed: Uint8Array, maxLength: number, exactLength?: number, into?: Uint8Array): Buffer {
  const plaintext = open(keys, sealed, id, maxLength, exactLength, into);
  if (!blobId(keys, plaintext).equals(id)) throw new FormatError('Authentication', 'blob plaintext does not match its id');
  return plaintext;
}

// ---- objects: envelope || fingerprint(16), context = label(kind) || fingerprint -------------

export type ObjectKind = 'pack header' | 'index' | 'snapshot';

export interface SealedObject {
  /** SHA-256 of `bytes`: the object's name. */
  id: Buffer;
  bytes: Buffer;
}

function objectContext(kind: ObjectKind, fp: Uint8Array): Buffer {
  return Buffer.concat([label(kind), fp]);
}

/**
 * An object envelope ends with the 16-byte key fingerprint in clear (it is public, it is in
 * `config`), so a reader tells "written with another key" (WrongKey) apart from "damaged"
 * (Authentication/Corrupt) without trying keys. At the end, not the start: in a pack the
 * header object is found through the length field before it, and a damaged length must not
 * move the fingerprint and pass for another key.
 */
export function sealObject(keys: RepoKeys, kind: ObjectKind, plaintext: Uint8Array, opts: SealOptions = {}): Buffer {
  return Buffer.concat([seal(keys, plaintext, objectContext(kind, keys.fingerprintBytes), opts), keys.fingerprintBytes]);
}

export function openObjectEnvelope(keys: RepoKeys, kind: ObjectKind, bytes: Uint8Array, maxLength: number): Opened {
  const b = asBuffer(bytes);
  if (b.length < FINGERPRINT_BYTES + ENVELOPE_OVERHEAD) throw new FormatError('Corrupt', `${kind} of ${b.length} bytes is too short`);
  const fp = b.subarray(b.length - FINGERPRINT_BYTES);
  const env = b.subarray(0, b.length - FINGERPRINT_BYTES);
  if (!fp.equals(keys.fingerprintBytes)) {
    // Either another key wrote it, or these 16 bytes were damaged. Only the second case opens
    // with our own fingerprint in the AAD.
    try {
      openEnvelope(keys, env, objectContext(kind, keys.fingerprintBytes), maxLength);
    } catch {
      throw new FormatError('WrongKey', `${kind} was written with key ${fp.toString('hex')}, not with this key (${keys.fingerprint})`);
    }
    throw new FormatError('Corrupt', `${kind}: its key fingerprint field is damaged`);
  }
  return openEnvelope(keys, env, objectContext(kind, fp), maxLength);
}

export function openObject(keys: RepoKeys, kind: ObjectKind, bytes: Uint8Array, maxLength: number): Buffer {
  return openObjectEnvelope(keys, kind, bytes, maxLength).plaintext;
}
