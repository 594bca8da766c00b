// `shelter restore`: recreates a snapshot's files under a target directory. Contents are
// byte-identical; modes, times, symlinks, hard links, empty directories, special files, and
// ownership when running as root.
//
// How: (1) load the whole hierarchy (grouped tree requests); (2) create directories, symlinks and
// special files, and plan every file's chunks; (3) fetch data pack range by pack range (a few
// concurrent ranged GETs, each at most a pack: memory stays bounded) and write every chunk to each
// place it belongs (pwrite), skipping all-zero chunks so holes stay holes; (4) give files their
// length, metadata and hard links, then directories their metadata, deepest first.
import { chmodSync, closeSync, existsSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { toHex, type TreeNode } from '@shelter/format';
import { fetchRange, planRanges } from './blobfetch.ts';
import { mapLimit } from './limit.ts';
import { devNumbers, joinPath } from './fsnode.ts';
import { createSealPool, type FileWrite } from './sealpool.ts';
import { finishFile, writeChunkAt, type FileMeta } from './filewrite.ts';
import { pathFilter } from './pathfilter.ts';
import type { Repository, SnapshotEntry } from './repository.ts';
import { BackendError } from './backend/types.ts';
import { loadAllTrees } from './trees.ts';

export interface RestoreOptions {
  target: string;
  include?: string[];
  exclude?: string[];
  /** leave files that already exist in the target untouched */
  ignoreExisting?: boolean;
  /** concurrent pack downloads (default 4) */
  concurrency?: number;
  onProgress?: (p: { files: number; bytes: number; currentPath: string }) => void;
  onWarning?: (path: string, message: string) => void;
}

export interface RestoreResult { files: number; dirs: number; bytes: number; warnings: number }

const toTime = (ns: bigint) => Number(ns) / 1e9;

interface PlannedFile {
  path: Buffer; node: TreeNode; failed: boolean;
  /** chunk placements not yet written (holes count too) */
  pending: number;
  /** open descriptor while chunks arrive, -1 otherwise */
  fd: number;
  /** created already (a reopen must not truncate it again) */
  created: boolean;
  done: boolean;
  /** written whole by the worker that opens its only range */
  byWorker: boolean;
}

/** descriptors kept open at once (files whose chunks arrive from several ranges); beyond, the least recently used is closed */
const MAX_OPEN_FILES = 512;

export async function restoreSnapshot(repo: Repository, snap: SnapshotEntry, opts: RestoreOptions): Promise<RestoreResult> {
  const target = Buffer.from(resolve(opts.target));
  mkdirSync(target, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const result: RestoreResult = { files: 0, dirs: 0, bytes: 0, warnings: 0 };
  const warn = (p: Buffer, m: string) => { result.warnings++; opts.onWarning?.(p.toString(), m); };
  const filter = pathFilter(opts.include, opts.exclude);
  // every directory not excluded is created; --include selects the files
  const selected = (rel: string, isDir: boolean) => !filter.excluded(rel) && (isDir || !filter.hasIncludes || filter.included(rel));
  const fileMeta = (n: TreeNode): FileMeta => ({ size: n.size ?? 0, mode: n.mode, uid: n.uid, gid: n.gid, chown: asRoot, atime: toTime(n.atime), mtime: toTime(n.mtime) });
  const exists = (p: Buffer) => { try { lstatSync(p); return true; } catch { return false; } };
  const setMeta = (path: Buffer, n: TreeNode, isLink: boolean) => {
    try {
      if (asRoot) lchownSync(path, n.uid, n.gid);
      if (!isLink) chmodSync(path, n.mode);
      if (isLink) lutimesSync(path, toTime(n.atime), toTime(n.mtime)); else utimesSync(path, toTime(n.atime), toTime(n.mtime));
    } catch (e) { warn(path, `cannot set metadata: ${(e as Error).message}`); }
  };

  // (1) the hierarchy
  const trees = await loadAllTrees(repo, snap.snapshot.tree);

  // (2) directories, links, special files; the plan of file contents
  const files: PlannedFile[] = [];
  const links: Array<{ path: Buffer; first: PlannedFile; node: TreeNode }> = [];
  const hardlinks = new Map<string, PlannedFile>();
  const dirs: Array<[Buffer, TreeNode]> = [];
  const walk = (dir: Buffer, rel: string, subtree: Buffer) => {
    const nodes = trees.get(toHex(subtree));
    if (!nodes) { warn(dir, 'directory listing missing from the snapshot'); return; }
    for (const n of nodes) {
      const path = joinPath(dir, n.name);
      const childRel = rel ? `${rel}/${n.name.toString()}` : n.name.toString();
      if (!selected(childRel, n.type === 'dir')) continue;
      try {
        switch (n.type) {
          case 'dir':
            if (!existsSync(path)) mkdirSync(path, { mode: 0o700 });
            result.dirs++;
            walk(path, childRel, n.subtree!);
            dirs.push([path, n]);
            break;
          case 'file': {
            if (opts.ignoreExisting && exists(path)) break; // (an lstat per file only when asked: 1 s on the linux tree)
            const linkKey = n.links !== undefined && n.links > 1 && n.inode !== undefined ? `${n.device}:${n.inode}` : undefined;
            const first = linkKey ? hardlinks.get(linkKey) : undefined;
            if (first) { links.push({ path, first, node: n }); break; }
            // created when its first chunk arrives (one open per file, not one per chunk)
            const f: PlannedFile = { path, node: n, failed: false, pending: 0, fd: -1, created: false, done: false, byWorker: false };
            files.push(f);
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
    }
  };
  walk(target, '', snap.snapshot.tree);

  // (3) contents: where each chunk goes
  const open = new Map<PlannedFile, true>(); // insertion order = least recently used first
  const descriptor = (f: PlannedFile): number => {
    if (f.fd >= 0) { open.delete(f); open.set(f, true); return f.fd; }
    if (open.size >= MAX_OPEN_FILES) {
      const [lru] = open.keys();
      open.delete(lru!);
      closeSync(lru!.fd);
      lru!.fd = -1;
    }
    f.fd = openSync(f.path, f.created ? 'r+' : 'w', 0o600);
    f.created = true;
    open.set(f, true);
    return f.fd;
  };
  const release = (f: PlannedFile) => {
    if (f.fd < 0) return;
    open.delete(f);
    try { closeSync(f.fd); } catch { /* reported by the caller's path */ }
    f.fd = -1;
  };
  // every chunk written: length (a trailing hole), metadata through the descriptor, close
  const finish = (f: PlannedFile) => {
    f.done = true;
    try {
      const warning = finishFile(descriptor(f), fileMeta(f.node));
      if (warning) warn(f.path, warning);
      result.files++;
    } catch (e) { f.failed = true; warn(f.path, `cannot finish: ${(e as Error).message}`); }
    release(f);
  };
  const places = new Map<string, Array<{ file: PlannedFile; offset: number }>>();
  for (const f of files) {
    let offset = 0;
    for (const id of f.node.content ?? []) {
      f.pending++;
      const hex = toHex(id);
      let list = places.get(hex);
      if (!list) places.set(hex, (list = []));
      list.push({ file: f, offset });
      offset += repo.index.lookup(id)?.rawLength ?? 0;
    }
    // the chunks must add up to the recorded length: anything else is a damaged snapshot
    if (f.node.size !== undefined && offset !== f.node.size) {
      f.failed = true;
      warn(f.path, `its chunks hold ${offset} bytes but the snapshot recorded ${f.node.size}: not restored`);
    }
  }
  // at most 8 MiB of plaintext per range: memory stays bounded with several ranges in flight
  const ranges = planRanges(repo, [...places.keys()].map((h) => Buffer.from(h, 'hex')), 8 * 1024 * 1024);
  // A file whose chunks all lie in one range (nearly every file of a source tree) is written whole
  // by the worker thread that decrypts that range: creating, writing, truncating and closing
  // files was most of the main thread's time, and now runs on every core. Files spread over
  // several ranges (large ones) are written here as their chunks arrive.
  const rangeOf = new Map<string, { range: number; entry: number }>();
  ranges.forEach((r, range) => r.entries.forEach((e, entry) => rangeOf.set(toHex(e.id), { range, entry })));
  const workerFiles: Array<Array<{ file: PlannedFile; write: FileWrite }>> = ranges.map(() => []);
  for (const f of files) {
    const content = f.node.content ?? [];
    if (f.failed || content.length === 0) continue;
    const first = rangeOf.get(toHex(content[0]!));
    if (!first || !content.every((id) => rangeOf.get(toHex(id))?.range === first.range)) continue;
    const chunks: FileWrite['chunks'] = [];
    let offset = 0;
    for (const id of content) {
      chunks.push({ entry: rangeOf.get(toHex(id))!.entry, offset });
      offset += repo.index.lookup(id)?.rawLength ?? 0;
    }
    f.byWorker = true;
    workerFiles[first.range]!.push({ file: f, write: { path: f.path, ...fileMeta(f.node), chunks } });
  }
  // decryption and zstd on worker threads (one per core)
  const pool = createSealPool(repo.keys);
  await mapLimit(ranges.map((r, i) => [r, i] as const), opts.concurrency ?? 4, async ([r, ri]) => {
    try {
      const mine = workerFiles[ri]!;
      const fileResults = await fetchRange(repo, r, (e, chunk) => {
        for (const p of places.get(toHex(e.id)) ?? []) {
          const f = p.file;
          if (f.failed || f.byWorker) continue;
          result.bytes += chunk.length;
          try { writeChunkAt(descriptor(f), chunk, p.offset); }
          catch (err) { f.failed = true; release(f); warn(f.path, `cannot write: ${(err as Error).message}`); continue; }
          if (--f.pending === 0) finish(f);
        }
      }, pool, { files: mine.map((m) => m.write), keep: r.entries.map((e) => (places.get(toHex(e.id)) ?? []).some((p) => !p.file.byWorker)) });
      mine.forEach(({ file: f }, i) => {
        const r = fileResults[i];
        f.done = true;
        if (r && 'error' in r) { f.failed = true; warn(f.path, r.error); return; }
        if (r) warn(f.path, r.warning);
        result.files++;
        result.bytes += f.node.size ?? 0;
      });
    } catch (err) {
      // storage unreachable (after retries): stop, rather than leave hundreds of empty files
      if (err instanceof BackendError && err.code !== 'Integrity') throw err;
      for (const e of r.entries) for (const p of places.get(toHex(e.id)) ?? []) {
        if (!p.file.failed) { p.file.failed = true; release(p.file); warn(p.file.path, `content unavailable: ${(err as Error).message}`); }
      }
    }
    opts.onProgress?.({ files: result.files, bytes: result.bytes, currentPath: '' });
  }).finally(() => pool.close());

  // (4) files without chunks (empty), hard links, then directories deepest first
  for (const f of files) {
    if (f.failed) { release(f); continue; }
    if (!f.done && f.pending === 0) finish(f);
    else if (!f.done) { release(f); f.failed = true; warn(f.path, `${f.pending} chunk(s) never arrived`); }
  }
  for (const l of links) {
    try {
      if (exists(l.path)) throw new Error('a file of that name already exists');
      linkSync(l.first.path, l.path);
      result.files++;
    } catch (e) { warn(l.path, `cannot link: ${(e as Error).message}`); }
  }
  for (const [path, n] of dirs) setMeta(path, n, false); // dirs were pushed children first
  return result;
}
