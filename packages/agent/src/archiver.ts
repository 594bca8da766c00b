// `shelter backup files`: walks the given paths, stores new file contents as chunks and every
// directory as a tree blob, and writes the snapshot and its plaintext reference manifest.
// Incremental: a file whose size, mtime, ctime and inode match the parent snapshot's node is not
// read again; its chunk list is reused.
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, statSync, type BigIntStats } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { matchesGlob, resolve } from 'node:path';
import { Chunker, encodeTree, type TreeNode } from '@shelter/format';
import { loadAllTrees } from './trees.ts';
import { joinPath, nodeType, readAccounts, statNode } from './fsnode.ts';
import type { Repository, SnapshotEntry } from './repository.ts';

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
}

export interface Progress { files: number; dirs: number; bytesRead: number; bytesTotal: number; newBytes: number; currentPath: string }

export interface BackupResult { snapshotId: string; summary: Record<string, number>; warnings: number }

const READ_SIZE = 4 * 1024 * 1024;
const PROGRAM = 'shelter 0.1.0';

export async function backupFiles(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  const started = new Date();
  const accounts = readAccounts();
  const summary = { files: 0, dirs: 0, bytes: 0, newFiles: 0, changedFiles: 0, unchangedFiles: 0, newBlobs: 0, newBytes: 0, storedBytes: 0, skipped: 0 };
  let warnings = 0;
  const progress: Progress = { files: 0, dirs: 0, bytesRead: 0, bytesTotal: 0, newBytes: 0, currentPath: '' };
  const referencedPacks = new Set<number>();
  const unresolved: Buffer[] = [];
  const readBuf = Buffer.allocUnsafe(READ_SIZE);
  // one chunker for the whole run: building its gear table costs an AES call; end() resets it
  const chunker = new Chunker(repo.keys, repo.config.chunker);
  const visitedDirs = new Set<string>();

  const warn = (path: Buffer | string, message: string) => {
    warnings++;
    opts.onWarning?.(path.toString(), message);
  };
  const reference = (id: Buffer) => {
    const loc = repo.index.lookup(id);
    if (loc) referencedPacks.add(loc.pack); else unresolved.push(id);
  };
  const excluded = (path: string, isDir: boolean) => {
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (opts.exclude?.some((g) => matchesGlob(path, g) || matchesGlob(base, g))) return true;
    if (!isDir && opts.include?.length && !opts.include.some((g) => matchesGlob(path, g) || matchesGlob(base, g))) return true;
    return false;
  };
  const statOf = (p: Buffer): BigIntStats => (opts.followSymlinks ? statSync(p, { bigint: true }) : lstatSync(p, { bigint: true }));

  // the parent snapshot's whole hierarchy, loaded up front with grouped requests
  let parentTrees = new Map<string, TreeNode[]>();
  if (opts.parent) {
    try { parentTrees = await loadAllTrees(repo, opts.parent.snapshot.tree); }
    catch (e) { warn('(parent snapshot)', `cannot read the parent snapshot, every file is read again: ${(e as Error).message}`); }
  }
  const parentChildren = async (subtree: Buffer | undefined): Promise<Map<string, TreeNode>> => {
    const m = new Map<string, TreeNode>();
    for (const n of (subtree && parentTrees.get(subtree.toString('hex'))) || []) m.set(n.name.toString('latin1'), n);
    return m;
  };

  const unchanged = (prev: TreeNode | undefined, st: BigIntStats) =>
    prev !== undefined && prev.type === 'file' && prev.content !== undefined && prev.size === Number(st.size) && prev.mtime === st.mtimeNs &&
    prev.ctime === st.ctimeNs && prev.inode === st.ino && prev.content.every((id) => repo.hasBlob(id));

  async function saveContent(path: Buffer, size: number): Promise<{ ids: Buffer[]; bytes: number }> {
    const fd = openSync(path, 'r');
    const ids: Buffer[] = [];
    let carry: Buffer[] = []; // bytes since the last cut
    let carryBytes = 0;
    let position = 0;
    const emit = async (chunk: Buffer) => {
      const r = await repo.saveBlob('data', chunk);
      ids.push(r.id);
      reference(r.id);
      if (r.added) { summary.newBlobs++; summary.newBytes += chunk.length; progress.newBytes += chunk.length; }
    };
    try {
      for (;;) {
        const n = readSync(fd, readBuf, 0, READ_SIZE, null);
        if (n === 0) break;
        const data = readBuf.subarray(0, n);
        let last = 0;
        for (const cut of chunker.push(data)) {
          const local = cut; // offsets within the buffer just pushed
          const piece = data.subarray(last, local);
          // saveBlob hashes and copies the chunk before it returns: a view of readBuf is safe here
          const chunk = carryBytes ? Buffer.concat([...carry, piece]) : piece;
          carry = []; carryBytes = 0;
          await emit(chunk);
          last = local;
        }
        if (last < n) { carry.push(Buffer.from(data.subarray(last))); carryBytes += n - last; }
        position += n;
        progress.bytesRead += n;
      }
      if (carryBytes) await emit(Buffer.concat(carry));
    } finally {
      chunker.end(); // resets it for the next file, also after an error
      closeSync(fd);
    }
    if (position !== size) warn(path, `changed while being read (${size} bytes at stat, ${position} read)`);
    return { ids, bytes: position };
  }

  /** the tree blob id of a directory */
  async function saveDir(path: Buffer, st: BigIntStats, parentSubtree: Buffer | undefined, rootDev: bigint): Promise<Buffer> {
    const key = `${st.dev}:${st.ino}`;
    if (visitedDirs.has(key)) { warn(path, 'directory loop (followed symlink): not descended again'); return saveTree([]); }
    visitedDirs.add(key);
    let names: Buffer[];
    try { names = readdirSync(path, { encoding: 'buffer' }); }
    catch (e) { warn(path, `cannot list: ${(e as Error).message}`); names = []; }
    const prev = await parentChildren(parentSubtree);
    const nodes: TreeNode[] = [];
    for (const name of names) {
      const child = joinPath(path, name);
      const node = await saveEntry(child, name, prev.get(name.toString('latin1')), rootDev);
      if (node) nodes.push(node);
    }
    visitedDirs.delete(key);
    summary.dirs++;
    progress.dirs++;
    return saveTree(nodes);
  }

  async function saveTree(nodes: TreeNode[]): Promise<Buffer> {
    const r = await repo.saveBlob('tree', encodeTree(nodes));
    reference(r.id);
    if (r.added) summary.newBlobs++;
    return r.id;
  }

  async function saveEntry(path: Buffer, name: Buffer, prev: TreeNode | undefined, rootDev: bigint): Promise<TreeNode | undefined> {
    let st: BigIntStats;
    try { st = statOf(path); } catch (e) { warn(path, `cannot stat: ${(e as Error).message}`); return undefined; }
    const type = nodeType(st);
    if (!type) { warn(path, 'unsupported file type'); return undefined; }
    if (excluded(path.toString(), type === 'dir')) { summary.skipped++; return undefined; }
    const node = statNode(name, st, type, accounts);
    progress.currentPath = path.toString();
    opts.onProgress?.(progress);
    switch (type) {
      case 'file': {
        summary.files++;
        progress.files++;
        summary.bytes += Number(st.size);
        progress.bytesTotal += Number(st.size);
        if (unchanged(prev, st)) {
          summary.unchangedFiles++;
          node.content = prev!.content!;
          for (const id of node.content) reference(id);
          progress.bytesRead += Number(st.size);
        } else {
          if (prev?.type === 'file') summary.changedFiles++; else summary.newFiles++;
          try {
            const saved = await saveContent(path, Number(st.size));
            node.content = saved.ids;
            node.size = saved.bytes;
          } catch (e) { warn(path, `cannot read: ${(e as Error).message}`); return undefined; }
        }
        return node;
      }
      case 'dir':
        if (opts.oneFileSystem && st.dev !== rootDev) { summary.skipped++; node.subtree = await saveTree([]); return node; }
        node.subtree = await saveDir(path, st, prev?.type === 'dir' ? prev.subtree : undefined, rootDev);
        return node;
      case 'symlink':
        node.target = readlinkSync(path, { encoding: 'buffer' });
        return node;
      default:
        return node;
    }
  }

  // ---- the virtual root: each path given, under its absolute path's directories (as restic does)
  const roots = opts.paths.map((p) => resolve(p));
  const parentRoot = opts.parent?.snapshot.tree;
  async function virtualDir(prefix: string, parentSubtree: Buffer | undefined): Promise<Buffer> {
    const below = new Map<string, boolean>(); // first component -> is a selected root itself
    for (const r of roots) {
      if (r === prefix || !(prefix === '/' ? r.startsWith('/') : r.startsWith(prefix + '/'))) continue;
      const rest = r.slice(prefix === '/' ? 1 : prefix.length + 1);
      const first = rest.split('/')[0]!;
      below.set(first, (below.get(first) ?? false) || rest === first);
    }
    const prev = await parentChildren(parentSubtree);
    const nodes: TreeNode[] = [];
    for (const [first, isRoot] of [...below.entries()].sort()) {
      const full = prefix === '/' ? `/${first}` : `${prefix}/${first}`;
      const name = Buffer.from(first);
      if (isRoot) {
        let st: BigIntStats;
        try { st = statOf(Buffer.from(full)); } catch (e) { warn(full, `cannot stat: ${(e as Error).message}`); continue; }
        const node = await saveEntry(Buffer.from(full), name, prev.get(name.toString('latin1')), st.dev);
        if (node) nodes.push(node);
      } else {
        const st = lstatSync(full, { bigint: true });
        const node = statNode(name, st, 'dir', accounts);
        const p = prev.get(name.toString('latin1'));
        node.subtree = await virtualDir(full, p?.type === 'dir' ? p.subtree : undefined);
        nodes.push(node);
      }
    }
    return saveTree(nodes);
  }

  const tree = await virtualDir('/', parentRoot);
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
}
