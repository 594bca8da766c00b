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
// parent's trees as it would without one); it never changes what a snapshot holds, only how fast
// the unchanged part is found. Its packs must all be in the index, else it is ignored too.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { toHex } from '@shelter/format';
import type { Accounts } from './fsnode.ts';
import type { Repository } from './repository.ts';
import { DIGEST_BYTES, type WalkOptions } from './walk.ts';

const MAGIC = Buffer.from('shelter directory cache v1\n');
const ID_BYTES = 32;
const MAC_BYTES = 32;
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

/** $SHELTER_CACHE_DIR, else $XDG_CACHE_HOME/shelter, else ~/.cache/shelter */
export function cacheRoot(env = process.env): string {
  if (env.SHELTER_CACHE_DIR) return env.SHELTER_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'shelter');
}

const cacheFile = (root: string, repo: Repository, snapshotId: string) => join(root, toHex(repo.config.id), 'dirs', snapshotId);

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

const mac = (repo: Repository, body: Uint8Array) => createHmac('sha256', repo.keys.cache).update(body).digest();

/**
 * The cache of snapshot `snapshotId`, if there is a valid one made with the same walk key. Why one
 * was not used is told to `onIgnored` (a missing cache is not a reason worth telling).
 */
export function loadDirCache(repo: Repository, snapshotId: string, key: Buffer, root = cacheRoot(), onIgnored?: (why: string) => void): DirCache | undefined {
  const file = cacheFile(root, repo, snapshotId);
  let bytes: Buffer;
  try { bytes = readFileSync(file); } catch { return undefined; }
  try {
    return parseDirCache(repo, bytes, snapshotId, key);
  } catch (e) {
    onIgnored?.(`${file}: ${(e as Error).message}`);
    return undefined;
  }
}

/** throws why the bytes are not a usable cache of this snapshot */
export function parseDirCache(repo: Repository, bytes: Buffer, snapshotId: string, key: Buffer): DirCache {
  if (bytes.length > MAX_CACHE_BYTES) throw new Error('too large');
  if (bytes.length < MAGIC.length + 2 * ID_BYTES + 8 + MAC_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a directory cache');
  const body = bytes.subarray(0, bytes.length - MAC_BYTES);
  if (!timingSafeEqual(mac(repo, body), bytes.subarray(body.length))) throw new Error('authentication failed (damaged, or made with another key)');
  let at = MAGIC.length;
  const need = (n: number) => { if (at + n > body.length) throw new Error('truncated'); const s = at; at += n; return s; };
  const u32 = () => body.readUInt32LE(need(4));
  const bytesOf = (n: number) => body.subarray(need(n), at);
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
  if (at !== body.length) throw new Error('trailing bytes');
  return { get: (path) => dirs.get(path.toString('latin1')), size: dirs.size };
}

interface Pending { path: Buffer; digest: Buffer; tree: Buffer; packs: Set<number>; unresolved: Buffer[] }

/** The cache of the snapshot being made: a record per directory, written once the snapshot is saved. */
export interface DirCacheWriter {
  /**
   * Records a directory. `packs`: packs known to hold its files' contents; `unresolved`: content
   * blob ids whose packs are not known yet (queued for sealing), looked up when written.
   */
  add(path: Buffer, digest: Buffer, tree: Buffer, packs: Iterable<number>, unresolved?: Buffer[]): void;
  /** after the snapshot is saved (every blob indexed): writes its cache, and removes the parent's */
  write(snapshotId: string, parentId?: string): void;
}

export function dirCacheWriter(repo: Repository, key: Buffer, root = cacheRoot()): DirCacheWriter {
  const dirs: Pending[] = [];
  return {
    add(path, digest, tree, packs, unresolved = []) {
      dirs.push({ path: Buffer.from(path), digest: Buffer.from(digest), tree, packs: new Set(packs), unresolved });
    },
    write(snapshotId, parentId) {
      const table = new Map<number, number>();
      const slot = (n: number) => { let s = table.get(n); if (s === undefined) table.set(n, (s = table.size)); return s; };
      const parts: Buffer[] = [];
      const u32 = (n: number) => { const b = Buffer.allocUnsafe(4); b.writeUInt32LE(n); parts.push(b); };
      u32(dirs.length);
      for (const d of dirs) {
        for (const id of d.unresolved) {
          const loc = repo.index.lookup(id);
          if (!loc) throw new Error(`internal: blob ${toHex(id)} is in no index after the snapshot was saved`);
          d.packs.add(loc.pack);
        }
        u32(d.path.length); parts.push(d.path, d.digest, d.tree);
        u32(d.packs.size);
        for (const n of d.packs) u32(slot(n));
      }
      const head = [MAGIC, Buffer.from(snapshotId, 'hex'), key];
      const count = Buffer.allocUnsafe(4); count.writeUInt32LE(table.size);
      head.push(count, ...[...table.keys()].map((n) => repo.index.packId(n)));
      const body = Buffer.concat([...head, ...parts]);
      const dir = join(root, toHex(repo.config.id), 'dirs');
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const file = cacheFile(root, repo, snapshotId);
      const tmp = `${file}.partial-${process.pid}`;
      try {
        writeFileSync(tmp, Buffer.concat([body, mac(repo, body)]), { mode: 0o600 });
        renameSync(tmp, file);
      } finally { rmSync(tmp, { force: true }); }
      if (parentId && parentId !== snapshotId) rmSync(cacheFile(root, repo, parentId), { force: true });
    },
  };
}
