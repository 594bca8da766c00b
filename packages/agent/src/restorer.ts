// `shelter restore`: recreates a snapshot's files under a target directory. Contents are
// byte-identical; modes, times, symlinks, hard links, empty directories, special files, and
// ownership when running as root. All-zero chunks are not written (holes stay holes: a sparse
// file restores sparse). Memory stays bounded: one chunk at a time per file.
import { chmodSync, closeSync, existsSync, ftruncateSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { matchesGlob, resolve } from 'node:path';
import { decodeTree, type TreeNode } from '@shelter/format';
import { joinPath } from './fsnode.ts';
import type { Repository, SnapshotEntry } from './repository.ts';

export interface RestoreOptions {
  target: string;
  include?: string[];
  exclude?: string[];
  /** leave files that already exist in the target untouched */
  ignoreExisting?: boolean;
  onProgress?: (p: { files: number; bytes: number; currentPath: string }) => void;
  onWarning?: (path: string, message: string) => void;
}

export interface RestoreResult { files: number; dirs: number; bytes: number; warnings: number }

const toTime = (ns: bigint) => Number(ns) / 1e9;

export async function restoreSnapshot(repo: Repository, snap: SnapshotEntry, opts: RestoreOptions): Promise<RestoreResult> {
  const target = Buffer.from(resolve(opts.target));
  mkdirSync(target, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const result: RestoreResult = { files: 0, dirs: 0, bytes: 0, warnings: 0 };
  const hardlinks = new Map<string, Buffer>(); // device:inode -> first restored path
  const warn = (p: Buffer, m: string) => { result.warnings++; opts.onWarning?.(p.toString(), m); };
  const selected = (rel: string, isDir: boolean) => {
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (opts.exclude?.some((g) => matchesGlob(rel, g) || matchesGlob(base, g))) return false;
    if (isDir || !opts.include?.length) return true;
    return opts.include.some((g) => matchesGlob(rel, g) || matchesGlob(base, g) || rel.startsWith(g.replace(/\/\*\*$/, '') + '/'));
  };

  const setMeta = (path: Buffer, n: TreeNode, isLink: boolean) => {
    try {
      if (asRoot) lchownSync(path, n.uid, n.gid);
      if (!isLink) chmodSync(path, n.mode);
      if (isLink) lutimesSync(path, toTime(n.atime), toTime(n.mtime)); else utimesSync(path, toTime(n.atime), toTime(n.mtime));
    } catch (e) { warn(path, `cannot set metadata: ${(e as Error).message}`); }
  };

  async function writeFile(path: Buffer, n: TreeNode): Promise<void> {
    const fd = openSync(path, 'w', 0o600);
    let offset = 0;
    let zeros = Buffer.alloc(0);
    try {
      for (const id of n.content ?? []) {
        const chunk = await repo.loadBlob(id);
        if (zeros.length < chunk.length) zeros = Buffer.alloc(chunk.length);
        // an all-zero chunk is a hole: skip it, the final truncate gives the file its length
        if (!chunk.equals(zeros.subarray(0, chunk.length))) {
          let done = 0;
          while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done, offset + done);
        }
        offset += chunk.length;
        result.bytes += chunk.length;
      }
      ftruncateSync(fd, offset);
    } finally { closeSync(fd); }
    if (n.size !== undefined && offset !== n.size) warn(path, `restored ${offset} bytes, the snapshot recorded ${n.size}`);
  }

  async function restoreDir(dir: Buffer, rel: string, subtree: Buffer): Promise<void> {
    let nodes: TreeNode[];
    try { nodes = decodeTree(await repo.loadBlob(subtree)); }
    catch (e) { warn(dir, `cannot read directory listing: ${(e as Error).message}`); return; }
    const dirsAfter: Array<[Buffer, TreeNode]> = [];
    for (const n of nodes) {
      const path = joinPath(dir, n.name);
      const childRel = rel ? `${rel}/${n.name.toString()}` : n.name.toString();
      if (!selected(childRel, n.type === 'dir')) continue;
      const exists = existsSync(path) || (() => { try { lstatSync(path); return true; } catch { return false; } })();
      try {
        switch (n.type) {
          case 'dir':
            if (!exists) mkdirSync(path, { mode: 0o700 });
            result.dirs++;
            await restoreDir(path, childRel, n.subtree!);
            dirsAfter.push([path, n]);
            continue;
          case 'file': {
            if (exists && opts.ignoreExisting) continue;
            const linkKey = n.links !== undefined && n.links > 1 && n.inode !== undefined ? `${n.device}:${n.inode}` : undefined;
            const first = linkKey ? hardlinks.get(linkKey) : undefined;
            if (first) {
              if (exists) throw new Error('exists');
              linkSync(first, path);
              result.files++;
              continue;
            }
            await writeFile(path, n);
            if (linkKey) hardlinks.set(linkKey, path);
            result.files++;
            opts.onProgress?.({ files: result.files, bytes: result.bytes, currentPath: path.toString() });
            break;
          }
          case 'symlink':
            if (exists) { if (opts.ignoreExisting) continue; throw new Error('a file of that name already exists'); }
            symlinkSync(n.target!, path);
            setMeta(path, n, true);
            continue;
          case 'fifo':
            if (!exists) execFileSync('mkfifo', ['-m', (n.mode & 0o777).toString(8), path.toString()]);
            break;
          case 'chardev':
          case 'blockdev':
            if (!asRoot) { warn(path, 'device files are restored only as root'); continue; }
            if (!exists) {
              const rdev = n.rdev ?? 0n;
              const major = Number((rdev >> 8n) & 0xfffn), minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n));
              execFileSync('mknod', [path.toString(), n.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
            }
            break;
          case 'socket':
            continue; // sockets belong to a running process: nothing to restore
        }
        setMeta(path, n, false);
      } catch (e) {
        warn(path, `cannot restore: ${(e as Error).message}`);
      }
    }
    // directories last: writing their children changed their mtimes
    for (const [path, n] of dirsAfter) setMeta(path, n, false);
  }

  await restoreDir(target, '', snap.snapshot.tree);
  return result;
}
