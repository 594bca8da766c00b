// A pack's blobs wait for its upload in a temporary file, not in memory (restic does the same). A
// pack is filled for a while, may wait for an upload slot, then uploads for a while, and there are
// packs at each stage: held in memory they were ~80 MiB of a backup's peak (and their blobs were
// slices that kept whole batch buffers alive); in a file they are page cache the kernel may drop.
//
// The file holds sealed blobs only (ciphertext, the pack's header is added from memory at upload)
// and has no name: O_TMPFILE on Linux (no directory entry ever, so the directory's mtime does not
// change either: a backup of /tmp or / would otherwise see /tmp changed by every backup), else
// created 0600 under a random name (O_EXCL: nothing planted is opened) and unlinked at once. It is
// gone when its descriptor is closed, whatever ends the process.
import { close, closeSync, openSync, read, unlinkSync, writev, constants as fsc } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { StreamBody } from './backend/types.ts';

/** blobs are written in runs of about this many bytes (one system call per run, not per blob) */
const WRITE_RUN = 1024 * 1024;
/** the file is read back for an upload in pieces of this size */
const READ_PIECE = 1024 * 1024;

export interface PackSpool {
  /** a blob's bytes, after those appended before (kept until written) */
  append(bytes: Buffer): void;
  /**
   * Once every blob is appended (`spilled` bytes): the whole pack as an upload body, the file read
   * back, then `tail` (the header and its length). Rejects if a write failed.
   */
  body(spilled: number, tail: readonly Buffer[]): Promise<StreamBody>;
  /** closes the file (it disappears); the body must not be read after */
  close(): void;
}

export class SpoolError extends Error {}

/**
 * Linux's O_TMPFILE (__O_TMPFILE with O_DIRECTORY, as the kernel's headers define it; Node does not
 * export it). __O_TMPFILE is 020000000 on every architecture Node runs on (only alpha, parisc and
 * sparc differ); O_DIRECTORY is the platform's, from Node.
 */
const O_TMPFILE = 0o20000000 | fsc.O_DIRECTORY;

/** A fresh spool file in `dir`; throws SpoolError if one cannot be created there. */
export function openPackSpool(dir: string): PackSpool {
  const fd = unnamedFile(dir);
  let closed = false;
  /** the read in flight, if any: the descriptor is closed after it (its number could be reused meanwhile) */
  let reading: Promise<number> | undefined;
  let run: Buffer[] = [];
  let runBytes = 0;
  let written = 0; // file position of the next run
  const writes = new Set<Promise<void>>();
  let failure: Error | undefined;
  const flush = () => {
    if (runBytes === 0) return;
    const bufs = run, at = written, n = runBytes;
    run = []; runBytes = 0; written += n;
    const p = writeAll(fd, bufs, at, n).catch((e: Error) => {
      failure ??= new SpoolError(`writing a pack to its spool file in ${dir} failed: ${e.message}`, { cause: e });
    }).finally(() => writes.delete(p));
    writes.add(p);
  };
  return {
    append(bytes) {
      run.push(bytes);
      runBytes += bytes.length;
      if (runBytes >= WRITE_RUN) flush();
    },
    async body(spilled, tail) {
      flush();
      while (writes.size) await Promise.all(writes);
      if (failure) throw failure;
      if (written !== spilled) throw new SpoolError(`pack spool holds ${written} bytes, the pack ${spilled}`);
      const length = spilled + tail.reduce((n, b) => n + b.length, 0);
      /** the file read back in pieces: each a new buffer (`into` undefined), or `into` again */
      async function* read(into?: Buffer): AsyncGenerator<Buffer> {
        for (let at = 0; at < spilled;) {
          if (closed) throw new SpoolError('pack spool file closed while its upload was still reading it');
          const size = Math.min(into?.length ?? READ_PIECE, spilled - at);
          const piece = into ? into.subarray(0, size) : Buffer.allocUnsafeSlow(size);
          reading = readAt(fd, piece, at);
          const n = await reading.finally(() => { reading = undefined; });
          if (n !== piece.length) throw new SpoolError(`pack spool file in ${dir} ended at ${at + n} of ${spilled} bytes`);
          at += n;
          yield piece;
        }
        yield* tail;
      }
      return { length, chunks: () => read(), chunksInto: (piece) => read(piece) };
    },
    close() {
      if (closed) return;
      closed = true;
      const release = () => close(fd, () => { /* nameless: closing frees it */ });
      // writes still queued (a failed backup) and a read in flight finish on this descriptor first
      Promise.allSettled([...writes, ...(reading ? [reading] : [])]).then(release, release);
    },
  };
}

/** a file without a name in `dir`, read-write, mode 0600 */
function unnamedFile(dir: string): number {
  if (process.platform === 'linux' && tmpfileWorks !== false) {
    try {
      // O_EXCL: the file can never be given a name (linkat) either
      const fd = openSync(dir, O_TMPFILE | fsc.O_RDWR | fsc.O_EXCL, 0o600);
      tmpfileWorks = true;
      return fd;
    } catch (e) {
      // a file system without O_TMPFILE says so with EOPNOTSUPP (EISDIR or EINVAL from older kernels)
      const code = (e as NodeJS.ErrnoException).code;
      if (!['EOPNOTSUPP', 'EISDIR', 'EINVAL'].includes(code ?? '')) throw new SpoolError(`cannot create a pack spool file in ${dir}: ${(e as Error).message}`, { cause: e });
      tmpfileWorks = false;
    }
  }
  const path = join(dir, `shelter-pack-${randomBytes(12).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new SpoolError(`cannot create a pack spool file in ${dir}: ${(e as Error).message}`, { cause: e });
  }
  try { unlinkSync(path); } catch (e) {
    closeSync(fd);
    throw new SpoolError(`cannot unlink the pack spool file ${path}: ${(e as Error).message}`, { cause: e });
  }
  return fd;
}
/** whether O_TMPFILE worked in the spool directory (asked once) */
let tmpfileWorks: boolean | undefined;

/** writes every byte of `bufs` at `at` (writev may write less than asked) */
async function writeAll(fd: number, bufs: Buffer[], at: number, n: number): Promise<void> {
  let done = 0;
  while (done < n) {
    const w = await new Promise<number>((res, rej) => writev(fd, bufs, at + done, (e, k) => (e ? rej(e) : res(k))));
    if (w <= 0) throw new Error('no progress writing');
    done += w;
    if (done < n) bufs = skip(bufs, w);
  }
}

/** `bufs` without their first `k` bytes */
function skip(bufs: Buffer[], k: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (k >= b.length) { k -= b.length; continue; }
    out.push(k ? b.subarray(k) : b);
    k = 0;
  }
  return out;
}

/** fills `buf` from file offset `at` (short only at the end of the file) */
async function readAt(fd: number, buf: Buffer, at: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await new Promise<number>((res, rej) => read(fd, buf, got, buf.length - got, at + got, (e, k) => (e ? rej(e) : res(k))));
    if (n === 0) break;
    got += n;
  }
  return got;
}
