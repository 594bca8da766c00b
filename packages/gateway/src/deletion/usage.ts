// Storage use per server and backup name, from metadata only (no decryption): what the console and
// `shelterd usage` show, and what an executed deletion records before and after.
import type { Context } from '../context.ts';

type Row = Record<string, string | number | null>;

export interface NameUsage {
  name: string;
  snapshots: number;
  /** distinct objects the name's snapshots reference (packs, indexes, snapshots, manifests) */
  objects: number;
  /** bytes of every version of those objects; an object shared by two names counts in both */
  bytes: number;
}

export interface BucketUsage {
  bucket: string;
  server: string | null;
  /** every version, delete markers included */
  versions: number;
  /** keys whose current version is not a delete marker */
  objects: number;
  bytes: number;
  names: NameUsage[];
}

export function storageUsage(ctx: Context, bucket: string): BucketUsage {
  const b = ctx.meta.bucket(bucket);
  const server = b?.serverId ? ctx.meta.serverById(b.serverId)?.name ?? null : null;
  const totals = ctx.meta.bucketUsage(bucket);
  const snapshots = new Map((ctx.db.stmt('SELECT name, COUNT(*) AS n FROM manifests WHERE bucket = ? GROUP BY name').all(bucket) as Row[])
    .map((r) => [r.name as string, Number(r.n)]));
  const perName = ctx.db.stmt(`SELECT k.name AS name, COUNT(*) AS objects, COALESCE(SUM(s.bytes), 0) AS bytes
      FROM (SELECT DISTINCT m.name AS name, r.object_key AS key FROM manifests m
            JOIN manifest_refs r ON r.bucket = m.bucket AND r.snapshot = m.snapshot WHERE m.bucket = ?1) k
      JOIN (SELECT key, SUM(size) AS bytes FROM versions WHERE bucket = ?1 GROUP BY key) s ON s.key = k.key
      GROUP BY k.name ORDER BY k.name`).all(bucket) as Row[];
  return {
    bucket, server, ...totals,
    names: perName.map((r) => ({ name: r.name as string, snapshots: snapshots.get(r.name as string) ?? 0, objects: Number(r.objects), bytes: Number(r.bytes) })),
  };
}
