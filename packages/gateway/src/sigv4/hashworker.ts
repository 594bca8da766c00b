// Worker thread of the body hash pool (hashing.ts): MD5, SHA-256 and flexible checksums of large
// request bodies, off the thread that serves every connection.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { createChecksum, type Checksum } from './checksums.ts';
import type { ChecksumAlgorithm } from './types.ts';

interface Job { md5: Hash; sha256: Hash | null; checksum: Checksum | null }
const jobs = new Map<number, Job>();

type Message =
  | { kind: 'start'; job: number; sha256: boolean; checksum: ChecksumAlgorithm | null }
  | { kind: 'data'; job: number; slot: ArrayBuffer; length: number }
  | { kind: 'end'; job: number }
  | { kind: 'drop'; job: number };

parentPort!.on('message', (m: Message) => {
  switch (m.kind) {
    case 'start':
      jobs.set(m.job, { md5: createHash('md5'), sha256: m.sha256 ? createHash('sha256') : null, checksum: m.checksum ? createChecksum(m.checksum) : null });
      return;
    case 'data': {
      const j = jobs.get(m.job);
      if (j) {
        const b = Buffer.from(m.slot, 0, m.length);
        j.md5.update(b);
        j.sha256?.update(b);
        j.checksum?.update(b);
      }
      // the slot goes back to the main thread's free list (hashed, or its job was dropped)
      parentPort!.postMessage({ slot: m.slot }, [m.slot]);
      return;
    }
    case 'end': {
      const j = jobs.get(m.job);
      jobs.delete(m.job);
      if (!j) return;
      parentPort!.postMessage({ job: m.job, md5: j.md5.digest(), sha256: j.sha256?.digest() ?? null, checksum: j.checksum?.digest() ?? null });
      return;
    }
    case 'drop':
      jobs.delete(m.job);
  }
});
