// Deletion requests (G8): the only way anything is ever removed from storage.
//
// A request records who asked, when, what (a snapshot, every snapshot of a backup name, a whole
// server's data, or objects no snapshot references) and why, and is due no earlier than the
// deletion delay after it was filed: 14 days, which the operator may raise (never lower). Until
// it executes (deletion/executor.ts) it can be cancelled. Every step is in the audit log.
// Objects written after a request was filed are never removed by it.
import type { Context } from '../context.ts';
import type { Actor } from '../accounts.ts';
import { randomId } from '../secrets.ts';

export const MIN_DELETION_DELAY_DAYS = 14;
const DAY_MS = 24 * 60 * 60 * 1000;

export type DeletionKind = 'snapshot' | 'name' | 'server' | 'orphans';
export type DeletionStatus = 'pending' | 'waiting' | 'cancelled' | 'done';

export interface DeletionRequest {
  id: string;
  bucket: string;
  /** the server owning the bucket, by name (null for an operator's bucket) */
  server: string | null;
  kind: DeletionKind;
  /** snapshot id (kind snapshot) or backup name (kind name) */
  target: string | null;
  /** kind orphans: the object keys it may remove */
  objects: string[] | null;
  reason: string;
  requestedBy: string;
  createdAt: string;
  dueAt: string;
  status: DeletionStatus;
  /** why a due request waits (retention, legal hold), or how it ended */
  statusReason: string | null;
  cancelledAt: string | null;
  cancelledBy: string | null;
  executedAt: string | null;
  result: Record<string, unknown> | null;
}

export class DeletionError extends Error {
  readonly code: 'NotFound' | 'Conflict' | 'Invalid';
  constructor(code: DeletionError['code'], message: string) { super(message); this.code = code; }
}

type Row = Record<string, string | number | null>;
const iso = (v: string | number | null | undefined) => (v == null ? null : new Date(Number(v)).toISOString());

function toRequest(ctx: Context, r: Row): DeletionRequest {
  const b = ctx.meta.bucket(r.bucket as string);
  const server = b?.serverId ? ctx.meta.serverById(b.serverId)?.name ?? null : null;
  return {
    id: r.id as string, bucket: r.bucket as string, server, kind: r.kind as DeletionKind, target: (r.target as string) ?? null,
    objects: r.objects ? (JSON.parse(r.objects as string) as string[]) : null, reason: r.reason as string, requestedBy: r.requested_by as string,
    createdAt: iso(r.created_at)!, dueAt: iso(r.due_at)!, status: r.status as DeletionStatus, statusReason: (r.status_reason as string) ?? null,
    cancelledAt: iso(r.cancelled_at), cancelledBy: (r.cancelled_by as string) ?? null, executedAt: iso(r.executed_at),
    result: r.result ? (JSON.parse(r.result as string) as Record<string, unknown>) : null,
  };
}

/** The deletion delay in days: the operator's setting, never below 14. */
export function deletionDelayDays(ctx: Context): number {
  const r = ctx.db.stmt("SELECT value FROM settings WHERE name = 'deletion_delay_days'").get() as { value: string } | undefined;
  return Math.max(MIN_DELETION_DELAY_DAYS, Number(r?.value ?? MIN_DELETION_DELAY_DAYS) || MIN_DELETION_DELAY_DAYS);
}

export function setDeletionDelayDays(ctx: Context, actor: Actor, days: number): number {
  if (!Number.isInteger(days) || days < MIN_DELETION_DELAY_DAYS || days > 3650) {
    throw new DeletionError('Invalid', `the deletion delay is a whole number of days from ${MIN_DELETION_DELAY_DAYS} to 3650`);
  }
  return ctx.db.writeNow(() => {
    const before = deletionDelayDays(ctx);
    ctx.db.stmt("INSERT INTO settings (name, value) VALUES ('deletion_delay_days', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value").run(String(days));
    ctx.audit.appendInTx({ ...actor, operation: 'admin.SetDeletionDelay', status: 200, detail: { before, after: days } });
    return days;
  });
}

export interface NewDeletionRequest {
  bucket: string;
  kind: DeletionKind;
  target?: string | null;
  objects?: string[] | null;
  reason: string;
  /** more than the configured delay; less is refused */
  delayDays?: number;
}

/**
 * What an operator asks to delete, from the three ways to say it (CLI flags, admin API fields):
 * exactly one of a snapshot id, a backup name, or all of the server's data.
 */
export function requestTarget(o: { snapshot?: unknown; backup?: unknown; allData?: unknown }): { kind: DeletionKind; target: string | null } {
  const given = [o.snapshot !== undefined, o.backup !== undefined, o.allData !== undefined && o.allData !== false].filter(Boolean).length;
  if (given !== 1) throw new DeletionError('Invalid', 'give exactly one of a snapshot (id), a backup (name) or all of the server\'s data');
  if (o.snapshot !== undefined) {
    if (typeof o.snapshot !== 'string') throw new DeletionError('Invalid', 'snapshot must be a snapshot id');
    return { kind: 'snapshot', target: o.snapshot };
  }
  if (o.backup !== undefined) {
    if (typeof o.backup !== 'string') throw new DeletionError('Invalid', 'backup must be a backup name');
    return { kind: 'name', target: o.backup };
  }
  if (o.allData !== true) throw new DeletionError('Invalid', 'allData must be true');
  return { kind: 'server', target: null };
}

const OPEN = "status IN ('pending', 'waiting')";

/**
 * Files a request inside the caller's transaction (no audit record: the caller writes it).
 * An identical open request (same bucket, kind and target) is returned instead of a duplicate.
 */
export function fileDeletionRequestInTx(ctx: Context, requestedBy: string, input: NewDeletionRequest): { request: DeletionRequest; created: boolean } {
  const bucket = ctx.meta.bucket(input.bucket);
  if (!bucket) throw new DeletionError('NotFound', `no bucket ${input.bucket}`);
  const reason = input.reason.trim();
  if (!reason || reason.length > 1000) throw new DeletionError('Invalid', 'a deletion request needs a reason (1-1000 characters)');
  const minDelay = deletionDelayDays(ctx);
  const delay = input.delayDays ?? minDelay;
  if (!Number.isInteger(delay) || delay < minDelay || delay > 3650) throw new DeletionError('Invalid', `the delay is a whole number of days, at least ${minDelay}`);
  let target: string | null = null;
  let objects: string[] | null = null;
  switch (input.kind) {
    case 'snapshot': {
      target = String(input.target ?? '');
      if (!/^[0-9a-f]{64}$/.test(target)) throw new DeletionError('Invalid', 'a snapshot id is 64 hex digits');
      if (!ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND snapshot = ?').get(bucket.name, target)) {
        throw new DeletionError('NotFound', `no snapshot ${target} in bucket ${bucket.name} (no reference manifest was registered for it)`);
      }
      break;
    }
    case 'name': {
      target = String(input.target ?? '');
      if (!ctx.db.stmt('SELECT 1 AS x FROM manifests WHERE bucket = ? AND name = ? LIMIT 1').get(bucket.name, target)) {
        throw new DeletionError('NotFound', `no snapshot named ${JSON.stringify(target)} in bucket ${bucket.name}`);
      }
      break;
    }
    case 'server':
      if (!bucket.serverId) throw new DeletionError('Invalid', `bucket ${bucket.name} belongs to no server`);
      break;
    case 'orphans':
      objects = [...new Set(input.objects ?? [])].sort();
      if (!objects.length) throw new DeletionError('Invalid', 'an orphan collection lists at least one object');
      break;
    default:
      throw new DeletionError('Invalid', `unknown deletion kind ${String(input.kind)}`);
  }
  if (input.kind !== 'orphans') {
    const open = ctx.db.stmt(`SELECT * FROM deletion_requests WHERE bucket = ? AND kind = ? AND target IS ? AND ${OPEN} ORDER BY created_at LIMIT 1`)
      .get(bucket.name, input.kind, target) as Row | undefined;
    if (open) return { request: toRequest(ctx, open), created: false };
  }
  const now = ctx.now().getTime();
  const id = `del-${randomId(8)}`;
  ctx.db.stmt(`INSERT INTO deletion_requests (id, bucket, kind, target, objects, reason, requested_by, created_at, due_at, status)
    VALUES (?,?,?,?,?,?,?,?,?, 'pending')`).run(id, bucket.name, input.kind, target, objects ? JSON.stringify(objects) : null, reason, requestedBy, now, now + delay * DAY_MS);
  return { request: getDeletionRequest(ctx, id), created: true };
}

/** Files a request in its own transaction, audited (CLI, admin API). */
export function fileDeletionRequest(ctx: Context, actor: Actor, input: NewDeletionRequest): DeletionRequest {
  return ctx.db.writeNow(() => {
    const { request, created } = fileDeletionRequestInTx(ctx, actor.source, input);
    ctx.audit.appendInTx({ ...actor, operation: 'admin.CreateDeletionRequest', bucket: request.bucket, status: created ? 201 : 200,
      detail: { request: request.id, kind: request.kind, target: request.target, objects: request.objects?.length ?? null, reason: request.reason, dueAt: request.dueAt, existing: !created } });
    return request;
  });
}

export function getDeletionRequest(ctx: Context, id: string): DeletionRequest {
  const r = ctx.db.stmt('SELECT * FROM deletion_requests WHERE id = ?').get(id) as Row | undefined;
  if (!r) throw new DeletionError('NotFound', `no deletion request ${id}`);
  return toRequest(ctx, r);
}

export function listDeletionRequests(ctx: Context, filter: { bucket?: string; status?: DeletionStatus } = {}): DeletionRequest[] {
  const rows = ctx.db.stmt('SELECT * FROM deletion_requests WHERE (?1 IS NULL OR bucket = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY created_at, id')
    .all(filter.bucket ?? null, filter.status ?? null) as Row[];
  return rows.map((r) => toRequest(ctx, r));
}

/** Open requests (pending or waiting) of a bucket: what retention and GC must not file twice. */
export function openDeletionRequests(ctx: Context, bucket: string): DeletionRequest[] {
  return (ctx.db.stmt(`SELECT * FROM deletion_requests WHERE bucket = ? AND ${OPEN}`).all(bucket) as Row[]).map((r) => toRequest(ctx, r));
}

export function cancelDeletionRequest(ctx: Context, actor: Actor, id: string, why?: string): DeletionRequest {
  return ctx.db.writeNow(() => cancelDeletionRequestInTx(ctx, actor, id, why));
}

/**
 * Cancels inside the caller's transaction, audited as `actor`'s. `cancelledBy` is what the request
 * records (default the actor): a policy change records POLICY_CHANGE, so that the snapshot stays
 * eligible for the next policy, unlike one an operator spared.
 */
export function cancelDeletionRequestInTx(ctx: Context, actor: Actor, id: string, why?: string, cancelledBy = actor.source): DeletionRequest {
  const req = getDeletionRequest(ctx, id);
  if (req.status === 'cancelled') return req;
  if (req.status === 'done') throw new DeletionError('Conflict', `deletion request ${id} has already been executed (${req.executedAt})`);
  ctx.db.stmt("UPDATE deletion_requests SET status = 'cancelled', cancelled_at = ?, cancelled_by = ?, status_reason = ? WHERE id = ?")
    .run(ctx.now().getTime(), cancelledBy, why ?? null, id);
  ctx.audit.appendInTx({ ...actor, operation: 'admin.CancelDeletionRequest', bucket: req.bucket, status: 200, detail: { request: id, kind: req.kind, target: req.target, why: why ?? null } });
  return getDeletionRequest(ctx, id);
}

/** What a request cancelled by a change of retention policy records as its canceller. */
export const POLICY_CHANGE = 'policy-change';
