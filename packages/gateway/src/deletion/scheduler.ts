// What turns time into deletion requests, and runs them: retention policies per server and backup
// name, the collection of objects no snapshot references (interrupted backups), and the executor.
// Evaluating a policy or finding orphans only ever FILES requests: they wait out the same delay as
// any other and can be cancelled (G8).
import { snapshotKey } from '@shelter/format';
import type { Actor } from '../accounts.ts';
import type { Context } from '../context.ts';
import { describeRetentionPolicy, evaluateRetention, parseRetentionPolicy, type RetentionPolicy } from './retention.ts';
import { objectExists, orphanCollectionAllowed, registerExistingManifests, registeredManifests } from './manifests.ts';
import { cancelDeletionRequestInTx, DeletionError, fileDeletionRequestInTx, openDeletionRequests, POLICY_CHANGE, type DeletionRequest } from './requests.ts';
import { runDueDeletions, type ExecutionSummary } from './executor.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
/** policy row name that applies to every backup name without its own policy */
export const DEFAULT_POLICY_NAME = '*';
/** `cancelled_by` of requests withdrawn because their policy changed (a policy may file them again) */
/** objects no manifest references are collected once untouched for this long (an interrupted backup resumes within it) */
export const ORPHAN_GRACE_DAYS = 7;

type Row = Record<string, string | number | null>;

export interface StoredPolicy { bucket: string; name: string; policy: RetentionPolicy; description: string; updatedAt: string; updatedBy: string }

export function retentionPolicies(ctx: Context, bucket: string): StoredPolicy[] {
  return (ctx.db.stmt('SELECT * FROM retention_policies WHERE bucket = ? ORDER BY name').all(bucket) as Row[]).map((r) => {
    const policy = parseRetentionPolicy(JSON.parse(r.policy as string));
    return { bucket, name: r.name as string, policy, description: describeRetentionPolicy(policy), updatedAt: new Date(Number(r.updated_at)).toISOString(), updatedBy: r.updated_by as string };
  });
}

/** Sets (or with null, removes) the policy of one backup name ('*' = the default); audited with before and after. */
export function setRetentionPolicy(ctx: Context, actor: Actor, bucket: string, name: string, json: unknown | null): StoredPolicy | null {
  if (!ctx.meta.bucket(bucket)) throw new DeletionError('NotFound', `no bucket ${bucket}`);
  if (!name || name.length > 256) throw new DeletionError('Invalid', 'a backup name (or * for the default) is required');
  let policy: RetentionPolicy | null = null;
  if (json !== null) {
    try { policy = parseRetentionPolicy(json); } catch (e) { throw new DeletionError('Invalid', (e as Error).message); }
  }
  return ctx.db.writeNow(() => {
    const before = ctx.db.stmt('SELECT policy FROM retention_policies WHERE bucket = ? AND name = ?').get(bucket, name) as Row | undefined;
    // the requests the old policy of this name filed are cancelled (for '*', those of the names
    // without a policy of their own): the next evaluation files again what the new policy
    // expires, with a new delay, and nothing a removed policy asked for goes ahead
    const names = name === DEFAULT_POLICY_NAME
      ? "name NOT IN (SELECT name FROM retention_policies WHERE bucket = ?1 AND name <> ?2)"
      : 'name = ?2';
    const withdrawn = (ctx.db.stmt(`SELECT id FROM deletion_requests WHERE bucket = ?1 AND requested_by = 'policy' AND status IN ('pending', 'waiting')
      AND target IN (SELECT snapshot FROM manifests WHERE bucket = ?1 AND ${names})`).all(bucket, name) as Row[]).map((r) => r.id as string);
    for (const id of withdrawn) cancelDeletionRequestInTx(ctx, actor, id, 'the retention policy changed', POLICY_CHANGE);
    if (policy) {
      ctx.db.stmt(`INSERT INTO retention_policies (bucket, name, policy, updated_at, updated_by) VALUES (?,?,?,?,?)
        ON CONFLICT (bucket, name) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at, updated_by = excluded.updated_by`)
        .run(bucket, name, JSON.stringify(json), ctx.now().getTime(), actor.source);
    } else {
      ctx.db.stmt('DELETE FROM retention_policies WHERE bucket = ? AND name = ?').run(bucket, name);
    }
    ctx.audit.appendInTx({ ...actor, operation: 'admin.SetRetentionPolicy', bucket, status: 200,
      detail: { name, before: before ? JSON.parse(before.policy as string) : null, after: json, cancelledRequests: withdrawn } });
    return policy ? retentionPolicies(ctx, bucket).find((p) => p.name === name)! : null;
  });
}

const bucketsWithManifests = (ctx: Context) => (ctx.db.stmt('SELECT DISTINCT bucket FROM manifests ORDER BY bucket').all() as Row[]).map((r) => r.bucket as string);

/** told when a bucket's step failed (the other buckets go ahead) */
export type BucketFailure = (bucket: string, error: unknown) => void;

/**
 * `fn` for each bucket on its own: one that fails (a policy that no longer parses, a busy
 * database) is reported to `failed` and the others go ahead; a bucket's requests are filed in one
 * transaction, so a failure files none of its own.
 */
function forEachBucket(buckets: readonly string[], failed: BucketFailure, fn: (bucket: string) => DeletionRequest[]): DeletionRequest[] {
  const filed: DeletionRequest[] = [];
  for (const bucket of buckets) {
    // (a bucket's requests count once its transaction committed: a failure rolled them back)
    try { filed.push(...fn(bucket)); } catch (e) { failed(bucket, e); }
  }
  return filed;
}

/**
 * Evaluates every policy now and files a request for each snapshot it expires. Snapshots that
 * already have an open request are left out of the evaluation (they are going away: they must not
 * count as the kept representative of their period). Times are the gateway's arrival times, not
 * the time a client wrote into its manifest (a client cannot backdate its way into a policy).
 * Beyond the policy and its 7-day floor, the newest snapshot of every backup name is always kept.
 */
export function applyRetentionPolicies(ctx: Context, failed: BucketFailure): DeletionRequest[] {
  return forEachBucket(bucketsWithManifests(ctx), failed, (bucket) => {
    const filed: DeletionRequest[] = [];
    const policies = new Map(retentionPolicies(ctx, bucket).map((p) => [p.name, p]));
    if (!policies.size) return filed;
    ctx.db.writeNow(() => {
      const now = ctx.now().getTime();
      const open = openDeletionRequests(ctx, bucket);
      const goingSnapshots = new Set(open.filter((r) => r.kind === 'snapshot').map((r) => r.target));
      // a snapshot whose deletion someone cancelled is never requested again by a policy
      const spared = new Set((ctx.db.stmt(`SELECT target FROM deletion_requests WHERE bucket = ? AND kind = 'snapshot' AND status = 'cancelled'
        AND cancelled_by IS NOT ?`).all(bucket, POLICY_CHANGE) as Row[]).map((r) => r.target as string));
      const goingNames = new Set(open.filter((r) => r.kind === 'name').map((r) => r.target));
      if (open.some((r) => r.kind === 'server')) return;
      const byName = new Map<string, Array<{ id: string; time: number }>>();
      for (const m of registeredManifests(ctx, bucket)) {
        if (goingSnapshots.has(m.snapshot) || goingNames.has(m.name)) continue;
        // a manifest without its snapshot object is no snapshot (a backup killed between the two
        // uploads, or one still running): it must not count as the newest, nor hold a day's floor
        if (!objectExists(ctx, bucket, snapshotKey(m.snapshot))) continue;
        let list = byName.get(m.name);
        if (!list) byName.set(m.name, (list = []));
        list.push({ id: m.snapshot, time: m.arrivedAt });
      }
      for (const [name, snapshots] of byName) {
        const p = policies.get(name) ?? policies.get(DEFAULT_POLICY_NAME);
        if (!p) continue;
        const { expire: expired } = evaluateRetention(p.policy, snapshots, now);
        const expire = expired.filter((id) => !spared.has(id));
        // the newest snapshot of a name is never expired: a server that stopped backing up (broken,
        // or silenced by an attacker) must not see its last backups age out
        const newest = snapshots.reduce((a, b) => (b.time > a.time ? b : a)).id;
        for (const id of expire.filter((x) => x !== newest)) {
          const { request, created } = fileDeletionRequestInTx(ctx, 'policy', { bucket, kind: 'snapshot', target: id, reason: `retention policy of ${name === DEFAULT_POLICY_NAME ? 'the server' : name}: ${p.description}` });
          if (!created) continue;
          ctx.audit.appendInTx({ requestId: request.id, source: 'policy', operation: 'CreateDeletionRequest', bucket, status: 201,
            detail: { request: request.id, kind: 'snapshot', target: id, name, policy: p.name, reason: request.reason, dueAt: request.dueAt } });
          filed.push(request);
        }
      }
    });
    return filed;
  });
}

/**
 * Files one request per bucket for the data/, index/ and snapshots/ objects that no registered
 * manifest references and that nobody wrote for ORPHAN_GRACE_DAYS (leftovers of interrupted or
 * failed backups). Only buckets holding at least one manifest are considered: a bucket used by
 * another tool (restic writes the same key shapes, without manifests) is never touched.
 * The executor checks again that each object is still unreferenced and untouched.
 */
export function collectOrphans(ctx: Context, failed: BucketFailure): DeletionRequest[] {
  return forEachBucket(bucketsWithManifests(ctx), failed, (bucket) => {
    const filed: DeletionRequest[] = [];
    if (!orphanCollectionAllowed(ctx, bucket)) return filed;
    ctx.db.writeNow(() => {
      const now = ctx.now().getTime();
      const open = openDeletionRequests(ctx, bucket);
      const already = new Set(open.flatMap((r) => r.objects ?? []));
      const keys = (ctx.db.stmt(`SELECT c.key AS key FROM current c JOIN versions v ON v.seq = c.seq
          WHERE c.bucket = ?1 AND ((c.key >= 'data/' AND c.key < 'data0') OR (c.key >= 'index/' AND c.key < 'index0') OR (c.key >= 'snapshots/' AND c.key < 'snapshots0'))
          AND v.last_modified <= ?2
          AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.bucket = ?1 AND r.object_key = c.key)
          AND NOT EXISTS (SELECT 1 FROM versions w WHERE w.bucket = ?1 AND w.key = c.key AND w.last_modified > ?2)`)
        .all(bucket, now - ORPHAN_GRACE_DAYS * DAY_MS) as Row[]).map((r) => r.key as string).filter((k) => !already.has(k));
      if (!keys.length) return;
      const { request } = fileDeletionRequestInTx(ctx, 'system', { bucket, kind: 'orphans', objects: keys,
        reason: `${keys.length} object(s) no snapshot references, untouched for ${ORPHAN_GRACE_DAYS} days (left by interrupted backups)` });
      ctx.audit.appendInTx({ requestId: request.id, source: 'system', operation: 'CreateDeletionRequest', bucket, status: 201,
        detail: { request: request.id, kind: 'orphans', objects: keys.length, reason: request.reason, dueAt: request.dueAt } });
      filed.push(request);
    });
    return filed;
  });
}

export interface CycleSummary extends ExecutionSummary { filedByPolicy: string[]; filedForOrphans: string[] }

/** One full cycle: policies, orphans, then every due request. */
export async function runDeletionCycle(ctx: Context, log: (ev: Record<string, unknown>) => void = () => {}, opts: { filing?: boolean } = {}): Promise<CycleSummary> {
  const filing = opts.filing ?? true;
  // manifests stored before registration existed must be known before anything counts as unreferenced
  await registerExistingManifests(ctx, log);
  // each step on its own: a failing one (a busy database, a policy that no longer parses) must not
  // keep due requests from executing or the trash from being emptied
  const step = <T>(what: string, fn: () => T, fallback: T): T => {
    try { return fn(); } catch (e) { log({ level: 'error', msg: `deletion cycle: ${what} failed`, error: String((e as Error)?.stack ?? e) }); return fallback; }
  };
  const bucketFailed = (what: string): BucketFailure => (bucket, e) => {
    log({ level: 'error', msg: `deletion cycle: ${what} of bucket ${bucket} failed (the other buckets went ahead)`, bucket, error: String((e as Error)?.stack ?? e) });
  };
  const filedByPolicy = filing ? step('retention policies', () => applyRetentionPolicies(ctx, bucketFailed('retention policy')).map((r) => r.id), []) : [];
  const filedForOrphans = filing ? step('collection of unreferenced objects', () => collectOrphans(ctx, bucketFailed('collection of unreferenced objects')).map((r) => r.id), []) : [];
  const executed = await runDueDeletions(ctx);
  return { filedByPolicy, filedForOrphans, ...executed };
}

/**
 * The background service of `shelterd serve`: a cycle shortly after start (which also finishes
 * whatever a crash interrupted), then due requests every `intervalMs`. Policies and leftovers,
 * which scan every bucket while holding the database, are evaluated once per `filingMs` only:
 * retention works in days and leftovers have a 7-day grace.
 */
export function startDeletionService(ctx: Context, log: (ev: Record<string, unknown>) => void, intervalMs = Number(process.env.SHELTERD_DELETION_INTERVAL_MS ?? 60_000),
  filingMs = 60 * 60_000): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let lastFiling = -Infinity;
  let stopped = false;
  const cycle = () => {
    if (running || stopped) return;
    const filing = Date.now() - lastFiling >= filingMs;
    if (filing) lastFiling = Date.now();
    running = runDeletionCycle(ctx, log, { filing })
      .then((s) => {
        if (s.executed.length || s.filedByPolicy.length || s.filedForOrphans.length || s.waiting.length || s.failed.length || s.trashFailed || s.blobsRemoved) log({ level: s.failed.length || s.trashFailed ? 'error' : 'info', msg: 'deletion cycle', ...s });
      })
      .catch((e: unknown) => log({ level: 'error', msg: 'deletion cycle failed', error: String((e as Error)?.stack ?? e) }))
      .finally(() => { running = null; });
  };
  const first = setTimeout(cycle, Math.min(2000, intervalMs));
  const timer = setInterval(cycle, intervalMs);
  first.unref();
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
  };
}
