// Writing restored file contents (on the restore's worker threads): chunks at their offsets,
// all-zero chunks skipped so holes stay holes; then length and metadata through the descriptor
// (there, or on the main thread for a file written in parts by several workers).
import { fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, writeSync } from 'node:fs';

let zeros = Buffer.alloc(0);

/**
 * Writes `chunk` at `offset` unless it is all zeros (a hole: the final truncate gives the length).
 * Returns where the written bytes end (0 for a hole).
 */
export function writeChunkAt(fd: number, chunk: Buffer, offset: number): number {
  if (zeros.length < chunk.length) zeros = Buffer.alloc(chunk.length);
  if (chunk.equals(zeros.subarray(0, chunk.length))) return 0;
  for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done, offset + done);
  return offset + chunk.length;
}

/**
 * What a file to write whole needs before its metadata: a descriptor, and whether it was just made
 * with its final mode, and with its owner (finishFile then skips that call).
 */
export interface CreatedFile { fd: number; modeSet: boolean; ownerSet: boolean }

const umask = process.umask();

/**
 * Creates a file to be written whole. A new file is made with its final permission bits (no chmod
 * needed after, when the umask keeps them and there are no setuid/setgid/sticky bits); a file that
 * exists already is truncated and keeps its old mode until finishFile sets it.
 */
export function createFile(path: Buffer, m: FileMeta): CreatedFile {
  try {
    return { fd: openSync(path, 'wx', m.mode & 0o777), modeSet: (m.mode & 0o7000) === 0 && (m.mode & umask) === 0, ownerSet: m.ownedIfNew };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return { fd: openSync(path, 'w', 0o600), modeSet: false, ownerSet: false };
  }
}

export interface FileMeta {
  size: number; mode: number; uid: number; gid: number;
  /** give it its owner (running as root) */
  chown: boolean;
  /**
   * A file this restore creates is owned as recorded by that alone: its owner is the process's
   * and it lies in a directory that gives new files the process's group (see restorer.ts), so
   * finishFile skips the chown (one system call per file: ~3% of a linux-tree restore's CPU).
   */
  ownedIfNew: boolean;
  /** seconds */ atime: number; mtime: number;
}

/**
 * A time in ns as the seconds Node's utimes takes: the double nearest to it (Number(ns) / 1e9
 * rounded twice, ~0.2-0.4 us off). A double cannot hold every ns of today's times (its step is
 * ~0.24 us now, ~0.48 us from 2038): restored mtimes are exact to that, not to the ns as restic's.
 */
export const secondsOf = (ns: bigint): number => Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;

/**
 * A time in seconds (secondsOf) as Node's utimes must be given it: it takes a negative number for "now", so a
 * time before 1970 goes as a string, which it reads as that number.
 */
export const utimesArg = (s: number): number | string => (s < 0 ? String(s) : s);

/**
 * Gives the file its length, then its owner (`chown`: when running as root), mode and times.
 * `length`: the file's length already, if known (a whole file written without a trailing hole:
 * no truncate); `created`: what createFile made it with already (no chmod, no chown). Returns the
 * metadata error, if any (the contents are complete by then); a failing truncate throws.
 */
export function finishFile(fd: number, m: FileMeta, length?: number, created?: CreatedFile): string | undefined {
  if (length !== m.size) ftruncateSync(fd, m.size);
  const modeSet = created?.modeSet === true;
  try {
    if (m.chown && created?.ownerSet !== true) fchownSync(fd, m.uid, m.gid);
    if (!modeSet) fchmodSync(fd, m.mode);
    futimesSync(fd, utimesArg(m.atime), utimesArg(m.mtime));
    return undefined;
  } catch (e) { return `cannot set metadata: ${(e as Error).message}`; }
}
