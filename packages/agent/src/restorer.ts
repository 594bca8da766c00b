// `shelter restore`: recreates a snapshot's files under a target directory. Contents are
// byte-identical; modes, times, symlinks, hard links, empty directories, special files, and
// ownership when running as root.
//
// How: (1) load the whole hierarchy (grouped tree requests); (2) create directories, symlinks and
// special files, and plan every file's chunks; (3) fetch data pack range by pack range (a few
// concurrent ranged GETs, each at most a pack: memory stays bounded) and write every chunk to each
// place it belongs (pwrite), skipping all-zero chunks so holes stay holes; (4) give files their
// length, metadata and hard links, then directories their metadata, deepest first.
import { chmodSync, closeSync, existsSync, ftruncateSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { matchesGlob, resolve } from 'node:path';
import { toHex, type TreeNode } from '@shelter/format';
import { fetchRange, forEachLimit, planRanges } from './blobfetch.ts';
import { joinPath } from './fsnode.ts';
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

interface PlannedFile { path: Buffer; node: TreeNode; failed: boolean }

export async function restoreSnapshot(repo: Repository, snap: SnapshotEntry, opts: RestoreOptions): Promise<RestoreResult> {
  const target = Buffer.from(resolve(opts.target));
  mkdirSync(target, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const result: RestoreResult = { files: 0, dirs: 0, bytes: 0, warnings: 0 };
  const warn = (p: Buffer, m: string) => { result.warnings++; opts.onWarning?.(p.toString(), m); };
  const selected = (rel: string, isDir: boolean) => {
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (opts.exclude?.some((g) => matchesGlob(rel, g) || matchesGlob(base, g))) return false;
    if (isDir || !opts.include?.length) return true;
    return opts.include.some((g) => matchesGlob(rel, g) || matchesGlob(base, g) || rel.startsWith(g.replace(/\/\*\*$/, '') + '/'));
  };
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
            if (exists(path) && opts.ignoreExisting) break;
            const linkKey = n.links !== undefined && n.links > 1 && n.inode !== undefined ? `${n.device}:${n.inode}` : undefined;
            const first = linkKey ? hardlinks.get(linkKey) : undefined;
            if (first) { links.push({ path, first, node: n }); break; }
            const f: PlannedFile = { path, node: n, failed: false };
            closeSync(openSync(path, 'w', 0o600)); // created (and emptied) now; filled in (3)
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
              const rdev = n.rdev ?? 0n;
              const major = Number((rdev >> 8n) & 0xfffn), minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n));
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
  const places = new Map<string, Array<{ file: PlannedFile; offset: number }>>();
  for (const f of files) {
    let offset = 0;
    for (const id of f.node.content ?? []) {
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
  const ranges = planRanges(repo, [...places.keys()].map((h) => Buffer.from(h, 'hex')));
  let zeros = Buffer.alloc(0);
  await forEachLimit(ranges, opts.concurrency ?? 4, async (r) => {
    try {
      await fetchRange(repo, r, (e, chunk) => {
        if (zeros.length < chunk.length) zeros = Buffer.alloc(chunk.length);
        // an all-zero chunk is a hole: not written, the final truncate gives the file its length
        const hole = chunk.equals(zeros.subarray(0, chunk.length));
        for (const p of places.get(toHex(e.id)) ?? []) {
          if (p.file.failed) continue;
          result.bytes += chunk.length;
          if (hole) continue;
          try {
            const fd = openSync(p.file.path, 'r+');
            try {
              let done = 0;
              while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done, p.offset + done);
            } finally { closeSync(fd); }
          } catch (err) { p.file.failed = true; warn(p.file.path, `cannot write: ${(err as Error).message}`); }
        }
      });
    } catch (err) {
      // storage unreachable (after retries): stop, rather than leave hundreds of empty files
      if (err instanceof BackendError && err.code !== 'Integrity') throw err;
      for (const e of r.entries) for (const p of places.get(toHex(e.id)) ?? []) {
        if (!p.file.failed) { p.file.failed = true; warn(p.file.path, `content unavailable: ${(err as Error).message}`); }
      }
    }
    opts.onProgress?.({ files: result.files, bytes: result.bytes, currentPath: '' });
  });

  // (4) lengths, metadata, hard links, then directories deepest first
  for (const f of files) {
    if (f.failed) continue;
    try {
      const fd = openSync(f.path, 'r+');
      try { ftruncateSync(fd, f.node.size ?? 0); } finally { closeSync(fd); }
      setMeta(f.path, f.node, false);
      result.files++;
    } catch (e) { warn(f.path, `cannot finish: ${(e as Error).message}`); }
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
