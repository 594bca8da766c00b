// The audit log (G6): every request, allowed or refused, and every admin action, appended to the
// `audit` table of the metadata database. Each record carries the SHA-256 of the previous record's
// hash and its own canonical content, so an edited, removed or reordered record breaks the chain.
// A head file (DATA/audit.head, rewritten after each append batch) holds the last seq and hash, so
// cutting records off the end is detected too. `verify` needs no key: anyone holding an export
// can check it offline.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Db } from '../meta/db.ts';

export interface AuditEntry {
  requestId: string;
  /** who: 'server:<id>', 'operator:<akid>', 'admin:<token name>', 'cli', 'anonymous', 'system' */
  source: string;
  accessKeyId?: string | null;
  remote?: string | null;
  operation: string;
  bucket?: string | null;
  key?: string | null;
  versionId?: string | null;
  bytes?: number;
  status: number;
  error?: string | null;
  /** free-form JSON detail (admin actions: what changed); never a secret */
  detail?: Record<string, unknown> | null;
}

export interface AuditRecord {
  seq: number; time: string; requestId: string; source: string; accessKeyId: string | null; remote: string | null;
  operation: string; bucket: string | null; key: string | null; versionId: string | null; bytes: number;
  status: number; error: string | null; detail: Record<string, unknown> | null; prevHash: string; hash: string;
}

export const GENESIS = '0'.repeat(64);

/** The hashed content of a record: a fixed field order, so any implementation can recompute it. */
export function canonical(r: Omit<AuditRecord, 'hash'>): string {
  return JSON.stringify([r.seq, r.time, r.requestId, r.source, r.accessKeyId, r.remote, r.operation, r.bucket,
    r.key, r.versionId, r.bytes, r.status, r.error, r.detail, r.prevHash]);
}

export function recordHash(r: Omit<AuditRecord, 'hash'>): string {
  return createHash('sha256').update(canonical(r)).digest('hex');
}

type Row = {
  seq: number; time: string; request_id: string; source: string; access_key_id: string | null; remote: string | null;
  operation: string; bucket: string | null; key: string | null; version_id: string | null; bytes: number;
  status: number; error: string | null; detail: string | null; prev_hash: string; hash: string;
};

function fromRow(r: Row): AuditRecord {
  return {
    seq: r.seq, time: r.time, requestId: r.request_id, source: r.source, accessKeyId: r.access_key_id, remote: r.remote,
    operation: r.operation, bucket: r.bucket, key: r.key, versionId: r.version_id, bytes: r.bytes, status: r.status,
    error: r.error, detail: r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : null, prevHash: r.prev_hash, hash: r.hash,
  };
}

export interface AuditLog {
  /** writes the head file now (before closing the database) */
  flush(): void;
  /** appends inside the caller's transaction (used with Db.write / writeNow) */
  appendInTx(entry: AuditEntry): AuditRecord;
  /** appends in the next group commit; resolves when durable */
  append(entry: AuditEntry): Promise<AuditRecord>;
  /** records in order, from seq `fromSeq` (inclusive), optionally since an ISO time */
  iterate(opts?: { since?: string; fromSeq?: number }): Iterable<AuditRecord>;
}

export function openAuditLog(db: Db, headFile: string, now: () => Date): AuditLog {
  const lastStmt = () => db.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  const insert = () => db.stmt(`INSERT INTO audit (seq, time, request_id, source, access_key_id, remote, operation, bucket, key,
    version_id, bytes, status, error, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`);
  let headDirty = false;
  const writeHead = () => {
    if (!headDirty || !db.sql.isOpen) return;
    headDirty = false;
    const last = lastStmt().get() as { seq: number; hash: string } | undefined;
    if (last) writeFileSync(headFile, JSON.stringify({ seq: last.seq, hash: last.hash }) + '\n', { mode: 0o600 });
  };
  // under load the head is rewritten at most every 50 ms (it only has to trail the log)
  let headTimer: NodeJS.Timeout | undefined;
  const scheduleHead = () => {
    if (headTimer) return;
    headTimer = setTimeout(() => { headTimer = undefined; writeHead(); }, 50);
    headTimer.unref();
  };

  const appendInTx = (e: AuditEntry): AuditRecord => {
    // read the tail inside the transaction: the CLI may append from another process
    const last = lastStmt().get() as { seq: number; hash: string } | undefined;
    const rec: Omit<AuditRecord, 'hash'> = {
      seq: (last?.seq ?? 0) + 1, time: now().toISOString(), requestId: e.requestId, source: e.source,
      accessKeyId: e.accessKeyId ?? null, remote: e.remote ?? null, operation: e.operation, bucket: e.bucket ?? null,
      key: e.key ?? null, versionId: e.versionId ?? null, bytes: e.bytes ?? 0, status: e.status, error: e.error ?? null,
      detail: e.detail ?? null, prevHash: last?.hash ?? GENESIS,
    };
    const hash = recordHash(rec);
    insert().run(rec.seq, rec.time, rec.requestId, rec.source, rec.accessKeyId, rec.remote, rec.operation, rec.bucket,
      rec.key, rec.versionId, rec.bytes, rec.status, rec.error, rec.detail ? JSON.stringify(rec.detail) : null, rec.prevHash, hash);
    headDirty = true;
    scheduleHead();
    return { ...rec, hash };
  };

  return {
    flush: writeHead,
    appendInTx,
    append: (e) => db.write(() => appendInTx(e)),
    *iterate(opts = {}) {
      const q = db.stmt('SELECT * FROM audit WHERE seq >= ? AND time >= ? ORDER BY seq');
      for (const row of q.iterate(opts.fromSeq ?? 0, opts.since ?? '')) yield fromRow(row as unknown as Row);
    },
  };
}

export interface VerifyResult { ok: boolean; records: number; problems: string[] }

/** Checks a sequence of records (from the database or an export): chain, order, hashes, head. */
export function verifyRecords(records: Iterable<AuditRecord>, head?: { seq: number; hash: string }): VerifyResult {
  const problems: string[] = [];
  let prev = GENESIS;
  let expectSeq = 1;
  let n = 0;
  let last: AuditRecord | undefined;
  for (const r of records) {
    n++;
    if (r.seq !== expectSeq) problems.push(`record ${r.seq}: expected seq ${expectSeq} (a record was removed or reordered)`);
    if (r.prevHash !== prev) problems.push(`record ${r.seq}: prev_hash does not match the previous record's hash (removed or reordered)`);
    const { hash, ...rest } = r;
    if (recordHash(rest) !== hash) problems.push(`record ${r.seq}: content does not match its hash (edited)`);
    prev = hash;
    expectSeq = r.seq + 1;
    last = r;
    if (problems.length > 100) break;
  }
  if (head && (!last || last.seq < head.seq)) problems.push(`the log ends at record ${last?.seq ?? 0} but the head says ${head.seq} (records cut off the end)`);
  else if (head && last && last.seq === head.seq && last.hash !== head.hash) problems.push(`record ${head.seq}: hash differs from the head file`);
  return { ok: problems.length === 0, records: n, problems };
}

export function readHead(headFile: string): { seq: number; hash: string } | undefined {
  if (!existsSync(headFile)) return undefined;
  try { return JSON.parse(readFileSync(headFile, 'utf8')) as { seq: number; hash: string }; } catch { return undefined; }
}
