// Whole directory hierarchies of a snapshot, loaded level by level with grouped requests.
import { decodeTree, packKey, toHex, type TreeNode } from '@shelter/format';
import { fetchBlobs } from './blobfetch.ts';
import { RepositoryError, type Repository } from './repository.ts';

/** every tree reachable from `roots` (one snapshot's tree, or several: each pack is read once), by hex id */
export async function loadAllTrees(repo: Repository, roots: Buffer | Buffer[]): Promise<Map<string, TreeNode[]>> {
  const trees = new Map<string, TreeNode[]>();
  // Tree packs are read whole, once: every level of the hierarchy has blobs spread over them, so
  // ranged reads per level would fetch (nearly) the same bytes again and again. Other packs (trees
  // of repositories written before tree packs existed) are read by grouped ranges.
  const wholePacks = new Map<number, Promise<Buffer>>();
  const packBytes = (n: number) => {
    let p = wholePacks.get(n);
    if (!p) {
      const key = packKey(repo.index.packId(n));
      p = repo.backend.get(key).then((b) => {
        if (!b) throw new RepositoryError('Missing', `pack ${key} is missing`);
        return b;
      });
      wholePacks.set(n, p);
    }
    return p;
  };
  let level: Buffer[] = Array.isArray(roots) ? roots : [roots];
  while (level.length) {
    const elsewhere: Buffer[] = [];
    const inPack = new Map<number, Array<{ id: Buffer; offset: number; length: number; rawLength: number }>>();
    for (const id of level) {
      const loc = repo.index.lookup(id);
      if (!loc || !repo.isTreePack(loc.pack)) { elsewhere.push(id); continue; }
      let list = inPack.get(loc.pack);
      if (!list) inPack.set(loc.pack, (list = []));
      list.push({ id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength });
    }
    // opened (decrypted, decompressed, ids checked) on the worker threads, a pack at a time
    const fromTreePacks = [...inPack].map(async ([pack, list]): Promise<Array<[string, Buffer]>> => {
      const bytes = await packBytes(pack);
      if (list.some((e) => e.offset + e.length > bytes.length)) {
        throw new RepositoryError('Corrupt', `pack ${packKey(repo.index.packId(pack))} is shorter than its index says (truncated?)`);
      }
      let plains: Buffer[];
      try { plains = await repo.sealPool().openBlobs(list.map((e) => ({ id: e.id, sealed: bytes.subarray(e.offset, e.offset + e.length), rawLength: e.rawLength }))); }
      catch (e) { throw new RepositoryError('Corrupt', `tree pack ${packKey(repo.index.packId(pack))}: ${(e as Error).message}`, { cause: e }); }
      return plains.map((p, i) => [toHex(list[i]!.id), p]);
    });
    const blobs = await fetchBlobs(repo, elsewhere);
    for (const [hex, plain] of (await Promise.all(fromTreePacks)).flat()) blobs.set(hex, plain);
    const next: Buffer[] = [];
    for (const [hex, plain] of blobs) {
      const nodes = decodeTree(plain);
      trees.set(hex, nodes);
      for (const n of nodes) if (n.type === 'dir' && n.subtree && !trees.has(toHex(n.subtree))) next.push(n.subtree);
    }
    level = next;
  }
  return trees;
}
