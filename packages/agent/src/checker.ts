// `shelter check [--read-data]`: proves the repository is complete (every snapshot's trees and
// chunks are indexed, every pack they need exists with the indexed size) and, with --read-data,
// that every pack is intact (its SHA-256 is its name) and every blob in it decrypts.
import { FormatError, decodeTree, extractBlob, manifestKey, packKey, parseManifest, parseObjectKey, readPackHeader, toHex, type PackEntry, type TreeNode } from '@shelter/format';
import { loadAllTrees } from './trees.ts';
import { createHash } from 'node:crypto';
import { readIndexObject, type Repository } from './repository.ts';
import { BackendError } from './backend/types.ts';

/**
 * Errors that mean the storage cannot be reached or refuses us (after retries): the check stops
 * (exit 6). Damaged data and an object the server keeps failing on are problems of the repository:
 * reported, and the check goes on.
 */
const unreachable = (e: unknown) => e instanceof BackendError && (e.code === 'Network' || e.code === 'Tls' || e.code === 'AccessDenied' || e.code === 'NoSuchBucket' || e.code === 'Config');

export interface CheckResult { ok: boolean; problems: string[]; snapshots: number; blobs: number; packs: number; packsRead: number }

export async function checkRepository(repo: Repository, opts: { readData?: boolean; onProgress?: (msg: string) => void } = {}): Promise<CheckResult> {
  const problems: string[] = [];
  const problem = (m: string) => { if (problems.length < 1000) problems.push(m); };
  const packSizes = new Map<string, number>();
  const reportedLost = new Set<string>();
  for await (const o of repo.backend.list('data/')) {
    const p = parseObjectKey(o.key);
    if (p?.type === 'pack') packSizes.set(p.id!, o.size);
  }
  const snapshots = await repo.listSnapshots();
  const neededPacks = new Set<number>();
  const seenTrees = new Set<string>();
  let blobs = 0;

  const needBlob = (id: Buffer, where: string): boolean => {
    blobs++;
    const loc = repo.index.lookup(id);
    if (!loc) {
      const lostPack = repo.lostPackOf(id);
      if (lostPack) { if (!reportedLost.has(lostPack)) { reportedLost.add(lostPack); problem(`pack ${packKey(lostPack)} is missing from the bucket (first needed by ${where})`); } }
      else problem(`${where}: blob ${toHex(id)} is in no index (missing data)`);
      return false;
    }
    neededPacks.add(loc.pack);
    return true;
  };
  const walk = async (treeId: Buffer, where: string): Promise<void> => {
    const hex = toHex(treeId);
    if (seenTrees.has(hex)) return;
    seenTrees.add(hex);
    if (!needBlob(treeId, where)) return;
    let nodes = preloaded.get(hex);
    if (!nodes) try { nodes = decodeTree(await repo.loadBlob(treeId)); }
    catch (e) {
      if (unreachable(e)) throw e; // the storage, not the repository, is the problem: exit 6
      problem(`${where}: tree ${hex} is unreadable: ${(e as Error).message}`);
      return;
    }
    for (const n of nodes) {
      const path = `${where}/${n.name.toString()}`;
      if (n.type === 'dir' && n.subtree) await walk(n.subtree, path);
      for (const id of n.content ?? []) needBlob(id, path);
    }
  };
  // the hierarchies are loaded with grouped requests first (one GET per tree would take minutes
  // on a large tree); if that fails, the walk reads the trees one by one and says which is damaged
  let preloaded = new Map<string, TreeNode[]>();
  try { preloaded = await loadAllTrees(repo, snapshots.map((s) => s.snapshot.tree)); }
  catch (e) { if (unreachable(e)) throw e; }
  for (const s of snapshots) {
    opts.onProgress?.(`snapshot ${s.id.slice(0, 12)} (${s.snapshot.name}, ${s.snapshot.time})`);
    await walk(s.snapshot.tree, `snapshot ${s.id.slice(0, 12)}:`);
  }
  for (const n of neededPacks) {
    const id = toHex(repo.index.packId(n));
    if (!packSizes.has(id)) problem(`pack ${packKey(id)} is missing from the bucket`);
  }
  for (const s of snapshots) await checkManifest(repo, s.id, s.snapshot.tree, preloaded, problem);

  let packsRead = 0;
  if (opts.readData) {
    for (const [id, size] of packSizes) {
      opts.onProgress?.(`reading pack ${id.slice(0, 12)}`);
      const key = packKey(id);
      let bytes: Buffer | undefined;
      try { bytes = await repo.backend.get(key); }
      catch (e) {
        if (unreachable(e)) throw e;
        packsRead++;
        problem(`pack ${key} cannot be read: ${(e as Error).message}`);
        continue;
      }
      packsRead++;
      if (!bytes) { problem(`pack ${key} disappeared while checking`); continue; }
      if (bytes.length !== size) problem(`pack ${key}: ${bytes.length} bytes read, the listing says ${size} (truncated?)`);
      if (createHash('sha256').update(bytes).digest('hex') !== id) { problem(`pack ${key} is corrupt: its content does not match its name (SHA-256)`); }
      let entries: PackEntry[];
      try { entries = readPackHeader(repo.keys, bytes, bytes.length); }
      catch (e) { problem(`pack ${key}: header unreadable: ${e instanceof FormatError ? e.message : String(e)}`); continue; }
      for (const e of entries) {
        try { extractBlob(repo.keys, bytes, e); }
        catch (err) { problem(`pack ${key}: blob ${toHex(e.id)} does not decrypt: ${(err as Error).message}`); }
      }
    }
  }
  return { ok: problems.length === 0, problems, snapshots: snapshots.length, blobs, packs: packSizes.size, packsRead };
}

/**
 * A snapshot's manifest must list every pack holding a blob the snapshot needs: the gateway
 * deletes by manifests, so a pack missing from one may be deleted while the snapshot needs it.
 * A blob whose indexed pack is not listed is still fine if one of the manifest's own index
 * objects places it in a listed pack (a blob stored twice, by concurrent backups).
 */
async function checkManifest(repo: Repository, snapshotId: string, root: Buffer, trees: Map<string, TreeNode[]>, problem: (m: string) => void): Promise<void> {
  const where = `snapshot ${snapshotId.slice(0, 12)}`;
  let listed: Set<string>;
  let indexes: string[];
  try {
    const bytes = await repo.backend.get(manifestKey(snapshotId));
    if (!bytes) { problem(`${where}: its manifest is missing`); return; }
    const m = parseManifest(bytes);
    listed = new Set(m.packs);
    indexes = m.indexes;
  } catch (e) {
    if (unreachable(e)) throw e;
    problem(`${where}: its manifest is unreadable: ${(e as Error).message}`);
    return;
  }
  /** blob ids (hex) the manifest's index objects place in its listed packs, loaded if needed */
  let placed: Set<string> | undefined;
  const placedByManifest = async () => {
    if (placed) return placed;
    placed = new Set();
    for (const key of indexes) {
      let packs;
      try { packs = await readIndexObject(repo.backend, repo.keys, key); }
      catch (e) { if (unreachable(e)) throw e; continue; } // (a blob it would place is reported unlisted)
      for (const p of packs) if (listed.has(packKey(p.id))) for (const e of p.entries) placed.add(toHex(e.id));
    }
    return placed;
  };
  // the blobs whose indexed pack the manifest does not list, by pack
  const unlisted = new Map<string, Buffer[]>();
  const need = (id: Buffer) => {
    const loc = repo.index.lookup(id);
    if (!loc) return; // reported by the walk
    const pack = packKey(repo.index.packId(loc.pack));
    if (listed.has(pack)) return;
    let l = unlisted.get(pack);
    if (!l) unlisted.set(pack, (l = []));
    l.push(id);
  };
  const seen = new Set<string>();
  const pending = [root];
  while (pending.length) {
    const id = pending.pop()!;
    const hex = toHex(id);
    if (seen.has(hex)) continue;
    seen.add(hex);
    need(id);
    for (const n of trees.get(hex) ?? []) {
      if (n.subtree) pending.push(n.subtree);
      for (const c of n.content ?? []) need(c);
    }
  }
  for (const [pack, ids] of unlisted) {
    let inListed: Set<string>;
    try { inListed = await placedByManifest(); }
    catch (e) { if (unreachable(e)) throw e; inListed = new Set(); }
    const id = ids.find((x) => !inListed.has(toHex(x)));
    if (id) problem(`${where}: its manifest does not list ${pack}, which holds blob ${toHex(id)} it needs (the gateway could delete that pack)`);
  }
}
