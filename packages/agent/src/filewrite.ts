// Writing restored file contents (on the restore's worker threads): chunks at their offsets,
// all-zero chunks skipped so holes stay holes; then length and metadata through the descriptor
// (there, or on the main thread for a file written in parts by several workers).
import { fchmodSync, fchownSync, ftruncateSync, futimesSync, writeSync } from 'node:fs';

let zeros = Buffer.alloc(0);

/** writes `chunk` at `offset` unless it is all zeros (a hole: the final truncate gives the length) */
export function writeChunkAt(fd: number, chunk: Buffer, offset: number): void {
  if (zeros.length < chunk.length) zeros = Buffer.alloc(chunk.length);
  if (chunk.equals(zeros.subarray(0, chunk.length))) return;
  for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done, offset + done);
}

export interface FileMeta { size: number; mode: number; uid: number; gid: number; chown: boolean; /** seconds */ atime: number; mtime: number }

/**
 * Gives the file its length, then its owner (`chown`: when running as root), mode and times.
 * Returns the metadata error, if any (the contents are complete by then); a failing truncate throws.
 */
export function finishFile(fd: number, m: FileMeta): string | undefined {
  ftruncateSync(fd, m.size);
  try {
    if (m.chown) fchownSync(fd, m.uid, m.gid);
    fchmodSync(fd, m.mode);
    futimesSync(fd, m.atime, m.mtime);
    return undefined;
  } catch (e) { return `cannot set metadata: ${(e as Error).message}`; }
}
