// The metadata database: SQLite (node:sqlite, no native add-on) in WAL mode with synchronous=FULL,
// so a committed transaction is on disk. Writes are grouped: every write queued during one turn of
// the event loop commits in one transaction (one fsync), which is what makes small PUTs fast while
// each is still acknowledged only after its commit.
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, bucket TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL, disabled_at INTEGER);
CREATE TABLE IF NOT EXISTS access_keys (
  access_key_id TEXT PRIMARY KEY, secret_sealed BLOB NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('server', 'operator')),
  server_id TEXT REFERENCES servers(id), created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE INDEX IF NOT EXISTS access_keys_server ON access_keys(server_id);
CREATE TABLE IF NOT EXISTS admin_tokens (
  id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS buckets (
  name TEXT PRIMARY KEY, server_id TEXT REFERENCES servers(id), created_at INTEGER NOT NULL,
  lock_mode TEXT, lock_days INTEGER, lock_years INTEGER);
-- every version of every object, delete markers included; seq orders versions of one key
CREATE TABLE IF NOT EXISTS versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL,
  delete_marker INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0, etag TEXT, last_modified INTEGER NOT NULL,
  content_type TEXT, headers TEXT, checksum TEXT,
  blobs TEXT NOT NULL DEFAULT '[]',
  retention_mode TEXT, retain_until INTEGER, legal_hold INTEGER NOT NULL DEFAULT 0,
  writer TEXT,
  UNIQUE (bucket, version_id));
CREATE INDEX IF NOT EXISTS versions_key ON versions(bucket, key, seq);
-- the newest version (possibly a delete marker) of each key: what GET and ListObjects see
CREATE TABLE IF NOT EXISTS current (
  bucket TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, delete_marker INTEGER NOT NULL,
  PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
  upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, created_at INTEGER NOT NULL,
  content_type TEXT, headers TEXT, checksum_algorithm TEXT, lock TEXT, initiator TEXT);
CREATE INDEX IF NOT EXISTS uploads_key ON uploads(bucket, key, created_at);
CREATE TABLE IF NOT EXISTS parts (
  upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, blob_id TEXT NOT NULL, size INTEGER NOT NULL,
  etag TEXT NOT NULL, checksum TEXT, last_modified INTEGER NOT NULL,
  PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID;
-- reference manifests registered when uploaded (deletion/manifests.ts): a snapshot, its backup
-- name, and every object key it needs (its own manifest and snapshot keys included)
CREATE TABLE IF NOT EXISTS manifests (
  bucket TEXT NOT NULL, snapshot TEXT NOT NULL, name TEXT NOT NULL, time INTEGER NOT NULL, arrived_at INTEGER NOT NULL,
  PRIMARY KEY (bucket, snapshot)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_name ON manifests(bucket, name, arrived_at);
CREATE TABLE IF NOT EXISTS manifest_refs (
  bucket TEXT NOT NULL, object_key TEXT NOT NULL, snapshot TEXT NOT NULL,
  PRIMARY KEY (bucket, object_key, snapshot)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_snapshot ON manifest_refs(bucket, snapshot);
-- the delayed, cancellable deletion workflow (G8): see deletion/requests.ts
CREATE TABLE IF NOT EXISTS deletion_requests (
  id TEXT PRIMARY KEY, bucket TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'name', 'server', 'orphans')),
  target TEXT, objects TEXT, reason TEXT NOT NULL, requested_by TEXT NOT NULL,
  created_at INTEGER NOT NULL, due_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'waiting', 'cancelled', 'done')), status_reason TEXT,
  cancelled_at INTEGER, cancelled_by TEXT, executed_at INTEGER, result TEXT);
CREATE INDEX IF NOT EXISTS deletion_requests_status ON deletion_requests(status, due_at);
-- blobs of versions an executed deletion removed from the metadata, until storage has removed them
CREATE TABLE IF NOT EXISTS blob_trash (blob_id TEXT PRIMARY KEY, request_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retention_policies (
  bucket TEXT NOT NULL, name TEXT NOT NULL, policy TEXT NOT NULL, updated_at INTEGER NOT NULL, updated_by TEXT NOT NULL,
  PRIMARY KEY (bucket, name)) WITHOUT ROWID;
-- append-only, hash-chained: see audit/log.ts
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, time TEXT NOT NULL, request_id TEXT NOT NULL, source TEXT NOT NULL,
  access_key_id TEXT, remote TEXT, operation TEXT NOT NULL, bucket TEXT, key TEXT, version_id TEXT,
  bytes INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT, detail TEXT,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
`;

export interface Db {
  sql: DatabaseSync;
  /** cached prepared statement */
  stmt(sql: string): StatementSync;
  /** runs fn inside the next group-commit transaction; resolves after COMMIT is durable */
  write<T>(fn: () => T): Promise<T>;
  /** runs fn in its own immediate transaction, synchronously (CLI and start-up paths) */
  writeNow<T>(fn: () => T): T;
  /** commits queued writes now */
  flushWrites(): void;
  close(): void;
}

export function openDb(path: string): Db {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const sql = new DatabaseSync(path, { timeout: 10_000 });
  sql.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;');
  sql.exec(SCHEMA);
  const cache = new Map<string, StatementSync>();
  const stmt = (q: string) => {
    let s = cache.get(q);
    if (!s) { s = sql.prepare(q); cache.set(q, s); }
    return s;
  };

  type Job = { fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void };
  let queue: Job[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const jobs = queue;
    queue = [];
    const results: Array<{ ok: true; v: unknown } | { ok: false; e: unknown }> = [];
    try {
      sql.exec('BEGIN IMMEDIATE');
      for (const job of jobs) {
        // a savepoint per job: one failing write must not undo its neighbours in the batch
        sql.exec('SAVEPOINT job');
        try {
          results.push({ ok: true, v: job.fn() });
          sql.exec('RELEASE job');
        } catch (e) {
          sql.exec('ROLLBACK TO job; RELEASE job');
          results.push({ ok: false, e });
        }
      }
      sql.exec('COMMIT');
    } catch (e) {
      try { sql.exec('ROLLBACK'); } catch { /* no transaction open */ }
      for (const job of jobs) job.reject(e);
      return;
    }
    jobs.forEach((job, i) => {
      const r = results[i]!;
      if (r.ok) job.resolve(r.v); else job.reject(r.e);
    });
  };

  return {
    sql,
    stmt,
    write<T>(fn: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
        if (!scheduled) { scheduled = true; setImmediate(flush); }
      });
    },
    writeNow<T>(fn: () => T): T {
      sql.exec('BEGIN IMMEDIATE');
      try {
        const v = fn();
        sql.exec('COMMIT');
        return v;
      } catch (e) {
        sql.exec('ROLLBACK');
        throw e;
      }
    },
    flushWrites() {
      if (queue.length) flush();
    },
    close() {
      if (queue.length) flush();
      if (sql.isOpen) sql.close();
    },
  };
}
