// The file-system walk of a backup, on its own thread. Listing directories and stat'ing every
// entry is a syscall per file (the linux tree: ~0.9 s of one core), and it decides nothing about
// contents, so a worker thread does it ahead of the archiver, which meanwhile loads the parent
// snapshot, compares, reads and chunks. The worker is the one authority on what is walked:
// --exclude/--include, --one-file-system, --follow-symlinks and directory loops are decided here.
//
// Order: for each root asked for, a group holding the root alone; then, depth first, the group of
// every directory to descend into, in the order its entries appear in its parent's group. The
// archiver consumes groups in exactly that order (it descends into the entries marked Descend).
// Backpressure: the walker stays at most MAX_AHEAD entries ahead of what was consumed.
import { lstatSync, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { matchesGlob } from 'node:path';
import { Worker } from 'node:worker_threads';
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

export interface Group { dir: Buffer; entries: WalkEntry[]; error?: string }

export interface WalkOptions {
  followSymlinks?: boolean; oneFileSystem?: boolean; include?: string[]; exclude?: string[];
  /** entries the walker may be ahead of the archiver (default MAX_AHEAD) */
  maxAhead?: number;
}

const TYPES: NodeType[] = ['file', 'dir', 'symlink', 'chardev', 'blockdev', 'fifo', 'socket'];
export function nodeType(st: BigIntStats): NodeType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return undefined;
}

export function fileStat(st: BigIntStats, type: NodeType): FileStat {
  return {
    type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink), size: Number(st.size),
    mtimeNs: st.mtimeNs, atimeNs: st.atimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev, rdev: st.rdev,
  };
}

// ---- the worker's side: walking, and packing groups into transferable batches ----------------

/** per entry: name start, name length, kind, type, mode, uid, gid, nlink, size, target start, target length, error index */
const NUMS = 12;
/** per entry: mtime, atime, ctime, ino, dev, rdev (ino, dev, rdev read back unsigned) */
const BIGS = 6;
/** per group: dir start, dir length, entry count, error index */
const GNUMS = 4;

export interface Batch { bytes: Uint8Array<ArrayBuffer>; nums: Float64Array<ArrayBuffer>; bigs: BigInt64Array<ArrayBuffer>; groups: Float64Array<ArrayBuffer>; errors: string[] }

class BatchWriter {
  bytes: Buffer[] = []; byteLen = 0; nums: number[] = []; bigs: bigint[] = []; groups: number[] = []; errors: string[] = []; entries = 0;
  private put(b: Buffer): number { const at = this.byteLen; this.bytes.push(b); this.byteLen += b.length; return at; }
  private err(e: string | undefined): number { if (e === undefined) return -1; this.errors.push(e); return this.errors.length - 1; }
  group(dir: Buffer, entries: WalkEntry[], error?: string): void {
    this.groups.push(this.put(dir), dir.length, entries.length, this.err(error));
    for (const e of entries) {
      const st = e.st;
      const nameAt = this.put(e.name);
      const targetAt = e.target ? this.put(e.target) : -1;
      this.nums.push(nameAt, e.name.length, e.kind, st ? TYPES.indexOf(st.type) : -1,
        st?.mode ?? 0, st?.uid ?? 0, st?.gid ?? 0, st?.nlink ?? 0, st?.size ?? 0,
        targetAt, e.target?.length ?? 0, this.err(e.error));
      if (st) this.bigs.push(st.mtimeNs, st.atimeNs, st.ctimeNs, BigInt.asIntN(64, st.ino), BigInt.asIntN(64, st.dev), BigInt.asIntN(64, st.rdev));
      else this.bigs.push(0n, 0n, 0n, 0n, 0n, 0n);
    }
    this.entries += entries.length + 1;
  }
  take(): Batch {
    // its own memory (never a pooled Buffer's): it is transferred
    const bytes = new Uint8Array(this.byteLen);
    let at = 0;
    for (const x of this.bytes) { bytes.set(x, at); at += x.length; }
    const b: Batch = { bytes, nums: Float64Array.from(this.nums), bigs: BigInt64Array.from(this.bigs), groups: Float64Array.from(this.groups), errors: this.errors };
    this.bytes = []; this.byteLen = 0; this.nums = []; this.bigs = []; this.groups = []; this.errors = []; this.entries = 0;
    return b;
  }
}

/** control words shared with the main thread: [entries produced, entries consumed] */
const PRODUCED = 0, CONSUMED = 1;
/** entries the walker may be ahead of the archiver (bounded memory on trees of millions of files) */
const MAX_AHEAD = 100_000;
/** a batch leaves once it holds this many entries (the first ones sooner: the archiver is waiting) */
const BATCH_ENTRIES = 2048;

/** The walker thread's loop: walks each root asked for, posting batches (walkworker.ts). */
export function runWalker(opts: WalkOptions, control: Int32Array, post: (b: Batch) => void): (root: Buffer) => void {
  const exclude = opts.exclude ?? [];
  const include = opts.include ?? [];
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
  /** a directory's identity on the path being walked (loops) */
  const dirKey = (st: FileStat) => `${st.dev}:${st.ino}`;
  const entryFor = (path: Buffer, name: Buffer, rootDev: bigint | undefined): WalkEntry => {
    let big: BigIntStats;
    try { big = statOf(path); } catch (e) { return { name, kind: Kind.StatFailed, error: `cannot stat: ${(e as Error).message}` }; }
    const type = nodeType(big);
    if (!type) return { name, kind: Kind.Unsupported };
    if (excluded(path.toString(), type === 'dir')) return { name, kind: Kind.Excluded };
    const st = fileStat(big, type);
    if (type === 'dir') {
      const kind = onPath.has(dirKey(st)) ? Kind.Loop : opts.oneFileSystem && rootDev !== undefined && st.dev !== rootDev ? Kind.OtherFs : Kind.Descend;
      return { name, kind, st };
    }
    if (type === 'symlink') {
      try { return { name, kind: Kind.Ok, st, target: readlinkSync(path, { encoding: 'buffer' }) }; }
      catch (e) { return { name, kind: Kind.StatFailed, error: `cannot read the link: ${(e as Error).message}` }; }
    }
    return { name, kind: Kind.Ok, st };
  };
  const walkDir = (path: Buffer, st: FileStat, rootDev: bigint) => {
    const key = dirKey(st);
    onPath.add(key);
    let names: Buffer[] = [];
    let error: string | undefined;
    try { names = readdirSync(path, { encoding: 'buffer' }); } catch (e) { error = (e as Error).message; }
    // in the order of the trees' names: the parent's trees are loaded in this order (trees.ts)
    names.sort(Buffer.compare);
    const entries = names.map((n) => entryFor(joinPath(path, n), n, rootDev));
    out.group(path, entries, error);
    maybeFlush();
    for (const e of entries) if (e.kind === Kind.Descend) walkDir(joinPath(path, e.name), e.st!, rootDev);
    onPath.delete(key);
  };
  return (root) => {
    const slash = root.lastIndexOf(0x2f);
    const e = entryFor(root, root.subarray(slash + 1), undefined);
    out.group(root, [e]);
    if (e.kind === Kind.Descend) walkDir(root, e.st!, e.st!.dev);
    flush();
  };
}

// ---- the archiver's side ----------------------------------------------------------------------

export interface Walker {
  /** starts walking `root` (roots are walked in the order asked) */
  walk(root: Buffer): void;
  /** the next group (see the order above) */
  next(): Promise<Group>;
  close(): Promise<void>;
}

export function startWalker(opts: WalkOptions): Walker {
  const control = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL('./walkworker.ts', import.meta.url), { workerData: { opts, control } });
  // batches are decoded a group at a time, as the archiver asks (the walker may be far ahead)
  const batches: Array<{ b: Batch; bytes: Buffer; ub: BigUint64Array; group: number; entry: number }> = [];
  let waiter: { resolve: (g: Group) => void; reject: (e: Error) => void } | undefined;
  let failed: Error | undefined;
  worker.on('message', (b: Batch) => {
    batches.push({ b, bytes: Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength), ub: new BigUint64Array(b.bigs.buffer, b.bigs.byteOffset, b.bigs.length), group: 0, entry: 0 });
    wake();
  });
  const fail = (e: Error) => { failed ??= e; wake(); };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the file-system walker exited (${code})`)));
  // keeps the process alive only while the archiver waits for it (an error elsewhere never hangs on
  // it). After the listeners: adding a 'message' listener refs the worker again
  worker.unref();
  const wake = () => {
    if (!waiter) return;
    const w = waiter;
    if (batches.length) { waiter = undefined; worker.unref(); w.resolve(take()); }
    else if (failed) { waiter = undefined; worker.unref(); w.reject(failed); }
  };
  const take = (): Group => {
    const cur = batches[0]!;
    const { b, bytes, ub } = cur;
    const g = cur.group;
    const count = b.groups[g + 2]!;
    const entries: WalkEntry[] = new Array(count);
    for (let k = 0; k < count; k++) {
      const n = (cur.entry + k) * NUMS, x = (cur.entry + k) * BIGS;
      const entry: WalkEntry = { name: bytes.subarray(b.nums[n]!, b.nums[n]! + b.nums[n + 1]!), kind: b.nums[n + 2]! as Kind };
      const type = b.nums[n + 3]!;
      if (type >= 0) {
        entry.st = {
          type: TYPES[type]!, mode: b.nums[n + 4]!, uid: b.nums[n + 5]!, gid: b.nums[n + 6]!, nlink: b.nums[n + 7]!, size: b.nums[n + 8]!,
          mtimeNs: b.bigs[x]!, atimeNs: b.bigs[x + 1]!, ctimeNs: b.bigs[x + 2]!, ino: ub[x + 3]!, dev: ub[x + 4]!, rdev: ub[x + 5]!,
        };
      }
      if (b.nums[n + 9]! >= 0) entry.target = bytes.subarray(b.nums[n + 9]!, b.nums[n + 9]! + b.nums[n + 10]!);
      if (b.nums[n + 11]! >= 0) entry.error = b.errors[b.nums[n + 11]!];
      entries[k] = entry;
    }
    const group: Group = { dir: bytes.subarray(b.groups[g]!, b.groups[g]! + b.groups[g + 1]!), entries };
    if (b.groups[g + 3]! >= 0) group.error = b.errors[b.groups[g + 3]!];
    cur.group += GNUMS;
    cur.entry += count;
    if (cur.group >= b.groups.length) batches.shift();
    Atomics.add(control, CONSUMED, count + 1);
    Atomics.notify(control, CONSUMED);
    return group;
  };
  return {
    walk(root) { worker.postMessage(new Uint8Array(root)); },
    next() {
      if (batches.length) return Promise.resolve(take());
      if (failed) return Promise.reject(failed);
      worker.ref();
      return new Promise((resolve, reject) => { waiter = { resolve, reject }; });
    },
    async close() { failed ??= new Error('walker closed'); await worker.terminate(); },
  };
}
