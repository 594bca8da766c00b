// THE place that allows or refuses (G5 segmentation, G7 immutability). Every S3 request is checked
// by `authorize` before its operation runs; decisions that depend on an object's state (retention,
// legal hold) are made by the other functions here, which the operations call. Nothing else in the
// gateway decides who may do what.
import { S3Error } from '../s3/errors.ts';
import type { LockMode, Version } from '../meta/types.ts';

export type Principal =
  | { kind: 'server'; serverId: string; bucket: string; accessKeyId: string }
  | { kind: 'operator'; accessKeyId: string };

export type Operation =
  | 'ListBuckets' | 'HeadBucket' | 'GetBucketLocation' | 'GetBucketVersioning' | 'GetObjectLockConfiguration'
  | 'ListObjects' | 'ListObjectsV2' | 'ListObjectVersions' | 'ListMultipartUploads'
  | 'PutObject' | 'GetObject' | 'HeadObject' | 'CopyObject' | 'DeleteObject' | 'DeleteObjects'
  | 'CreateMultipartUpload' | 'UploadPart' | 'CompleteMultipartUpload' | 'AbortMultipartUpload' | 'ListParts'
  | 'GetObjectRetention' | 'PutObjectRetention' | 'GetObjectLegalHold' | 'PutObjectLegalHold'
  | 'CreateBucket' | 'DeleteBucket' | 'PutObjectLockConfiguration' | 'PutBucketVersioning'
  // Shelter's extension (s3/ops/deletion.ts): file and list deletion requests; filing removes nothing
  | 'CreateDeletionRequest' | 'ListDeletionRequests'
  // recognised so that they are refused by name and audited; never allowed
  | 'PutBucketSetting' | 'DeleteBucketSetting' | 'GetBucketSetting' | 'ObjectSubresource' | 'Unknown';

/** What a server's own credentials may do, on its own bucket only (G5). */
const SERVER_OPERATIONS = new Set<Operation>([
  'ListBuckets', 'HeadBucket', 'GetBucketLocation', 'GetBucketVersioning', 'GetObjectLockConfiguration',
  'ListObjects', 'ListObjectsV2', 'ListObjectVersions', 'ListMultipartUploads',
  'PutObject', 'GetObject', 'HeadObject', 'CopyObject', 'DeleteObject', 'DeleteObjects',
  'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'AbortMultipartUpload', 'ListParts',
  'GetObjectRetention', 'PutObjectRetention', 'GetObjectLegalHold', 'PutObjectLegalHold',
  'CreateDeletionRequest', 'ListDeletionRequests',
]);

/** Operators provision buckets with S3 tools; they stay bound by G7 (no version deletion, no versioning change). */
const OPERATOR_OPERATIONS = new Set<Operation>([...SERVER_OPERATIONS, 'CreateBucket', 'DeleteBucket', 'PutObjectLockConfiguration']);

export interface Target { bucket: string | null; key: string | null; versionId: string | null }

const deny = (message: string) => new S3Error('AccessDenied', message);

/** Throws AccessDenied unless `who` may run `op` on `target`. */
export function authorize(who: Principal, op: Operation, target: Target): void {
  if (op === 'PutBucketVersioning') throw deny('Versioning is always enabled on this gateway and cannot be changed (immutable storage).');
  if (op === 'PutBucketSetting' || op === 'DeleteBucketSetting') throw deny('Bucket settings cannot be changed with these credentials.');
  // deleting a specific version would destroy data: only the delayed deletion workflow may (G8)
  if (op === 'DeleteObject' && target.versionId !== null) throw deny('Versions cannot be deleted: request a deletion through the deletion workflow.');
  const allowed = who.kind === 'server' ? SERVER_OPERATIONS : OPERATOR_OPERATIONS;
  if (!allowed.has(op)) throw deny('Access Denied');
  if (who.kind === 'server' && op !== 'ListBuckets' && target.bucket !== who.bucket) throw deny('Access Denied');
}

/** Buckets a principal may see in ListBuckets. */
export function visibleBucket(who: Principal, bucket: string): boolean {
  return who.kind === 'operator' || bucket === who.bucket;
}

export interface RetentionChange { mode: LockMode | null; retainUntil: number | null; bypassGovernance: boolean }

/**
 * Object lock retention may be set or extended, never shortened or removed while in force, by
 * anyone (G7): COMPLIANCE is AWS's rule, and GOVERNANCE's bypass is not granted to any credential
 * here, since weakening a lock is exactly what an attacker holding credentials would try.
 */
export function checkRetentionChange(v: Version, change: RetentionChange, now: number): void {
  const active = v.retainUntil !== null && v.retainUntil > now && v.retentionMode !== null;
  if (!active) return;
  if (change.mode === null || change.retainUntil === null) throw deny('The object is under retention: its retention cannot be removed.');
  if (change.retainUntil < v.retainUntil!) throw deny('The object is under retention: its retain-until date can be extended, not shortened.');
  if (v.retentionMode === 'COMPLIANCE' && change.mode === 'GOVERNANCE') throw deny('COMPLIANCE retention cannot be turned into GOVERNANCE.');
}

/** Legal hold may be placed by anyone with access; only an operator may lift it. */
export function checkLegalHoldChange(who: Principal, on: boolean): void {
  if (!on && who.kind !== 'operator') throw deny('Only an operator may remove a legal hold.');
}

/**
 * Whether a version may be physically removed now. The deletion workflow (G8) asks this before it
 * deletes anything; nothing else removes versions.
 */
export function removableNow(v: Version, now: number): { ok: true } | { ok: false; reason: string } {
  if (v.legalHold) return { ok: false, reason: 'under legal hold' };
  if (v.retainUntil !== null && v.retainUntil > now) return { ok: false, reason: `under ${v.retentionMode} retention until ${new Date(v.retainUntil).toISOString()}` };
  return { ok: true };
}
