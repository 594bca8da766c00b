// The agent's local cache directory: $SHELTER_CACHE_DIR, else $XDG_CACHE_HOME/shelter, else
// ~/.cache/shelter, with one directory per repository id. It holds the directory cache of
// incremental backups (dircache.ts) and copies of index and snapshot objects (objectcache.ts).
// Nothing in it is trusted: each user of it checks what it reads (a MAC, or the SHA-256 an
// object is named by), and a missing or bad file only costs a slower run.
//
// How its files are read and written is decided here, once: directories of this user that nobody
// else can write to (sudo may keep another user's HOME or XDG_CACHE_HOME: root must not use files
// that user can replace), files read only if they are regular files of this user (no symlink
// followed, no fifo waited on, size bounded), written to a fresh O_EXCL name and renamed into place.
// And how a cache file of the agent's own making is authenticated: its magic line, its body, and an
// HMAC-SHA256 of both under the repository's `cache` subkey (sealCacheFile, openCacheFile).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** $SHELTER_CACHE_DIR, else $XDG_CACHE_HOME/shelter, else ~/.cache/shelter */
export function cacheRoot(env = process.env): string {
  if (env.SHELTER_CACHE_DIR) return env.SHELTER_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'shelter');
}

/**
 * `root`/`parts...`, each directory of the chain created 0700 if missing (`create`); undefined if
 * one is missing (not `create`); throws unless each is a directory of this user that only it can
 * write to.
 */
export function ownDir(root: string, parts: readonly string[], create: boolean): string | undefined {
  let d = root;
  for (let i = 0; i <= parts.length; i++) {
    if (i > 0) d = join(d, parts[i - 1]!);
    if (create) mkdirSync(d, { recursive: true, mode: 0o700 });
    let st;
    try { st = lstatSync(d); } catch { return undefined; }
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
      throw new Error(`${d} is not a directory of this user that only it can write to`);
    }
  }
  return d;
}

/**
 * A regular file of this user, read without following a symlink or blocking on a fifo, and no
 * larger than `max` bytes; undefined if there is none; throws why it cannot be used otherwise.
 */
export function readOwnFile(file: string, max: number): Buffer | undefined {
  let fd: number;
  try { fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK); }
  catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; throw e; }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.getuid?.()) throw new Error('not a regular file of this user');
    if (st.size > max) throw new Error('too large');
    const bytes = Buffer.allocUnsafe(st.size);
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) throw new Error('shorter than its size');
      at += n;
    }
    return bytes;
  } finally { closeSync(fd); }
}

/** Writes `bytes` (or its parts, in order) as `dir`/`name`: to a new name first (O_EXCL: never a planted file or symlink), then renamed over it. */
export function writeOwnFile(dir: string, name: string, bytes: Uint8Array | readonly Uint8Array[]): void {
  const tmp = join(dir, `.partial-${randomBytes(8).toString('hex')}`);
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for (const part of bytes instanceof Uint8Array ? [bytes] : bytes) for (let w = 0; w < part.length;) w += writeSync(fd, part, w, part.length - w);
    } finally { closeSync(fd); }
    renameSync(tmp, join(dir, name));
  } finally { rmSync(tmp, { force: true }); }
}

/** Removes every file of `dir` whose name `keep` refuses (files no later run will use, unfinished writes). */
export function pruneDir(dir: string, keep: (name: string) => boolean): void {
  for (const f of readdirSync(dir)) if (!keep(f)) rmSync(join(dir, f), { force: true });
}

/** bytes of a cache file's MAC */
export const CACHE_MAC_BYTES = 32;

/** The MAC that ends a cache file: HMAC-SHA256 under the `cache` subkey of everything before it (`parts`, its magic first). */
export function sealCacheFile(cacheKey: Uint8Array, parts: readonly Uint8Array[]): Buffer {
  const h = createHmac('sha256', cacheKey);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** A cache file's body, read in order; every read past its end throws 'truncated'. */
export interface CacheReader {
  /** the file without its MAC (magic included) */
  readonly body: Buffer;
  /** the offset of the next read in `body` */
  readonly at: number;
  /** skips `n` bytes; returns where they start */
  skip(n: number): number;
  u8(): number;
  u32(): number;
  /** the next `n` bytes (a view of the file's) */
  bytes(n: number): Buffer;
  /** throws unless every byte was read */
  end(): void;
}

/**
 * The body of a cache file that `sealCacheFile` sealed, past its magic line, once its MAC is checked
 * (in constant time); throws why it cannot be used: not a `what` (its magic), damaged or made
 * with another key (its MAC).
 */
export function openCacheFile(bytes: Buffer, magic: Buffer, cacheKey: Uint8Array, what: string): CacheReader {
  if (bytes.length < magic.length + CACHE_MAC_BYTES || !bytes.subarray(0, magic.length).equals(magic)) throw new Error(`not ${what}`);
  const body = bytes.subarray(0, bytes.length - CACHE_MAC_BYTES);
  if (!timingSafeEqual(sealCacheFile(cacheKey, [body]), bytes.subarray(body.length))) throw new Error('authentication failed (damaged, or made with another key)');
  let at = magic.length;
  const skip = (n: number) => { if (at + n > body.length) throw new Error('truncated'); const s = at; at += n; return s; };
  return {
    body,
    get at() { return at; },
    skip,
    u8: () => body[skip(1)]!,
    u32: () => body.readUInt32LE(skip(4)),
    bytes: (n) => body.subarray(skip(n), at),
    end: () => { if (at !== body.length) throw new Error('trailing bytes'); },
  };
}
