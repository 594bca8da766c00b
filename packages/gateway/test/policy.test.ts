import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, checkLegalHoldChange, checkRetentionChange, removableNow, type Operation, type Principal } from '../src/policy/policy.ts';
import type { Version } from '../src/meta/types.ts';

const server: Principal = { kind: 'server', serverId: 's1', bucket: 'srv-a', accessKeyId: 'K' };
const operator: Principal = { kind: 'operator', accessKeyId: 'O' };
const target = (bucket: string | null, versionId: string | null = null) => ({ bucket, key: 'k', versionId });
const denied = (fn: () => void) => assert.throws(fn, (e: { code?: string }) => e.code === 'AccessDenied');

test('a server may use every object operation on its own bucket and none on another (G5)', () => {
  const ops: Operation[] = ['PutObject', 'GetObject', 'HeadObject', 'ListObjectsV2', 'ListObjectVersions', 'DeleteObject', 'DeleteObjects',
    'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'AbortMultipartUpload', 'ListParts', 'PutObjectRetention', 'GetObjectLegalHold',
    // filing (never executing) a deletion request for its own snapshots, and listing its own requests (G8)
    'CreateDeletionRequest', 'ListDeletionRequests'];
  for (const op of ops) {
    authorize(server, op, target('srv-a'));
    denied(() => authorize(server, op, target('srv-b')));
  }
});

test('bucket administration is refused to servers, allowed to operators', () => {
  for (const op of ['CreateBucket', 'DeleteBucket', 'PutObjectLockConfiguration'] as Operation[]) {
    denied(() => authorize(server, op, target('srv-a')));
    authorize(operator, op, target('any'));
  }
});

test('nobody deletes a version, suspends versioning or changes bucket settings (G7)', () => {
  for (const who of [server, operator]) {
    denied(() => authorize(who, 'DeleteObject', target('srv-a', 'v1')));
    denied(() => authorize(who, 'PutBucketVersioning', target('srv-a')));
    denied(() => authorize(who, 'PutBucketSetting', target('srv-a')));
    denied(() => authorize(who, 'DeleteBucketSetting', target('srv-a')));
  }
  authorize(server, 'DeleteObject', target('srv-a')); // a delete marker is fine
});

const version = (over: Partial<Version>): Version => ({
  seq: 1, bucket: 'b', key: 'k', versionId: 'v', deleteMarker: false, size: 1, etag: 'e', lastModified: 0, contentType: null,
  headers: {}, checksum: null, blobs: [], retentionMode: null, retainUntil: null, legalHold: false, writer: null, ...over,
});

test('retention can be extended, never shortened, removed or weakened while in force', () => {
  const now = 1_000_000;
  const locked = version({ retentionMode: 'GOVERNANCE', retainUntil: now + 1000 });
  checkRetentionChange(locked, { mode: 'GOVERNANCE', retainUntil: now + 2000, bypassGovernance: false }, now);
  checkRetentionChange(locked, { mode: 'COMPLIANCE', retainUntil: now + 1000, bypassGovernance: false }, now);
  denied(() => checkRetentionChange(locked, { mode: 'GOVERNANCE', retainUntil: now + 500, bypassGovernance: true }, now));
  denied(() => checkRetentionChange(locked, { mode: null, retainUntil: null, bypassGovernance: true }, now));
  const compliance = version({ retentionMode: 'COMPLIANCE', retainUntil: now + 1000 });
  denied(() => checkRetentionChange(compliance, { mode: 'GOVERNANCE', retainUntil: now + 5000, bypassGovernance: false }, now));
  // expired retention may be set to anything
  checkRetentionChange(version({ retentionMode: 'COMPLIANCE', retainUntil: now - 1 }), { mode: 'GOVERNANCE', retainUntil: now + 10, bypassGovernance: false }, now);
});

test('legal hold: anyone may place it, only an operator may lift it', () => {
  checkLegalHoldChange(server, true);
  denied(() => checkLegalHoldChange(server, false));
  checkLegalHoldChange(operator, false);
});

test('a version under retention or legal hold is not removable', () => {
  const now = 5000;
  assert.equal(removableNow(version({}), now).ok, true);
  assert.equal(removableNow(version({ legalHold: true }), now).ok, false);
  assert.equal(removableNow(version({ retentionMode: 'GOVERNANCE', retainUntil: now + 1 }), now).ok, false);
  assert.equal(removableNow(version({ retentionMode: 'GOVERNANCE', retainUntil: now }), now).ok, true);
});
