// `shelter restore --export FILE.tar.gz`: a snapshot as a gzip-compressed POSIX (pax) tar, made
// as a stream. File contents go out blob by blob in order, a few blobs fetched ahead, and the
// hierarchy is walked as the archive is written: memory is bounded by that window and a batch of
// entries, never by the size of a file or the number of files.
//
// The archive holds directories, regular files, symlinks, hard links (the second and later names
// of an inode are hard-link entries naming the first), fifos and device nodes, each with its mode,
// uid/gid, user/group names when the snapshot has them, and mtime. What a ustar header cannot hold
// (names over 100 bytes or not ASCII, sizes from 8 GiB, sub-second or out-of-range mtimes, large
// ids, long user names) goes into a pax extended header, which GNU tar, bsdtar and Python read.
// Left out: sockets (nothing to restore), xattrs, atime/ctime; sparse files are written in full,
// holes as zeros. The tar library writes names as UTF-8 only: a name that is not UTF-8 is written
// with U+FFFD for its invalid bytes, and a warning says which.
import { createWriteStream, existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Header, Pack } from 'tar-stream';
import { toHex, type PackEntry, type TreeNode } from '@shelter/format';
import { blobOfRange, readRange } from './blobfetch.ts';
import { ConfigError } from './config.ts';
import { pathFilter, type PathFilter } from './pathfilter.ts';
import type { Repository, SnapshotEntry } from './repository.ts';
import { treeLoader } from './trees.ts';
import { devNumbers, hardlinkKey } from './fsnode.ts';

export interface ExportOptions {
  include?: string[];
  exclude?: string[];
  /** blobs fetched ahead of the one being written (default 8) */
  ahead?: number;
  /** entries planned and written together (default BATCH_ENTRIES; tests use small batches) */
  batchEntries?: number;
  onProgress?: (p: { files: number; bytes: number; currentPath: string }) => void;
  onWarning?: (path: string, message: string) => void;
}

/** an export that failed: the partial archive is removed; `cause` is the error that stopped it */
export class ExportError extends Error {}

export interface ExportResult { files: number; dirs: number; symlinks: number; hardlinks: number; bytes: number; warnings: number }

type Sink = ReturnType<Pack['entry']>;

/** one archive entry; `linkTo` makes a file a hard-link entry naming an earlier one */
export interface Planned { name: string; node: TreeNode; linkTo?: string }

const NS = 1_000_000_000n;
/** ustar limits (tar-stream writes the mtime through a 32-bit integer: the bound is 2^31 - 1) */
const USTAR_MAX_ID = 0o7777777;
const USTAR_MAX_SIZE = 0o77777777777;
const USTAR_MAX_TIME = 2 ** 31 - 1;
/** plaintext fetched ahead, at most (besides the `ahead` count): blobs may be up to 256 MiB */
const AHEAD_BYTES = 32 * 1024 * 1024;
/** one request covers at most this many bytes of a pack, skipping gaps of at most RANGE_GAP */
const RANGE_BYTES = 8 * 1024 * 1024;
const RANGE_GAP = 256 * 1024;
/** entries walked, checked and written together: the fetch-ahead window restarts at each batch */
const BATCH_ENTRIES = 8192;
const TYPE_BITS: Record<TreeNode['type'], number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000, chardev: 0o020000, blockdev: 0o060000, fifo: 0o010000, socket: 0o140000 };
const TAR_TYPE: Record<Exclude<TreeNode['type'], 'socket'>, Header['type']> = { file: 'file', dir: 'directory', symlink: 'symlink', chardev: 'character-device', blockdev: 'block-device', fifo: 'fifo' };

/** nanoseconds as a pax time: decimal seconds, the fraction without trailing zeros */
export function paxTime(ns: bigint): string {
  const abs = ns < 0n ? -ns : ns;
  const frac = (abs % NS).toString().padStart(9, '0').replace(/0+$/, '');
  return `${ns < 0n ? '-' : ''}${abs / NS}${frac ? `.${frac}` : ''}`;
}

/** the tar header of an entry; `target` is the symlink target as text */
export function tarHeader(e: Planned, target: string | undefined): Header {
  const n = e.node;
  const pax: Record<string, string> = {};
  const secs = n.mtime >= 0n ? n.mtime / NS : -((-n.mtime + NS - 1n) / NS); // floor
  if (n.mtime % NS !== 0n || secs < 0n || secs > BigInt(USTAR_MAX_TIME)) pax.mtime = paxTime(n.mtime);
  const size = n.type === 'file' && !e.linkTo ? n.size ?? 0 : 0;
  if (size > USTAR_MAX_SIZE) pax.size = String(size);
  if (n.uid > USTAR_MAX_ID) pax.uid = String(n.uid);
  if (n.gid > USTAR_MAX_ID) pax.gid = String(n.gid);
  // ustar's user and group name fields hold 31 bytes; the library would overflow them
  const short = (s: string | undefined) => s !== undefined && /^[\x21-\x7e]{1,31}$/.test(s);
  if (n.user !== undefined && !short(n.user)) pax.uname = n.user;
  if (n.group !== undefined && !short(n.group)) pax.gname = n.group;
  const clampedSecs = Number(secs < 0n ? 0n : secs > BigInt(USTAR_MAX_TIME) ? BigInt(USTAR_MAX_TIME) : secs);
  const h: Header = {
    name: e.name,
    // with the file type bits: the library replaces a mode of 0 by its default, and masks them off
    mode: n.mode | TYPE_BITS[n.type],
    uid: Math.min(n.uid, USTAR_MAX_ID), gid: Math.min(n.gid, USTAR_MAX_ID),
    uname: short(n.user) ? n.user! : '', gname: short(n.group) ? n.group! : '',
    size, // from 8 GiB the library writes it in base-256 (a GNU extension); pax.size is the standard form
    mtime: new Date(clampedSecs * 1000),
    type: e.linkTo !== undefined ? 'link' : TAR_TYPE[n.type as Exclude<TreeNode['type'], 'socket'>],
    linkname: e.linkTo ?? target ?? '',
    devmajor: 0, devminor: 0,
    pax: Object.keys(pax).length ? pax : null,
  };
  if ((n.type === 'chardev' || n.type === 'blockdev') && n.rdev !== undefined) { const d = devNumbers(n.rdev); Object.assign(h, { devmajor: d.major, devminor: d.minor }); }
  return h;
}

/**
 * The entries of the archive, in tree order (a directory before what it holds), handed to `emit`
 * in batches of `batchEntries` as the walk finds them: each tree is loaded (bounded tree loader)
 * when its directory is reached and is garbage once the directory is done, so memory does not
 * grow with the number of files. Names are relative (the snapshot's absolute paths without the
 * leading slash), directories end in "/". With --include, a directory is written when it matches
 * or holds something that does (it waits, unwritten, until something under it is).
 */
async function walkEntries(repo: Repository, root: Buffer, filter: PathFilter, warn: (path: string, m: string) => void,
  batchEntries: number, emit: (batch: Planned[]) => Promise<void>): Promise<void> {
  const trees = treeLoader(repo, root, { release: true, bounded: true });
  let out: Planned[] = [];
  /** directories not written yet (--include): written before the first entry under them */
  const pending: Planned[] = [];
  const firstName = new Map<string, string>(); // device:inode -> the name written with the content
  const add = async (e: Planned) => {
    if (pending.length) { out.push(...pending); pending.length = 0; }
    out.push(e);
    if (out.length >= batchEntries) { const full = out; out = []; await emit(full); }
  };
  const walk = async (subtree: Buffer, prefix: string) => {
    for (const n of await trees.nodes(subtree)) {
      const rel = prefix ? `${prefix}/${n.name.toString()}` : n.name.toString();
      if (filter.excluded(rel)) { if (n.type === 'dir') trees.forget(n.subtree!); continue; }
      if (n.type === 'dir') {
        const dir: Planned = { name: `${rel}/`, node: n };
        if (!filter.hasIncludes || filter.included(rel)) await add(dir); else pending.push(dir);
        await walk(n.subtree!, rel);
        if (pending[pending.length - 1] === dir) pending.pop(); // nothing under it was included
        continue;
      }
      if ((filter.hasIncludes && !filter.included(rel)) || n.type === 'socket') continue;
      if (n.type !== 'file') { await add({ name: rel, node: n }); continue; }
      const linkKey = hardlinkKey(n);
      const first = linkKey ? firstName.get(linkKey) : undefined;
      if (first !== undefined) { await add({ name: rel, node: n, linkTo: first }); continue; }
      // a tar entry announces its size before its bytes: check the chunks add up before writing it
      let stored = 0;
      const missing = (n.content ?? []).filter((id) => { const loc = repo.index.lookup(id); stored += loc?.rawLength ?? 0; return !loc; }).length;
      if (missing || stored !== n.size) {
        warn(`/${rel}`, missing ? `${missing} of its chunks are in no index: left out` : `its chunks hold ${stored} bytes but the snapshot recorded ${n.size}: left out`);
        continue;
      }
      if (linkKey) firstName.set(linkKey, rel);
      await add({ name: rel, node: n });
    }
  };
  await walk(root, '');
  if (out.length) await emit(out);
}

/**
 * The blobs of `ids` in order, fetched ahead: blobs that lie together in a pack (a file's chunks,
 * and a directory's small files, are written one after the other) come in one ranged GET of at
 * most RANGE_BYTES, and at most `ahead` such requests and AHEAD_BYTES of plaintext wait: the
 * network stays busy while gzip works, and memory stays bounded. (One GET per blob made the linux
 * tree's export take two minutes.) A blob repeated in a run (zeros) is fetched once.
 */
function blobReader(repo: Repository, ids: Iterator<Buffer>, ahead: number): () => Promise<Buffer> {
  const window: Array<{ size: number; blob: Promise<Buffer>; run: number }> = [];
  let bytes = 0;
  let runs = 0; // requests whose blobs are in the window
  let peeked: Buffer | undefined;
  let last: { hex: string; blob: Promise<Buffer> } | undefined;
  const nextId = () => { if (peeked) { const p = peeked; peeked = undefined; return p; } const r = ids.next(); return r.done ? undefined : r.value; };
  /** one request: the next id and those that follow it in the same pack, contiguous or nearly */
  const fetchRun = (): boolean => {
    const first = nextId();
    if (!first) return false;
    const run = ++runs;
    const loc = repo.index.lookup(first);
    const firstHex = toHex(first);
    if (last?.hex === firstHex || !loc) {
      // the blob just handed out again (the previous run's last), or one in no index (loadBlob says so)
      const blob = last?.hex === firstHex ? last.blob : repo.loadBlob(first);
      blob.catch(() => { /* awaited in turn */ });
      const size = loc?.rawLength ?? 0;
      window.push({ size, blob, run });
      bytes += size;
      last = { hex: firstHex, blob };
      return true;
    }
    const entries: PackEntry[] = [{ type: 'data', id: first, offset: loc.offset, length: loc.length, rawLength: loc.rawLength }];
    const order: number[] = [0];
    const seen = new Map<string, number>([[firstHex, 0]]);
    let end = loc.offset + loc.length;
    let plain = loc.rawLength;
    for (let id = nextId(); id; id = nextId()) {
      const hex = toHex(id);
      const k = seen.get(hex);
      if (k !== undefined) { order.push(k); plain += entries[k]!.rawLength; continue; }
      const l = repo.index.lookup(id);
      if (!l || l.pack !== loc.pack || l.offset < end || l.offset - end > RANGE_GAP || l.offset + l.length - loc.offset > RANGE_BYTES || plain + l.rawLength > AHEAD_BYTES) { peeked = id; break; }
      seen.set(hex, entries.length);
      order.push(entries.length);
      entries.push({ type: 'data', id, offset: l.offset, length: l.length, rawLength: l.rawLength });
      end = l.offset + l.length;
      plain += l.rawLength;
    }
    const range = readRange(repo, { pack: loc.pack, start: loc.offset, end: end - 1, entries });
    const blobs = entries.map((e) => range.then((r) => blobOfRange(repo, r, loc.offset, e)));
    for (const blob of blobs) blob.catch(() => { /* awaited in turn */ });
    for (const k of order) { window.push({ size: entries[k]!.rawLength, blob: blobs[k]!, run }); bytes += entries[k]!.rawLength; }
    const k = order[order.length - 1]!;
    last = { hex: toHex(entries[k]!.id), blob: blobs[k]! };
    return true;
  };
  const requestsAhead = () => (window.length ? window[window.length - 1]!.run - window[0]!.run + 1 : 0);
  const fill = () => { while ((window.length === 0 || (requestsAhead() < ahead && bytes < AHEAD_BYTES)) && fetchRun()); };
  return async () => {
    fill();
    const w = window.shift();
    if (!w) throw new Error('internal error: more chunks read than planned');
    bytes -= w.size;
    fill();
    return w.blob;
  };
}

/** resolves when the entry is complete in the archive, rejects when it (or the archive) failed */
function entryDone(pack: Pack, h: Header): { sink: Sink; done: Promise<void> } {
  let sink!: Sink;
  const done = new Promise<void>((res, rej) => { sink = pack.entry(h, (err) => (err ? rej(err) : res())); });
  // when the archive fails the entry is destroyed with the same error, which `done` and the
  // pipeline already carry: without a listener it would end the process as an uncaught 'error'
  sink.on('error', () => {});
  done.catch(() => {});
  return { sink, done };
}

/** the archive stopped under the writer: the destination's own error is the one to report */
class ArchiveClosed extends Error {}

async function write(sink: Sink, chunk: Buffer): Promise<void> {
  if (sink.write(chunk)) return;
  await new Promise<void>((res, rej) => {
    const off = () => { sink.off('drain', ok); sink.off('close', closed); };
    const ok = () => { off(); res(); };
    const closed = () => { off(); rej(new ArchiveClosed('the archive stream was closed')); };
    sink.on('drain', ok);
    sink.on('close', closed);
  });
}

/** Writes the snapshot (filtered) as a .tar.gz to `dest`; resolves once everything is written. */
export async function exportSnapshot(repo: Repository, snap: SnapshotEntry, dest: NodeJS.WritableStream, opts: ExportOptions = {}): Promise<ExportResult> {
  const result: ExportResult = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, warnings: 0 };
  const warn = (p: string, m: string) => { result.warnings++; opts.onWarning?.(p, m); };
  // loaded here: every other command (a backup among them) would pay for tar-stream at start
  const { pack: tarPack } = await import('tar-stream');
  const pack = tarPack();
  const streamed = pipeline(pack, createGzip(), dest);
  /** a batch's entries written in order, their blobs fetched ahead (blobReader) */
  const writeEntries = async (plan: Planned[]) => {
    function* contentIds() { for (const e of plan) if (e.node.type === 'file' && e.linkTo === undefined) yield* e.node.content ?? []; }
    const nextBlob = blobReader(repo, contentIds(), opts.ahead ?? 8);
    for (const e of plan) {
      const n = e.node;
      if (!isUtf8(n.name)) warn(`/${e.name}`, 'the name is not UTF-8: written with U+FFFD in place of its invalid bytes');
      if (n.type === 'symlink' && !isUtf8(n.target!)) warn(`/${e.name}`, 'the symlink target is not UTF-8: written with U+FFFD in place of its invalid bytes');
      const { sink, done } = entryDone(pack, tarHeader(e, n.type === 'symlink' ? n.target!.toString() : undefined));
      if (n.type === 'file' && e.linkTo === undefined) {
        for (const id of n.content ?? []) {
          const blob = await nextBlob();
          const expected = repo.index.lookup(id)?.rawLength;
          if (blob.length !== expected) throw new Error(`/${e.name}: chunk ${toHex(id)} holds ${blob.length} bytes, the index says ${expected}`);
          await write(sink, blob);
          result.bytes += blob.length;
        }
        sink.end(undefined); // streamx: end(data) with nothing more to write
      }
      await done;
      if (n.type === 'dir') result.dirs++;
      else if (n.type === 'symlink') result.symlinks++;
      else if (e.linkTo !== undefined) result.hardlinks++;
      else if (n.type === 'file') result.files++;
      opts.onProgress?.({ files: result.files, bytes: result.bytes, currentPath: `/${e.name}` });
    }
  };
  const writeAll = async () => {
    await walkEntries(repo, snap.snapshot.tree, pathFilter(opts.include, opts.exclude), warn, opts.batchEntries ?? BATCH_ENTRIES, writeEntries);
    pack.finalize();
  };
  try {
    // a failing destination (disk full, closed pipe) ends `streamed` first: stop writing then
    const writing = writeAll();
    writing.catch(() => { /* reported through the race, or moot once the destination failed */ });
    await Promise.race([writing, streamed]);
    await streamed;
  } catch (e) {
    pack.destroy(e as Error);
    const failed = await streamed.then(() => undefined, (x: unknown) => x);
    throw e instanceof ArchiveClosed && failed ? failed : e;
  }
  return result;
}

/**
 * --export FILE: written as FILE.partial-PID (mode 0600: it holds the backup in clear) and renamed
 * to FILE when complete; removed on failure or interruption. An existing FILE is not replaced.
 * "-" writes to standard output.
 */
export async function exportToFile(repo: Repository, snap: SnapshotEntry, file: string, opts: ExportOptions = {}): Promise<ExportResult> {
  if (file === '-') {
    if (process.stdout.isTTY) throw new ConfigError('refusing to write a compressed archive to a terminal: redirect standard output, or give --export FILE');
    try { return await exportSnapshot(repo, snap, process.stdout, opts); }
    catch (e) { throw new ExportError(`the archive on standard output is incomplete: ${(e as Error).message}`, { cause: e }); }
  }
  const path = resolve(file);
  if (existsSync(path)) throw new ConfigError(`${path} already exists: not replacing it (remove it, or choose another name)`);
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${dir} is not a directory`);
  const partial = `${path}.partial-${process.pid}`;
  const onSignal = (sig: NodeJS.Signals) => { rmSync(partial, { force: true }); process.exit(128 + (sig === 'SIGINT' ? 2 : 15)); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // flush: fsync before close, so the renamed file is complete even after a power loss
    const result = await exportSnapshot(repo, snap, createWriteStream(partial, { flags: 'wx', mode: 0o600, flush: true }), opts);
    renameSync(partial, path);
    return result;
  } catch (e) {
    rmSync(partial, { force: true });
    throw new ExportError(`${path} not written (the partial archive is removed): ${(e as Error).message}`, { cause: e });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
