// The storage interface: where version bodies (and multipart parts) live, each under an id the
// gateway generates, never under a client-chosen path. Versioning, immutability and listing are
// the metadata's job (meta/); storage only keeps bytes durable. The embedded implementation is
// storage/fs.ts; an upstream S3 store (Ceph RGW, MinIO, AWS) will implement the same interface.
import type { Readable } from 'node:stream';

export interface BlobWrite {
  id: string;
  bytes: number;
}

export interface BlobStore {
  /**
   * Streams `body` into a new blob and makes it durable. The blob is "pending" until
   * `commit(ids)` after the metadata that references it is committed; pending blobs of a crashed
   * process are removed by `recover()`. On error nothing is left behind.
   */
  write(body: Readable): Promise<BlobWrite>;
  /**
   * marks blobs as referenced by committed metadata (moves them out of the pending area); may
   * finish in the background: reads and recover() must not depend on it having run
   */
  commit(ids: string[]): Promise<void>;
  /** waits for background work started by commit() (shutdown, consistency checks, tests) */
  settle(): Promise<void>;
  /** removes a pending or committed blob (aborted uploads, replaced parts, executed deletions) */
  remove(id: string): Promise<void>;
  /** a byte range [start, end] inclusive of a blob */
  read(id: string, start: number, end: number): Promise<Readable>;
  /** size of a blob, or undefined when missing */
  stat(id: string): Promise<number | undefined>;
  /** at start: pending blobs referenced by metadata are committed, the others removed */
  recover(referenced: (ids: string[]) => Set<string>): Promise<{ committed: number; removed: number }>;
  /** every blob id with its size (consistency checks, scrub) */
  list(): AsyncIterable<{ id: string; bytes: number }>;
}
