// A snapshot's directory hierarchy, loaded with grouped requests: tree packs are read whole, once,
// and their blobs opened on the seal workers in batches, which also find each tree's subtree ids,
// so that loading goes on, depth first in name order, without this thread decoding anything. A
// consumer that walks the hierarchy (an incremental backup walks in the same order) decodes each
// tree when it reaches it; what it asks for before the background load got there is opened first.
import { decodeTree, MAX_BLOB_BYTES, openBlob, packKey, subtreeIds, toHex, type TreeNode } from '@shelter/format';
import { fetchBlobs } from './blobfetch.ts';
import { RepositoryError, type Repository } from './repository.ts';

export interface TreeLoader {
  /**
   * A tree's nodes, decoded now. With `release`, the loader then forgets the tree (a walk takes
   * each once; asked for again, it is opened again).
   */
  nodes(id: Buffer): Promise<TreeNode[]>;
  /** every tree reachable from the roots has been opened; rejects with the first failure */
  readonly done: Promise<void>;
  /**
   * Trees that will be asked for (`follow: false`): loaded in the background, in grouped requests,
   * in the order given, after what is asked for meanwhile.
   */
  prefetch(ids: readonly Buffer[]): void;
  /** bytes of opened trees waiting to be taken (`bounded`: the background load pauses above its limit) */
  readonly readyBytes: number;
  /**
   * A tree the walk will not take (an excluded directory), nor its subtrees: forgotten, and not
   * loaded in the background any more (in `bounded` mode, trees never taken would keep the
   * background load paused). Asked for anyway, it is loaded then.
   */
  forget(id: Buffer): void;
}

/** trees opened per request to the workers: small enough that a tree asked for waits little */
const BATCH = 128;
const BATCHES_IN_FLIGHT = 2;
/** a batch this small is opened on the main thread while the seal workers are not running */
const OPEN_HERE = 8;
/**
 * `bounded` (a walk that takes each tree once, or forgets it, and may be slower than the load: a
 * restore writing files): the background load pauses while this many bytes of opened trees wait
 * to be taken, and the most recently used MAX_WHOLE_PACKS tree packs are kept, so that the walk
 * holds a bounded part of a large hierarchy, not all of it. What the walk asks for is loaded
 * regardless.
 */
const MAX_READY_BYTES = 32 * 1024 * 1024;
const MAX_WHOLE_PACKS = 8;

interface Slot {
  plain: Promise<Buffer>; resolve: (b: Buffer) => void; reject: (e: Error) => void; requested: boolean;
  /** once opened: its size while it waits to be taken (`bounded`), and its subtrees (for forget) */
  bytes: number; subtrees?: Buffer[];
}

/**
 * Starts loading every tree reachable from `roots` in the background. `follow: false`: nothing in
 * the background, each tree is loaded when asked for (a backup with a directory cache needs only
 * the trees of the directories that changed).
 */
export function treeLoader(repo: Repository, roots: Buffer | Buffer[], opts: { release?: boolean; follow?: boolean; bounded?: boolean; maxReadyBytes?: number } = {}): TreeLoader {
  const bounded = (opts.bounded ?? false) && (opts.release ?? false);
  const maxReady = opts.maxReadyBytes ?? MAX_READY_BYTES;
  const follow = opts.follow ?? true;
  const slots = new Map<string, Slot>();
  /** trees taken and forgotten (`release`): not loaded again when named again */
  const released = new Set<string>();
  // Tree packs are read whole, once: every level of the hierarchy has blobs spread over them, so
  // ranged reads per level would fetch (nearly) the same bytes again and again. Other packs (trees
  // of repositories written before tree packs existed) are read by grouped ranges.
  const wholePacks = new Map<number, Promise<Buffer>>();
  const packBytes = (n: number) => {
    let p = wholePacks.get(n);
    // bounded: the most recently used packs are kept (a Map iterates in insertion order: a pack used is moved last)
    if (p && bounded) { wholePacks.delete(n); wholePacks.set(n, p); }
    if (!p) {
      if (bounded && wholePacks.size >= MAX_WHOLE_PACKS) wholePacks.delete(wholePacks.keys().next().value!);
      const key = packKey(repo.index.packId(n));
      p = repo.backend.get(key).then((b) => {
        if (!b) throw new RepositoryError('Missing', `pack ${key} is missing`);
        return b;
      });
      wholePacks.set(n, p);
    }
    return p;
  };
  /**
   * Discovered, not yet requested: `urgent` first (a consumer waits for them), then `later`, a
   * stack that yields the trees depth first in name order, the order of a walk (each opened tree's
   * subtrees go on top, the first on top), so that what a walk asks for next is mostly open already.
   */
  const urgent: Buffer[] = [];
  const later: Buffer[] = [];
  /** prefetched ids, in order (`later` is a stack: they are pushed on it reversed, a few at a time) */
  const ahead: Buffer[] = [];
  let aheadAt = 0;
  const refill = () => {
    if (later.length || aheadAt >= ahead.length) return;
    const next = ahead.slice(aheadAt, aheadAt + BATCH * BATCHES_IN_FLIGHT);
    aheadAt += next.length;
    if (aheadAt >= ahead.length) { ahead.length = 0; aheadAt = 0; }
    for (let k = next.length - 1; k >= 0; k--) later.push(next[k]!);
  };
  let inFlight = 0;
  let failure: Error | undefined;
  let finish!: () => void;
  let fail!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => { finish = res; fail = rej; });
  done.catch(() => { /* reported through nodes() or to whoever awaits done */ });

  const slotOf = (hex: string): Slot => {
    let s = slots.get(hex);
    if (!s) {
      let resolve!: (b: Buffer) => void, reject!: (e: Error) => void;
      const plain = new Promise<Buffer>((res, rej) => { resolve = res; reject = rej; });
      plain.catch(() => { /* awaited by nodes() if ever asked for */ });
      s = { plain, resolve, reject, requested: false, bytes: 0 };
      slots.set(hex, s);
    }
    return s;
  };

  /** opens a batch: tree packs on the workers, other trees through fetchBlobs */
  const open = async (ids: Buffer[]) => {
    const elsewhere: Buffer[] = [];
    const inPack = new Map<number, Array<{ id: Buffer; offset: number; length: number; rawLength: number }>>();
    for (const id of ids) {
      const loc = repo.index.lookup(id);
      if (!loc || !repo.isTreePack(loc.pack)) { elsewhere.push(id); continue; }
      let list = inPack.get(loc.pack);
      if (!list) inPack.set(loc.pack, (list = []));
      list.push({ id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength });
    }
    const opened = [...inPack].map(async ([pack, list]) => {
      const bytes = await packBytes(pack);
      if (list.some((e) => e.offset + e.length > bytes.length)) {
        throw new RepositoryError('Corrupt', `pack ${packKey(repo.index.packId(pack))} is shorter than its index says (truncated?)`);
      }
      // opened here: a few trees and no workers yet (a small incremental backup: no threads
      // started for them), or workers still starting (a batch here takes milliseconds, their start ~0.1 s)
      if ((!repo.sealPoolStarted() && list.length <= OPEN_HERE) || !repo.sealPool().ready()) {
        for (let i = list.length - 1; i >= 0; i--) {
          const e = list[i]!;
          let plain: Buffer;
          try { plain = openBlob(repo.keys, e.id, bytes.subarray(e.offset, e.offset + e.length), MAX_BLOB_BYTES, e.rawLength); }
          catch (err) { throw new RepositoryError('Corrupt', `tree pack ${packKey(repo.index.packId(pack))}: blob ${toHex(e.id)} does not decrypt: ${(err as Error).message}`, { cause: err }); }
          // its subtrees found as the workers find them (decoded when asked for, not twice)
          received(e.id, plain, follow ? subtreeIds(plain) : []);
        }
        return;
      }
      try {
        const trees = await repo.sealPool().openTrees(list.map((e) => ({ id: e.id, sealed: bytes.subarray(e.offset, e.offset + e.length), rawLength: e.rawLength })));
        for (let i = trees.length - 1; i >= 0; i--) received(list[i]!.id, trees[i]!.plain, trees[i]!.subtrees);
      } catch (e) { throw new RepositoryError('Corrupt', `tree pack ${packKey(repo.index.packId(pack))}: ${(e as Error).message}`, { cause: e }); }
    });
    // awaited below; not unhandled when the part below throws first
    for (const p of opened) p.catch(() => {});
    if (elsewhere.length) {
      // (old repositories) decoded here to find the subtrees
      for (const [hex, plain] of [...await fetchBlobs(repo, elsewhere)].reverse()) {
        let nodes: TreeNode[];
        try { nodes = decodeTree(plain); }
        catch (e) { throw new RepositoryError('Corrupt', `tree ${hex} is corrupt: ${(e as Error).message}`, { cause: e }); }
        received(Buffer.from(hex, 'hex'), plain, nodes.flatMap((n) => (n.subtree ? [n.subtree] : [])));
      }
    }
    await Promise.all(opened);
  };
  /** (called for a batch's trees in reverse order: the first one's subtrees end on top) */
  /** bytes of opened trees not taken yet (counted when `bounded` only) */
  let readyBytes = 0;
  const received = (id: Buffer, plain: Buffer, subtrees: Buffer[]) => {
    const slot = slots.get(toHex(id));
    if (!slot) { for (const sub of subtrees) forget(sub); return; } // forgotten while it was being opened
    slot.resolve(plain);
    slot.subtrees = subtrees;
    if (bounded) { slot.bytes = plain.length; readyBytes += plain.length; }
    if (!follow) return;
    for (let k = subtrees.length - 1; k >= 0; k--) {
      const sub = subtrees[k]!;
      const hex = toHex(sub);
      if (!slots.has(hex) && !released.has(hex)) { slotOf(hex); later.push(sub); }
    }
  };
  const take = (): Buffer[] => {
    const batch: Buffer[] = [];
    const add = (id: Buffer) => { const s = slotOf(toHex(id)); if (!s.requested) { s.requested = true; batch.push(id); } };
    while (urgent.length && batch.length < BATCH) add(urgent.shift()!);
    if (bounded && readyBytes >= maxReady) return batch; // the walk is behind: what it asks for only
    for (;;) {
      // (a tree taken and forgotten meanwhile, asked for before its turn came: not loaded again)
      while (later.length && batch.length < BATCH) { const id = later.pop()!; if (!released.has(toHex(id))) add(id); }
      if (batch.length >= BATCH || !ahead.length) break;
      refill();
      if (!later.length) break;
    }
    return batch;
  };
  // two batches in flight (a seal pool has a worker per core), each finished one starts the next
  const pump = () => {
    while (!failure && inFlight < BATCHES_IN_FLIGHT) {
      const batch = take();
      if (!batch.length) break;
      inFlight++;
      open(batch).then(() => { inFlight--; pump(); }, (e: Error) => {
        failure ??= e;
        for (const s of slots.values()) s.reject(failure);
        fail(failure);
      });
    }
    if (!failure && inFlight === 0 && !urgent.length && !later.length) finish();
  };

  if (follow) for (const r of (Array.isArray(roots) ? roots : [roots]).toReversed()) if (!slots.has(toHex(r))) { slotOf(toHex(r)); later.push(r); }
  pump();
  /** a tree's plaintext, asked for first if the background load has not come to it */
  const take1 = async (id: Buffer): Promise<Buffer> => {
    const hex = toHex(id);
    const s = slotOf(hex);
    if (!s.requested) {
      if (failure) throw failure;
      urgent.push(id);
      pump();
    }
    const payload = await s.plain;
    if (opts.release && slots.get(hex) === s) {
      // asked for again: loaded again; the background load may go on
      slots.delete(hex);
      released.add(hex);
      readyBytes -= s.bytes;
      if (!failure) pump();
    }
    return payload;
  };
  const forget = (id: Buffer): void => {
    const hex = toHex(id);
    if (released.has(hex)) return;
    released.add(hex);
    const s = slots.get(hex);
    if (!s) return;
    slots.delete(hex);
    readyBytes -= s.bytes;
    // opened already: its subtrees were found, and are forgotten too (else when it arrives: received)
    for (const sub of s.subtrees ?? []) forget(sub);
    if (!failure) pump();
  };
  return {
    done,
    get readyBytes() { return readyBytes; },
    forget,
    prefetch(ids) {
      for (const id of ids) {
        const hex = toHex(id);
        if (slots.has(hex) || released.has(hex)) continue;
        slotOf(hex);
        ahead.push(id);
      }
      refill();
      pump();
    },
    async nodes(id) {
      return decodeTree(await take1(id));
    },
  };
}

/** every tree reachable from `roots` (one snapshot's tree, or several: each pack is read once), by hex id */
export async function loadAllTrees(repo: Repository, roots: Buffer | Buffer[]): Promise<Map<string, TreeNode[]>> {
  const loader = treeLoader(repo, roots);
  await loader.done;
  const trees = new Map<string, TreeNode[]>();
  const pending = [...(Array.isArray(roots) ? roots : [roots])];
  while (pending.length) {
    const id = pending.pop()!;
    const hex = toHex(id);
    if (trees.has(hex)) continue;
    const nodes = await loader.nodes(id);
    trees.set(hex, nodes);
    for (const n of nodes) if (n.subtree && !trees.has(toHex(n.subtree))) pending.push(n.subtree);
  }
  return trees;
}
