// Reading many blobs with few requests: blobs are grouped by pack, and each group is fetched with
// one ranged GET covering all of them (packs are written in one go, so blobs needed together are
// usually close together). Used to load whole directory trees (restore, check, the parent snapshot
// of an incremental backup) and by the restorer for file contents.
import { extractBlob, packKey, toHex, type PackEntry } from '@shelter/format';
import { RepositoryError, type Repository } from './repository.ts';
import type { FileResult, SealPool } from './sealpool.ts';
import type { FileWrite } from './writejob.ts';
import { mapLimit } from './limit.ts';

/**
 * A gap larger than this between needed blobs splits a pack's range in two requests. The bytes of a
 * gap are fetched and thrown away, and they are other readers' blobs: in a restore, other batches'
 * (fetched again by them), in the trees' fetch, data blobs never opened. Linux tree restore: 4 MiB
 * gaps fetched 302 MB for 261 MB of blobs (177 ranges), 64 KiB 261.4 MB (238 ranges); peak RSS 334
 * -> 291 MiB (a range's buffer no longer outgrows the workers' reused 9 MiB ones), the same time
 * (bench/ab.ts --op restore, 6 alternated runs).
 */
const MAX_GAP = 64 * 1024;

export interface PackRange { pack: number; start: number; end: number; entries: PackEntry[] }

/**
 * Groups blobs by pack into covering ranges (offset order). Unknown ids throw Missing. A range
 * holds at most `maxPlaintext` bytes of plaintext (bounded memory per range in flight).
 */
export function planRanges(repo: Repository, ids: Iterable<Buffer>, maxPlaintext = Infinity): PackRange[] {
  const byPack = new Map<number, PackEntry[]>();
  const seen = new Set<string>();
  for (const id of ids) {
    const hex = toHex(id);
    if (seen.has(hex)) continue;
    seen.add(hex);
    const loc = repo.index.lookup(id);
    if (!loc) {
      const lostPack = repo.lostPackOf(id);
      throw new RepositoryError('Missing', lostPack ? `pack ${packKey(lostPack)} is missing from the bucket (it holds blob ${hex})` : `blob ${hex} is in no index (incomplete repository)`);
    }
    let list = byPack.get(loc.pack);
    if (!list) byPack.set(loc.pack, (list = []));
    list.push({ type: 'data', id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength });
  }
  return groupRanges(byPack, maxPlaintext);
}

/** Ranges of each pack's entries (distinct blobs, any order; sorted here), at most `maxPlaintext` of plaintext each. */
export function groupRanges(byPack: Map<number, PackEntry[]>, maxPlaintext = Infinity): PackRange[] {
  const ranges: PackRange[] = [];
  for (const [pack, entries] of byPack) {
    entries.sort((a, b) => a.offset - b.offset);
    let cur: PackRange | undefined;
    let plain = 0;
    for (const e of entries) {
      if (cur && e.offset - cur.end - 1 <= MAX_GAP && plain + e.rawLength <= maxPlaintext) {
        cur.end = Math.max(cur.end, e.offset + e.length - 1);
        cur.entries.push(e);
        plain += e.rawLength;
      } else {
        cur = { pack, start: e.offset, end: e.offset + e.length - 1, entries: [e] };
        plain = e.rawLength;
        ranges.push(cur);
      }
    }
  }
  return ranges;
}

/** The bytes of one range (a ranged GET), and the pack's key for messages. */
export async function readRange(repo: Repository, r: PackRange): Promise<{ key: string; bytes: Buffer }> {
  const key = packKey(repo.index.packId(r.pack));
  const bytes = await repo.backend.get(key, { start: r.start, end: r.end });
  if (!bytes) throw new RepositoryError('Missing', `pack ${key} is missing`);
  return { key, bytes };
}

/** Entry `e`'s plaintext from a range read by readRange (starting at pack offset `start`); Corrupt if it does not decrypt. */
export function blobOfRange(repo: Repository, range: { key: string; bytes: Buffer }, start: number, e: PackEntry): Buffer {
  try { return extractBlob(repo.keys, range.bytes, e, start); }
  catch (err) { throw new RepositoryError('Corrupt', `blob ${toHex(e.id)} in ${range.key} does not decrypt: ${(err as Error).message}`, { cause: err }); }
}

/** Fetches one range and decrypts each of its blobs, handing them to `each`. */
export async function fetchRange(repo: Repository, r: PackRange, each: (e: PackEntry, plaintext: Buffer) => void | Promise<void>): Promise<void> {
  const range = await readRange(repo, r);
  for (const e of r.entries) await each(e, blobOfRange(repo, range, r.start, e));
}

/**
 * Fetches one range; a worker of `pool` decrypts it and writes `files` (restore). Says how each
 * file went: one that needs a blob that does not decrypt is not restored (the others are), and its
 * error names the pack. When the backend can sign a GET for another thread, the worker fetches the
 * range itself (its bytes never cross this thread, whose event loop was the restore's narrowest
 * point); if that single attempt fails, this thread fetches the range with the backend's retries.
 */
export async function writeRange(repo: Repository, r: PackRange, pool: SealPool, files: FileWrite[]): Promise<FileResult[]> {
  const key = packKey(repo.index.packId(r.pack));
  const corrupt = (err: unknown) => new RepositoryError('Corrupt', `${key}: ${(err as Error).message}`, { cause: err });
  const signed = repo.backend.signGet?.(key, { start: r.start, end: r.end });
  if (signed) {
    let done: FileResult[] | { fetchError: string };
    try { done = await pool.fetchWriteRange(signed, r.start, r.end, r.entries, files); }
    catch (err) { throw corrupt(err); }
    if (Array.isArray(done)) return namePack(done, key);
  }
  const { bytes } = await readRange(repo, r);
  try { return namePack(await pool.writeRange(bytes, r.start, r.entries, files), key); }
  catch (err) { throw corrupt(err); }
}

/** the pack named in the errors of files whose blobs do not decrypt */
const namePack = (results: FileResult[], key: string): FileResult[] => results.map((res) => (res && 'corrupt' in res ? { ...res, error: `${res.error} (in ${key})` } : res));

/** Loads blobs by id (grouped requests), returning plaintexts by hex id. */
export async function fetchBlobs(repo: Repository, ids: Iterable<Buffer>, concurrency = 8): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await mapLimit(planRanges(repo, ids), concurrency, (r) => fetchRange(repo, r, (e, p) => { out.set(toHex(e.id), p); }));
  return out;
}
