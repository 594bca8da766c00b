// Reference manifests (docs/FORMAT.md, "Reference manifests" and "Garbage collection contract").
//
// A manifest is the only plaintext a snapshot writes: its backup name, time, and the keys of the
// pack and index objects it needs. The gateway registers each one when it is uploaded, after
// checking it, so that deletions can be computed without decrypting anything:
// - write-once: a second upload to a manifests/ key is refused (otherwise whoever holds a server's
//   credentials could shorten an existing snapshot's list and have data it needs collected);
// - complete: every object it lists exists when it is registered (its snapshot object comes after
//   it: a manifest without one is no snapshot), checked in the transaction that registers it,
//   so it is atomic with respect to executing deletions;
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
  // The snapshot object itself comes after its manifest (the agent writes the manifest first, so
  // that nobody can register a manifest for a snapshot id before its owner: the id is the hash of
  // an encrypted object nobody else has seen). Packs and indexes must all be there.
  const needed = [...m.indexes, ...m.packs];
  const missing = needed.filter((k) => !objectExists(ctx, bucket, k));
  if (missing.length) {
    throw new S3Error('InvalidRequest', `Invalid reference manifest: ${missing.length} object(s) it lists do not exist (first: ${missing[0]}); upload them and write a new snapshot`);
  }
  ctx.db.stmt('INSERT INTO manifests (bucket, snapshot, name, time, arrived_at) VALUES (?,?,?,?,?)').run(bucket, snapshot, m.name, time, arrivedAt);
  insertRefs(ctx, bucket, snapshot, [key, m.snapshot, ...needed]);
}

function insertRefs(ctx: Context, bucket: string, snapshot: string, keys: string[]): void {
  const ref = ctx.db.stmt('INSERT OR IGNORE INTO manifest_refs (bucket, object_key, snapshot) VALUES (?,?,?)');
  for (const k of keys) ref.run(bucket, k, snapshot);
}

/**
 * Registers manifests stored before this gateway registered them at upload (an upgraded data
 * directory): each from its first version, with that version's time as arrival. A manifest that
 * does not parse blocks the collection of unreferenced objects in its bucket (whatever it
 * referenced must not be taken for leftovers). Runs once per data directory.
 */
export async function registerExistingManifests(ctx: Context, log: (ev: Record<string, unknown>) => void = () => {}): Promise<number> {
  const done = ctx.db.stmt("SELECT value FROM settings WHERE name = 'manifests_registered'").get();
  if (done) return 0;
  const rows = ctx.db.stmt(`SELECT v.bucket AS bucket, v.key AS key, v.blobs AS blobs, v.size AS size, v.last_modified AS last_modified
      FROM versions v WHERE v.key GLOB 'manifests/*' AND v.delete_marker = 0
      AND v.seq = (SELECT MIN(w.seq) FROM versions w WHERE w.bucket = v.bucket AND w.key = v.key AND w.delete_marker = 0)
      ORDER BY v.seq`).all() as Array<{ bucket: string; key: string; blobs: string; size: number; last_modified: number }>;
  let registered = 0;
  const blocked = new Set<string>();
  const parsed: Array<{ bucket: string; key: string; m: Manifest; at: number }> = [];
  for (const r of rows) {
    const snapshot = manifestSnapshot(r.key);
    if (!snapshot) continue;
    if (ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND snapshot = ?').get(r.bucket, snapshot)) continue;
    try {
      const parts: Buffer[] = [];
      for (const [id, size] of JSON.parse(r.blobs) as Array<[string, number]>) {
        if (size === 0) continue;
        for await (const c of await ctx.blobs.read(id, 0, size - 1)) parts.push(c as Buffer);
      }
      parsed.push({ bucket: r.bucket, key: r.key, m: parseManifest(Buffer.concat(parts), { key: r.key }), at: Number(r.last_modified) });
    } catch (e) {
      blocked.add(r.bucket);
      log({ level: 'warn', msg: 'stored manifest cannot be registered; unreferenced objects of its bucket will not be collected', bucket: r.bucket, key: r.key, error: (e as Error).message });
    }
  }
  ctx.db.writeNow(() => {
    for (const { bucket, key, m, at } of parsed) {
      const snapshot = manifestSnapshot(key)!;
      if (ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND snapshot = ?').get(bucket, snapshot)) continue;
      ctx.db.stmt('INSERT INTO manifests (bucket, snapshot, name, time, arrived_at) VALUES (?,?,?,?,?)').run(bucket, snapshot, m.name, Date.parse(m.time), at);
      insertRefs(ctx, bucket, snapshot, [key, m.snapshot, ...m.indexes, ...m.packs]);
      registered++;
    }
    for (const b of blocked) {
      ctx.db.stmt("INSERT INTO settings (name, value) VALUES (?, 'unparseable manifest') ON CONFLICT (name) DO NOTHING").run(`orphan_gc_blocked:${b}`);
    }
    ctx.db.stmt("INSERT INTO settings (name, value) VALUES ('manifests_registered', '1') ON CONFLICT (name) DO NOTHING").run();
  });
  return registered;
}

/** Whether unreferenced objects of a bucket may be collected (false after an unparseable stored manifest). */
export function orphanCollectionAllowed(ctx: Context, bucket: string): boolean {
  return !ctx.db.stmt('SELECT 1 AS x FROM settings WHERE name = ?').get(`orphan_gc_blocked:${bucket}`);
}

export interface RegisteredManifest { bucket: string; snapshot: string; name: string; time: number; arrivedAt: number }

export function registeredManifests(ctx: Context, bucket: string): RegisteredManifest[] {
  return (ctx.db.stmt('SELECT * FROM manifests WHERE bucket = ? ORDER BY arrived_at').all(bucket) as Array<Record<string, string | number>>)
    .map((r) => ({ bucket: r.bucket as string, snapshot: r.snapshot as string, name: r.name as string, time: Number(r.time), arrivedAt: Number(r.arrived_at) }));
}
