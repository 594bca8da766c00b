// Reference manifests (docs/FORMAT.md, "Reference manifests" and "Garbage collection contract").
//
// A manifest is the only plaintext a snapshot writes: its backup name, time, and the keys of the
// pack and index objects it needs. The gateway registers each one when it is uploaded, after
// checking it, so that deletions can be computed without decrypting anything:
// - write-once: a second upload to a manifests/ key is refused (otherwise whoever holds a server's
//   credentials could shorten an existing snapshot's list and have data it needs collected);
// - complete: every object it lists (and its snapshot object) exists when it is registered, in the
//   same transaction as the registration, so it is atomic with respect to executing deletions;
// - not from the future: its time may not be later than its arrival plus the clock-skew window.
// A registered manifest leaves the table only through an executed deletion request: a delete
// marker on manifests/<id> hides the snapshot from listings but keeps protecting its objects.
import { isFormatError, parseManifest, type Manifest } from '@shelter/format';
import type { Context } from '../context.ts';
import { S3Error } from '../s3/errors.ts';

const MANIFEST_KEY = /^manifests\/([0-9a-f]{64})$/;
const SKEW_MS = 15 * 60 * 1000;

/** The snapshot id when `key` is a manifest's key. */
export function manifestSnapshot(key: string): string | null {
  return MANIFEST_KEY.exec(key)?.[1] ?? null;
}

/** Refuses a second manifest for a snapshot (before its body is even read). */
export function checkManifestWriteOnce(ctx: Context, bucket: string, snapshot: string): void {
  const exists = ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND snapshot = ?').get(bucket, snapshot)
    ?? ctx.db.stmt("SELECT 1 AS x FROM versions WHERE bucket = ? AND key = ? LIMIT 1").get(bucket, `manifests/${snapshot}`);
  if (exists) throw new S3Error('AccessDenied', 'Reference manifests are write-once: this snapshot already has one.');
}

/** Parses an uploaded manifest; a malformed one is refused with the parser's reason. */
export function parseUploadedManifest(bytes: Buffer, key: string): Manifest {
  try {
    return parseManifest(bytes, { key });
  } catch (e) {
    if (isFormatError(e)) throw new S3Error('InvalidRequest', `Invalid reference manifest: ${(e as Error).message}`);
    throw e;
  }
}

/** A key "exists" while any non-delete-marker version of it does (a delete marker destroys nothing). */
export function objectExists(ctx: Context, bucket: string, key: string): boolean {
  return !!ctx.db.stmt('SELECT 1 AS x FROM versions WHERE bucket = ? AND key = ? AND delete_marker = 0 LIMIT 1').get(bucket, key);
}

/**
 * Registers a manifest; call inside the transaction that commits its version. Throws (and so
 * rolls the upload back) when it lists a missing object or claims a time in the future.
 */
export function registerManifest(ctx: Context, bucket: string, key: string, m: Manifest, arrivedAt: number): void {
  const snapshot = manifestSnapshot(key)!;
  checkManifestWriteOnce(ctx, bucket, snapshot);
  const time = Date.parse(m.time);
  if (time > arrivedAt + SKEW_MS) throw new S3Error('InvalidRequest', `Invalid reference manifest: its time ${m.time} is in the future`);
  const needed = [m.snapshot, ...m.indexes, ...m.packs];
  const missing = needed.filter((k) => !objectExists(ctx, bucket, k));
  if (missing.length) {
    throw new S3Error('InvalidRequest', `Invalid reference manifest: ${missing.length} object(s) it lists do not exist (first: ${missing[0]}); upload them and write a new snapshot`);
  }
  ctx.db.stmt('INSERT INTO manifests (bucket, snapshot, name, time, arrived_at) VALUES (?,?,?,?,?)').run(bucket, snapshot, m.name, time, arrivedAt);
  const ref = ctx.db.stmt('INSERT OR IGNORE INTO manifest_refs (bucket, object_key, snapshot) VALUES (?,?,?)');
  for (const k of [key, ...needed]) ref.run(bucket, k, snapshot);
}

export interface RegisteredManifest { bucket: string; snapshot: string; name: string; time: number; arrivedAt: number }

export function registeredManifests(ctx: Context, bucket: string): RegisteredManifest[] {
  return (ctx.db.stmt('SELECT * FROM manifests WHERE bucket = ? ORDER BY arrived_at').all(bucket) as Array<Record<string, string | number>>)
    .map((r) => ({ bucket: r.bucket as string, snapshot: r.snapshot as string, name: r.name as string, time: Number(r.time), arrivedAt: Number(r.arrived_at) }));
}
