// Object names in the bucket. Everything but `config` and `manifests/` is named after a hash of
// its own content, so a name is never written with two different contents: the agent needs no
// DELETE and no overwrite, and works unchanged on immutable (versioned, object-locked) storage.
//
//   config                          plaintext JSON, written once by `init`
//   keys/<64 hex>                   key slot (wrapped master key), name = SHA-256 of the slot bytes
//   data/<2 hex>/<64 hex>           pack, name = SHA-256 of the pack bytes; <2 hex> = its first byte
//   index/<64 hex>                  index object, name = SHA-256 of its bytes
//   snapshots/<64 hex>              snapshot object, name = SHA-256 of its bytes (= the snapshot id)
//   manifests/<64 hex>              plaintext reference manifest of snapshots/<same hex>
import { FormatError } from './errors.ts';
import { toHex } from './common.ts';

export type ObjectType = 'config' | 'key' | 'pack' | 'index' | 'snapshot' | 'manifest';

export const CONFIG_KEY = 'config';

const ID = '([0-9a-f]{64})';
const PATTERNS: [ObjectType, RegExp][] = [
  ['key', new RegExp(`^keys/${ID}$`)],
  ['pack', new RegExp(`^data/([0-9a-f]{2})/${ID}$`)],
  ['index', new RegExp(`^index/${ID}$`)],
  ['snapshot', new RegExp(`^snapshots/${ID}$`)],
  ['manifest', new RegExp(`^manifests/${ID}$`)],
];

function hex32(id: Uint8Array | string): string {
  const h = typeof id === 'string' ? id : toHex(id);
  if (!/^[0-9a-f]{64}$/.test(h)) throw new FormatError('Invalid', 'object ids are 32 bytes (64 lower-case hex digits)');
  return h;
}

export const keySlotKey = (id: Uint8Array | string): string => `keys/${hex32(id)}`;
export const packKey = (id: Uint8Array | string): string => { const h = hex32(id); return `data/${h.slice(0, 2)}/${h}`; };
export const indexKey = (id: Uint8Array | string): string => `index/${hex32(id)}`;
export const snapshotKey = (id: Uint8Array | string): string => `snapshots/${hex32(id)}`;
export const manifestKey = (snapshotId: Uint8Array | string): string => `manifests/${hex32(snapshotId)}`;

export interface ParsedKey {
  type: ObjectType;
  /** Hex id (absent for config). */
  id?: string;
}

/** Classifies an object key; null for anything that is not a repository object. */
export function parseObjectKey(key: string): ParsedKey | null {
  if (key === CONFIG_KEY) return { type: 'config' };
  for (const [type, re] of PATTERNS) {
    const m = re.exec(key);
    if (!m) continue;
    if (type === 'pack') return m[2]!.startsWith(m[1]!) ? { type, id: m[2]! } : null;
    return { type, id: m[1]! };
  }
  return null;
}

/**
 * Backup names are plaintext (manifests) and show up in the console and in retention policies:
 * a short, printable, path-safe vocabulary.
 */
export const BACKUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+=:-]{0,127}$/;

export function validateBackupName(name: unknown, code: 'Invalid' | 'Corrupt' = 'Invalid'): string {
  if (typeof name !== 'string' || !BACKUP_NAME.test(name)) {
    throw new FormatError(code, 'backup name: 1-128 characters of A-Z a-z 0-9 . _ @ + = : -, starting with a letter or digit');
  }
  return name;
}
