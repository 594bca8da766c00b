// PutObject, GetObject, HeadObject, CopyObject.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import type { Context } from '../../context.ts';
import type { Version } from '../../meta/types.ts';
import { authorize } from '../../policy/policy.ts';
import { S3Error } from '../errors.ts';
import { header, verifiedBody, type S3Operation, type S3Request, type S3Response } from '../request.ts';
import { isoDate, xmlDocument } from '../xml.ts';
import { contentType, declaredLength, lockForNewVersion, newVersionId, quoteEtag, requireBucket, requireKey, storedHeaders, versionBody, versionHeaders } from './common.ts';
import { checkConditions } from './conditions.ts';
import { MAX_MANIFEST_BYTES, type Manifest } from '@shelter/format';
import { checkManifestWriteOnce, manifestSnapshot, parseUploadedManifest, registerManifest } from '../../deletion/manifests.ts';

async function readBlob(ctx: Context, id: string, bytes: number): Promise<Buffer> {
  if (bytes === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for await (const c of await ctx.blobs.read(id, 0, bytes - 1)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Manifests arrive only by a single PUT: copies and multipart uploads would bypass their checks. */
export function refuseManifestTarget(key: string): void {
  if (manifestSnapshot(key)) throw new S3Error('InvalidRequest', 'Reference manifests must be uploaded with a single PutObject.');
}

export const putObject: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  declaredLength(r, r.limits.maxObjectBytes);
  const headers = storedHeaders(r);
  const now = ctx.now().getTime();
  const lock = lockForNewVersion(r, bucket, now);
  // conditional write: If-None-Match: * refuses to replace an existing object (append-only writers use it)
  const ifNoneMatch = header(r, 'if-none-match');
  const ifMatch = header(r, 'if-match');
  const precheck = () => {
    const cur = ctx.meta.currentVersion(bucket.name, key);
    const exists = cur && !cur.deleteMarker;
    if (ifNoneMatch === '*' && exists) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { fields: { Condition: 'If-None-Match' } });
    if (ifMatch !== undefined && (!exists || quoteEtag(cur.etag) !== ifMatch.trim())) {
      if (!exists) throw new S3Error('NoSuchKey', 'The specified key does not exist.');
      throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { fields: { Condition: 'If-Match' } });
    }
  };
  precheck();
  // a reference manifest is checked and registered with its version (deletion/manifests.ts)
  const manifestOf = manifestSnapshot(key);
  if (manifestOf) checkManifestWriteOnce(ctx, bucket.name, manifestOf);
  const body = verifiedBody(r, manifestOf ? MAX_MANIFEST_BYTES : r.limits.maxObjectBytes);
  const written = await ctx.blobs.write(body);
  const result = body.result();
  let manifest: Manifest | undefined;
  if (manifestOf) {
    try {
      manifest = parseUploadedManifest(await readBlob(ctx, written.id, written.bytes), key);
    } catch (e) {
      await ctx.blobs.remove(written.id);
      throw e;
    }
  }
  const v: Omit<Version, 'seq'> = {
    bucket: bucket.name, key, versionId: newVersionId(), deleteMarker: false, size: written.bytes,
    etag: result.md5.toString('hex'), lastModified: now, contentType: contentType(r), headers,
    checksum: result.checksum ? { ...result.checksum, type: 'FULL_OBJECT' } : null,
    blobs: [[written.id, written.bytes]], retentionMode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold,
    writer: r.source,
  };
  r.audit.versionId = v.versionId;
  r.audit.bytes = written.bytes;
  try {
    await r.commit(() => {
      precheck();
      if (manifest) registerManifest(ctx, bucket.name, key, manifest, now);
      ctx.meta.insertVersion(v);
    });
  } catch (e) {
    await ctx.blobs.remove(written.id);
    throw e;
  }
  await ctx.blobs.commit([written.id]);
  const h: Record<string, string> = { etag: quoteEtag(v.etag), 'x-amz-version-id': v.versionId };
  if (v.checksum) h[`x-amz-checksum-${v.checksum.algorithm.toLowerCase()}`] = v.checksum.value;
  return { status: 200, headers: h };
};

/** The version a GET/HEAD addresses, with AWS's answers for missing keys and delete markers. */
export function addressedVersion(ctx: Context, bucket: string, key: string, versionId: string | null): Version {
  const v = versionId !== null ? ctx.meta.version(bucket, versionId) : ctx.meta.currentVersion(bucket, key);
  if (!v || v.key !== key) {
    if (versionId !== null) {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(versionId)) throw new S3Error('InvalidArgument', 'Invalid version id specified');
      throw new S3Error('NoSuchVersion', 'The specified version does not exist.', { fields: { Key: key, VersionId: versionId } });
    }
    throw new S3Error('NoSuchKey', 'The specified key does not exist.', { fields: { Key: key } });
  }
  if (v.deleteMarker) {
    const headers = { 'x-amz-delete-marker': 'true', 'x-amz-version-id': v.versionId, 'last-modified': new Date(v.lastModified).toUTCString() };
    if (versionId !== null) throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.', { headers, fields: { Method: 'GET', ResourceType: 'DeleteMarker' } });
    throw new S3Error('NoSuchKey', 'The specified key does not exist.', { headers, fields: { Key: key } });
  }
  return v;
}

/** parses a single-range Range header; undefined = whole object (invalid syntax is ignored, as AWS does) */
function parseRange(raw: string | undefined, size: number): { start: number; end: number } | undefined {
  if (!raw) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(raw.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw rangeError(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) throw rangeError(size);
  return { start, end };
}

const rangeError = (size: number) => new S3Error('InvalidRange', 'The requested range is not satisfiable', {
  headers: { 'content-range': `bytes */${size}` }, fields: { ActualObjectSize: String(size) },
});

async function getOrHead(ctx: Context, r: S3Request, withBody: boolean): Promise<S3Response> {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const v = addressedVersion(ctx, bucket.name, key, r.query.get('versionId'));
  r.audit.versionId = v.versionId;
  const headers = versionHeaders(v);
  const notModified = checkConditions(r.headers, v.etag, v.lastModified);
  if (notModified) return { status: 304, headers: { etag: headers.etag!, 'last-modified': headers['last-modified']!, 'x-amz-version-id': v.versionId } };

  let start = 0;
  let end = v.size - 1;
  let status = 200;
  const partNumber = r.query.get('partNumber');
  if (partNumber !== null) {
    const n = Number(partNumber);
    if (!Number.isInteger(n) || n < 1 || n > v.blobs.length) throw new S3Error('InvalidPart', 'The requested partnumber is not satisfiable');
    start = v.blobs.slice(0, n - 1).reduce((a, [, s]) => a + s, 0);
    end = start + v.blobs[n - 1]![1] - 1;
    status = v.blobs.length > 1 ? 206 : 200;
    if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${v.size}`;
  } else {
    const range = parseRange(header(r, 'range'), v.size);
    if (range) {
      ({ start, end } = range);
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${v.size}`;
    }
  }
  // the stored checksum describes the whole object: only then is it returned (as AWS does)
  if (status === 200 && v.checksum && header(r, 'x-amz-checksum-mode') === 'ENABLED') {
    headers[`x-amz-checksum-${v.checksum.algorithm.toLowerCase()}`] = v.checksum.value;
    if (v.checksum.type === 'COMPOSITE') headers['x-amz-checksum-type'] = 'COMPOSITE';
  }
  // response header overrides of presigned GETs
  for (const [q, h] of [['response-content-type', 'content-type'], ['response-content-disposition', 'content-disposition'],
    ['response-cache-control', 'cache-control'], ['response-content-encoding', 'content-encoding'],
    ['response-content-language', 'content-language'], ['response-expires', 'expires']] as const) {
    const val = r.query.get(q);
    if (val !== null) headers[h] = val;
  }
  const length = v.size === 0 ? 0 : end - start + 1;
  headers['content-length'] = length;
  r.audit.bytes = withBody ? length : 0;
  if (!withBody || length === 0) return { status, headers };
  return { status, headers, body: await versionBody(ctx, v, start, end) };
}

export const getObject: S3Operation = (ctx, r) => getOrHead(ctx, r, true);
export const headObject: S3Operation = (ctx, r) => getOrHead(ctx, r, false);

/** x-amz-copy-source: "bucket/key" or "/bucket/key", URL-encoded, optional "?versionId=" */
function parseCopySource(raw: string): { bucket: string; key: string; versionId: string | null } {
  const [pathPart, query] = raw.split('?', 2) as [string, string | undefined];
  let path: string;
  try { path = decodeURIComponent(pathPart!.replace(/^\//, '')); } catch { throw new S3Error('InvalidArgument', 'Invalid copy source encoding'); }
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey');
  const versionId = query ? new URLSearchParams(query).get('versionId') : null;
  return { bucket: path.slice(0, slash), key: path.slice(slash + 1), versionId };
}

export const copyObject: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  refuseManifestTarget(key);
  const src = parseCopySource(header(r, 'x-amz-copy-source')!);
  // the source is read with the same rights as a GetObject on it
  authorize(r.principal, 'GetObject', { bucket: src.bucket, key: src.key, versionId: src.versionId });
  if (!ctx.meta.bucket(src.bucket)) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist');
  const sv = addressedVersion(ctx, src.bucket, src.key, src.versionId);
  const prefixed: Record<string, string | string[] | undefined> = {};
  for (const [k, val] of Object.entries(r.headers)) if (k.startsWith('x-amz-copy-source-')) prefixed[k.slice('x-amz-copy-source-'.length)] = val;
  if (checkConditions(prefixed, sv.etag, sv.lastModified)) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
  const directive = header(r, 'x-amz-metadata-directive') ?? 'COPY';
  if (directive !== 'COPY' && directive !== 'REPLACE') throw new S3Error('InvalidArgument', 'Unknown metadata directive.');
  if (src.bucket === bucket.name && src.key === key && src.versionId === null && directive === 'COPY') {
    throw new S3Error('InvalidRequest', 'This copy request is illegal because it is trying to copy an object to itself without changing the object\'s metadata, storage class, website redirect location or encryption attributes.');
  }
  const now = ctx.now().getTime();
  const lock = lockForNewVersion(r, bucket, now);
  r.req.resume();
  const md5 = createHash('md5');
  const source = await versionBody(ctx, sv, 0, sv.size - 1);
  // a Transform, not a 'data' listener: a listener would start the flow before storage reads
  const hashed = source.pipe(new Transform({ transform(c: Buffer, _e, cb) { md5.update(c); cb(null, c); } }));
  source.on('error', (e) => hashed.destroy(e));
  const written = await ctx.blobs.write(hashed);
  const v: Omit<Version, 'seq'> = {
    bucket: bucket.name, key, versionId: newVersionId(), deleteMarker: false, size: written.bytes, etag: md5.digest('hex'),
    lastModified: now, contentType: directive === 'REPLACE' ? contentType(r) : sv.contentType,
    headers: directive === 'REPLACE' ? storedHeaders(r) : sv.headers,
    checksum: sv.checksum?.type === 'FULL_OBJECT' ? sv.checksum : null,
    blobs: [[written.id, written.bytes]], retentionMode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold, writer: r.source,
  };
  r.audit.versionId = v.versionId;
  r.audit.bytes = written.bytes;
  r.audit.detail = { copySource: `${src.bucket}/${src.key}`, copySourceVersionId: sv.versionId };
  try {
    await r.commit(() => { ctx.meta.insertVersion(v); });
  } catch (e) {
    await ctx.blobs.remove(written.id);
    throw e;
  }
  await ctx.blobs.commit([written.id]);
  return {
    status: 200,
    headers: { 'x-amz-version-id': v.versionId, 'x-amz-copy-source-version-id': sv.versionId, 'content-type': 'application/xml' },
    body: xmlDocument('CopyObjectResult', { LastModified: isoDate(now), ETag: quoteEtag(v.etag) }),
  };
};
