// Worker thread: compresses and encrypts blobs (zstd + AES-256-GCM, format's `seal`), the CPU-heavy
// part of a backup, so that every core works. The main thread keeps walking, reading, chunking and
// deduplicating; it hands over only the chunks that are new.
import { parentPort, workerData } from 'node:worker_threads';
import { extractBlob, seal, toHex, type RepoKeys } from '@shelter/format';

const k = workerData.keys as Record<string, Uint8Array | string>;
const keys = Object.fromEntries(Object.entries(k).map(([n, v]) => [n, typeof v === 'string' ? v : Buffer.from(v)])) as unknown as RepoKeys;
const level = workerData.level as number;

interface OpenJob { start: number; entries: Array<{ id: Uint8Array; offset: number; length: number; rawLength: number }> }

parentPort!.on('message', (m: { seq: number; id: Uint8Array; data: Uint8Array; open?: OpenJob }) => {
  if (m.open) return openRange(m.seq, m.data, m.open);
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

/** restore: every blob of a fetched pack range, returned as one buffer (one transfer) plus lengths */
function openRange(seq: number, data: Uint8Array, job: OpenJob): void {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const plains: Buffer[] = [];
  for (const e of job.entries) {
    const id = Buffer.from(e.id);
    try {
      plains.push(extractBlob(keys, bytes, { type: 'data', id, offset: e.offset, length: e.length, rawLength: e.rawLength }, job.start));
    } catch (err) {
      parentPort!.postMessage({ seq, error: `blob ${toHex(id)} does not decrypt: ${(err as Error).message}` });
      return;
    }
  }
  const total = plains.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of plains) { all.set(p, at); at += p.length; }
  parentPort!.postMessage({ seq, sealed: all, lengths: plains.map((p) => p.length) }, [all.buffer]);
}
