// Worker thread: compresses and encrypts blobs (zstd + AES-256-GCM, format's `seal`), the CPU-heavy
// part of a backup, so that every core works. The main thread keeps walking, reading, chunking and
// deduplicating; it hands over only the chunks that are new.
import { parentPort, workerData } from 'node:worker_threads';
import { seal, type RepoKeys } from '@shelter/format';

const k = workerData.keys as Record<string, Uint8Array | string>;
const keys = Object.fromEntries(Object.entries(k).map(([n, v]) => [n, typeof v === 'string' ? v : Buffer.from(v)])) as unknown as RepoKeys;
const level = workerData.level as number;

parentPort!.on('message', (m: { seq: number; id: Uint8Array; data: Uint8Array }) => {
  try {
    const sealed = seal(keys, m.data, m.id, { level });
    // hand the bytes back without copying when they own their buffer
    // (Node's small-buffer pool cannot be transferred: copy those into a buffer of their own)
    let own: Uint8Array = sealed;
    if (sealed.byteOffset !== 0 || sealed.byteLength !== sealed.buffer.byteLength) { own = new Uint8Array(sealed.length); own.set(sealed); }
    parentPort!.postMessage({ seq: m.seq, sealed: own }, [own.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ seq: m.seq, error: (e as Error).message });
  }
});
