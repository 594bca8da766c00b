// Local copies of the repository's index and snapshot objects, in the agent's cache directory
// (localcache.ts): <cache>/<repository id>/objects/{index,snapshots}/<64 hex>. Every backup adds
// at least one of each, and opening the repository reads all of them: after a year of daily
// backups that was hundreds of GETs before the first byte of a backup was read (restic and kopia
// keep the same local copies). Both kinds are immutable and named by the SHA-256 of their bytes,
// and are only ever opened by functions that check that name (openIndex, openSnapshot): a copy
// that changed fails there, is dropped and fetched again. Copies of objects the bucket no longer
// holds (deleted by the gateway) are removed when the listing that no longer names them is read.
//
// `shelter check` never uses it: it must read what the bucket holds.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ownDir, pruneDir, readOwnFile, writeOwnFile } from './localcache.ts';
import type { Backend } from './backend/types.ts';

/** an index object holds at most 64 MiB of plaintext (format's MAX_INDEX_BYTES), plus its envelope */
const MAX_OBJECT_BYTES = 80 * 1024 * 1024;
const KEY = /^(index|snapshots)\/([0-9a-f]{64})$/;

export type CachedKind = 'index' | 'snapshots';

export interface ObjectCache {
  /** the copy of `key` (index/<hex> or snapshots/<hex>), if there is one */
  get(key: string): Buffer | undefined;
  /** keeps a copy of `key`'s bytes (fetched and opened) */
  put(key: string, bytes: Uint8Array): void;
  /** the copy of `key` did not open: removed */
  drop(key: string): void;
  /** removes the copies of `kind` whose keys are not in `present` (a listing of the bucket) */
  keepOnly(kind: CachedKind, present: ReadonlySet<string>): void;
}

/**
 * The copies of repository `repoId` under cache root `root`. A problem with the directory or a
 * file (another user's, a symlink, a full disk) never fails a command: it is told to `onProblem`
 * once, and the objects are fetched as without a cache.
 */
export function objectCache(root: string, repoId: string, onProblem?: (message: string) => void): ObjectCache {
  let broken = false;
  const problem = (what: string, e: unknown) => {
    if (!broken) onProblem?.(`object cache ${join(root, repoId, 'objects')}: ${what}: ${(e as Error).message}`);
    broken = true;
  };
  // each kind's directory, once checked (ownDir is a few lstat calls; a run reads hundreds of copies)
  const checked = new Map<CachedKind, string>();
  const dirOf = (kind: CachedKind, create: boolean) => {
    let dir = checked.get(kind);
    if (!dir) {
      dir = ownDir(root, [repoId, 'objects', kind], create);
      if (dir) checked.set(kind, dir);
    }
    return dir;
  };
  const parse = (key: string) => KEY.exec(key) as [string, CachedKind, string] | null;
  return {
    get(key) {
      const k = parse(key);
      if (!k || broken) return undefined;
      try {
        const dir = dirOf(k[1], false);
        return dir ? readOwnFile(join(dir, k[2]), MAX_OBJECT_BYTES) : undefined;
      } catch (e) { problem(`reading ${key}`, e); return undefined; }
    },
    put(key, bytes) {
      const k = parse(key);
      if (!k || broken) return;
      try { writeOwnFile(dirOf(k[1], true)!, k[2], bytes); }
      catch (e) { problem(`writing ${key}`, e); }
    },
    drop(key) {
      const k = parse(key);
      if (!k || broken) return;
      try { const dir = dirOf(k[1], false); if (dir) rmSync(join(dir, k[2]), { force: true }); }
      catch (e) { problem(`removing ${key}`, e); }
    },
    keepOnly(kind, present) {
      if (broken) return;
      try {
        const dir = dirOf(kind, false);
        if (dir) pruneDir(dir, (f) => present.has(`${kind}/${f}`));
      } catch (e) { problem(`pruning ${kind}`, e); }
    },
  };
}

/**
 * Object `key` (an index or snapshot object), opened by `open` (which checks its name): from the
 * cache's copy when there is a good one (a bad one is dropped), else fetched, and then kept.
 * Undefined if the bucket does not hold it; `open`'s error if what the bucket holds does not open.
 */
export async function readObject<T>(backend: Backend, key: string, open: (bytes: Buffer) => T, cache: ObjectCache | undefined): Promise<T | undefined> {
  const copy = cache?.get(key);
  if (copy) {
    try { return open(copy); }
    catch { cache!.drop(key); }
  }
  const bytes = await backend.get(key);
  if (!bytes) return undefined;
  const value = open(bytes);
  cache?.put(key, bytes);
  return value;
}
