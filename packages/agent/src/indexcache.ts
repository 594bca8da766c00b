// The local index cache: the in-memory index (format's memindex.ts) as the last command that
// opened or changed the repository left it, so that the next one need not open every index object
// again. Opening them (SHA-256, decryption, zstd, validation) and sorting their entries took ~240 ms
// of a linux-tree backup with 97,000 blobs, most of an incremental backup's start; this file is read
// and checked in 60-80 ms (most of it the first touch of fresh memory), and its arrays become the index as they are.
//
// Not part of the repository (the index objects in the bucket are the truth): one file per
// repository under the agent's cache directory, authenticated with the repository's `cache`
// subkey. Read here only if it lists exactly the index objects the bucket lists; whether every pack
// it holds is still in the bucket is openRepo's to check (repository.ts, next to the same rule for
// index objects). Otherwise (a backup from elsewhere, packs deleted by the gateway's deletion
// workflow) the index objects are opened as without it, and the cache is written again. One
// damaged, tampered with or made with another key is ignored the same way. `check` never uses it.
// File layout: docs/FORMAT.md, "Index cache".
import { endianness } from 'node:os';
import { join } from 'node:path';
import { BlobIndex, indexKey, parseObjectKey, type RepoKeys } from '@shelter/format';
import { openCacheFile, readOwnFile, sealCacheFile, writeOwnFile } from './localcache.ts';

const MAGIC = Buffer.from('shelter index cache v2\n');
const ID_BYTES = 32;
/** bytes per entry: the id's 8 words and the location's 4 (memindex.ts) */
const ID_WORDS = 8, VAL_WORDS = 4;
/** a cache file larger than this is not read (10 million blobs take ~490 MB) */
const MAX_CACHE_BYTES = 2 ** 31 - 1;
const FILE = 'index';
/** pack flag: it holds tree blobs only */
const TREE_ONLY = 1;

/** what the repository keeps of its index besides the entries */
export interface IndexState {
  index: BlobIndex;
  /** index object key -> the numbers of the packs it lists (every pack with entries is in one) */
  objects: ReadonlyMap<string, readonly number[]>;
  /** numbers of the packs that hold tree blobs only */
  treePacks: ReadonlySet<number>;
}

/**
 * The cached index of the repository whose cache directory is `dir`, if there is one made from
 * exactly the index objects `listed`; undefined if there is none or it is out of date; throws why
 * one cannot be used (damaged, another key's).
 */
export function readIndexCache(dir: string, keys: RepoKeys, listed: readonly string[]): IndexState | undefined {
  // (the arrays are views of the file's bytes: the same byte order as the machine that wrote it)
  if (endianness() !== 'LE') return undefined;
  const bytes = readOwnFile(join(dir, FILE), MAX_CACHE_BYTES);
  if (!bytes) return undefined;
  const r = openCacheFile(bytes, MAGIC, keys.cache, 'an index cache');
  const { u32, bytes: bytesOf } = r;

  const packCount = u32();
  const packIds: Buffer[] = new Array(packCount);
  const treePacks = new Set<number>();
  for (let n = 0; n < packCount; n++) {
    packIds[n] = bytesOf(ID_BYTES);
    if (r.u8() & TREE_ONLY) treePacks.add(n);
  }
  const objectCount = u32();
  // out of date unless it holds exactly the index objects listed (index objects are immutable:
  // the same names, the same contents)
  if (objectCount !== listed.length) return undefined;
  const wanted = new Set(listed);
  const objects = new Map<string, number[]>();
  /** packs an index object lists: the only ones entries may be in */
  const indexed = new Uint8Array(packCount);
  for (let k = 0; k < objectCount; k++) {
    const key = indexKey(bytesOf(ID_BYTES));
    const numbers = new Array<number>(u32());
    for (let i = 0; i < numbers.length; i++) {
      const n = u32();
      if (n >= packCount) throw new Error('an index object lists a pack out of the table');
      numbers[i] = n;
      indexed[n] = 1;
    }
    if (!wanted.has(key) || objects.has(key)) return undefined;
    objects.set(key, numbers);
  }

  const entries = u32();
  r.skip((4 - (r.at % 4)) % 4);
  const idBytes = entries * ID_WORDS * 4, valBytes = entries * VAL_WORDS * 4;
  const idsAt = r.skip(idBytes), valsAt = r.skip(valBytes);
  r.end();
  // views when aligned (a file's buffer of its own starts at offset 0), copies otherwise
  const words = (from: number, length: number): Uint32Array<ArrayBuffer> => ((bytes.byteOffset + from) % 4 === 0
    ? new Uint32Array(bytes.buffer as ArrayBuffer, bytes.byteOffset + from, length / 4)
    : new Uint32Array(Uint8Array.prototype.slice.call(bytes, from, from + length).buffer));
  const vals = words(valsAt, valBytes);
  for (let i = 0; i < vals.length; i += VAL_WORDS) if (indexed[vals[i]!] !== 1) throw new Error('a blob is in a pack that no index object lists');
  const index = BlobIndex.fromSorted(packIds, words(idsAt, idBytes), vals);
  return { index, objects, treePacks };
}

/** Writes the cache of `state` into `dir` (replacing the one there). */
export function writeIndexCache(dir: string, keys: RepoKeys, state: IndexState): void {
  if (endianness() !== 'LE') return;
  const { packIds, ids, vals } = state.index.sorted();
  let headLength = MAGIC.length + 4 + packIds.length * (ID_BYTES + 1) + 4 + 4;
  for (const numbers of state.objects.values()) headLength += ID_BYTES + 4 + 4 * numbers.length;
  headLength += (4 - (headLength % 4)) % 4;
  const head = Buffer.alloc(headLength);
  let at = MAGIC.copy(head, 0);
  at = head.writeUInt32LE(packIds.length, at);
  packIds.forEach((id, n) => {
    at += id.copy(head, at);
    at = head.writeUInt8(state.treePacks.has(n) ? TREE_ONLY : 0, at);
  });
  at = head.writeUInt32LE(state.objects.size, at);
  for (const [key, numbers] of state.objects) {
    at += Buffer.from(parseObjectKey(key)!.id!, 'hex').copy(head, at);
    at = head.writeUInt32LE(numbers.length, at);
    for (const n of numbers) at = head.writeUInt32LE(n, at);
  }
  head.writeUInt32LE(ids.length / ID_WORDS, at);
  const parts = [head, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength), new Uint8Array(vals.buffer, vals.byteOffset, vals.byteLength)];
  writeOwnFile(dir, FILE, [...parts, sealCacheFile(keys.cache, parts)]);
}
