// The file-system walk of a backup, on threads of its own. Listing directories and stat'ing every
// entry is a syscall per file (the linux tree: ~0.5 s of one core in the kernel alone), and it
// decides nothing about contents, so worker threads do it ahead of the archiver, which meanwhile
// opens the repository, compares, reads and chunks. The walkers are the one authority on what is
// walked: --exclude/--include, --one-file-system, --follow-symlinks and directory loops are decided
// here. Each listing gets a digest (the directory cache's key to an unchanged directory).
//
// Order: for each root asked for, a group holding the root alone; then, depth first, the group of
// every directory to descend into, in the order its entries appear in its parent's group. The
// archiver consumes groups in exactly that order (it descends into the entries marked Descend).
// With several walkers, a root's subdirectories are tasks each walker claims in turn; the
// archiver's side reads each task from the walker that took it (see startWalker).
// Backpressure: each walker stays at most MAX_AHEAD entries ahead of what was consumed of it.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { matchesGlob } from 'node:path';
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { NodeType } from '@shelter/format';
import { joinPath } from './fsnode.ts';

export const Kind = {
  /** a file, symlink or special file */
  Ok: 0,
  /** a directory walked into: its group follows */
  Descend: 1,
  StatFailed: 2,
  Unsupported: 3,
  Excluded: 4,
  /** a directory already on the path (a symlink loop with --follow-symlinks): not walked again */
  Loop: 5,
  /** a directory on another file system with --one-file-system: not walked */
  OtherFs: 6,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** what a node needs of a stat (st_mode's permission bits in `mode`) */
export interface FileStat {
  type: NodeType;
  mode: number; uid: number; gid: number; nlink: number; size: number;
  mtimeNs: bigint; atimeNs: bigint; ctimeNs: bigint; ino: bigint; dev: bigint; rdev: bigint;
}

export interface WalkEntry {
  name: Buffer;
  kind: Kind;
  /** Ok, Descend, Loop, OtherFs */
  st?: FileStat;
  /** symlinks */
  target?: Buffer;
  /** StatFailed, or a symlink whose target could not be read */
  error?: string;
}

export interface Group {
  dir: Buffer; error?: string;
  /** listingDigest of the entries: equal digests, equal listings (the archiver's directory cache) */
  digest: Buffer;
  /**
   * The entries, decoded when first asked for. A directory the archiver reuses from its cache
   * (nearly every one in an incremental backup) never needs them: only each entry's kind, name and
   * size, read below from the batch as it came. Decoding every entry (an object, its stat's six
   * BigInts) was ~10% of the main thread's work in a linux-tree backup after a 1% change.
   */
  readonly entries: WalkEntry[];
  /** entries in the listing */
  count: number;
  kindAt(k: number): Kind;
  nameAt(k: number): Buffer;
  /** entry k's size if it is a regular file with its stat, else -1 */
  fileSizeAt(k: number): number;
}

export interface WalkOptions {
  followSymlinks?: boolean; oneFileSystem?: boolean; include?: string[]; exclude?: string[];
  /** entries the walker may be ahead of the archiver (default MAX_AHEAD) */
  maxAhead?: number;
}

const TYPES: NodeType[] = ['file', 'dir', 'symlink', 'chardev', 'blockdev', 'fifo', 'socket'];
const FILE_TYPE = TYPES.indexOf('file');

/** bytes of a group's listing digest */
export const DIGEST_BYTES = 32;
const LISTING_DIGEST_VERSION = 'shelter listing digest v2\n';

/** st_mode's file type bits, to the type codes of TYPES (-1: unsupported) */
function typeCode(mode: number): number {
  switch (mode & 0o170000) {
    case 0o100000: return 0;
    case 0o040000: return 1;
    case 0o120000: return 2;
    case 0o020000: return 3;
    case 0o060000: return 4;
    case 0o010000: return 5;
    case 0o140000: return 6;
    default: return -1;
  }
}

export function fileStat(st: BigIntStats, type: NodeType): FileStat {
  return {
    type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink), size: Number(st.size),
    mtimeNs: st.mtimeNs, atimeNs: st.atimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev, rdev: st.rdev,
  };
}

// ---- the worker's side: walking, and packing groups into transferable batches ----------------

/**
 * per entry, what it is (the listing digest covers these): kind, type, mode, uid, gid, nlink, size,
 * name length, target length (-1: none), 1 if it has an error
 */
const NUMS = 10;
/** per entry, where its bytes are in the batch: name start, target start, error index */
const REFS = 3;
/** per entry: mtime, ctime, ino, dev, rdev (ino, dev, rdev read back unsigned); the atime in `atimes` */
const BIGS = 5;
/** per group: dir start, dir length, entry count, error index, digest start, task (-1: a root's own groups), GroupKind */
const GNUMS = 7;
/** what a group is in the stream of the walker that sent it */
const GroupKind = { Dir: 0, TaskEnd: 1, RootAlone: 2, RootListing: 3 } as const;
type GroupKind = (typeof GroupKind)[keyof typeof GroupKind];

export interface Batch {
  bytes: Uint8Array<ArrayBuffer>; nums: Float64Array<ArrayBuffer>; refs: Float64Array<ArrayBuffer>; bigs: BigInt64Array<ArrayBuffer>;
  atimes: BigInt64Array<ArrayBuffer>; groups: Float64Array<ArrayBuffer>; errors: string[];
}

/**
 * Groups written straight into typed arrays (reused batch to batch), each group's entries
 * contiguous, so that its listing digest is one hash over three ranges: the entries' numbers,
 * their times and ids, and their names and targets. Equal digests, equal listings: every field a
 * tree node is made of (name, type, mode, owner, size, mtime, ctime, inode, device, links, rdev,
 * target) is in them, and the names' and targets' lengths delimit the bytes. An incremental backup
 * reuses the tree of a directory whose digest it recorded (dircache.ts) without reading that tree.
 *
 * All but the atime (kept apart, in `atimes`): reading a file or listing a directory changes it
 * (relatime: the first time after a change, then once a day), and an entry whose ctime and inode
 * did not change keeps its parent node's atime (archiver.ts saveEntry), so a directory whose
 * entries were only read since, by anyone, or listed by the previous backup itself (a directory is
 * read without O_NOATIME, which Node's readdir cannot pass), keeps its tree. Before, the first
 * backup after a tree was copied in rewrote the tree of every directory holding a subdirectory
 * (1,089 of the linux tree's 5,096: 2.42 s instead of 1.30), and a daily backup would do so each
 * day. (docs/FORMAT.md, "Access times")
 */
class BatchWriter {
  private bytes = new Uint8Array(1 << 18); private byteLen = 0;
  private nums = new Float64Array(NUMS * 4096); private refs = new Float64Array(REFS * 4096); private bigs = new BigInt64Array(BIGS * 4096);
  private atimes = new BigInt64Array(4096);
  /** entries in the batch */
  private n = 0;
  private groups: number[] = []; private errors: string[] = [];
  /** the open group: its index in `groups`, its first entry, where its names begin */
  private g = -1; private g0 = 0; private b0 = 0;
  /** entries and groups in the batch (the walker's count of what it produced) */
  entries = 0;
  private put(b: Uint8Array): number {
    if (this.byteLen + b.length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.bytes.length, this.byteLen + b.length));
      grown.set(this.bytes.subarray(0, this.byteLen));
      this.bytes = grown;
    }
    const at = this.byteLen;
    this.bytes.set(b, at);
    this.byteLen += b.length;
    return at;
  }
  private err(e: string | undefined): number { if (e === undefined) return -1; this.errors.push(e); return this.errors.length - 1; }
  /** the task the groups written now belong to (-1: a root's own) */
  task = -1;
  beginGroup(dir: Buffer, error?: string, kind: GroupKind = GroupKind.Dir): void {
    this.g = this.groups.length;
    this.groups.push(this.put(dir), dir.length, 0, this.err(error), 0, this.task, kind);
    this.g0 = this.n;
    this.b0 = this.byteLen;
  }
  /** an entry of the open group; `st` and `type` (TYPES index) for stat'ed entries */
  entry(name: Buffer, kind: Kind, st?: BigIntStats, type = -1, target?: Buffer, error?: string): void {
    if ((this.n + 1) * NUMS > this.nums.length) {
      const grow = <T extends Float64Array | BigInt64Array>(a: T, make: (n: number) => T) => { const b = make(a.length * 2); b.set(a as never); return b; };
      this.nums = grow(this.nums, (k) => new Float64Array(k));
      this.refs = grow(this.refs, (k) => new Float64Array(k));
      this.bigs = grow(this.bigs, (k) => new BigInt64Array(k));
      this.atimes = grow(this.atimes, (k) => new BigInt64Array(k));
    }
    const o = this.n * NUMS, r = this.n * REFS, x = this.n * BIGS;
    const nums = this.nums;
    nums[o] = kind; nums[o + 1] = type;
    nums[o + 7] = name.length; nums[o + 8] = target ? target.length : -1; nums[o + 9] = error === undefined ? 0 : 1;
    this.refs[r] = this.put(name);
    this.refs[r + 1] = target ? this.put(target) : -1;
    this.refs[r + 2] = this.err(error);
    const bigs = this.bigs;
    if (st) {
      nums[o + 2] = Number(st.mode & 0o7777n); nums[o + 3] = Number(st.uid); nums[o + 4] = Number(st.gid);
      nums[o + 5] = Number(st.nlink); nums[o + 6] = Number(st.size);
      // (a BigInt64Array stores ino, dev, rdev modulo 2^64: read back unsigned)
      bigs[x] = st.mtimeNs; bigs[x + 1] = st.ctimeNs; bigs[x + 2] = st.ino; bigs[x + 3] = st.dev; bigs[x + 4] = st.rdev;
      this.atimes[this.n] = st.atimeNs;
    } else {
      nums[o + 2] = 0; nums[o + 3] = 0; nums[o + 4] = 0; nums[o + 5] = 0; nums[o + 6] = 0;
      bigs.fill(0n, x, x + BIGS);
      this.atimes[this.n] = 0n;
    }
    this.n++;
  }
  endGroup(): void {
    const count = this.n - this.g0;
    const digest = createHash('sha256').update(LISTING_DIGEST_VERSION)
      .update(new Uint8Array(this.nums.buffer, this.g0 * NUMS * 8, count * NUMS * 8))
      .update(new Uint8Array(this.bigs.buffer, this.g0 * BIGS * 8, count * BIGS * 8))
      .update(this.bytes.subarray(this.b0, this.byteLen))
      .digest();
    this.groups[this.g + 2] = count;
    this.groups[this.g + 4] = this.put(digest);
    this.entries += count + 1;
  }
  /** the end of the current task's groups (the archiver's next group comes from the next task) */
  taskEnd(): void {
    this.groups.push(0, 0, 0, -1, 0, this.task, GroupKind.TaskEnd);
    this.entries++;
  }
  take(): Batch {
    // copies of their own (transferred); the writer's arrays are reused
    const b: Batch = {
      bytes: this.bytes.slice(0, this.byteLen), nums: this.nums.slice(0, this.n * NUMS), refs: this.refs.slice(0, this.n * REFS),
      bigs: this.bigs.slice(0, this.n * BIGS), atimes: this.atimes.slice(0, this.n), groups: Float64Array.from(this.groups), errors: this.errors,
    };
    this.byteLen = 0; this.n = 0; this.groups = []; this.errors = []; this.entries = 0;
    return b;
  }
}

/** control words shared with the main thread: [entries produced, entries consumed] */
const PRODUCED = 0, CONSUMED = 1;
/** entries the walker may be ahead of the archiver (bounded memory on trees of millions of files) */
const MAX_AHEAD = 100_000;
/** a batch leaves once it holds this many entries (the first ones sooner: the archiver is waiting) */
const BATCH_ENTRIES = 2048;

/**
 * A root's subdirectories, published by the leading walker to every walker: each claims the next
 * one not yet taken (task numbers count on from root to root) and walks it whole.
 */
export interface TaskList { base: number; paths: Uint8Array[]; devs: bigint[]; inos: bigint[]; rootKey: string; rootDev: bigint }

/** what a walker thread shares: [entries produced, entries consumed] with the archiver, [next task] with the other walkers */
export interface WalkerShared { control: Int32Array; claim: Int32Array }

/** a walker thread's first message: its work (the leader is sent roots; the others, tasks through `ports`) */
export interface WalkerSetup extends WalkerShared { opts: WalkOptions; leader: boolean; ports: MessagePort[] }

/**
 * A walker thread's work (walkworker.ts). The leader walks each root asked for: the root alone,
 * its listing, then publishes its subdirectories as tasks; every walker, the leader too, claims
 * tasks and walks them, so two threads stat a large tree in parallel. Each task's groups end with
 * a TaskEnd marker; the archiver's side puts the streams back in the walk's order.
 */
export function runWalker(opts: WalkOptions, shared: WalkerShared, post: (b: Batch) => void, publish: (t: TaskList) => void): { walkRoot(root: Buffer): void; takeTasks(t: TaskList): void } {
  const { control, claim } = shared;
  const exclude = opts.exclude ?? [];
  const include = opts.include ?? [];
  const filtering = exclude.length > 0 || include.length > 0;
  const excluded = (path: string, isDir: boolean) => {
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (exclude.some((g) => matchesGlob(path, g) || matchesGlob(base, g))) return true;
    return !isDir && include.length > 0 && !include.some((g) => matchesGlob(path, g) || matchesGlob(base, g));
  };
  const statOf = (p: Buffer) => (opts.followSymlinks ? statSync(p, { bigint: true }) : lstatSync(p, { bigint: true }));
  const onPath = new Set<string>();
  const maxAhead = opts.maxAhead ?? MAX_AHEAD;
  const out = new BatchWriter();
  let sent = 0;
  const flush = () => {
    if (out.entries === 0) return;
    Atomics.add(control, PRODUCED, out.entries);
    post(out.take());
    sent++;
  };
  const maybeFlush = () => {
    if (out.entries >= (sent < 4 ? 128 : BATCH_ENTRIES)) flush();
    // too far ahead: wait for the archiver (it notifies as it consumes). The wait is on the value
    // the decision was made with, so a consumption in between is never missed (it slept 1 s)
    for (;;) {
      const consumed = Atomics.load(control, CONSUMED);
      if (Atomics.load(control, PRODUCED) + out.entries - consumed <= maxAhead) return;
      if (out.entries > 0) { flush(); continue; }
      Atomics.wait(control, CONSUMED, consumed, 1000);
    }
  };
  /** directories on the path being walked, by device and inode (loops) */
  const dirKey = (dev: bigint, ino: bigint) => `${dev}:${ino}`;
  /** stats `path` and writes its entry; a directory to walk into: its [dev, ino] */
  const entry = (path: Buffer, name: Buffer, rootDev: bigint | undefined): [bigint, bigint] | undefined => {
    let st: BigIntStats;
    try { st = statOf(path); } catch (e) { out.entry(name, Kind.StatFailed, undefined, -1, undefined, `cannot stat: ${(e as Error).message}`); return undefined; }
    const type = typeCode(Number(st.mode));
    if (type < 0) { out.entry(name, Kind.Unsupported); return undefined; }
    if (filtering && excluded(path.toString(), type === 1)) { out.entry(name, Kind.Excluded); return undefined; }
    if (type === 1) {
      const kind = onPath.has(dirKey(st.dev, st.ino)) ? Kind.Loop : opts.oneFileSystem && rootDev !== undefined && st.dev !== rootDev ? Kind.OtherFs : Kind.Descend;
      out.entry(name, kind, st, type);
      return kind === Kind.Descend ? [st.dev, st.ino] : undefined;
    }
    if (type === 2) {
      let target: Buffer;
      try { target = readlinkSync(path, { encoding: 'buffer' }); }
      catch (e) { out.entry(name, Kind.StatFailed, undefined, -1, undefined, `cannot read the link: ${(e as Error).message}`); return undefined; }
      out.entry(name, Kind.Ok, st, type, target);
      return undefined;
    }
    out.entry(name, Kind.Ok, st, type);
    return undefined;
  };
  /** lists a directory as one group (entries in name order); its subdirectories to walk into, with [dev, ino] */
  const listDir = (path: Buffer, rootDev: bigint, kind: GroupKind): Array<[Buffer, bigint, bigint]> => {
    let names: Buffer[] = [];
    let error: string | undefined;
    try { names = readdirSync(path, { encoding: 'buffer' }); } catch (e) { error = (e as Error).message; }
    // in the order of the trees' names: the parent's trees are loaded in this order (trees.ts)
    names.sort(Buffer.compare);
    const into: Array<[Buffer, bigint, bigint]> = [];
    out.beginGroup(path, error, kind);
    for (const n of names) {
      const full = joinPath(path, n);
      const d = entry(full, n, rootDev);
      if (d) into.push([full, d[0], d[1]]);
    }
    out.endGroup();
    return into;
  };
  const walkDir = (path: Buffer, dev: bigint, ino: bigint, rootDev: bigint) => {
    const key = dirKey(dev, ino);
    onPath.add(key);
    const into = listDir(path, rootDev, GroupKind.Dir);
    maybeFlush();
    for (const [full, d, i] of into) walkDir(full, d, i, rootDev);
    onPath.delete(key);
  };
  const takeTasks = (t: TaskList) => {
    const end = t.base + t.paths.length;
    onPath.add(t.rootKey);
    for (;;) {
      const k = Atomics.load(claim, 0);
      if (k >= end) break;
      if (Atomics.compareExchange(claim, 0, k, k + 1) !== k) continue; // another walker took it
      const i = k - t.base;
      out.task = k;
      walkDir(Buffer.from(t.paths[i]!), t.devs[i]!, t.inos[i]!, t.rootDev);
      out.taskEnd();
      out.task = -1;
      // sent now: the archiver may be waiting for this task's end to read the next task elsewhere
      flush();
      maybeFlush();
    }
    onPath.delete(t.rootKey);
    flush();
  };
  let published = 0;
  const walkRoot = (root: Buffer) => {
    const slash = root.lastIndexOf(0x2f);
    out.beginGroup(root, undefined, GroupKind.RootAlone);
    const d = entry(root, root.subarray(slash + 1), undefined);
    out.endGroup();
    if (d) {
      const [dev, ino] = d;
      const key = dirKey(dev, ino);
      onPath.add(key);
      const into = listDir(root, dev, GroupKind.RootListing);
      onPath.delete(key);
      const tasks: TaskList = { base: published, paths: into.map((x) => new Uint8Array(x[0])), devs: into.map((x) => x[1]), inos: into.map((x) => x[2]), rootKey: key, rootDev: dev };
      published += into.length;
      flush();
      publish(tasks);
      takeTasks(tasks);
    }
    flush();
  };
  return { walkRoot, takeTasks };
}

// ---- the archiver's side ----------------------------------------------------------------------

export interface Walker {
  /** starts walking `root` (roots are walked in the order asked) */
  walk(root: Buffer): void;
  /** the next group (see the order above) */
  next(): Promise<Group>;
  /**
   * `fn` sees each directory listing's path and digest as soon as a walker has sent it (those
   * already waiting first), before the archiver takes it: what will be needed can be fetched ahead.
   */
  onGroup(fn: (dir: Buffer, digest: Buffer) => void): void;
  /** no more roots: a walker thread whose work is all sent may end (its memory freed) */
  end(): void;
  /** walker threads not ended yet */
  running(): number;
  close(): Promise<void>;
}

/**
 * Walker threads: two from four cores on. With two cores a second walker only competes with the
 * archiver, which is busy while the walk runs (opening the repository, the parent's trees): a
 * linux-tree backup with nothing changed took 1.25 s instead of 1.12 s.
 */
const defaultWalkers = () => (availableParallelism() >= 4 ? 2 : 1);

/** a walker thread started before its work is known, and what became of it meanwhile */
interface Spare { worker: Worker; error?: Error; exit?: number }
const spares: Spare[] = [];

/**
 * Starts the walker threads now, before their options are known; the next startWalker takes them.
 * A worker thread takes ~0.1 s to boot (a V8 isolate, Node's bootstrap, the walker's modules):
 * started as the `backup` command begins, that happens while the main thread loads the agent's
 * modules (~0.2 s) instead of after, and the walk ends that much sooner (a backup with nothing
 * changed is bounded by the walk). Unref'd: a command that fails before it walks still exits.
 */
export function prestartWalkers(threads = defaultWalkers()): void {
  for (let i = spares.length; i < threads; i++) {
    const spare: Spare = { worker: new Worker(new URL('./walkworker.ts', import.meta.url)) };
    spare.worker.on('error', (e) => { spare.error ??= e; });
    spare.worker.on('exit', (code) => { spare.exit ??= code; });
    spare.worker.unref();
    spares.push(spare);
  }
}

export function startWalker(opts: WalkOptions & { threads?: number }): Walker {
  const threads = Math.max(1, opts.threads ?? defaultWalkers());
  const claim = new Int32Array(new SharedArrayBuffer(4));
  const channels = Array.from({ length: threads - 1 }, () => new MessageChannel());
  prestartWalkers(threads);
  /** one per walker thread: its worker, control words and batches not yet consumed */
  const walkers = spares.splice(0, threads).map((spare, i) => {
    const control = new Int32Array(new SharedArrayBuffer(8));
    const ports = i === 0 ? channels.map((c) => c.port1) : [channels[i - 1]!.port2];
    const setup: WalkerSetup = { opts, control, claim, leader: i === 0, ports };
    spare.worker.postMessage(setup, ports);
    return { ...spare, control, retired: false, batches: [] as Array<{ b: Batch; bytes: Buffer; ub: BigUint64Array; group: number; entry: number }> };
  });
  // batches are decoded a group at a time, as the archiver asks (the walkers may be far ahead)
  let waiter: { resolve: (g: Group) => void; reject: (e: Error) => void } | undefined;
  let failed: Error | undefined;
  let watcher: ((dir: Buffer, digest: Buffer) => void) | undefined;
  const announce = (b: Batch, bytes: Buffer, fromGroup: number) => {
    for (let g = fromGroup; g < b.groups.length; g += GNUMS) {
      // (a root alone is no listing: the watcher sees listings only)
      if (b.groups[g + 6] === GroupKind.TaskEnd || b.groups[g + 6] === GroupKind.RootAlone) continue;
      watcher!(bytes.subarray(b.groups[g]!, b.groups[g]! + b.groups[g + 1]!), bytes.subarray(b.groups[g + 4]!, b.groups[g + 4]! + DIGEST_BYTES));
    }
  };
  const fail = (e: Error) => { failed ??= e; wake(); };
  for (const w of walkers) {
    w.worker.on('message', (b: Batch | 'done') => {
      // everything it will ever send has arrived (messages keep their order)
      if (b === 'done') { w.retired = true; void w.worker.terminate(); return; }
      const bytes = Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength);
      w.batches.push({ b, bytes, ub: new BigUint64Array(b.bigs.buffer, b.bigs.byteOffset, b.bigs.length), group: 0, entry: 0 });
      if (watcher) announce(b, bytes, 0);
      wake();
    });
    const exited = (code: number) => { if (!w.retired) fail(new Error(`the file-system walker exited (${code})`)); };
    w.worker.on('error', fail);
    w.worker.on('exit', exited);
    // (a spare that failed or ended before it was taken)
    if (w.error) fail(w.error);
    else if (w.exit !== undefined) exited(w.exit);
    // keeps the process alive only while the archiver waits for it (an error elsewhere never hangs
    // on it). After the listeners: adding a 'message' listener refs the worker again
    w.worker.unref();
  }

  // The order the archiver consumes: a root's own groups (the leader's), then each of its tasks in
  // number order (from whichever walker claimed it, up to its TaskEnd), then the next root's.
  /** the walker whose stream the current task is read from */
  let current: (typeof walkers)[number] | undefined;
  /** tasks still to be read of the current root */
  let nextTask = 0, tasksEnd = 0;
  type Head = { w: (typeof walkers)[number]; g: number; task: number; kind: GroupKind };
  const head = (w: (typeof walkers)[number]): Head | undefined => {
    const cur = w.batches[0];
    if (!cur) return undefined;
    const g = cur.group;
    return { w, g, task: cur.b.groups[g + 5]!, kind: cur.b.groups[g + 6]! as GroupKind };
  };
  /** the next group to hand out, or undefined if it has not arrived yet */
  const ready = (): Head | undefined => {
    for (;;) {
      if (current) {
        const h = head(current);
        if (!h) return undefined;
        if (h.kind !== GroupKind.TaskEnd) return h;
        skip(h);
        current = undefined;
        continue;
      }
      if (nextTask < tasksEnd) {
        for (const w of walkers) {
          const h = head(w);
          if (h?.task === nextTask) { current = w; nextTask++; return h; }
        }
        return undefined;
      }
      return head(walkers[0]!);
    }
  };
  /** past the head group of `h` (of `count` entries): the walker is told, it may go on */
  const advance = (h: Head, count: number) => {
    const cur = h.w.batches[0]!;
    cur.group += GNUMS;
    cur.entry += count;
    if (cur.group >= cur.b.groups.length) h.w.batches.shift();
    Atomics.add(h.w.control, CONSUMED, count + 1);
    Atomics.notify(h.w.control, CONSUMED);
  };
  const skip = (h: Head) => advance(h, 0); // a TaskEnd marker: no entries
  const take = (h: Head): Group => {
    const cur = h.w.batches[0]!;
    const { b, bytes, ub } = cur;
    const g = cur.group;
    const count = b.groups[g + 2]!;
    const first = cur.entry;
    const nameAt = (k: number) => { const at = b.refs[(first + k) * REFS]!; return bytes.subarray(at, at + b.nums[(first + k) * NUMS + 7]!); };
    const decode = (): WalkEntry[] => {
      const entries: WalkEntry[] = new Array(count);
      for (let k = 0; k < count; k++) {
        const n = (first + k) * NUMS, r = (first + k) * REFS, x = (first + k) * BIGS;
        const entry: WalkEntry = { name: nameAt(k), kind: b.nums[n]! as Kind };
        const type = b.nums[n + 1]!;
        if (type >= 0) {
          entry.st = {
            type: TYPES[type]!, mode: b.nums[n + 2]!, uid: b.nums[n + 3]!, gid: b.nums[n + 4]!, nlink: b.nums[n + 5]!, size: b.nums[n + 6]!,
            mtimeNs: b.bigs[x]!, atimeNs: b.atimes[first + k]!, ctimeNs: b.bigs[x + 1]!, ino: ub[x + 2]!, dev: ub[x + 3]!, rdev: ub[x + 4]!,
          };
        }
        const targetAt = b.refs[r + 1]!;
        if (targetAt >= 0) entry.target = bytes.subarray(targetAt, targetAt + b.nums[n + 8]!);
        if (b.refs[r + 2]! >= 0) entry.error = b.errors[b.refs[r + 2]!];
        entries[k] = entry;
      }
      return entries;
    };
    let entries: WalkEntry[] | undefined;
    const group: Group = {
      dir: bytes.subarray(b.groups[g]!, b.groups[g]! + b.groups[g + 1]!),
      digest: bytes.subarray(b.groups[g + 4]!, b.groups[g + 4]! + DIGEST_BYTES),
      get entries() { return (entries ??= decode()); },
      count,
      kindAt: (k) => b.nums[(first + k) * NUMS]! as Kind,
      nameAt,
      fileSizeAt: (k) => (b.nums[(first + k) * NUMS + 1] === FILE_TYPE ? b.nums[(first + k) * NUMS + 6]! : -1),
    };
    if (b.groups[g + 3]! >= 0) group.error = b.errors[b.groups[g + 3]!];
    advance(h, count);
    if (h.kind === GroupKind.RootListing) {
      // its subdirectories are the tasks that follow
      nextTask = tasksEnd;
      for (let k = 0; k < count; k++) if (group.kindAt(k) === Kind.Descend) tasksEnd++;
    }
    return group;
  };
  const refs = (on: boolean) => { for (const w of walkers) if (on) w.worker.ref(); else w.worker.unref(); };
  const wake = () => {
    if (!waiter) return;
    const w = waiter;
    const h = ready();
    if (h) { waiter = undefined; refs(false); w.resolve(take(h)); }
    else if (failed) { waiter = undefined; refs(false); w.reject(failed); }
  };
  return {
    walk(root) { walkers[0]!.worker.postMessage(new Uint8Array(root)); },
    end() { walkers[0]!.worker.postMessage('end'); },
    running: () => walkers.filter((w) => !w.retired).length,
    onGroup(fn) {
      watcher = fn;
      for (const w of walkers) for (const q of w.batches) announce(q.b, q.bytes, q.group);
    },
    next() {
      const h = ready();
      if (h) return Promise.resolve(take(h));
      if (failed) return Promise.reject(failed);
      refs(true);
      return new Promise((resolve, reject) => { waiter = { resolve, reject }; });
    },
    async close() { failed ??= new Error('walker closed'); await Promise.all(walkers.map((w) => w.worker.terminate())); },
  };
}
