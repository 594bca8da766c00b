// Typed reads and writes of the metadata database. Plain functions over a Db; every write that
// must be durable before a response goes through db.write (group commit).
import type { SQLInputValue } from 'node:sqlite';
import type { Db } from './db.ts';
import type { AccessKey, Bucket, BlobRef, Part, Server, StoredChecksum, Upload, Version } from './types.ts';

type R = Record<string, SQLInputValue>;

const toServer = (r: R): Server => ({
  id: r.id as string, name: r.name as string, bucket: r.bucket as string, createdAt: Number(r.created_at), disabledAt: r.disabled_at == null ? null : Number(r.disabled_at),
});
const toBucket = (r: R): Bucket => ({
  name: r.name as string, serverId: (r.server_id as string) ?? null, createdAt: Number(r.created_at),
  lockMode: (r.lock_mode as Bucket['lockMode']) ?? null, lockDays: r.lock_days == null ? null : Number(r.lock_days), lockYears: r.lock_years == null ? null : Number(r.lock_years),
});
export const toVersion = (r: R): Version => ({
  seq: Number(r.seq), bucket: r.bucket as string, key: r.key as string, versionId: r.version_id as string,
  deleteMarker: r.delete_marker === 1, size: Number(r.size), etag: (r.etag as string) ?? null, lastModified: Number(r.last_modified),
  contentType: (r.content_type as string) ?? null, headers: r.headers ? JSON.parse(r.headers as string) : {},
  checksum: r.checksum ? (JSON.parse(r.checksum as string) as StoredChecksum) : null,
  blobs: JSON.parse((r.blobs as string) || '[]') as BlobRef[],
  retentionMode: (r.retention_mode as Version['retentionMode']) ?? null, retainUntil: r.retain_until == null ? null : Number(r.retain_until),
  legalHold: r.legal_hold === 1, writer: (r.writer as string) ?? null,
});
const toUpload = (r: R): Upload => ({
  uploadId: r.upload_id as string, bucket: r.bucket as string, key: r.key as string, createdAt: Number(r.created_at),
  contentType: (r.content_type as string) ?? null, headers: r.headers ? JSON.parse(r.headers as string) : {},
  checksumAlgorithm: (r.checksum_algorithm as Upload['checksumAlgorithm']) ?? null,
  lock: r.lock ? JSON.parse(r.lock as string) : null, initiator: (r.initiator as string) ?? null,
});
const toPart = (r: R): Part => ({
  uploadId: r.upload_id as string, partNumber: Number(r.part_number), blobId: r.blob_id as string, size: Number(r.size),
  etag: r.etag as string, checksum: (r.checksum as string) ?? null, lastModified: Number(r.last_modified),
});

export function metaStore(db: Db) {
  const one = (sql: string, ...args: SQLInputValue[]) => db.stmt(sql).get(...args) as R | undefined;
  const all = (sql: string, ...args: SQLInputValue[]) => db.stmt(sql).all(...args) as R[];
  const run = (sql: string, ...args: SQLInputValue[]) => db.stmt(sql).run(...args);

  function* allBlobRefs(): Generator<{ id: string; size: number; where: string }> {
    for (const r of db.stmt('SELECT bucket, key, version_id, blobs FROM versions WHERE delete_marker = 0').iterate()) {
      for (const [id, size] of JSON.parse(r.blobs as string) as BlobRef[]) yield { id, size, where: `${r.bucket}/${r.key}@${r.version_id}` };
    }
    for (const r of db.stmt('SELECT upload_id, part_number, blob_id, size FROM parts').iterate()) {
      yield { id: r.blob_id as string, size: Number(r.size), where: `upload ${r.upload_id} part ${r.part_number}` };
    }
  }

  return {
    // ---- servers and keys
    serverByName: (name: string) => { const r = one('SELECT * FROM servers WHERE name = ?', name); return r && toServer(r); },
    serverById: (id: string) => { const r = one('SELECT * FROM servers WHERE id = ?', id); return r && toServer(r); },
    servers: () => all('SELECT * FROM servers ORDER BY name').map(toServer),
    insertServer: (s: Server) => run('INSERT INTO servers (id, name, bucket, created_at, disabled_at) VALUES (?,?,?,?,?)', s.id, s.name, s.bucket, s.createdAt, s.disabledAt),
    setServerDisabled: (id: string, at: number | null) => run('UPDATE servers SET disabled_at = ? WHERE id = ?', at, id),

    /** an active key with its sealed secret; revoked keys and keys of disabled servers are not returned */
    activeKey: (accessKeyId: string): (AccessKey & { sealed: Uint8Array }) | undefined => {
      const r = one(`SELECT k.* FROM access_keys k LEFT JOIN servers s ON s.id = k.server_id
        WHERE k.access_key_id = ? AND k.revoked_at IS NULL AND (k.server_id IS NULL OR s.disabled_at IS NULL)`, accessKeyId);
      if (!r) return undefined;
      return { accessKeyId: r.access_key_id as string, role: r.role as AccessKey['role'], serverId: (r.server_id as string) ?? null,
        createdAt: Number(r.created_at), revokedAt: null, sealed: r.secret_sealed as Uint8Array };
    },
    /** the key id exists at all (revoked or not): tells who tried, for the audit log */
    keyOwner: (accessKeyId: string) => {
      const r = one('SELECT role, server_id FROM access_keys WHERE access_key_id = ?', accessKeyId);
      return r ? { role: r.role as AccessKey['role'], serverId: (r.server_id as string) ?? null } : undefined;
    },
    keysOfServer: (serverId: string) => all('SELECT access_key_id, created_at, revoked_at FROM access_keys WHERE server_id = ? ORDER BY created_at', serverId)
      .map((r) => ({ accessKeyId: r.access_key_id as string, createdAt: Number(r.created_at), revokedAt: r.revoked_at == null ? null : Number(r.revoked_at) })),
    insertKey: (k: AccessKey, sealed: Buffer) => run('INSERT INTO access_keys (access_key_id, secret_sealed, role, server_id, created_at, revoked_at) VALUES (?,?,?,?,?,NULL)',
      k.accessKeyId, sealed, k.role, k.serverId, k.createdAt),
    revokeKeysOfServer: (serverId: string, at: number) => run('UPDATE access_keys SET revoked_at = ? WHERE server_id = ? AND revoked_at IS NULL', at, serverId),
    revokeKey: (accessKeyId: string, at: number) => run('UPDATE access_keys SET revoked_at = ? WHERE access_key_id = ? AND revoked_at IS NULL', at, accessKeyId),

    // ---- admin tokens
    insertToken: (id: string, hash: string, name: string, at: number) => run('INSERT INTO admin_tokens (id, token_hash, name, created_at) VALUES (?,?,?,?)', id, hash, name, at),
    tokenByHash: (hash: string) => { const r = one('SELECT id, name FROM admin_tokens WHERE token_hash = ? AND revoked_at IS NULL', hash); return r && { id: r.id as string, name: r.name as string }; },

    // ---- buckets
    bucket: (name: string) => { const r = one('SELECT * FROM buckets WHERE name = ?', name); return r && toBucket(r); },
    buckets: () => all('SELECT * FROM buckets ORDER BY name').map(toBucket),
    insertBucket: (b: Bucket) => run('INSERT INTO buckets (name, server_id, created_at, lock_mode, lock_days, lock_years) VALUES (?,?,?,?,?,?)',
      b.name, b.serverId, b.createdAt, b.lockMode, b.lockDays, b.lockYears),
    setBucketLock: (name: string, mode: string | null, days: number | null, years: number | null) =>
      run('UPDATE buckets SET lock_mode = ?, lock_days = ?, lock_years = ? WHERE name = ?', mode, days, years, name),
    deleteBucket: (name: string) => run('DELETE FROM buckets WHERE name = ?', name),
    bucketHasVersions: (name: string) => !!one('SELECT 1 AS x FROM versions WHERE bucket = ? LIMIT 1', name) || !!one('SELECT 1 AS x FROM uploads WHERE bucket = ? LIMIT 1', name),
    bucketUsage: (name: string) => {
      const r = one('SELECT COUNT(*) AS n, COALESCE(SUM(size),0) AS bytes FROM versions WHERE bucket = ?', name)!;
      const c = one('SELECT COUNT(*) AS n FROM current WHERE bucket = ? AND delete_marker = 0', name)!;
      return { versions: Number(r.n), bytes: Number(r.bytes), objects: Number(c.n) };
    },

    // ---- versions
    currentVersion: (bucket: string, key: string) => {
      const r = one('SELECT v.* FROM current c JOIN versions v ON v.seq = c.seq WHERE c.bucket = ? AND c.key = ?', bucket, key);
      return r && toVersion(r);
    },
    version: (bucket: string, versionId: string) => { const r = one('SELECT * FROM versions WHERE bucket = ? AND version_id = ?', bucket, versionId); return r && toVersion(r); },
    /** appends a version and makes it the current one of its key */
    insertVersion: (v: Omit<Version, 'seq'>): number => {
      const res = run(`INSERT INTO versions (bucket, key, version_id, delete_marker, size, etag, last_modified, content_type, headers,
        checksum, blobs, retention_mode, retain_until, legal_hold, writer) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
        v.bucket, v.key, v.versionId, v.deleteMarker ? 1 : 0, v.size, v.etag, v.lastModified, v.contentType,
        Object.keys(v.headers).length ? JSON.stringify(v.headers) : null, v.checksum ? JSON.stringify(v.checksum) : null,
        JSON.stringify(v.blobs), v.retentionMode, v.retainUntil, v.legalHold ? 1 : 0, v.writer);
      const seq = Number(res.lastInsertRowid);
      run('INSERT INTO current (bucket, key, seq, delete_marker) VALUES (?,?,?,?) ON CONFLICT (bucket, key) DO UPDATE SET seq = excluded.seq, delete_marker = excluded.delete_marker',
        v.bucket, v.key, seq, v.deleteMarker ? 1 : 0);
      return seq;
    },
    setRetention: (seq: number, mode: string | null, until: number | null) => run('UPDATE versions SET retention_mode = ?, retain_until = ? WHERE seq = ?', mode, until, seq),
    setLegalHold: (seq: number, on: boolean) => run('UPDATE versions SET legal_hold = ? WHERE seq = ?', on ? 1 : 0, seq),
    /** current, non-deleted objects with key > after (or >= when inclusive), in key order */
    listCurrent: (bucket: string, after: string, inclusive: boolean, limit: number) =>
      all(`SELECT v.* FROM current c JOIN versions v ON v.seq = c.seq WHERE c.bucket = ? AND c.key ${inclusive ? '>=' : '>'} ?
        AND c.delete_marker = 0 ORDER BY c.key LIMIT ?`, bucket, after, limit).map(toVersion),
    /** versions in (key asc, newest first) order strictly after the position (key, seq) */
    listVersionsAfter: (bucket: string, key: string, seq: number | null, inclusiveKey: boolean, limit: number) => {
      const out: Version[] = [];
      if (seq !== null) out.push(...all('SELECT * FROM versions WHERE bucket = ? AND key = ? AND seq < ? ORDER BY seq DESC LIMIT ?', bucket, key, seq, limit).map(toVersion));
      if (out.length < limit) {
        out.push(...all(`SELECT * FROM versions WHERE bucket = ? AND key ${inclusiveKey && seq === null ? '>=' : '>'} ? ORDER BY key, seq DESC LIMIT ?`,
          bucket, key, limit - out.length).map(toVersion));
      }
      return out;
    },
    isCurrentSeq: (bucket: string, key: string, seq: number) => !!one('SELECT 1 AS x FROM current WHERE bucket = ? AND key = ? AND seq = ?', bucket, key, seq),
    /**
     * Which of these blob ids committed metadata references (start-up recovery of pending
     * writes): one pass over every reference, however many ids.
     */
    referencedBlobs(ids: string[]): Set<string> {
      const want = new Set(ids);
      const out = new Set<string>();
      for (const r of allBlobRefs()) if (want.has(r.id)) out.add(r.id);
      return out;
    },
    /** every blob id referenced by committed metadata (recovery, fsck) */
    allBlobRefs,

    // ---- multipart
    insertUpload: (u: Upload) => run('INSERT INTO uploads (upload_id, bucket, key, created_at, content_type, headers, checksum_algorithm, lock, initiator) VALUES (?,?,?,?,?,?,?,?,?)',
      u.uploadId, u.bucket, u.key, u.createdAt, u.contentType, JSON.stringify(u.headers), u.checksumAlgorithm, u.lock ? JSON.stringify(u.lock) : null, u.initiator),
    upload: (uploadId: string) => { const r = one('SELECT * FROM uploads WHERE upload_id = ?', uploadId); return r && toUpload(r); },
    uploadsAfter: (bucket: string, key: string, uploadId: string, limit: number) =>
      all('SELECT * FROM uploads WHERE bucket = ? AND (key > ? OR (key = ? AND upload_id > ?)) ORDER BY key, upload_id LIMIT ?', bucket, key, key, uploadId, limit).map(toUpload),
    deleteUpload: (uploadId: string) => { run('DELETE FROM parts WHERE upload_id = ?', uploadId); run('DELETE FROM uploads WHERE upload_id = ?', uploadId); },
    part: (uploadId: string, n: number) => { const r = one('SELECT * FROM parts WHERE upload_id = ? AND part_number = ?', uploadId, n); return r && toPart(r); },
    parts: (uploadId: string, after = 0, limit = 10_000) => all('SELECT * FROM parts WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?', uploadId, after, limit).map(toPart),
    countParts: (uploadId: string) => Number(one('SELECT COUNT(*) AS n FROM parts WHERE upload_id = ?', uploadId)!.n),
    /** inserts or replaces a part; returns the blob id it replaced, if any */
    putPart: (p: Part): string | undefined => {
      const old = one('SELECT blob_id FROM parts WHERE upload_id = ? AND part_number = ?', p.uploadId, p.partNumber);
      run(`INSERT INTO parts (upload_id, part_number, blob_id, size, etag, checksum, last_modified) VALUES (?,?,?,?,?,?,?)
        ON CONFLICT (upload_id, part_number) DO UPDATE SET blob_id = excluded.blob_id, size = excluded.size, etag = excluded.etag,
        checksum = excluded.checksum, last_modified = excluded.last_modified`, p.uploadId, p.partNumber, p.blobId, p.size, p.etag, p.checksum, p.lastModified);
      return old ? (old.blob_id as string) : undefined;
    },
  };
}

export type MetaStore = ReturnType<typeof metaStore>;
