// Maps a request to a named S3 operation: the method, whether a bucket and a key are addressed, and
// the sub-resource in the query string. Addressing is path-style (/bucket/key) or virtual-hosted
// (bucket.<domain>/key) for the configured domains.
import type { Operation } from '../policy/policy.ts';
import { S3Error } from './errors.ts';

export interface Addressed { bucket: string | null; key: string | null }

/** bucket and key from Host and the raw path; throws InvalidURI on bad percent-encoding */
export function address(host: string | undefined, rawPath: string, domains: string[]): Addressed {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new S3Error('InvalidURI', "Couldn't parse the specified URI.");
  }
  const hostname = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  for (const d of domains) {
    if (hostname.endsWith('.' + d) && hostname.length > d.length + 1) {
      const key = path.slice(1);
      return { bucket: hostname.slice(0, -d.length - 1), key: key === '' ? null : key };
    }
  }
  const rest = path.slice(1);
  const slash = rest.indexOf('/');
  if (rest === '') return { bucket: null, key: null };
  if (slash < 0) return { bucket: rest, key: null };
  const key = rest.slice(slash + 1);
  return { bucket: rest.slice(0, slash), key: key === '' ? null : key };
}

// bucket sub-resources that configure the bucket: refused by policy, recognised by name for the audit log
const BUCKET_SETTINGS = ['policy', 'acl', 'lifecycle', 'cors', 'tagging', 'encryption', 'replication', 'website', 'logging',
  'notification', 'ownershipControls', 'publicAccessBlock', 'accelerate', 'requestPayment', 'analytics', 'inventory',
  'metrics', 'intelligent-tiering', 'policyStatus'];

export function route(method: string, a: Addressed, q: URLSearchParams, headers: Record<string, unknown>): Operation {
  const has = (name: string) => q.has(name);
  if (a.bucket === null) {
    if (method === 'GET') return 'ListBuckets';
    throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.');
  }
  if (a.key === null) {
    switch (method) {
      case 'HEAD': return 'HeadBucket';
      case 'GET':
        if (has('location')) return 'GetBucketLocation';
        if (has('versioning')) return 'GetBucketVersioning';
        if (has('object-lock')) return 'GetObjectLockConfiguration';
        if (has('versions')) return 'ListObjectVersions';
        if (has('uploads')) return 'ListMultipartUploads';
        if (has('deletion-requests')) return 'ListDeletionRequests';
        if (BUCKET_SETTINGS.some(has)) return 'GetBucketSetting';
        if (q.get('list-type') === '2') return 'ListObjectsV2';
        return 'ListObjects';
      case 'PUT':
        if (has('versioning')) return 'PutBucketVersioning';
        if (has('object-lock')) return 'PutObjectLockConfiguration';
        if (BUCKET_SETTINGS.some(has)) return 'PutBucketSetting';
        return 'CreateBucket';
      case 'DELETE':
        if (BUCKET_SETTINGS.some(has)) return 'DeleteBucketSetting';
        return 'DeleteBucket';
      case 'POST':
        if (has('delete')) return 'DeleteObjects';
        if (has('deletion-request')) return 'CreateDeletionRequest';
        break;
    }
    throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.');
  }
  switch (method) {
    case 'GET':
      if (has('uploadId')) return 'ListParts';
      if (has('retention')) return 'GetObjectRetention';
      if (has('legal-hold')) return 'GetObjectLegalHold';
      if (has('acl') || has('tagging') || has('attributes') || has('torrent')) return 'ObjectSubresource';
      return 'GetObject';
    case 'HEAD': return 'HeadObject';
    case 'PUT':
      if (has('uploadId') && has('partNumber')) {
        if (headers['x-amz-copy-source'] !== undefined) return 'ObjectSubresource'; // UploadPartCopy: not supported
        return 'UploadPart';
      }
      if (has('retention')) return 'PutObjectRetention';
      if (has('legal-hold')) return 'PutObjectLegalHold';
      if (has('acl') || has('tagging')) return 'ObjectSubresource';
      if (headers['x-amz-copy-source'] !== undefined) return 'CopyObject';
      return 'PutObject';
    case 'POST':
      if (has('uploads')) return 'CreateMultipartUpload';
      if (has('uploadId')) return 'CompleteMultipartUpload';
      return 'ObjectSubresource';
    case 'DELETE':
      if (has('uploadId')) return 'AbortMultipartUpload';
      if (has('tagging')) return 'ObjectSubresource';
      return 'DeleteObject';
  }
  throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.');
}
