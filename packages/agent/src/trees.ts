// Whole directory hierarchies of a snapshot, loaded level by level with grouped requests.
import { decodeTree, toHex, type TreeNode } from '@shelter/format';
import { fetchBlobs } from './blobfetch.ts';
import type { Repository } from './repository.ts';

/** every tree reachable from `root`, by hex id */
export async function loadAllTrees(repo: Repository, root: Buffer): Promise<Map<string, TreeNode[]>> {
  const trees = new Map<string, TreeNode[]>();
  let level: Buffer[] = [root];
  while (level.length) {
    const blobs = await fetchBlobs(repo, level);
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
