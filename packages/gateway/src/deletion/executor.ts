// The deletion executor (G8): runs due deletion requests. It is the only code that removes versions.
//
// Exactly once, crash-safe: a request is executed in ONE metadata transaction that removes the
// versions, unregisters the snapshots' manifests, moves the versions' blobs to `blob_trash`,
// writes the audit records and marks the request done. A kill -9 before the commit leaves the
// request due (the next run executes it); after the commit, the blobs left in `blob_trash` are
// removed by the next run (removing a blob twice is harmless), and nothing is audited twice.
//
// What a request removes is computed when it executes, inside that transaction, from the
// registered reference manifests (deletion/manifests.ts): an object referenced by any snapshot
// that this request does not remove is kept (retained snapshots, and snapshots with their own
// pending request, alike). Versions written after the request was filed are kept. If any version
// to remove is under object-lock retention or legal hold (policy.removableNow), nothing is
// removed: the request waits, with the reason, and is retried on later runs.
//
// Sites: storage here is one BlobStore; when replication (G9) lands, the same trash rows drive
// the removal on every site.
import { randomBytes } from 'node:crypto';
import type { Context } from '../context.ts';
import type { Version } from '../meta/types.ts';
import { toVersion } from '../meta/store.ts';
import { removableNow } from '../policy/policy.ts';
import type { DeletionRequest } from './requests.ts';
import { getDeletionRequest } from './requests.ts';

type Row = Record<string, string | number | null>;

export interface DeletionPlan {
  /** snapshots whose manifests this execution unregisters */
  snapshots: string[];
  /** versions to remove, by key */
  keys: Map<string, Version[]>;
  /** "key: reason" for versions that cannot be removed yet */
  blocked: string[];
  /** the keys those versions belong to */
  blockedKeys: Set<string>;
}

/** Test hook: milliseconds to pause before the transaction and between blob removals (kill -9 tests). */
const pauseMs = () => Number(process.env.SHELTERD_DELETION_PAUSE_MS ?? 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What executing `req` now would remove. Reads only; call inside the executing transaction. */
export function planDeletion(ctx: Context, req: DeletionRequest, now: number): DeletionPlan {
  const cutoff = Date.parse(req.createdAt);
  const bucket = req.bucket;
  let snapshots: string[] = [];
  let candidates: string[];
  const manifestsWhere = (sql: string, ...args: Array<string | number>) =>
    (ctx.db.stmt(`SELECT snapshot FROM manifests WHERE bucket = ? AND ${sql}`).all(bucket, ...args) as Row[]).map((r) => r.snapshot as string);
  const refsOf = (snapshot: string) =>
    (ctx.db.stmt('SELECT object_key FROM manifest_refs WHERE bucket = ? AND snapshot = ?').all(bucket, snapshot) as Row[]).map((r) => r.object_key as string);
  switch (req.kind) {
    case 'snapshot': snapshots = manifestsWhere('snapshot = ?', req.target!); break;
    case 'name': snapshots = manifestsWhere('name = ? AND arrived_at <= ?', req.target!, cutoff); break;
    case 'server': snapshots = manifestsWhere('arrived_at <= ?', cutoff); break;
    case 'orphans': break;
  }
  if (req.kind === 'server') {
    candidates = (ctx.db.stmt('SELECT DISTINCT key FROM versions WHERE bucket = ? AND last_modified <= ?').all(bucket, cutoff) as Row[]).map((r) => r.key as string);
  } else if (req.kind === 'orphans') {
    candidates = req.objects ?? [];
  } else {
    candidates = [...new Set(snapshots.flatMap(refsOf))];
  }
  const removing = new Set(snapshots);
  const referencedElsewhere = (key: string) => {
    // stops at the first reference by a snapshot that stays (keys shared by hundreds of snapshots)
    for (const r of ctx.db.stmt('SELECT snapshot FROM manifest_refs WHERE bucket = ? AND object_key = ?').iterate(bucket, key) as Iterable<Row>) {
      if (!removing.has(r.snapshot as string)) return true;
    }
    return false;
  };
  // A whole server's data, while snapshots registered after the request was filed stay: the
  // repository's config and key slots (listed by no manifest) are what those need to be read.
  const keepRepositoryKeys = req.kind === 'server'
    && !!ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND arrived_at > ? LIMIT 1').get(bucket, cutoff);
  const keys = new Map<string, Version[]>();
  const blocked: string[] = [];
  const blockedKeys = new Set<string>();
  for (const key of candidates.sort()) {
    if (keepRepositoryKeys && (key === 'config' || key.startsWith('keys/'))) continue;
    if (referencedElsewhere(key)) continue;
    const versions = (ctx.db.stmt('SELECT * FROM versions WHERE bucket = ? AND key = ? AND last_modified <= ? ORDER BY seq').all(bucket, key, cutoff) as Row[])
      .map((r) => toVersion(r as never));
    if (!versions.length) continue;
    for (const v of versions) {
      const ok = removableNow(v, now);
      if (!ok.ok) { blocked.push(`${key} (version ${v.versionId}) is ${ok.reason}`); blockedKeys.add(key); }
    }
    keys.set(key, versions);
  }
  return { snapshots, keys, blocked, blockedKeys };
}

export interface ExecutionSummary {
  executed: string[]; waiting: string[]; failed: string[]; blobsRemoved: number;
  /** how many blobs could not be removed from storage (left in the trash for the next run) */
  trashFailed: number;
  /** the first of them, with the storage's reason */
  trashFailures: string[];
}

/** trash failures named in a summary (the count has them all) */
const TRASH_FAILURES_REPORTED = 20;

/**
 * Runs every due request now, emptying the blob trash before and after each. Safe to run from
 * several processes. Storage that fails to remove blobs leaves them in the trash (reported), and
 * due requests execute all the same: their metadata no longer offers the data either way.
 */
export async function runDueDeletions(ctx: Context): Promise<ExecutionSummary> {
  const summary: ExecutionSummary = { executed: [], waiting: [], failed: [], blobsRemoved: 0, trashFailed: 0, trashFailures: [] };
  const failedBlobs = new Set<string>();
  const trash = async () => {
    try {
      const t = await emptyTrash(ctx, failedBlobs);
      summary.blobsRemoved += t.removed;
      for (const [blob, why] of t.failed) {
        failedBlobs.add(blob);
        summary.trashFailed++;
        if (summary.trashFailures.length < TRASH_FAILURES_REPORTED) summary.trashFailures.push(`blob ${blob}: ${why}`);
      }
    } catch (e) {
      summary.trashFailed++;
      summary.trashFailures.push(`the trash could not be read: ${(e as Error).message}`);
    }
  };
  await trash();
  const now = ctx.now().getTime();
  const due = (ctx.db.stmt("SELECT id FROM deletion_requests WHERE status IN ('pending', 'waiting') AND due_at <= ? ORDER BY due_at, id").all(now) as Row[])
    .map((r) => r.id as string);
  for (const id of due) {
    if (pauseMs()) await sleep(pauseMs());
    try {
      const outcome = ctx.db.writeNow(() => executeInTx(ctx, id, ctx.now().getTime()));
      if (outcome === 'done') summary.executed.push(id);
      if (outcome === 'waiting') summary.waiting.push(id);
    } catch (e) {
      // rolled back: the request stays due and is tried again on the next run; others go ahead
      summary.failed.push(`${id}: ${(e as Error).message}`);
    }
    await trash();
  }
  return summary;
}

function executeInTx(ctx: Context, id: string, now: number): 'done' | 'waiting' | 'skipped' {
  const req = getDeletionRequest(ctx, id);
  // cancelled, or executed by another process, since the list was read
  if ((req.status !== 'pending' && req.status !== 'waiting') || Date.parse(req.dueAt) > now) return 'skipped';
  const audit = { requestId: req.id, source: 'system', remote: null };
  const plan = planDeletion(ctx, req, now);
  if (plan.blocked.length) {
    // A collection of leftovers removes what it can and waits only for the locked objects (one
    // legal hold, which a server's own credentials may place, must not stall all collection).
    // A snapshot, a name or a server's data goes all at once or not at all.
    if (req.kind === 'orphans') {
      const free = new Map([...plan.keys].filter(([k]) => !plan.blockedKeys.has(k)));
      if (free.size) {
        const removed = removeVersions(ctx, req, free, audit);
        const left = (req.objects ?? []).filter((k) => plan.blockedKeys.has(k));
        ctx.db.stmt('UPDATE deletion_requests SET objects = ? WHERE id = ?').run(JSON.stringify(left), id);
        ctx.audit.appendInTx({ ...audit, operation: 'DeletionPartial', bucket: req.bucket, bytes: removed.bytes, status: 200,
          detail: { request: id, objects: free.size, versions: removed.versions, waitingFor: left.length } });
      }
    }
    const reason = `waiting: ${plan.blocked.length} version(s) cannot be removed yet; first: ${plan.blocked[0]}`;
    if (req.status !== 'waiting' || req.statusReason !== reason) {
      ctx.db.stmt("UPDATE deletion_requests SET status = 'waiting', status_reason = ? WHERE id = ?").run(reason, id);
      ctx.audit.appendInTx({ ...audit, operation: 'DeletionWaiting', bucket: req.bucket, status: 409, error: 'ObjectLocked', detail: { request: id, blocked: plan.blocked.slice(0, 20), count: plan.blocked.length } });
    }
    return 'waiting';
  }
  const before = ctx.meta.bucketUsage(req.bucket);
  const removed = removeVersions(ctx, req, plan.keys, audit);
  for (const s of plan.snapshots) {
    ctx.db.stmt('DELETE FROM manifests WHERE bucket = ? AND snapshot = ?').run(req.bucket, s);
    ctx.db.stmt('DELETE FROM manifest_refs WHERE bucket = ? AND snapshot = ?').run(req.bucket, s);
  }
  // usage after = before minus what was removed (a second scan of a large bucket in this
  // transaction cost more than the removal itself)
  const after = { versions: before.versions - removed.versions, bytes: before.bytes - removed.bytes, objects: before.objects - removed.liveLost };
  const result = { snapshots: plan.snapshots.length, objects: plan.keys.size, versions: removed.versions, bytes: removed.bytes, usageBefore: before, usageAfter: after };
  ctx.db.stmt("UPDATE deletion_requests SET status = 'done', status_reason = NULL, executed_at = ?, result = ? WHERE id = ?").run(now, JSON.stringify(result), id);
  ctx.audit.appendInTx({ ...audit, operation: 'DeletionExecuted', bucket: req.bucket, bytes: removed.bytes, status: 200, detail: { request: id, kind: req.kind, target: req.target, ...result } });
  return 'done';
}

/**
 * Removes these versions (inside the executing transaction): rows gone, each key's current
 * version moved to its newest remaining one, blobs into the trash, one audit record per key.
 */
function removeVersions(ctx: Context, req: DeletionRequest, keys: Map<string, Version[]>, audit: { requestId: string; source: string; remote: null })
  : { versions: number; bytes: number; liveLost: number } {
  const trash = ctx.db.stmt('INSERT OR IGNORE INTO blob_trash (blob_id, request_id) VALUES (?, ?)');
  const removeVersion = ctx.db.stmt('DELETE FROM versions WHERE seq = ?');
  const isLive = (key: string) => (ctx.db.stmt('SELECT delete_marker FROM current WHERE bucket = ? AND key = ?').get(req.bucket, key) as Row | undefined)?.delete_marker === 0;
  let versions = 0;
  let bytes = 0;
  let liveLost = 0;
  for (const [key, vs] of keys) {
    const wasLive = isLive(key);
    let keyBytes = 0;
    for (const v of vs) {
      removeVersion.run(v.seq);
      for (const [blob] of v.blobs) trash.run(blob, req.id);
      keyBytes += v.size;
    }
    const newest = ctx.db.stmt('SELECT seq, delete_marker FROM versions WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1').get(req.bucket, key) as Row | undefined;
    if (newest) {
      ctx.db.stmt('INSERT INTO current (bucket, key, seq, delete_marker) VALUES (?,?,?,?) ON CONFLICT (bucket, key) DO UPDATE SET seq = excluded.seq, delete_marker = excluded.delete_marker')
        .run(req.bucket, key, newest.seq!, newest.delete_marker!);
    } else {
      ctx.db.stmt('DELETE FROM current WHERE bucket = ? AND key = ?').run(req.bucket, key);
    }
    if (wasLive && !isLive(key)) liveLost++;
    versions += vs.length;
    bytes += keyBytes;
    ctx.audit.appendInTx({ ...audit, operation: 'DeletionRemoveObject', bucket: req.bucket, key, bytes: keyBytes, status: 200, detail: { request: req.id, versions: vs.map((v) => v.versionId) } });
  }
  return { versions, bytes, liveLost };
}

/** consecutive blobs that could not be removed after which a run stops trying (storage is down) */
const TRASH_FAILURES_IN_A_ROW = 10;

/**
 * Removes from storage the blobs of versions that executed deletions removed. A blob that cannot
 * be removed now stays in the trash for the next run and is reported; the others are removed
 * (one that failed used to stop the run, and with it every due request after it). Each run starts
 * at a random point of the trash and wraps around, so blobs that always fail cannot keep the run
 * from the others by coming first; `failedBefore` (this run's earlier failures) are not tried again.
 */
export async function emptyTrash(ctx: Context, failedBefore: Set<string> = new Set()): Promise<{ removed: number; failed: Map<string, string> }> {
  let removed = 0;
  const failed = new Map<string, string>();
  let inARow = 0;
  const start = randomBytes(8).toString('hex');
  // [lower bound (exclusive), upper bound (inclusive) or null]: from the random start to the end, then from the beginning to it
  for (const [from, to] of [[start, null], ['', start]] as Array<[string, string | null]>) {
    let after = from;
    for (;;) {
      const batch = (to === null
        ? ctx.db.stmt('SELECT blob_id FROM blob_trash WHERE blob_id > ? ORDER BY blob_id LIMIT 500').all(after)
        : ctx.db.stmt('SELECT blob_id FROM blob_trash WHERE blob_id > ? AND blob_id <= ? ORDER BY blob_id LIMIT 500').all(after, to)) as Row[];
      if (!batch.length) break;
      after = batch[batch.length - 1]!.blob_id as string;
      const gone: string[] = [];
      for (const { blob_id: blob } of batch as Array<{ blob_id: string }>) {
        if (failedBefore.has(blob)) continue;
        try {
          await ctx.blobs.remove(blob);
          gone.push(blob);
          removed++;
          inARow = 0;
        } catch (e) {
          failed.set(blob, (e as Error).message);
          if (++inARow >= TRASH_FAILURES_IN_A_ROW) break;
        }
        if (pauseMs()) await sleep(pauseMs());
      }
      // one transaction per batch: a crash before it only means removing these blobs again
      ctx.db.writeNow(() => { for (const blob of gone) ctx.db.stmt('DELETE FROM blob_trash WHERE blob_id = ?').run(blob); });
      if (inARow >= TRASH_FAILURES_IN_A_ROW) return { removed, failed };
    }
  }
  return { removed, failed };
}
