// Snapshots: the encrypted record of one backup run, object kind "snapshot", canonical JSON:
//   {"v":1,"time":..,"name":..,"hostname":..,"username"?:..,"paths":[..],"tags":[..],
//    "tree":<hex>,"parent"?:<hex>,"program":..,"summary":{..}}
// Object key snapshots/<SHA-256 of the object bytes>; that hex is the snapshot id.
import { FormatError } from './errors.ts';
import { checkVersion, fromHex, isoTime, parseJsonObject, sha256, str, toHex, FORMAT_VERSION, type Rng } from './common.ts';
import type { RepoKeys } from './derive.ts';
import { openObject, sealObject, type SealedObject } from './envelope.ts';
import { validateBackupName } from './names.ts';

export interface Snapshot {
  /** Start of the backup, UTC, millisecond precision (Date.toISOString format). Same value as in the manifest. */
  time: string;
  /** Backup name (retention groups snapshots by it). */
  name: string;
  hostname: string;
  username?: string;
  /** The paths given to `shelter backup`, as typed (absolute). */
  paths: string[];
  tags: string[];
  /** Root tree blob id. */
  tree: Buffer;
  /** Id of the snapshot this one was made incrementally against. */
  parent?: Buffer;
  /** e.g. "shelter 0.1.0". */
  program: string;
  /** Counters: files, dirs, bytes, newFiles, changedFiles, unchangedFiles, newBlobs, newBytes, storedBytes, packs, durationMs... */
  summary: Record<string, number>;
}

const MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024;
const SUMMARY_KEY = /^[a-zA-Z][a-zA-Z0-9]{0,63}$/;

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new FormatError('Corrupt', `snapshot: ${what} must be an array of strings`);
  return v as string[];
}

export function encodeSnapshot(s: Snapshot): Buffer {
  isoTime(s.time, 'snapshot time', 'Invalid');
  validateBackupName(s.name);
  if (s.tree.length !== 32 || (s.parent !== undefined && s.parent.length !== 32)) throw new FormatError('Invalid', 'snapshot tree/parent ids are 32 bytes');
  const summary: Record<string, number> = {};
  for (const k of Object.keys(s.summary).sort()) {
    const v = s.summary[k]!;
    if (!SUMMARY_KEY.test(k) || !Number.isSafeInteger(v) || v < 0) throw new FormatError('Invalid', `snapshot summary ${k} must be a non-negative integer`);
    summary[k] = v;
  }
  const o: Record<string, unknown> = { v: FORMAT_VERSION, time: s.time, name: s.name, hostname: s.hostname };
  if (s.username !== undefined) o.username = s.username;
  o.paths = s.paths;
  o.tags = [...s.tags].sort();
  o.tree = toHex(s.tree);
  if (s.parent !== undefined) o.parent = toHex(s.parent);
  o.program = s.program;
  o.summary = summary;
  return Buffer.from(JSON.stringify(o), 'utf8');
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const o = parseJsonObject(bytes, MAX_SNAPSHOT_BYTES, 'snapshot');
  checkVersion(o.v, 'snapshot');
  const summaryRaw = o.summary;
  if (typeof summaryRaw !== 'object' || summaryRaw === null || Array.isArray(summaryRaw)) throw new FormatError('Corrupt', 'snapshot: summary must be an object');
  const summary: Record<string, number> = {};
  for (const [k, v] of Object.entries(summaryRaw)) {
    if (!SUMMARY_KEY.test(k) || typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new FormatError('Corrupt', `snapshot: summary ${k} must be a non-negative integer`);
    summary[k] = v;
  }
  const s: Snapshot = {
    time: isoTime(o.time, 'snapshot time'),
    name: validateBackupName(o.name, 'Corrupt'),
    hostname: str(o, 'hostname', 'snapshot'),
    paths: strings(o.paths, 'paths'),
    tags: strings(o.tags, 'tags'),
    tree: fromHex(o.tree, 32, 'snapshot tree'),
    program: str(o, 'program', 'snapshot'),
    summary,
  };
  if (o.username !== undefined) s.username = str(o, 'username', 'snapshot');
  if (o.parent !== undefined) s.parent = fromHex(o.parent, 32, 'snapshot parent');
  return s;
}

export function sealSnapshot(keys: RepoKeys, s: Snapshot, opts: { rng?: Rng } = {}): SealedObject {
  const bytes = sealObject(keys, 'snapshot', encodeSnapshot(s), opts);
  return { id: sha256(bytes), bytes };
}

/** Opens snapshots/<id>: name (SHA-256), key, envelope, structure. */
export function openSnapshot(keys: RepoKeys, bytes: Uint8Array, id?: Uint8Array): Snapshot {
  if (id !== undefined && !sha256(bytes).equals(id)) throw new FormatError('Authentication', 'snapshot object does not match its name (SHA-256)');
  return decodeSnapshot(openObject(keys, 'snapshot', bytes, MAX_SNAPSHOT_BYTES));
}
