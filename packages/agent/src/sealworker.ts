// Worker thread: compresses and encrypts blobs (zstd + AES-256-GCM, format's `seal`), the CPU-heavy
// part of a backup, so that every core works. The main thread keeps walking, reading, chunking and
// deduplicating; it hands over only the chunks that are new.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { extractBlob, seal, toHex, type RepoKeys } from '@shelter/format';

const k = workerData.keys as Record<string, Uint8Array | string>;
const keys = Object.fromEntries(Object.entries(k).map(([n, v]) => [n, typeof v === 'string' ? v : Buffer.from(v)])) as unknown as RepoKeys;
const level = workerData.level as number;

// This thread's JS heap stays tiny while it allocates and drops hundreds of MiB of zstd and
// cipher output outside it, so V8 rarely sees a reason to collect, and the process's memory grows
// by that much. A young-generation collection every GC_EVERY bytes handled keeps it bounded: the
// buffers die young, so a minor GC (well under a ms on this tiny heap) frees them; a full one
// every 64 MiB let each worker hold ~60 MiB of dead buffers.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as (o?: { type: 'minor' | 'major'; execution: 'sync' }) => void;
const GC_EVERY = 8 * 1024 * 1024;
let sinceGc = 0;
const handled = (bytes: number) => {
  sinceGc += bytes;
  if (sinceGc >= GC_EVERY) { sinceGc = 0; collect({ type: 'minor', execution: 'sync' }); }
};

interface OpenJob { start: number; entries: Array<{ id: Uint8Array; offset: number; length: number; rawLength: number }> }

parentPort!.on('message', (m: { seq: number; ids: Uint8Array; lengths: number[]; data: Uint8Array; open?: OpenJob }) => {
  if (m.open) return openRange(m.seq, m.data, m.open);
  try {
    // a batch of chunks: sealed one by one, returned as one buffer (one transfer) plus lengths
    const sealed: Buffer[] = [];
    let at = 0;
    m.lengths.forEach((n, i) => {
      sealed.push(seal(keys, m.data.subarray(at, at + n), m.ids.subarray(32 * i, 32 * i + 32), { level }));
      at += n;
    });
    const all = new Uint8Array(sealed.reduce((x, b) => x + b.length, 0));
    at = 0;
    for (const b of sealed) { all.set(b, at); at += b.length; }
    parentPort!.postMessage({ seq: m.seq, sealed: all, lengths: sealed.map((b) => b.length) }, [all.buffer]);
    handled(m.data.length);
  } catch (e) {
    parentPort!.postMessage({ seq: m.seq, error: (e as Error).message });
  }
});

/** restore: every blob of a fetched pack range, returned as one buffer (one transfer) plus lengths */
function openRange(seq: number, data: Uint8Array, job: OpenJob): void {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  // one output buffer sized from the index's plaintext lengths; each blob is copied in and dropped
  const all = new Uint8Array(job.entries.reduce((n, e) => n + e.rawLength, 0));
  const lengths: number[] = [];
  let at = 0;
  for (const e of job.entries) {
    const id = Buffer.from(e.id);
    let plain: Buffer;
    try {
      plain = extractBlob(keys, bytes, { type: 'data', id, offset: e.offset, length: e.length, rawLength: e.rawLength }, job.start);
    } catch (err) {
      parentPort!.postMessage({ seq, error: `blob ${toHex(id)} does not decrypt: ${(err as Error).message}` });
      return;
    }
    all.set(plain, at);
    at += plain.length;
    lengths.push(plain.length);
  }
  parentPort!.postMessage({ seq, sealed: all, lengths }, [all.buffer]);
  handled(all.length);
}
