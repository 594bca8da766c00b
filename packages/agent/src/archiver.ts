// `shelter backup files`: walks the given paths, stores new file contents as chunks and every
// directory as a tree blob, and writes the snapshot and its plaintext reference manifest.
// Incremental: a file whose size, mtime, ctime and inode match the parent snapshot's node is not
// read again; its chunk list is reused. A changed file's leading chunks that are still the parent's
// are verified by hashing on the seal workers instead of being chunked again (prefixToVerify).
// Without parent, the seal workers read small files and stream large ones themselves; this thread
// reads and chunks the files in between (see saveEntry).
import { closeSync, fstatSync, lstatSync, readSync, type BigIntStats } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { resolve } from 'node:path';
import { Chunker, encodeTree, sameNode, type TreeNode } from '@shelter/format';
import { treeLoader } from './trees.ts';
import type { DirCache, DirCacheWriter, DirRecord } from './dircache.ts';
import { joinPath, openForBackup, readAccounts, statNode, type Accounts } from './fsnode.ts';
import { fileStat, Kind, startWalker, type FileStat, type Group, type Walker, type WalkEntry } from './walk.ts';
import type { Repository, SnapshotEntry } from './repository.ts';
import { PROGRAM } from './version.ts';
import { loopYielder } from './limit.ts';
import { collectWhenGrown } from './collect.ts';

export interface BackupOptions {
  name: string;
  paths: string[];
  include?: string[];
  exclude?: string[];
  followSymlinks?: boolean;
  oneFileSystem?: boolean;
  tags?: string[];
  parent?: SnapshotEntry;
  onProgress?: (p: Progress) => void;
  onWarning?: (path: string, message: string) => void;
  /** the walk, if already begun (beginWalk); closed by backupFiles */
  walk?: BackupWalk;
  /**
   * The parent snapshot's directory cache (dircache.ts): a directory whose listing is as recorded
   * keeps its tree id, and the parent's trees are loaded only for directories that changed.
   */
  dirCache?: DirCache;
  /** records this snapshot's directories for the next backup's cache */
  recordDirs?: DirCacheWriter;
  /**
   * The uid/gid name tables nodes are made with (default: read now); the cache's walk key must be
   * made from the same ones (cli.ts reads them once for both)
   */
  accounts?: Accounts;
}

/**
 * The file-system walk of a backup, started before anything else (it runs on its own thread, so
 * the CLI starts it before opening the repository): the roots, in the order the archiver visits them.
 */
export interface BackupWalk {
  walker: Walker;
  roots: string[];
  /** the names below `prefix` on the way to the roots, sorted; true: that name is a root itself */
  childrenOf(prefix: string): Array<[string, boolean]>;
  under(prefix: string, name: string): string;
  /** backing up / itself: the snapshot's root is its listing */
  wholeFs: boolean;
}

export function beginWalk(opts: Pick<BackupOptions, 'paths' | 'include' | 'exclude' | 'followSymlinks' | 'oneFileSystem'>): BackupWalk {
  // the virtual root: each path given, under its absolute path's directories (as restic does)
  const roots = opts.paths.map((p) => resolve(p));
  const childrenOf = (prefix: string): Array<[string, boolean]> => {
    const below = new Map<string, boolean>();
    for (const r of roots) {
      if (r === prefix || !(prefix === '/' ? r.startsWith('/') : r.startsWith(prefix + '/'))) continue;
      const rest = r.slice(prefix === '/' ? 1 : prefix.length + 1);
      const first = rest.split('/')[0]!;
      below.set(first, (below.get(first) ?? false) || rest === first);
    }
    return [...below.entries()].sort();
  };
  const under = (prefix: string, name: string) => (prefix === '/' ? `/${name}` : `${prefix}/${name}`);
  const walkOrder = (prefix: string): string[] => childrenOf(prefix).flatMap(([first, isRoot]) => (isRoot ? [under(prefix, first)] : walkOrder(under(prefix, first))));
  const walker = startWalker({ followSymlinks: opts.followSymlinks, oneFileSystem: opts.oneFileSystem, include: opts.include, exclude: opts.exclude });
  const wholeFs = roots.includes('/');
  for (const r of wholeFs ? ['/'] : walkOrder('/')) walker.walk(Buffer.from(r));
  walker.end();
  return { walker, roots, childrenOf, under, wholeFs };
}

export interface Progress { files: number; dirs: number; bytesRead: number; bytesTotal: number; newBytes: number; currentPath: string }

/** a changed file's leading chunks, verified unchanged since the parent snapshot, and their bytes */
interface Prefix { ids: Buffer[]; bytes: number }

/** a directory's tree id, which may wait for the ids of its files' chunks */
interface PendingTree { id: Promise<Buffer> }

export interface BackupResult { snapshotId: string; summary: Record<string, number>; warnings: number }

const READ_SIZE = 4 * 1024 * 1024;
/**
 * A backup without parent streams files of this size or more through the seal workers, up to
 * MAX_FILE_STREAMS at once (two per worker). Smaller ones are read and chunked here: one round
 * trip to a worker per file of a few hundred KiB cost more than it saved. With a parent, every
 * new file too large to be read as one chunk by a worker is streamed: in an incremental backup
 * the workers mostly wait while this thread has the walk's results, the parent's trees and the
 * new trees to handle, and reading, chunking and copying new files here (into fresh batch
 * buffers) was ~8% of its work (bench/ab.ts --op change, 50 new files of 1 MiB: linux 4.06 ->
 * 3.83 s, peak RSS 353 -> 310 MiB).
 */
const STREAM_MIN_BYTES = READ_SIZE;
const MAX_FILE_STREAMS = 4;
/** the most the walk runs on without giving the event loop a turn (limit.ts loopYielder) */
const YIELD_MS = 10;
/** a changed file's unchanged-looking leading chunks are verified by the seal workers from this many bytes on */
const VERIFY_MIN_BYTES = 4 * 1024 * 1024;

export async function backupFiles(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  const started = new Date();
  const accounts = opts.accounts ?? readAccounts();
  const summary = { files: 0, dirs: 0, bytes: 0, newFiles: 0, changedFiles: 0, unchangedFiles: 0, newBlobs: 0, newBytes: 0, storedBytes: 0, skipped: 0, cachedDirs: 0 };
  let warnings = 0;
  let currentPath: Buffer = Buffer.alloc(0);
  // the path as text only when a progress line shows it
  const progress: Progress = { files: 0, dirs: 0, bytesRead: 0, bytesTotal: 0, newBytes: 0, get currentPath() { return currentPath.toString(); } };
  const referencedPacks = new Set<number>();
  const unresolved: Buffer[] = [];
  // the event loop gets a turn every YIELD_MS of the walk at least (uploads, workers' messages)
  const yielder = loopYielder(YIELD_MS);
  // at each turn given to the loop, a full collection if this thread's heap has grown well past
  // what was live after the last one (collect.ts collectWhenGrown): V8 let it grow from ~25 MiB
  // live to 70-90 MiB between its own collections in a backup of the linux tree. Peak RSS of
  // that backup 354 -> 320 MiB, same time (bench/ab.ts --op initial, 3 alternated runs; no
  // change in time for the no-change and 1% change backups either)
  const yieldNow = () => {
    const pause = yielder();
    if (pause) collectWhenGrown();
    return pause;
  };
  // room for a read plus the bytes of a chunk not yet cut (at most chunker.max)
  const readBuf = Buffer.allocUnsafeSlow(Math.max(READ_SIZE, 2 * repo.config.chunker.max));
  // one chunker for the whole run: building its gear table costs an AES call; end() resets it
  const chunker = new Chunker(repo.keys, repo.config.chunker);

  const warn = (path: Buffer | string, message: string) => {
    warnings++;
    opts.onWarning?.(path.toString(), message);
  };
  const reference = (id: Buffer) => {
    const loc = repo.index.lookup(id);
    if (loc) referencedPacks.add(loc.pack); else unresolved.push(id);
  };

  // No parent: nearly every chunk is new, so the seal workers hash them too (saveBlobUnhashed) and
  // this thread only reads and chunks; directory trees are encoded as their files' ids arrive.
  // With a parent, most chunks of a changed file are duplicates: hashing here first avoids
  // compressing them for nothing.
  const unhashed = !opts.parent;
  const walk = opts.walk ?? beginWalk(opts);
  const { walker, roots, childrenOf, under, wholeFs } = walk;
  try {
  // the parent snapshot's hierarchy, loaded in the background (grouped requests, in the walk's
  // order) while the walk goes on; each directory's listing is decoded when the walk reaches it
  const dirCache = opts.parent ? opts.dirCache : undefined;
  // Without a directory cache the whole parent hierarchy loads ahead: bounded (tree loader), and
  // the parent's subdirectories the walk does not enter (deleted, excluded, another file system)
  // are skipped once their directory is done (parentDirsDone)
  const parentTrees = opts.parent ? treeLoader(repo, opts.parent.snapshot.tree, { release: true, follow: !dirCache, bounded: !dirCache }) : undefined;
  /** a directory done: its parent's subdirectories not taken by now never will be (taken ones: no-op) */
  const parentDirsDone = (before: Map<string, TreeNode>) => {
    if (!parentTrees || dirCache) return;
    for (const n of before.values()) if (n.type === 'dir' && n.subtree) parentTrees.forget(n.subtree);
  };
  if (dirCache && parentTrees) {
    // Trees are loaded only for directories that changed: as the walker lists one whose digest is
    // not the recorded one, its parent tree is fetched ahead (grouped requests, opened by the
    // workers), with its ancestors' (rebuilt with its new tree id once it is saved)
    const wanted = new Set<string>();
    walker.onGroup((dir, digest) => {
      const rec = dirCache.get(dir);
      if (rec?.digest.equals(digest)) return;
      const ids: Buffer[] = [];
      for (let p = dir; ;) {
        const k = p.toString('latin1');
        if (wanted.has(k)) break;
        wanted.add(k);
        const r = dirCache.get(p);
        if (r) ids.push(r.tree);
        const slash = p.lastIndexOf(0x2f);
        if (slash <= 0) break;
        p = p.subarray(0, slash);
      }
      if (ids.length) parentTrees.prefetch(ids);
      // something changed: the seal workers will open those trees and seal what is new; the first
      // starts now rather than when first asked (~0.1 s), the others if the work grows (sealpool.ts)
      repo.sealPool();
    });
  }
  let parentFailed = false;
  /** the parent's trees cannot be read: said once; its files are read again from here on */
  const parentUnreadable = (e: unknown) => {
    if (!parentFailed) warn('(parent snapshot)', `cannot read the parent snapshot, every file from here on is read again: ${(e as Error).message}`);
    parentFailed = true;
  };
  /** a directory's nodes at the parent snapshot, by name (latin1: every byte string is a distinct key) */
  const parentChildren = async (subtree: Buffer | undefined): Promise<Map<string, TreeNode>> => {
    const m = new Map<string, TreeNode>();
    if (!subtree || !parentTrees || parentFailed) return m;
    let nodes: TreeNode[];
    try { nodes = await parentTrees.nodes(subtree); }
    catch (e) {
      parentUnreadable(e);
      return m;
    }
    for (const n of nodes) m.set(n.name.toString('latin1'), n);
    return m;
  };

  const unchanged = (prev: TreeNode | undefined, st: FileStat) =>
    prev !== undefined && prev.type === 'file' && prev.content !== undefined && prev.size === st.size && prev.mtime === st.mtimeNs &&
    prev.ctime === st.ctimeNs && prev.inode === st.ino && prev.content.every((id) => repo.hasBlob(id));

  /**
   * A changed file's leading chunks to verify rather than chunk again: the chunker's cuts depend
   * only on the bytes since the previous cut, so where the file still begins with the parent's
   * chunks, chunking it again would find the same cuts. The seal workers read and hash those chunks
   * in parallel instead (every byte is still read and checked against its id), and chunking starts
   * after the last one that matches. The parent's last chunk ended at its end of file, not at a cut:
   * it is always chunked again (an append lands there). Undefined: not worth it (small, no parent).
   */
  function prefixToVerify(content: Buffer[] | undefined): { ids: Buffer[]; lengths: number[] } | undefined {
    if (unhashed || content === undefined || content.length < 2) return undefined;
    const lengths: number[] = [];
    let total = 0;
    for (const id of content.slice(0, -1)) {
      const loc = repo.index.lookup(id);
      if (!loc) break;
      lengths.push(loc.rawLength);
      total += loc.rawLength;
    }
    // below this, reading and chunking here costs less than a round trip to the workers
    if (total < VERIFY_MIN_BYTES) return undefined;
    return { ids: content.slice(0, lengths.length), lengths };
  }

  async function verifiedPrefix(path: Buffer, plan: { ids: Buffer[]; lengths: number[] }): Promise<Prefix | undefined> {
    let matched: number;
    try { matched = await repo.sealPool().verifyChunks(path, plan.lengths, plan.ids); }
    catch { return undefined; } // read from the start, which reports what is wrong
    let bytes = 0;
    for (let i = 0; i < matched; i++) bytes += plan.lengths[i]!;
    return { ids: plan.ids.slice(0, matched), bytes };
  }

  // One file at a time reads into readBuf and pushes into the chunker: a changed file whose
  // leading chunks are being verified is read later, between other files.
  let chunking: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chunking.then(fn);
    chunking = p.catch(() => { /* the caller gets the error */ });
    return p;
  };
  /**
   * The backup stops (an error thrown while a directory is saved): what its entries still wait for
   * is no longer awaited, and must not reject unhandled (Node would exit before the error is reported).
   */
  const abandon = (...lists: Array<ReadonlyArray<Promise<unknown>>>) => { for (const l of lists) for (const p of l) p.catch(() => { /* the error thrown is the one reported */ }); };

  /** a file met by the walk; `same`: unchanged since the parent (not read: counted as read) */
  const countFile = (size: number, same: boolean) => {
    summary.files++; progress.files++; summary.bytes += size; progress.bytesTotal += size;
    if (same) { summary.unchangedFiles++; progress.bytesRead += size; }
  };

  /** a file that did not hold, when read, the bytes it had at the walk's stat */
  const sizeRead = (path: Buffer, size: number, read: number) => { if (read !== size) warn(path, `changed while being read (${size} bytes at stat, ${read} read)`); };

  /** a blob saved for a file's content: referenced, counted; its id */
  const counted = (r: { id: Buffer; added: boolean }, length: number) => {
    reference(r.id);
    if (r.added) { summary.newBlobs++; summary.newBytes += length; progress.newBytes += length; }
    return r.id;
  };
  // a file below the chunker's minimum is one chunk: without parent, a seal worker reads it; a
  // large one is streamed through a seal worker (read, chunked, hashed, sealed there), a few at once
  const smallFileMax = repo.config.chunker.min;
  let streaming = 0;
  const streamSlots: Array<() => void> = [];

  /** nodes of files that could not be read after all (deferred reads): left out of their directory */
  const unreadable = new WeakSet<TreeNode>();
  /** a file sent to a worker as small that has grown to a chunk or more since the walk: read and chunked here */
  const readGrown = async (path: Buffer, size: number, node: TreeNode, cannotRead: (e: unknown) => void) => {
    try {
      const saved = await exclusive(() => saveContent(path, size, undefined, undefined, false));
      node.size = saved.bytes;
      node.content = await saved.ids;
    } catch (e) { cannotRead(e); unreadable.add(node); }
  };

  /**
   * The chunk ids of a file: known now, or (unhashed mode) once the seal workers have hashed them.
   * `prefix`: its leading chunks, verified unchanged (prefixToVerify); reading starts after them.
   */
  async function saveContent(path: Buffer, size: number, prefix?: Prefix, walked?: FileStat, hashHere = !unhashed): Promise<{ ids: Buffer[] | Promise<Buffer[]>; bytes: number }> {
    const fd = openForBackup(path, opts.followSymlinks);
    if (prefix && walked) {
      // the prefix was verified earlier: a file changed since the walk (another inode, or written
      // again) is read whole, not stored as the old leading chunks and new trailing bytes
      let now: BigIntStats | undefined;
      try { now = fstatSync(fd, { bigint: true }); } catch { /* read whole */ }
      if (!now || now.ino !== walked.ino || now.dev !== walked.dev || now.mtimeNs !== walked.mtimeNs || now.ctimeNs !== walked.ctimeNs) prefix = undefined;
    }
    const ids: Buffer[] = [];
    const later: Array<Promise<Buffer>> = [];
    let position = 0;
    if (prefix) {
      for (const id of prefix.ids) { reference(id); ids.push(id); }
      position = prefix.bytes;
      progress.bytesRead += position;
    }
    const emit = async (chunk: Buffer) => {
      if (!hashHere) {
        const { queued, result } = repo.saveBlobUnhashed('data', chunk);
        const length = chunk.length;
        later.push(result.then((r) => counted(r, length)));
        await queued;
      } else {
        ids.push(counted(await repo.saveBlob('data', chunk), chunk.length));
      }
    };
    // readBuf holds the bytes since the last cut, [start, end), and what is read next after them: a
    // chunk is a view of it (saveBlob and saveBlobUnhashed copy it before they return), so a file is
    // read, cut and handed over without a copy or an allocation of its own
    let start = 0, end = 0;
    try {
      for (;;) {
        // little room left: the uncut bytes (less than chunker.max, at most half the buffer) move to the front
        if (readBuf.length - end < readBuf.length / 4 && start > 0) { readBuf.copyWithin(0, start, end); end -= start; start = 0; }
        const n = readSync(fd, readBuf, end, readBuf.length - end, position);
        if (n === 0) break;
        const at = end;
        end += n;
        for (const cut of chunker.push(readBuf.subarray(at, end))) { // cuts: offsets within what was just pushed
          await emit(readBuf.subarray(start, at + cut));
          start = at + cut;
        }
        position += n;
        progress.bytesRead += n;
      }
      if (end > start) await emit(readBuf.subarray(start, end));
    } catch (e) {
      abandon(later);
      throw e;
    } finally {
      chunker.end(); // resets it for the next file, also after an error
      closeSync(fd);
    }
    sizeRead(path, size, position);
    return { ids: hashHere ? ids : Promise.all(later), bytes: position };
  }

  /**
   * A directory: its group is the walker's next. Resolves once it is walked; its tree id may still
   * wait for chunk ids (unhashed mode), so the walk goes on meanwhile.
   */
  async function saveDir(path: Buffer, parentSubtree: Buffer | undefined): Promise<PendingTree> {
    const pause = yieldNow();
    if (pause) await pause;
    const group = await walker.next();
    if (!group.dir.equals(path)) throw new Error(`internal: the walker listed ${group.dir.toString()} where ${path.toString()} was expected`);
    if (group.error !== undefined) warn(path, `cannot list: ${group.error}`);
    // as the cache recorded it (a recorded listing was saved without error: see savedAsWalked)
    const rec = dirCache?.get(path);
    if (rec && parentSubtree?.equals(rec.tree) && rec.digest.equals(group.digest) && group.error === undefined && repo.hasBlob(rec.tree)) return reuseDir(path, group, rec);
    const before = await parentChildren(parentSubtree);
    const prevs = group.entries.map((e) => before.get(e.name.toString('latin1')));
    const nodes: TreeNode[] = [];
    const waits: Array<Promise<void>> = [];
    // the verification of changed files' leading chunks starts now, before this directory's other
    // files are read: it keeps the workers busy while this thread reads
    const verifying = new Map<WalkEntry, Promise<Prefix | undefined>>();
    if (!unhashed && before.size) {
      group.entries.forEach((e, k) => {
        const p = prevs[k];
        // (a file of one chunk has nothing to verify: the cheap test first)
        if (e.kind !== Kind.Ok || e.st!.type !== 'file' || p?.type !== 'file' || (p.content?.length ?? 0) < 2 || unchanged(p, e.st!)) return;
        const plan = prefixToVerify(p.content);
        if (plan) verifying.set(e, verifiedPrefix(joinPath(path, e.name), plan));
      });
    }
    try {
      for (let k = 0; k < group.entries.length; k++) {
        const e = group.entries[k]!;
        // (a directory of many unchanged files runs as microtasks too)
        const pause = yieldNow();
        if (pause) await pause;
        const node = await saveEntry(joinPath(path, e.name), e, prevs[k], waits, verifying.get(e));
        if (node) nodes.push(node);
      }
    } catch (e) {
      abandon(waits, [...verifying.values()]);
      throw e;
    }
    parentDirsDone(before);
    summary.dirs++;
    progress.dirs++;
    // nothing in it changed: the parent's listing is this one, byte for byte (no encoding, no hashing)
    const sameAsParent = (kept: TreeNode[]) => !!parentSubtree && kept.length === before.size && repo.hasBlob(parentSubtree)
      && kept.every((n) => { const p = before.get(n.name.toString('latin1')); return p !== undefined && sameNode(n, p); });
    const id = listingTree(path, group, nodes, waits, (kept) => (sameAsParent(kept) ? parentSubtree : undefined));
    id.catch(() => { /* awaited by the parent directory; not unhandled if the walk stops first */ });
    return { id };
  }

  /**
   * The tree of a directory made from its listing, once its files' contents are known (those that
   * could not be read left out): the parent's tree id if `parentTree` says the nodes are exactly
   * its, else a tree saved now; recorded in the directory cache if saved exactly as walked.
   */
  async function listingTree(path: Buffer, group: Group, nodes: TreeNode[], waits: Array<Promise<void>>, parentTree?: (kept: TreeNode[]) => Buffer | undefined): Promise<Buffer> {
    await Promise.all(waits);
    const kept = nodes.filter((n) => !unreadable.has(n));
    const same = parentTree?.(kept);
    if (same) reference(same);
    const tree = same ?? await saveTree(kept);
    if (opts.recordDirs && savedAsWalked(group, kept)) recordDir(path, group.digest, tree, kept);
    return tree;
  }

  /**
   * Whether a directory's tree is exactly what its listing as walked makes (the directory cache may
   * then stand for it): listed without error, every entry stat'ed and saved, every file read at
   * the size the walk saw. A directory with anything left out or changed while read is not recorded:
   * the next backup looks at it again.
   */
  function savedAsWalked(group: Group, kept: readonly TreeNode[]): boolean {
    if (group.error !== undefined) return false;
    let k = 0;
    for (const e of group.entries) {
      if (e.kind === Kind.Excluded) continue;
      if (e.kind !== Kind.Ok && e.kind !== Kind.Descend && e.kind !== Kind.OtherFs) return false;
      const n = kept[k++];
      if (n === undefined || !n.name.equals(e.name) || (n.type === 'file' && n.size !== e.st!.size)) return false;
    }
    return k === kept.length;
  }

  /** a directory saved by its listing: recorded with the packs of its files' contents */
  function recordDir(path: Buffer, digest: Buffer, tree: Buffer, nodes: readonly TreeNode[]): void {
    const packs = new Set<number>();
    const unresolved: Buffer[] = [];
    for (const n of nodes) {
      for (const id of n.content ?? []) {
        const loc = repo.index.lookup(id);
        if (loc) packs.add(loc.pack); else unresolved.push(id);
      }
    }
    opts.recordDirs!.add(path, digest, tree, packs, unresolved);
  }

  /**
   * A directory whose listing is the one the directory cache recorded for the parent snapshot: its
   * files are the parent's (same names, stats, so same contents), so its tree is the parent's,
   * unless a subdirectory's tree changed; then the parent's tree is loaded and only those subtree
   * ids are replaced. Nothing of it is read, loaded or compared otherwise.
   */
  async function reuseDir(path: Buffer, group: Group, rec: DirRecord): Promise<PendingTree> {
    const subs: Array<{ name: Buffer; was: Buffer | undefined; id: Promise<Buffer> }> = [];
    // the parent's tree of this directory, loaded only if needed; unreadable: undefined (warned)
    let parentNodes: Promise<TreeNode[] | undefined> | undefined;
    const loadParent = () => (parentNodes ??= parentTrees!.nodes(rec.tree).catch((e: unknown) => { parentUnreadable(e); return undefined; }));
    try {
      // (the group's entries are not decoded: kinds, names and sizes are enough here)
      for (let k = 0; k < group.count; k++) {
        if (group.kindAt(k) !== Kind.Descend) continue;
        const name = group.nameAt(k);
        const sub = joinPath(path, name);
        // a subdirectory not recorded (its files were not all saved as walked): its parent tree
        // is found in this directory's
        const was = dirCache!.get(sub)?.tree ?? (await loadParent())?.find((n) => n.type === 'dir' && n.name.equals(name))?.subtree;
        subs.push({ name, was, id: (await saveDir(sub, was)).id });
      }
    } catch (e) {
      abandon(subs.map((s) => s.id));
      throw e;
    }
    summary.dirs++;
    progress.dirs++;
    currentPath = path;
    opts.onProgress?.(progress);
    const id = Promise.all(subs.map((s) => s.id)).then(async (ids) => {
      const changed = new Map<string, Buffer>();
      subs.forEach((s, k) => { if (!s.was || !ids[k]!.equals(s.was)) changed.set(s.name.toString('latin1'), ids[k]!); });
      let tree = rec.tree;
      if (changed.size) {
        // a subdirectory changed: the parent's listing with its new tree id
        const nodes = await loadParent();
        if (!nodes) return fromListing(path, group, subs.map((s, k) => ids[k]!));
        for (const n of nodes) {
          const sub = n.type === 'dir' ? changed.get(n.name.toString('latin1')) : undefined;
          if (sub) { n.subtree = sub; changed.delete(n.name.toString('latin1')); }
        }
        if (changed.size) throw new Error(`internal: the parent's tree of ${path.toString()} does not list the subdirectories its directory cache recorded (run the backup with --no-cache)`);
        tree = await saveTree(nodes);
      } else {
        reference(tree);
      }
      // what the parent's listing holds besides subdirectories' trees: its files' contents (the
      // recorded packs), and the empty tree of a directory on another file system
      for (const n of rec.packs) referencedPacks.add(n);
      for (let k = 0; k < group.count; k++) {
        const kind = group.kindAt(k);
        if (kind === Kind.OtherFs) { summary.skipped++; await saveTree([]); }
        else if (kind === Kind.Excluded) summary.skipped++;
        else if (kind === Kind.Ok) { const size = group.fileSizeAt(k); if (size >= 0) countFile(size, true); }
      }
      summary.cachedDirs++;
      opts.recordDirs?.add(path, group.digest, tree, rec.packs);
      return tree;
    });
    id.catch(() => { /* awaited by the parent directory; not unhandled if the walk stops first */ });
    return { id };
  }

  /**
   * A directory whose parent tree could not be read after all (reuseDir): its tree is made from
   * its listing, every file read again, as a backup without parent would.
   */
  async function fromListing(path: Buffer, group: Group, subIds: Buffer[]): Promise<Buffer> {
    const nodes: TreeNode[] = [];
    const waits: Array<Promise<void>> = [];
    let k = 0;
    try {
      for (const e of group.entries) {
        if (e.kind === Kind.Descend) {
          const n = statNode(e.name, e.st!, accounts);
          n.subtree = subIds[k++]!;
          nodes.push(n);
          continue;
        }
        const n = await saveEntry(joinPath(path, e.name), e, undefined, waits);
        if (n) nodes.push(n);
      }
    } catch (e) {
      abandon(waits);
      throw e;
    }
    return listingTree(path, group, nodes, waits);
  }

  async function saveTree(nodes: TreeNode[]): Promise<Buffer> {
    const r = await repo.saveBlob('tree', encodeTree(nodes));
    reference(r.id);
    if (r.added) summary.newBlobs++;
    return r.id;
  }

  /** a node; what it still waits for (chunk ids, a subdirectory's tree id) is added to `waits` */
  /** `verifying`: the verification of its leading chunks, if already started (saveDir) */
  async function saveEntry(path: Buffer, e: WalkEntry, prev: TreeNode | undefined, waits: Array<Promise<void>>, verifying?: Promise<Prefix | undefined>): Promise<TreeNode | undefined> {
    switch (e.kind) {
      case Kind.StatFailed: warn(path, e.error ?? 'cannot stat'); return undefined;
      case Kind.Unsupported: warn(path, 'unsupported file type'); return undefined;
      case Kind.Excluded: summary.skipped++; return undefined;
    }
    const st = e.st!;
    const node = statNode(e.name, st, accounts);
    // An atime that changed while the ctime did not (any explicit change, utimes included, sets the
    // ctime): the entry was only read or listed since the parent snapshot, by anyone, this
    // program's own listing included. It keeps the parent's atime, so that such a directory's tree
    // is the parent's (as the directory cache, whose listing digest leaves atimes out, assumes).
    if (prev && prev.ctime === st.ctimeNs && prev.inode === st.ino && prev.type === st.type) node.atime = prev.atime;
    currentPath = path;
    opts.onProgress?.(progress);
    switch (st.type) {
      case 'file': {
        const same = unchanged(prev, st);
        countFile(st.size, same);
        if (same) {
          node.content = prev!.content!;
          for (const id of node.content) reference(id);
        } else {
          const wasFile = prev?.type === 'file';
          if (wasFile) summary.changedFiles++; else summary.newFiles++;
          // a file new since the parent (or no parent): its chunks are most likely new, so the seal
          // workers hash them (and read it, if small or large) rather than this thread. (A file
          // moved or copied is then compressed for nothing before dedup drops it: worker time, in
          // parallel, against this thread's, which an incremental backup is bound by.)
          const byWorkers = unhashed || !wasFile;
          const cannotRead = (e: unknown) => warn(path, `cannot read: ${(e as Error).message}`);
          /** content read later (a worker, or after a verification): a file that cannot be read is left out */
          const later = (work: Promise<{ ids: Buffer[]; bytes: number }>) => {
            waits.push(work.then((r) => { node.size = r.bytes; node.content = r.ids; }, (e) => { cannotRead(e); unreadable.add(node); }));
            return node;
          };
          if (byWorkers && st.size > 0 && st.size < smallFileMax) {
            // read, hashed and sealed by a seal worker: this thread neither opens nor reads it
            const { queued, result } = repo.saveSmallFileUnhashed(path, st.size);
            // (a plain callback: an async one cost a promise more per file, ~80k on the linux tree)
            waits.push(result.then((r) => {
              if ('error' in r) { cannotRead(new Error(r.error)); unreadable.add(node); return; }
              if ('large' in r) return readGrown(path, st.size, node, cannotRead);
              node.size = r.length;
              node.content = 'id' in r ? [counted(r, r.length)] : [];
              progress.bytesRead += r.length;
              sizeRead(path, st.size, r.length);
            }));
            await queued;
            return node;
          }
          if (byWorkers && st.size >= (unhashed ? STREAM_MIN_BYTES : smallFileMax)) {
            while (streaming >= MAX_FILE_STREAMS) await new Promise<void>((res) => { streamSlots.push(res); });
            streaming++;
            return later(repo.saveFileStream(path, st.size).finally(() => { streaming--; streamSlots.shift()?.(); }).then((r) => {
              progress.bytesRead += r.bytes;
              sizeRead(path, st.size, r.bytes);
              return { ids: r.chunks.map((c) => counted(c, c.raw)), bytes: r.bytes };
            }));
          }
          const plan = verifying || !wasFile ? undefined : prefixToVerify(prev!.content);
          const verified = verifying ?? (plan && verifiedPrefix(path, plan));
          // verified by the workers meanwhile; the rest of the file is read once they have (ids known
          // at once: there is a parent)
          if (verified) return later(verified.then((prefix) => exclusive(() => saveContent(path, st.size, prefix, st))) as Promise<{ ids: Buffer[]; bytes: number }>);
          try {
            const saved = await exclusive(() => saveContent(path, st.size, undefined, undefined, !byWorkers));
            node.size = saved.bytes;
            if (Array.isArray(saved.ids)) node.content = saved.ids;
            else waits.push(saved.ids.then((ids) => { node.content = ids; }));
          } catch (e) { cannotRead(e); return undefined; }
        }
        return node;
      }
      case 'dir':
        if (e.kind === Kind.OtherFs) { summary.skipped++; node.subtree = await saveTree([]); return node; }
        if (e.kind === Kind.Loop) { warn(path, 'directory loop (followed symlink): not descended again'); node.subtree = await saveTree([]); return node; }
        waits.push((await saveDir(path, prev?.type === 'dir' ? prev.subtree : undefined)).id.then((id) => { node.subtree = id; }));
        return node;
      case 'symlink':
        node.target = e.target!;
        return node;
      default:
        return node;
    }
  }

  const parentRoot = opts.parent?.snapshot.tree;
  async function rootDir(parentSubtree: Buffer | undefined): Promise<Buffer> {
    const e = (await walker.next()).entries[0]!;
    if (e.kind !== Kind.Descend) throw new Error(`cannot back up /: ${e.error ?? 'not a directory to walk'}`);
    return (await saveDir(Buffer.from('/'), parentSubtree)).id;
  }
  /** whether the directory cache has a record of every root under `prefix` (each a directory then) */
  const rootsCached = (prefix: string): boolean => childrenOf(prefix).every(([first, isRoot]) =>
    (isRoot ? dirCache?.get(Buffer.from(under(prefix, first))) !== undefined : rootsCached(under(prefix, first))));
  /** a root directory's node at the parent as far as the directory cache knows it: its tree (all saveDir reads) */
  const cachedRoot = (name: Buffer, path: Buffer): TreeNode | undefined => {
    const rec = dirCache?.get(path);
    return rec && { name, type: 'dir', mode: 0, uid: 0, gid: 0, mtime: 0n, atime: 0n, ctime: 0n, subtree: rec.tree };
  };
  async function virtualDir(prefix: string, parentSubtree: Buffer | undefined): Promise<Buffer> {
    // the directories above the roots are not walked: their trees at the parent only lead to the
    // roots' own, which the directory cache holds when it has every root (no request for them)
    const fromCache = rootsCached(prefix);
    const before = fromCache ? new Map<string, TreeNode>() : await parentChildren(parentSubtree);
    const nodes: TreeNode[] = [];
    const waits: Array<Promise<void>> = [];
    try {
      for (const [first, isRoot] of childrenOf(prefix)) {
        const full = Buffer.from(under(prefix, first));
        const name = Buffer.from(first);
        const p = fromCache ? (isRoot ? cachedRoot(name, full) : undefined) : before.get(name.toString('latin1'));
        if (isRoot) {
          // the root's own group: itself alone (walkOrder asked for the roots in this order)
          const group = await walker.next();
          if (!group.dir.equals(full)) throw new Error(`internal: the walker gave root ${group.dir.toString()} where ${full.toString()} was expected`);
          const node = await saveEntry(full, { ...group.entries[0]!, name }, p, waits);
          if (node) nodes.push(node);
        } else {
          const node = statNode(name, fileStat(lstatSync(full, { bigint: true }), 'dir'), accounts);
          node.subtree = await virtualDir(full.toString(), p?.type === 'dir' ? p.subtree : undefined);
          nodes.push(node);
        }
      }
    } catch (e) {
      abandon(waits);
      throw e;
    }
    parentDirsDone(before);
    await Promise.all(waits);
    return saveTree(nodes.filter((n) => !unreadable.has(n)));
  }

  const tree = wholeFs ? await rootDir(parentRoot) : await virtualDir('/', parentRoot);
  await repo.flush();
  for (const id of unresolved) {
    const loc = repo.index.lookup(id);
    if (!loc) throw new Error(`internal: blob ${id.toString('hex')} was saved but is in no index after flush`);
    referencedPacks.add(loc.pack);
  }
  summary.storedBytes = repo.stats.sealedBytes;
  const durationMs = Date.now() - started.getTime();
  const snapshotId = await repo.saveSnapshot({
    time: started.toISOString(), name: opts.name, hostname: hostname(), username: userInfo().username, paths: roots, tags: opts.tags ?? [],
    tree, ...(opts.parent ? { parent: Buffer.from(opts.parent.id, 'hex') } : {}), program: PROGRAM,
    summary: { ...summary, durationMs, packs: repo.stats.packsUploaded },
  }, referencedPacks);
  return { snapshotId, summary: { ...summary, durationMs, packs: repo.stats.packsUploaded }, warnings };
  } finally {
    await walker.close();
  }
}
