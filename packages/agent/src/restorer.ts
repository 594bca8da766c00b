// `shelter restore`: recreates a snapshot's files under a target directory. Contents are
// byte-identical; modes, times, symlinks, hard links, empty directories, special files, and
// ownership when running as root.
//
// How: (1) walk the hierarchy depth first (its trees loaded ahead in grouped requests, each
// decoded when its directory is reached), creating directories, symlinks and special files; (2)
// plan the chunks of each batch of files gathered (1,024 at first, twice as many each time up to
// BATCH_FILES), letting the event loop run every YIELD_MS; (3) fetch each batch's data pack range by
// pack range (a few concurrent ranged GETs, each at most 8 MiB of plaintext) while the walk
// gathers the next batch; the worker thread that decrypts a range also writes its chunks where
// they belong (pwrite), skipping all-zero chunks so holes stay holes; files spread over several
// ranges get their length and metadata once their last part is in, empty files are created after
// their batch; (4) hard links, then directories' metadata, deepest first. Memory stays bounded:
// ranges in flight, and two batches' plans.
import { chmodSync, closeSync, existsSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { packKey, toHex, type BlobLocation, type PackEntry, type TreeNode } from '@shelter/format';
import { groupRanges, writeRange } from './blobfetch.ts';
import { devNumbers, hardlinkKey, joinPath } from './fsnode.ts';
import type { FileWrite } from './writejob.ts';
import { createFile, finishFile, secondsOf, utimesArg, type FileMeta } from './filewrite.ts';
import { collectWhenGrown } from './collect.ts';
import { loopYielder, semaphore, type Semaphore } from './limit.ts';
import { pathFilter } from './pathfilter.ts';
import type { Repository, SnapshotEntry } from './repository.ts';
import { BackendError } from './backend/types.ts';
import { treeLoader, type TreeLoader } from './trees.ts';

export interface RestoreOptions {
  target: string;
  include?: string[];
  exclude?: string[];
  /** leave files that already exist in the target untouched */
  ignoreExisting?: boolean;
  /** concurrent pack downloads (default 4) */
  concurrency?: number;
  /** files planned and fetched together (default BATCH_FILES; tests use small batches) */
  batchFiles?: number;
  onProgress?: (p: { files: number; bytes: number; currentPath: string }) => void;
  onWarning?: (path: string, message: string) => void;
}

export interface RestoreResult { files: number; dirs: number; bytes: number; warnings: number }

/**
 * Files planned, fetched and written together: enough that a batch's ranges keep every worker
 * busy and few ranges are cut at a batch's edges (a range whose blobs two batches need is
 * fetched by each), few enough that plans stay small (~300 bytes of heap per file).
 */
const BATCH_FILES = 16384;
/**
 * The first batch is smaller, and each next one twice the size up to BATCH_FILES: the workers have
 * nothing to write until a batch is gathered, and gathering 16,384 files means walking (loading and
 * decoding the trees of) a fifth of the linux tree first.
 */
const FIRST_BATCH_FILES = 1024;
/**
 * The walk and the planning of a batch let the event loop run at least every YIELD_MS (limit.ts
 * loopYielder): the workers get their next range from this thread (signed here, results taken here).
 */
const YIELD_MS = 2;

/**
 * A file to restore. Only what the restore needs is kept (not its tree node): on the linux tree
 * the nodes of the whole hierarchy were 100 MiB of the main thread's heap.
 */
interface PlannedFile {
  path: Buffer; meta: FileMeta; failed: boolean;
  /** its chunks (dropped once the contents are planned) */
  content: Buffer[] | undefined;
  empty: boolean;
  /** ranges whose part of the contents is not written yet */
  rangesLeft: number;
  /** all its chunks are in one range: that range's worker creates, writes and finishes it */
  whole: boolean;
  done: boolean;
}

export async function restoreSnapshot(repo: Repository, snap: SnapshotEntry, opts: RestoreOptions): Promise<RestoreResult> {
  const target = Buffer.from(resolve(opts.target));
  mkdirSync(target, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // Where a file this restore creates gets the process's owner and group by itself, so that one
  // recorded with those needs no chown: in a directory made by this restore (mode 0700 until the
  // end) under a target that is neither setgid nor of another group. A directory that was there
  // already may be setgid, and a file created in it takes its group (so may one under a setgid
  // target, or on a file system mounted with grpid, under a target of another group).
  const [euid, egid] = [process.geteuid?.() ?? -1, process.getegid?.() ?? -1];
  const targetSt = statSync(target);
  const targetPlain = asRoot && targetSt.gid === egid && (targetSt.mode & 0o2000) === 0;
  const result: RestoreResult = { files: 0, dirs: 0, bytes: 0, warnings: 0 };
  const warn = (p: Buffer, m: string) => { result.warnings++; opts.onWarning?.(p.toString(), m); };
  const filter = pathFilter(opts.include, opts.exclude);
  // every directory not excluded is created; --include selects the files
  const selected = (rel: string, isDir: boolean) => !filter.excluded(rel) && (isDir || !filter.hasIncludes || filter.included(rel));
  /** `plain`: its directory gives new files the process's owner and group (see targetPlain) */
  const fileMeta = (n: TreeNode, plain: boolean): FileMeta => ({
    size: n.size ?? 0, mode: n.mode, uid: n.uid, gid: n.gid, chown: asRoot, ownedIfNew: plain && n.uid === euid && n.gid === egid,
    atime: secondsOf(n.atime), mtime: secondsOf(n.mtime),
  });
  const exists = (p: Buffer) => { try { lstatSync(p); return true; } catch { return false; } };
  const setMeta = (path: Buffer, n: TreeNode, isLink: boolean) => {
    try {
      if (asRoot) lchownSync(path, n.uid, n.gid);
      if (!isLink) chmodSync(path, n.mode);
      const [at, mt] = [utimesArg(secondsOf(n.atime)), utimesArg(secondsOf(n.mtime))];
      if (isLink) lutimesSync(path, at, mt); else utimesSync(path, at, mt);
    } catch (e) { warn(path, `cannot set metadata: ${(e as Error).message}`); }
  };

  // (1) the hierarchy, walked depth first: directories, symlinks and special files made as they
  // come; files gathered in batches of BATCH_FILES, each batch's contents planned, fetched and
  // written (2-3) while the walk goes on to the next. The trees load in the background in the
  // walk's order (trees.ts); each is decoded when the walk reaches its directory and is garbage
  // once the directory is done. Memory does not grow with the number of files, only with the
  // number of directories (their metadata is set last, deepest first) and of hard links: on the
  // linux tree the whole hierarchy's nodes, then every file's plan, were ~150 MiB of the main
  // thread's heap, and V8 kept the heap that size for the rest of the run.
  const links: Array<{ path: Buffer; first: PlannedFile }> = [];
  const hardlinks = new Map<string, PlannedFile>();
  const dirs: Array<[Buffer, TreeNode]> = [];
  const trees = treeLoader(repo, snap.snapshot.tree, { release: true, bounded: true });
  const batches = batchRunner();
  let batch: PlannedFile[] = [];
  let batchLimit = opts.batchFiles ?? FIRST_BATCH_FILES;
  const yieldNow = loopYielder(YIELD_MS);
  const walk = async (dir: Buffer, rel: string, subtree: Buffer, plain: boolean) => {
    // (a tree that cannot be loaded fails the restore: storage unreachable, or a damaged repository)
    const nodes = await trees.nodes(subtree);
    for (const n of nodes) {
      const pause = yieldNow();
      if (pause) await pause;
      const path = joinPath(dir, n.name);
      // (the path as text only when there is a filter to match: 30 MB of strings on the linux tree)
      const childRel = filter.active ? (rel ? `${rel}/${n.name.toString()}` : n.name.toString()) : '';
      if (filter.active && !selected(childRel, n.type === 'dir')) { if (n.type === 'dir') trees.forget(n.subtree!); continue; }
      if (n.type === 'dir') {
        let made = false;
        try { if (!existsSync(path)) { mkdirSync(path, { mode: 0o700 }); made = true; } }
        catch (e) { warn(path, `cannot restore: ${(e as Error).message}`); trees.forget(n.subtree!); continue; }
        result.dirs++;
        // outside the try: a tree that cannot be loaded fails the restore (the loader stops at its first failure)
        await walk(path, childRel, n.subtree!, plain && made);
        dirs.push([path, n]);
        continue;
      }
      try {
        switch (n.type) {
          case 'file': {
            if (opts.ignoreExisting && exists(path)) break; // (an lstat per file only when asked: 1 s on the linux tree)
            const linkKey = hardlinkKey(n);
            const first = linkKey ? hardlinks.get(linkKey) : undefined;
            if (first) { links.push({ path, first }); break; }
            // created when its first chunk arrives (one open per file, not one per chunk)
            const content = n.content ?? [];
            const f: PlannedFile = { path, meta: fileMeta(n, plain), content, empty: content.length === 0, failed: false, rangesLeft: 0, whole: false, done: false };
            batch.push(f);
            if (linkKey) hardlinks.set(linkKey, f);
            break;
          }
          case 'symlink':
            if (exists(path)) { if (opts.ignoreExisting) break; throw new Error('a file of that name already exists'); }
            symlinkSync(n.target!, path);
            setMeta(path, n, true);
            break;
          case 'fifo':
            if (!exists(path)) execFileSync('mkfifo', ['-m', (n.mode & 0o777).toString(8), path.toString()]);
            setMeta(path, n, false);
            break;
          case 'chardev':
          case 'blockdev': {
            if (!asRoot) { warn(path, 'device files are restored only as root'); break; }
            if (!exists(path)) {
              const { major, minor } = devNumbers(n.rdev ?? 0n);
              execFileSync('mknod', [path.toString(), n.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
            }
            setMeta(path, n, false);
            break;
          }
          case 'socket':
            break; // sockets belong to a running process: nothing to restore
        }
      } catch (e) { warn(path, `cannot restore: ${(e as Error).message}`); }
      if (batch.length >= batchLimit) {
        const full = batch;
        batch = [];
        batchLimit = Math.min(2 * batchLimit, opts.batchFiles ?? BATCH_FILES);
        await batches.add(full);
      }
    }
  };
  try {
    await walk(target, '', snap.snapshot.tree, targetPlain);
    await batches.add(batch);
  } finally {
    // (after a failure: the batches still running are waited for, their errors the first one's consequences)
    await batches.drain();
  }

  // (4) hard links (their first file is written), then directories deepest first
  for (const l of links) {
    // (its first name was not restored, or not whole: a link would give this name a broken file too)
    if (l.first.failed || !l.first.done) { warn(l.path, `not restored: it is a hard link of ${l.first.path.toString()}, which could not be restored`); continue; }
    try {
      if (exists(l.path)) throw new Error('a file of that name already exists');
      linkSync(l.first.path, l.path);
      result.files++;
    } catch (e) { warn(l.path, `cannot link: ${(e as Error).message}`); }
  }
  for (const [path, n] of dirs) setMeta(path, n, false); // dirs were pushed children first

  /**
   * Batches of files, fetched and written in order through one set of range slots: add() plans a
   * batch, waits until the batch before it has started its last range (and until at most one other
   * batch still runs), starts its own and returns (the walk gathers the next meanwhile), so that
   * the ranges in flight never drain to none between batches: at most three batches' plans in
   * memory. A range's failure (storage unreachable) stops every range not started yet, of any
   * batch; it is thrown by the next add(), or by drain() once every range started has settled.
   */
  function batchRunner() {
    const slots = semaphore(opts.concurrency ?? 4);
    const shared: { failed?: unknown } = {};
    let started: Promise<void> = Promise.resolve();
    const running = new Set<Promise<void>>();
    return {
      async add(files: PlannedFile[]) {
        // what the walk and the last batches dropped (decoded trees, plans), collected before it
        // takes this thread's heap to several times what is live (see collectWhenGrown)
        collectWhenGrown();
        const plan = await planContents(files);
        await started;
        while (running.size >= 2) await Promise.race(running);
        if (shared.failed) throw shared.failed;
        const b = fetchBatch(files, plan, slots, shared);
        started = b.started;
        const done: Promise<void> = b.done.catch((e) => { shared.failed ??= e; }).finally(() => running.delete(done));
        running.add(done);
      },
      async drain() {
        while (running.size) await Promise.all(running);
        if (shared.failed) throw shared.failed;
      },
    };
  }

  // (3) contents. Every chunk is written by the worker thread that decrypts the range holding it:
  // creating, writing, truncating and closing files is most of a restore's work, and so it runs
  // on every core while the main thread fetches. A file whose chunks all lie in one range (nearly
  // every file of a source tree) is written whole there, metadata included. A file spread over
  // several ranges (a large one) is created empty here first; each range's worker writes its part
  // into it, and once the last part is in, it gets its length and metadata here.
  /** an empty file ('w': created here), or one written in parts by several workers ('r+') */
  function finish(f: PlannedFile, flags: 'w' | 'r+') {
    f.done = true;
    let fd = -1;
    try {
      let warning: string | undefined;
      if (flags === 'w') {
        const created = createFile(f.path, f.meta);
        fd = created.fd;
        warning = finishFile(fd, f.meta, 0, created);
      } else {
        fd = openSync(f.path, flags);
        warning = finishFile(fd, f.meta);
      }
      if (warning) warn(f.path, warning);
      result.files++;
    } catch (e) { f.failed = true; warn(f.path, `cannot finish: ${(e as Error).message}`); }
    finally { if (fd >= 0) closeSync(fd); }
  }
  /** which range holds each chunk, and what each range's worker writes (the maps are garbage after) */
  async function planContents(files: PlannedFile[]) {
    // a blob is known by where it is: pack number and offset (one index lookup per chunk, no hex string)
    const where = (pack: number, offset: number) => pack * 2 ** 32 + offset;
    const byPack = new Map<number, PackEntry[]>();
    const seen = new Set<number>();
    const locs = new Map<PlannedFile, BlobLocation[]>();
    for (const f of files) {
      const pause = yieldNow();
      if (pause) await pause;
      let size = 0;
      const mine: BlobLocation[] = [];
      for (const id of f.content!) {
        const loc = repo.index.lookup(id);
        if (!loc) {
          // this file cannot be restored; every other one still is (exit 3 names it)
          const lost = repo.lostPackOf(id);
          f.failed = true;
          warn(f.path, `not restored: its chunk ${toHex(id)} is ${lost ? `in pack ${packKey(lost)}, which is missing from the bucket` : 'in no index (incomplete repository)'}`);
          break;
        }
        mine.push(loc);
        size += loc.rawLength;
        const at = where(loc.pack, loc.offset);
        if (seen.has(at)) continue;
        seen.add(at);
        let list = byPack.get(loc.pack);
        if (!list) byPack.set(loc.pack, (list = []));
        list.push({ type: 'data', id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength });
      }
      locs.set(f, mine);
      // the chunks must add up to the recorded length: anything else is a damaged snapshot
      if (!f.failed && size !== f.meta.size) {
        f.failed = true;
        warn(f.path, `its chunks hold ${size} bytes but the snapshot recorded ${f.meta.size}: not restored`);
      }
    }
    // at most 8 MiB of plaintext per range: memory stays bounded with several ranges in flight
    const ranges = groupRanges(byPack, 8 * 1024 * 1024);
    const rangeOf = new Map<number, { range: number; entry: number }>();
    ranges.forEach((r, range) => r.entries.forEach((e, entry) => rangeOf.set(where(r.pack, e.offset), { range, entry })));
    // What each range's worker writes, as (file index, entry in the range, offset in the file)
    // triples, a file's consecutive: its FileWrite objects are made when the range is fetched
    // (made here for every file, they were ~20 MB of the main thread's heap on the linux tree).
    const placements: number[][] = ranges.map(() => []);
    const inRanges = new Set<number>();
    files.forEach((f, fi) => {
      const content = locs.get(f)!;
      f.content = undefined;
      if (f.failed || content.length === 0) return;
      const ats = content.map((loc) => rangeOf.get(where(loc.pack, loc.offset))!);
      inRanges.clear();
      for (const at of ats) inRanges.add(at.range);
      f.whole = inRanges.size === 1;
      if (!f.whole) {
        try { closeSync(openSync(f.path, 'w', 0o600)); }
        catch (e) { f.failed = true; warn(f.path, `cannot write: ${(e as Error).message}`); return; }
      }
      f.rangesLeft = inRanges.size;
      let offset = 0;
      ats.forEach((at, k) => { placements[at.range]!.push(fi, at.entry, offset); offset += content[k]!.rawLength; });
    });
    /** the files range `ri` writes into (its placements are dropped) */
    const writesOf = (ri: number): Array<{ file: PlannedFile; write: FileWrite }> => {
      const p = placements[ri]!;
      placements[ri] = [];
      const out: Array<{ file: PlannedFile; write: FileWrite }> = [];
      for (let k = 0; k < p.length; k += 3) {
        const f = files[p[k]!]!;
        let last = out[out.length - 1];
        if (last?.file !== f) out.push(last = { file: f, write: { path: f.path, ...f.meta, whole: f.whole, chunks: [] } });
        last.write.chunks.push({ entry: p[k + 1]!, offset: p[k + 2]! });
      }
      return out;
    };
    return { ranges, writesOf };
  }
  /**
   * a batch's contents: its ranges fetched, decrypted and written, each once it has a slot; then its
   * empty files. `started`: every range has had its slot (the next batch may queue for them);
   * `done`: every range settled (the first failure thrown); `shared.failed`: the first failure of
   * any batch, after which no range starts.
   */
  function fetchBatch(files: PlannedFile[], { ranges, writesOf }: Awaited<ReturnType<typeof planContents>>, slots: Semaphore, shared: { failed?: unknown }) {
    // decryption and zstd on the repository's worker threads (one per core); no plaintext comes back here
    const pool = repo.sealPool();
    let waiting = ranges.length;
    let allStarted!: () => void;
    const started = new Promise<void>((res) => { allStarted = res; });
    if (waiting === 0) allStarted();
    const fetchRange = async (r: (typeof ranges)[number], ri: number) => {
      await slots.acquire();
      if (--waiting === 0) allStarted();
      try {
        if (shared.failed) throw shared.failed;
        await writeRangeOf(r, ri);
      } catch (e) {
        shared.failed ??= e;
        throw e;
      } finally { slots.release(); }
    };
    const writeRangeOf = async (r: (typeof ranges)[number], ri: number) => {
      const mine = writesOf(ri);
      try {
        const fileResults = await writeRange(repo, r, pool, mine.map((m) => m.write));
        mine.forEach(({ file: f, write }, i) => {
          if (f.failed) return; // another part of it failed already
          const res = fileResults[i];
          if (res && 'error' in res) { f.failed = true; warn(f.path, res.error); return; }
          if (res) warn(f.path, res.warning);
          for (const c of write.chunks) result.bytes += r.entries[c.entry]!.rawLength;
          if (--f.rangesLeft > 0) return;
          if (write.whole) { f.done = true; result.files++; } else finish(f, 'r+');
        });
      } catch (err) {
        // storage unreachable (after retries): stop, rather than leave hundreds of empty files
        if (err instanceof BackendError && err.code !== 'Integrity') throw err;
        for (const { file: f } of mine) {
          if (!f.failed) { f.failed = true; warn(f.path, `content unavailable: ${(err as Error).message}`); }
        }
      }
      opts.onProgress?.({ files: result.files, bytes: result.bytes, currentPath: '' });
    };
    const done = (async () => {
      // every range settled before this batch counts as done: a failure leaves none still writing
      const settled = await Promise.allSettled(ranges.map((r, ri) => fetchRange(r, ri)));
      const failure = settled.find((x) => x.status === 'rejected');
      if (failure) throw failure.reason;
      for (const f of files) {
        if (f.failed || f.done) continue;
        if (f.empty) finish(f, 'w');
        else { f.failed = true; warn(f.path, `${f.rangesLeft} part(s) of its contents never arrived`); }
      }
    })();
    return { started, done };
  }

  return result;
}
