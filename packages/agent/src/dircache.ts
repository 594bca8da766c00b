// The local directory cache of incremental backups: for each directory of a snapshot, the digest
// of its listing as walked (walk.ts listingDigest), its tree id, and the packs holding its files'
// contents. The next backup of the same name, finding a directory whose listing digest is the same,
// reuses its tree id without loading, decrypting or decoding the parent's tree (and, if a
// subdirectory changed, loads that one tree only). It is what makes a backup with nothing changed
// cost the walk and little more (borg's files cache, restic's and kopia's local caches, play this role).
//
// Not part of the repository: a file per snapshot under the agent's cache directory, bound to the
// snapshot it describes, the walk's options and the account names it was made with, and
// authenticated with the repository's `cache` subkey. A cache that is missing, for another
// snapshot, made with other options, damaged or tampered with is ignored (the backup loads the
// parent's trees as it would without one); the snapshot made with it is the one made without it
// (packages/agent/test/dircache.test.ts compares them), only found faster. Its packs must all be
// in the index, else it is ignored too. Rules and file layout: docs/FORMAT.md, "Local directory cache".
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { toHex } from '@shelter/format';
import type { Accounts } from './fsnode.ts';
import { CACHE_MAC_BYTES, cacheRoot, openCacheFile, ownDir, pruneDir, readOwnFile, sealCacheFile, writeOwnFile } from './localcache.ts';
import type { Repository } from './repository.ts';
import { DIGEST_BYTES, type WalkOptions } from './walk.ts';

const MAGIC = Buffer.from('shelter directory cache v1\n');
const ID_BYTES = 32;
/** a cache file larger than this is not read (a million directories take ~150 MB) */
const MAX_CACHE_BYTES = 1 << 30;

/** one directory of the snapshot a cache describes */
export interface DirRecord {
  /** listingDigest of the directory as walked */
  digest: Buffer;
  /** its tree blob id in that snapshot */
  tree: Buffer;
  /** index pack numbers of the packs holding its files' content blobs (not its subdirectories') */
  packs: readonly number[];
}

export interface DirCache {
  get(path: Buffer): DirRecord | undefined;
  readonly size: number;
}

/** the cache's directory of this repository (localcache.ts ownDir: created if asked, refused if another user can write to it) */
const ownDirs = (root: string, repo: Repository, create: boolean) => ownDir(root, [toHex(repo.config.id), 'dirs'], create);

/**
 * What else a snapshot's trees depend on besides the listings: the walk's options (which entries
 * are there, what is followed) and the user and group names nodes carry.
 */
export function walkKey(opts: Pick<WalkOptions, 'include' | 'exclude' | 'followSymlinks' | 'oneFileSystem'>, accounts: Accounts): Buffer {
  const sorted = (m: Map<number, string>) => [...m].sort((a, b) => a[0] - b[0]);
  return createHash('sha256').update(JSON.stringify({
    include: opts.include ?? [], exclude: opts.exclude ?? [], followSymlinks: !!opts.followSymlinks, oneFileSystem: !!opts.oneFileSystem,
    users: sorted(accounts.users), groups: sorted(accounts.groups),
  })).digest();
}

/**
 * The cache of snapshot `snapshotId`, if there is a valid one made with the same walk key. Why one
 * was not used is told to `onIgnored` (a missing cache is not a reason worth telling).
 */
export function loadDirCache(repo: Repository, snapshotId: string, key: Buffer, root = cacheRoot(), onIgnored?: (why: string) => void): DirCache | undefined {
  try {
    const dir = ownDirs(root, repo, false);
    const bytes = dir && readOwnFile(join(dir, snapshotId), MAX_CACHE_BYTES);
    return bytes ? parseDirCache(repo, bytes, snapshotId, key) : undefined;
  } catch (e) {
    onIgnored?.(`${join(root, toHex(repo.config.id), 'dirs', snapshotId)}: ${(e as Error).message}`);
    return undefined;
  }
}

/** throws why the bytes are not a usable cache of this snapshot */
export function parseDirCache(repo: Repository, bytes: Buffer, snapshotId: string, key: Buffer): DirCache {
  if (bytes.length > MAX_CACHE_BYTES) throw new Error('too large');
  const r = openCacheFile(bytes, MAGIC, repo.keys.cache, 'a directory cache');
  const { u32, bytes: bytesOf } = r;
  if (toHex(bytesOf(ID_BYTES)) !== snapshotId) throw new Error('made for another snapshot');
  if (!bytesOf(ID_BYTES).equals(key)) throw new Error('made with other walk options or account names');
  const packCount = u32();
  const packs = new Array<number>(packCount);
  for (let i = 0; i < packCount; i++) {
    const n = repo.index.packNumber(bytesOf(ID_BYTES));
    if (n === undefined) throw new Error('names a pack that is not in the index');
    packs[i] = n;
  }
  const dirCount = u32();
  const dirs = new Map<string, DirRecord>();
  for (let i = 0; i < dirCount; i++) {
    const path = bytesOf(u32()).toString('latin1');
    const digest = Buffer.from(bytesOf(DIGEST_BYTES));
    const tree = Buffer.from(bytesOf(ID_BYTES));
    const n = u32();
    const own = new Array<number>(n);
    for (let k = 0; k < n; k++) {
      const p = packs[u32()];
      if (p === undefined) throw new Error('names a pack out of its table');
      own[k] = p;
    }
    dirs.set(path, { digest, tree, packs: own });
  }
  r.end();
  return { get: (path) => dirs.get(path.toString('latin1')), size: dirs.size };
}

interface Pending { path: Buffer; digest: Buffer; tree: Buffer; packs: Set<number>; unresolved: readonly Buffer[] }

/** The cache of the snapshot being made: a record per directory, written once the snapshot is saved. */
export interface DirCacheWriter {
  /**
   * Records a directory. `packs`: packs known to hold its files' contents; `unresolved`: content
   * blob ids whose packs are not known yet (queued for sealing), looked up when written.
   */
  add(path: Buffer, digest: Buffer, tree: Buffer, packs: Iterable<number>, unresolved?: Buffer[]): void;
  /**
   * After the snapshot is saved (every blob indexed): writes its cache, and removes every other
   * cache file of this repository but those of the snapshots in `keep` (the latest of each name).
   */
  write(snapshotId: string, keep: ReadonlySet<string>): void;
}

export function dirCacheWriter(repo: Repository, key: Buffer, root = cacheRoot()): DirCacheWriter {
  const dirs: Pending[] = [];
  return {
    add(path, digest, tree, packs, unresolved = []) {
      dirs.push({ path: Buffer.from(path), digest: Buffer.from(digest), tree, packs: new Set(packs), unresolved });
    },
    write(snapshotId, keep) {
      // one buffer of the exact size (a million directories are a few hundred MB of small writes otherwise)
      const table = new Map<number, number>();
      const slot = (n: number) => { let x = table.get(n); if (x === undefined) table.set(n, (x = table.size)); return x; };
      let size = MAGIC.length + 2 * ID_BYTES + 4 + 4 + CACHE_MAC_BYTES;
      for (const d of dirs) {
        for (const id of d.unresolved) {
          const loc = repo.index.lookup(id);
          if (!loc) throw new Error(`internal: blob ${toHex(id)} is in no index after the snapshot was saved`);
          d.packs.add(loc.pack);
        }
        d.unresolved = [];
        for (const n of d.packs) slot(n);
        size += 4 + d.path.length + DIGEST_BYTES + ID_BYTES + 4 + 4 * d.packs.size;
      }
      size += ID_BYTES * table.size;
      const out = Buffer.allocUnsafe(size);
      let at = MAGIC.copy(out, 0);
      at += Buffer.from(snapshotId, 'hex').copy(out, at);
      at += key.copy(out, at);
      at = out.writeUInt32LE(table.size, at);
      for (const n of table.keys()) at += repo.index.packId(n).copy(out, at);
      at = out.writeUInt32LE(dirs.length, at);
      for (const d of dirs) {
        at = out.writeUInt32LE(d.path.length, at);
        at += d.path.copy(out, at);
        at += d.digest.copy(out, at);
        at += d.tree.copy(out, at);
        at = out.writeUInt32LE(d.packs.size, at);
        for (const n of d.packs) at = out.writeUInt32LE(table.get(n)!, at);
      }
      sealCacheFile(repo.keys.cache, [out.subarray(0, at)]).copy(out, at);
      const dir = ownDirs(root, repo, true)!;
      writeOwnFile(dir, snapshotId, out);
      // the caches no next backup will use (parents, snapshots forgotten, unfinished writes)
      pruneDir(dir, (f) => f === snapshotId || keep.has(f));
    },
  };
}
