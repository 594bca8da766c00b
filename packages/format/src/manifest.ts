// The reference manifest: the only plaintext object a snapshot writes, for the gateway.
//
//   {"v":1,"name":"<backup name>","time":"<ISO ms UTC>","snapshot":"snapshots/<hex>",
//    "packs":["data/..",..],"indexes":["index/..",..]}
//
// Stored at manifests/<snapshot id>. Name and time let the gateway apply retention per backup
// name; the key lists let it delete exactly the objects no retained snapshot needs, without
// decrypting anything. The parser is written for a gateway reading uploads from clients it
// does not trust: size limit, exact field set, key syntax, sorted unique lists, and canonical
// bytes (one manifest has one serialization, so no two parsers can read it differently).
import { FormatError } from './errors.ts';
import { checkVersion, isoTime, onlyKeys, parseJsonObject, FORMAT_VERSION } from './common.ts';
import { manifestKey, parseObjectKey, validateBackupName } from './names.ts';

export interface Manifest {
  name: string;
  time: string;
  /** snapshots/<hex> */
  snapshot: string;
  /** Sorted data/ keys of every pack holding a blob the snapshot references (its trees and file contents). */
  packs: string[];
  /** Sorted index/ keys of index objects that together list all of those packs. */
  indexes: string[];
}

/** 64 MiB is ~890,000 pack keys: a single snapshot of ~14 TB of unique data at 16 MiB per pack. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

const FIELDS = ['v', 'name', 'time', 'snapshot', 'packs', 'indexes'] as const;

function checkKeys(v: unknown, type: 'pack' | 'index', what: string, code: 'Invalid' | 'Corrupt'): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new FormatError(code, `manifest: ${what} must be a non-empty array`);
  for (let i = 0; i < v.length; i++) {
    const k: unknown = v[i];
    if (typeof k !== 'string' || parseObjectKey(k)?.type !== type) throw new FormatError(code, `manifest: ${what}[${i}] is not a ${type} object key`);
    // All keys of one type have the same length and alphabet, so string order is byte order.
    if (i > 0 && !((v[i - 1] as string) < k)) throw new FormatError(code, `manifest: ${what} must be sorted and unique`);
  }
  return v as string[];
}

function validate(m: Manifest, code: 'Invalid' | 'Corrupt'): void {
  validateBackupName(m.name, code);
  isoTime(m.time, 'manifest time', code);
  if (typeof m.snapshot !== 'string' || parseObjectKey(m.snapshot)?.type !== 'snapshot') throw new FormatError(code, 'manifest: snapshot must be a snapshots/ key');
  checkKeys(m.packs, 'pack', 'packs', code);
  checkKeys(m.indexes, 'index', 'indexes', code);
}

function serialize(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify({ v: FORMAT_VERSION, name: m.name, time: m.time, snapshot: m.snapshot, packs: m.packs, indexes: m.indexes }), 'utf8');
}

/** Canonical bytes. Sorts and dedups the key lists for the caller. */
export function encodeManifest(m: Manifest): Buffer {
  const norm: Manifest = { ...m, packs: [...new Set(m.packs)].sort(), indexes: [...new Set(m.indexes)].sort() };
  validate(norm, 'Invalid');
  const bytes = serialize(norm);
  if (bytes.length > MAX_MANIFEST_BYTES) throw new FormatError('TooLarge', `manifest of ${bytes.length} bytes exceeds ${MAX_MANIFEST_BYTES}`);
  return bytes;
}

/** The object key a manifest must be stored under. */
export function manifestKeyFor(m: Pick<Manifest, 'snapshot'>): string {
  const p = parseObjectKey(m.snapshot);
  if (p?.type !== 'snapshot') throw new FormatError('Invalid', 'manifest: snapshot must be a snapshots/ key');
  return manifestKey(p.id!);
}

export interface ParseManifestOptions {
  /** The object key it was stored under: must be manifests/<the snapshot's id>. */
  key?: string;
  maxBytes?: number;
}

/** Strict parser for untrusted input. Throws FormatError (Corrupt, TooLarge or UnsupportedVersion). */
export function parseManifest(bytes: Uint8Array, opts: ParseManifestOptions = {}): Manifest {
  const o = parseJsonObject(bytes, Math.min(opts.maxBytes ?? MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES), 'manifest');
  checkVersion(o.v, 'manifest');
  onlyKeys(o, FIELDS, 'manifest');
  const m = { name: o.name, time: o.time, snapshot: o.snapshot, packs: o.packs, indexes: o.indexes } as Manifest;
  validate(m, 'Corrupt');
  if (!serialize(m).equals(bytes)) throw new FormatError('Corrupt', 'manifest is not in canonical form (field order, whitespace, escapes)');
  if (opts.key !== undefined && opts.key !== manifestKeyFor(m)) throw new FormatError('Corrupt', `manifest stored as ${opts.key} but describes ${m.snapshot}`);
  return m;
}
