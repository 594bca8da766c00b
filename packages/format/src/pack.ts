// Packs: the data objects. Many blob envelopes back to back, then the encrypted list of what is
// where, then the length of that list, so a reader can fetch only the tail of a pack.
//
//   envelope_1 || ... || envelope_n || header object || u32le (length of header object)
//
// header object = object envelope (kind "pack header", see envelope.ts) of n entries of 45 bytes:
//   u8 type (0 data, 1 tree) | 32 blob id | u32le offset | u32le length | u32le plaintext length
// Entries are in pack order and contiguous: the first starts at 0, each next one where the
// previous ends, the last ends where the header begins.
//
// Pack id = SHA-256 of all the pack's bytes, object key data/<first 2 hex>/<64 hex>: the same
// name always holds the same bytes, so an upload retried after a timeout is idempotent, and
// anyone (a gateway scrub, a replica) can verify a pack without the key.
import { createHash } from 'node:crypto';
import { FormatError } from './errors.ts';
import { asBuffer, sha256, type Rng } from './common.ts';
import { BLOB_ID_BYTES, FINGERPRINT_BYTES, type RepoKeys } from './derive.ts';
import { openBlob, openObject, sealObject, ENVELOPE_OVERHEAD } from './envelope.ts';

export type BlobType = 'data' | 'tree';

export interface PackEntry {
  type: BlobType;
  id: Buffer;
  /** Byte offset of the blob's envelope in the pack. */
  offset: number;
  /** Length of the envelope in the pack. */
  length: number;
  /** Length of the plaintext. */
  rawLength: number;
}

export const PACK_ENTRY_BYTES = 1 + BLOB_ID_BYTES + 4 + 4 + 4;
export const DEFAULT_PACK_TARGET = 16 * 1024 * 1024;
/** Packs are addressed with 32-bit offsets. */
export const MAX_PACK_BYTES = 0xffffffff;
/** Reading this many bytes from the end of a pack gets the whole header of any pack of up to ~1400 blobs. */
export const PACK_TAIL_HINT = 64 * 1024;
/**
 * Default limit on one blob's plaintext when reading: a data blob is at most the chunker's max
 * (1 MiB by default); a tree may be larger (a directory of a million entries). Writers refuse
 * trees above it, readers refuse to allocate more for one blob.
 */
export const MAX_BLOB_BYTES = 256 * 1024 * 1024;
/** Bytes a header object adds besides its entries. */
const HEADER_OVERHEAD = FINGERPRINT_BYTES + ENVELOPE_OVERHEAD;

const TYPE_CODES: Record<BlobType, number> = { data: 0, tree: 1 };

export function encodeEntries(entries: readonly PackEntry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.length * PACK_ENTRY_BYTES);
  let at = 0;
  for (const e of entries) {
    if (e.id.length !== BLOB_ID_BYTES) throw new FormatError('Invalid', 'blob id must be 32 bytes');
    out[at] = TYPE_CODES[e.type];
    e.id.copy(out, at + 1);
    out.writeUInt32LE(e.offset, at + 33);
    out.writeUInt32LE(e.length, at + 37);
    out.writeUInt32LE(e.rawLength, at + 41);
    at += PACK_ENTRY_BYTES;
  }
  return out;
}

/**
 * Validates a list of encoded entries (45 bytes each) without decoding them: known blob types,
 * contiguous from offset 0, each at least an envelope long, together covering exactly `dataBytes`
 * (the size of the blob section). Returns the number of entries.
 */
export function checkEntries(b: Buffer, dataBytes: number, what: string): number {
  if (b.length % PACK_ENTRY_BYTES !== 0) throw new FormatError('Corrupt', `${what}: ${b.length} bytes is not a whole number of entries`);
  const n = b.length / PACK_ENTRY_BYTES;
  if (n === 0) throw new FormatError('Corrupt', `${what}: no entries`);
  let expect = 0;
  for (let k = 0, at = 0; k < n; k++, at += PACK_ENTRY_BYTES) {
    if (b[at]! > 1) throw new FormatError('Corrupt', `${what}: entry ${k} has unknown blob type ${b[at]!}`);
    const offset = b.readUInt32LE(at + 33);
    const length = b.readUInt32LE(at + 37);
    if (offset !== expect) throw new FormatError('Corrupt', `${what}: entry ${k} starts at ${offset}, expected ${expect}`);
    if (length < ENVELOPE_OVERHEAD) throw new FormatError('Corrupt', `${what}: entry ${k} is shorter than an envelope`);
    expect = offset + length;
  }
  if (expect !== dataBytes) throw new FormatError('Corrupt', `${what}: entries cover ${expect} bytes, the blob section has ${dataBytes}`);
  return n;
}

/** whether encoded entries (at least one) are all of tree blobs: a tree pack */
export function onlyTreeEntries(b: Buffer): boolean {
  if (b.length === 0) return false;
  for (let at = 0; at < b.length; at += PACK_ENTRY_BYTES) if (b[at] !== TYPE_CODES.tree) return false;
  return true;
}

/** Decodes and validates a list of entries (checkEntries). `dataBytes` is the size of the blob section they must exactly cover. */
export function decodeEntries(b: Buffer, dataBytes: number, what: string): PackEntry[] {
  const n = checkEntries(b, dataBytes, what);
  const entries: PackEntry[] = new Array(n);
  for (let k = 0, at = 0; k < n; k++, at += PACK_ENTRY_BYTES) {
    entries[k] = {
      type: b[at] === TYPE_CODES.data ? 'data' : 'tree',
      id: Buffer.from(b.subarray(at + 1, at + 33)),
      offset: b.readUInt32LE(at + 33),
      length: b.readUInt32LE(at + 37),
      rawLength: b.readUInt32LE(at + 41),
    };
  }
  return entries;
}

export interface FinishedPack {
  /** SHA-256 of `bytes`. */
  id: Buffer;
  bytes: Buffer;
  entries: PackEntry[];
}

/**
 * A finished pack as the pieces it is made of, in order: stored as their concatenation. With a
 * `spill` writer, `parts` are only the header and its length: the pack is the `spilled` bytes
 * the writer gave away, then `parts`.
 */
export interface FinishedPackParts {
  /** SHA-256 of the whole pack. */
  id: Buffer;
  parts: Buffer[];
  /** bytes of the pack's blobs given to `spill` (0 without it): they come before `parts` */
  spilled: number;
  /** total bytes of the pack */
  size: number;
  entries: PackEntry[];
  /** `entries` encoded (encodeEntries: 45 bytes each), as in the header and in index objects */
  encodedEntries: Buffer;
}

export interface PackWriterOptions {
  /** Size at which `full` turns true (default 16 MiB). A pack may exceed it by one blob. */
  targetSize?: number;
  rng?: Rng;
  /**
   * Each added blob's envelope is handed to this function instead of being kept (it is hashed
   * first): the caller stores them in the order given (a file), so that a pack waiting for its
   * upload does not stay in memory. `finishParts` then returns only what follows them.
   */
  spill?: (sealed: Buffer) => void;
}

/**
 * Collects sealed blobs (sealBlob output, typically produced on worker threads) into one pack.
 * The writer does not dedup: the caller checks its index first.
 */
/** ids per slab of a PackWriter's id copies (16 KiB: a data pack of small files holds a few thousand entries) */
const ID_SLAB_IDS = 512;

export class PackWriter {
  private readonly keys: RepoKeys;
  private readonly rng: Rng | undefined;
  readonly targetSize: number;
  private readonly spill: ((sealed: Buffer) => void) | undefined;
  private parts: Buffer[] = [];
  private entries: PackEntry[] = [];
  private bytes = 0;
  /** the pack's bytes so far (hashed as they come: a spilled blob is not kept) */
  private hash = createHash('sha256');
  /**
   * The entries' ids, copied side by side into slabs of this writer's own. A copy made with
   * Buffer.from shares a pool slab with whatever else was copied then, and holds all of it while
   * the entry lives: a backup's tree pack, open for the whole run, kept ~8 MiB of slabs alive for
   * its 5,000 ids of the linux tree (a heap snapshot of the agent's main thread).
   */
  private idSlab = Buffer.alloc(0);
  private idSlabUsed = 0;

  constructor(keys: RepoKeys, opts: PackWriterOptions = {}) {
    this.keys = keys;
    this.rng = opts.rng;
    this.spill = opts.spill;
    this.targetSize = opts.targetSize ?? DEFAULT_PACK_TARGET;
    if (!Number.isSafeInteger(this.targetSize) || this.targetSize < 1 || this.targetSize > MAX_PACK_BYTES / 2) {
      throw new FormatError('Invalid', 'pack target size must be between 1 byte and 2 GiB');
    }
  }

  /** Bytes of blob envelopes so far. */
  get size(): number { return this.bytes; }
  get count(): number { return this.entries.length; }
  get full(): boolean { return this.bytes >= this.targetSize; }

  add(type: BlobType, id: Uint8Array, sealed: Uint8Array, rawLength: number): PackEntry {
    if (id.length !== BLOB_ID_BYTES) throw new FormatError('Invalid', 'blob id must be 32 bytes');
    if (sealed.length < ENVELOPE_OVERHEAD) throw new FormatError('Invalid', 'not a sealed blob');
    // Leave room for the header (at most a few MiB) below the 32-bit limit.
    if (this.bytes + sealed.length > MAX_PACK_BYTES - (1 << 26)) throw new FormatError('TooLarge', 'pack would exceed 4 GiB: finish it first');
    const bytes = asBuffer(sealed);
    // handed out first: if that throws, the writer is as it was (no entry for bytes it never stored)
    if (this.spill) this.spill(bytes);
    else this.parts.push(bytes);
    const entry: PackEntry = { type, id: this.copyId(id), offset: this.bytes, length: sealed.length, rawLength };
    this.entries.push(entry);
    this.hash.update(bytes);
    this.bytes += sealed.length;
    return entry;
  }

  private copyId(id: Uint8Array): Buffer {
    if (this.idSlabUsed === this.idSlab.length) {
      this.idSlab = Buffer.allocUnsafeSlow(ID_SLAB_IDS * BLOB_ID_BYTES);
      this.idSlabUsed = 0;
    }
    const copy = this.idSlab.subarray(this.idSlabUsed, this.idSlabUsed + BLOB_ID_BYTES);
    copy.set(id);
    this.idSlabUsed += BLOB_ID_BYTES;
    return copy;
  }

  /** Seals the header, returns the pack and resets the writer for the next one. */
  finish(): FinishedPack {
    if (this.spill) throw new FormatError('Invalid', 'a spilling writer has given its blobs away: use finishParts');
    const { id, parts, entries } = this.finishParts();
    return { id, bytes: Buffer.concat(parts), entries };
  }

  /**
   * The same pack without concatenating it: the blobs as they were added, then the header and its
   * length. An uploader can stream the parts and never hold a second copy of the pack.
   */
  finishParts(): FinishedPackParts {
    if (this.entries.length === 0) throw new FormatError('Invalid', 'an empty pack cannot be finished');
    const encodedEntries = encodeEntries(this.entries);
    const header = sealObject(this.keys, 'pack header', encodedEntries, this.rng ? { rng: this.rng } : {});
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(header.length, 0);
    this.hash.update(header).update(len);
    const result: FinishedPackParts = {
      id: this.hash.digest(), parts: [...this.parts, header, len], spilled: this.spill ? this.bytes : 0,
      size: this.bytes + header.length + 4, entries: this.entries, encodedEntries,
    };
    this.parts = [];
    this.entries = [];
    this.bytes = 0;
    this.hash = createHash('sha256');
    return result;
  }
}

/**
 * Reads a pack's header from its last bytes. `tail` is the end of the pack (the whole pack is
 * fine); `packSize` its total length (from LIST/HEAD or the index). If `tail` is too short the
 * error has code NeedMoreBytes and `needed` = how many bytes from the end to fetch.
 */
export function readPackHeader(keys: RepoKeys, tail: Uint8Array, packSize: number): PackEntry[] {
  const t = asBuffer(tail);
  if (t.length > packSize) throw new FormatError('Invalid', 'tail is longer than the pack');
  if (packSize < 4 + HEADER_OVERHEAD) throw new FormatError('Corrupt', `pack of ${packSize} bytes is too short to hold a header`);
  if (t.length < 4) throw new FormatError('NeedMoreBytes', 'need the last 4 bytes of the pack', 4);
  const headerLength = t.readUInt32LE(t.length - 4);
  if (headerLength < HEADER_OVERHEAD || headerLength > packSize - 4) {
    throw new FormatError('Corrupt', `pack header length ${headerLength} does not fit a ${packSize}-byte pack`);
  }
  const needed = headerLength + 4;
  if (t.length < needed) throw new FormatError('NeedMoreBytes', `need the last ${needed} bytes of the pack`, needed);
  const header = t.subarray(t.length - needed, t.length - 4);
  const dataBytes = packSize - needed;
  // The header can be at most one entry per envelope-overhead bytes of data: bounds decryption work.
  const maxPlain = Math.floor(dataBytes / ENVELOPE_OVERHEAD) * PACK_ENTRY_BYTES;
  const plain = openObject(keys, 'pack header', header, maxPlain);
  return decodeEntries(plain, dataBytes, 'pack header');
}

/** True if `bytes` are exactly the pack named `id` (no key needed). */
export function verifyPackId(bytes: Uint8Array, id: Uint8Array): boolean {
  return sha256(bytes).equals(id);
}

/**
 * Decrypts one blob given its entry. `source` is either the whole pack or just the entry's
 * byte range (a ranged GET of offset..offset+length-1): pass `sourceOffset` = where `source`
 * starts in the pack (0 for the whole pack, entry.offset for a ranged read). `into`: where a
 * compressed blob's plaintext is written (rawLength + 1 bytes or more; decompressFrame).
 */
export function extractBlob(keys: RepoKeys, source: Uint8Array, entry: PackEntry, sourceOffset = 0, maxLength = MAX_BLOB_BYTES, into?: Uint8Array): Buffer {
  const start = entry.offset - sourceOffset;
  if (start < 0 || start + entry.length > source.length) throw new FormatError('Corrupt', 'the bytes given do not contain this blob (truncated pack?)');
  return openBlob(keys, entry.id, source.subarray(start, start + entry.length), maxLength, entry.rawLength, into);
}
