// CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
// ListMultipartUploads. Parts are blobs of their own; completing an upload writes no data: the new
// version simply lists its parts' blobs in order.
import { createHash } from 'node:crypto';
import type { Context } from '../../context.ts';
import type { ChecksumAlgorithm, Upload, Version } from '../../meta/types.ts';
import { createChecksum } from '../../sigv4/index.ts';
import { refuseManifestTarget } from './object.ts';
import { S3Error } from '../errors.ts';
import { header, readXml, verifiedBody, type S3Operation, type S3Request } from '../request.ts';
import { xmlDocument, isoDate, type XmlNode } from '../xml.ts';
import { contentType, declaredLength, lockForNewVersion, newUploadId, newVersionId, quoteEtag, requireBucket, requireKey, storedHeaders } from './common.ts';
import { xmlOk } from './list.ts';

const ALGORITHMS: ChecksumAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'];

function requireUpload(ctx: Context, r: S3Request, bucket: string, key: string): Upload {
  const id = r.query.get('uploadId') ?? '';
  const u = ctx.meta.upload(id);
  if (!u || u.bucket !== bucket || u.key !== key) {
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { fields: { UploadId: id } });
  }
  return u;
}

export const createMultipartUpload: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  refuseManifestTarget(key);
  r.req.resume();
  const algRaw = header(r, 'x-amz-checksum-algorithm');
  const alg = algRaw ? (algRaw.toUpperCase() as ChecksumAlgorithm) : null;
  if (alg && !ALGORITHMS.includes(alg)) throw new S3Error('InvalidRequest', 'Checksum algorithm provided is unsupported.');
  const lock = lockForNewVersion(r, bucket, ctx.now().getTime());
  const explicitLock = header(r, 'x-amz-object-lock-mode') !== undefined || header(r, 'x-amz-object-lock-legal-hold') !== undefined;
  const u: Upload = {
    uploadId: newUploadId(), bucket: bucket.name, key, createdAt: ctx.now().getTime(), contentType: contentType(r),
    headers: storedHeaders(r), checksumAlgorithm: alg, lock: explicitLock ? lock : null, initiator: r.source,
  };
  r.audit.detail = { uploadId: u.uploadId };
  await r.commit(() => ctx.meta.insertUpload(u));
  const h: Record<string, string> = { 'content-type': 'application/xml' };
  if (alg) h['x-amz-checksum-algorithm'] = alg;
  return { status: 200, headers: h, body: xmlDocument('InitiateMultipartUploadResult', { Bucket: bucket.name, Key: key, UploadId: u.uploadId }) };
};

export const uploadPart: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const n = Number(r.query.get('partNumber'));
  if (!Number.isInteger(n) || n < 1 || n > r.limits.maxParts) throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${r.limits.maxParts}, inclusive`, { fields: { ArgumentName: 'partNumber' } });
  const upload = requireUpload(ctx, r, bucket.name, key);
  declaredLength(r, r.limits.maxPartBytes);
  const body = verifiedBody(r, r.limits.maxPartBytes);
  const written = await ctx.blobs.write(body);
  const result = body.result();
  if (upload.checksumAlgorithm && result.checksum && result.checksum.algorithm !== upload.checksumAlgorithm) {
    await ctx.blobs.remove(written.id);
    throw new S3Error('InvalidRequest', `Checksum Type mismatch occurred, expected checksum Type: ${upload.checksumAlgorithm.toLowerCase()}, actual checksum Type: ${result.checksum.algorithm.toLowerCase()}`);
  }
  const etag = result.md5.toString('hex');
  r.audit.bytes = written.bytes;
  r.audit.detail = { uploadId: upload.uploadId, partNumber: n };
  let replaced: string | undefined;
  try {
    replaced = await r.commit(() => {
      if (!ctx.meta.upload(upload.uploadId)) throw new S3Error('NoSuchUpload', 'The specified upload does not exist.');
      return ctx.meta.putPart({ uploadId: upload.uploadId, partNumber: n, blobId: written.id, size: written.bytes, etag,
        checksum: result.checksum?.value ?? null, lastModified: ctx.now().getTime() });
    });
  } catch (e) {
    await ctx.blobs.remove(written.id);
    throw e;
  }
  await ctx.blobs.commit([written.id]);
  if (replaced) await ctx.blobs.remove(replaced);
  const h: Record<string, string> = { etag: quoteEtag(etag) };
  if (result.checksum) h[`x-amz-checksum-${result.checksum.algorithm.toLowerCase()}`] = result.checksum.value;
  return { status: 200, headers: h };
};

const str = (v: unknown) => (v === undefined || v === null ? undefined : String(v));

export const completeMultipartUpload: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  refuseManifestTarget(key); // an upload started before manifests were registered at upload
  const upload = requireUpload(ctx, r, bucket.name, key);
  const doc = await readXml(r, 2 * 1024 * 1024);
  const parts = ((doc.CompleteMultipartUpload as { Part?: unknown[] } | undefined)?.Part ?? []) as Array<Record<string, unknown>>;
  if (parts.length === 0) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  if (parts.length > r.limits.maxParts) throw new S3Error('InvalidArgument', 'Too many parts');
  const invalidPart = (m = 'One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part\'s entity tag.') => new S3Error('InvalidPart', m);
  const stored = new Map(ctx.meta.parts(upload.uploadId).map((p) => [p.partNumber, p]));
  const chosen = [];
  let prev = 0;
  for (const p of parts) {
    const n = Number(p.PartNumber);
    if (!Number.isInteger(n)) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
    if (n <= prev) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
    prev = n;
    const sp = stored.get(n);
    const etag = str(p.ETag)?.replace(/"/g, '');
    if (!sp || (etag !== undefined && etag !== sp.etag)) throw invalidPart();
    const alg = upload.checksumAlgorithm;
    const given = alg ? str(p[`Checksum${alg}`]) : undefined;
    if (given !== undefined && sp.checksum !== null && given !== sp.checksum) throw invalidPart(`The checksum of part ${n} does not match.`);
    chosen.push(sp);
  }
  chosen.forEach((p, i) => {
    if (i < chosen.length - 1 && p.size < r.limits.minPartBytes) {
      throw new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.', { fields: { PartNumber: String(p.partNumber), ProposedSize: String(p.size), MinSizeAllowed: String(r.limits.minPartBytes) } });
    }
  });
  const md5 = createHash('md5');
  for (const p of chosen) md5.update(Buffer.from(p.etag, 'hex'));
  const etag = `${md5.digest('hex')}-${chosen.length}`;
  let checksum: Version['checksum'] = null;
  if (upload.checksumAlgorithm && chosen.every((p) => p.checksum)) {
    const c = createChecksum(upload.checksumAlgorithm);
    for (const p of chosen) c.update(Buffer.from(p.checksum!, 'base64'));
    checksum = { algorithm: upload.checksumAlgorithm, value: `${c.digest().toString('base64')}-${chosen.length}`, type: 'COMPOSITE' };
  }
  const now = ctx.now().getTime();
  const lock = upload.lock ?? lockForNewVersion({ ...r, headers: {} } as S3Request, bucket, now);
  const size = chosen.reduce((a, p) => a + p.size, 0);
  const v: Omit<Version, 'seq'> = {
    bucket: bucket.name, key, versionId: newVersionId(), deleteMarker: false, size, etag, lastModified: now,
    contentType: upload.contentType, headers: upload.headers, checksum, blobs: chosen.map((p) => [p.blobId, p.size]),
    retentionMode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold, writer: r.source,
  };
  const used = new Set(chosen.map((p) => p.blobId));
  const unused = [...stored.values()].filter((p) => !used.has(p.blobId)).map((p) => p.blobId);
  r.audit.versionId = v.versionId;
  r.audit.bytes = size;
  r.audit.detail = { uploadId: upload.uploadId, parts: chosen.length };
  await r.commit(() => {
    if (!ctx.meta.upload(upload.uploadId)) throw new S3Error('NoSuchUpload', 'The specified upload does not exist.');
    ctx.meta.insertVersion(v);
    ctx.meta.deleteUpload(upload.uploadId);
  });
  for (const id of unused) await ctx.blobs.remove(id);
  const h: Record<string, string> = { 'x-amz-version-id': v.versionId, 'content-type': 'application/xml' };
  const body: XmlNode = { Location: `/${bucket.name}/${encodeURIComponent(key)}`, Bucket: bucket.name, Key: key, ETag: quoteEtag(etag) };
  if (checksum) { body[`Checksum${checksum.algorithm}`] = checksum.value; body.ChecksumType = 'COMPOSITE'; }
  return { status: 200, headers: h, body: xmlDocument('CompleteMultipartUploadResult', body) };
};

export const abortMultipartUpload: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const upload = requireUpload(ctx, r, bucket.name, key);
  r.req.resume();
  const blobs = ctx.meta.parts(upload.uploadId).map((p) => p.blobId);
  r.audit.detail = { uploadId: upload.uploadId, parts: blobs.length };
  await r.commit(() => ctx.meta.deleteUpload(upload.uploadId), 204);
  for (const id of blobs) await ctx.blobs.remove(id);
  return { status: 204 };
};

function intParam(r: S3Request, name: string, dflt: number, max: number): number {
  const raw = r.query.get(name);
  if (raw === null || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new S3Error('InvalidArgument', `Provided ${name} not an integer or within integer range`);
  return Math.min(n, max);
}

export const listParts: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  const upload = requireUpload(ctx, r, bucket.name, key);
  const max = intParam(r, 'max-parts', 1000, 1000);
  const marker = intParam(r, 'part-number-marker', 0, 10_000);
  const parts = ctx.meta.parts(upload.uploadId, marker, max + 1);
  const truncated = parts.length > max;
  const shown = parts.slice(0, max);
  const alg = upload.checksumAlgorithm;
  return xmlOk(xmlDocument('ListPartsResult', {
    Bucket: bucket.name, Key: key, UploadId: upload.uploadId, PartNumberMarker: marker,
    NextPartNumberMarker: shown.length ? shown[shown.length - 1]!.partNumber : undefined, MaxParts: max, IsTruncated: truncated,
    ChecksumAlgorithm: alg ?? undefined,
    Part: shown.map((p) => ({ PartNumber: p.partNumber, LastModified: isoDate(p.lastModified), ETag: quoteEtag(p.etag), Size: p.size,
      ...(alg && p.checksum ? { [`Checksum${alg}`]: p.checksum } : {}) })),
    StorageClass: 'STANDARD',
  }));
};

export const listMultipartUploads: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const keyMarker = r.query.get('key-marker') ?? '';
  const idMarker = r.query.get('upload-id-marker') ?? '';
  const max = intParam(r, 'max-uploads', 1000, 1000);
  const uploads: Upload[] = [];
  const prefixes: string[] = [];
  let truncated = false;
  let cursorKey = keyMarker;
  let cursorId = idMarker || '\u{10FFFF}';
  if (!idMarker && keyMarker) cursorId = '\u{10FFFF}';
  if (!keyMarker) { cursorKey = ''; cursorId = ''; }
  outer: for (;;) {
    const batch = ctx.meta.uploadsAfter(bucket.name, cursorKey, cursorId, 1000);
    if (batch.length === 0) break;
    for (const u of batch) {
      cursorKey = u.key; cursorId = u.uploadId;
      if (!u.key.startsWith(prefix)) { if (u.key > prefix && !u.key.startsWith(prefix)) { if (u.key > prefix + '\u{10FFFF}') break outer; } continue; }
      const d = delimiter ? u.key.indexOf(delimiter, prefix.length) : -1;
      if (d >= 0) {
        const cp = u.key.slice(0, d + delimiter.length);
        if (prefixes[prefixes.length - 1] === cp) continue;
        if (uploads.length + prefixes.length >= max) { truncated = true; break outer; }
        prefixes.push(cp);
        continue;
      }
      if (uploads.length + prefixes.length >= max) { truncated = true; break outer; }
      uploads.push(u);
    }
  }
  const last = uploads[uploads.length - 1];
  return xmlOk(xmlDocument('ListMultipartUploadsResult', {
    Bucket: bucket.name, KeyMarker: keyMarker, UploadIdMarker: idMarker,
    NextKeyMarker: truncated && last ? last.key : undefined, NextUploadIdMarker: truncated && last ? last.uploadId : undefined,
    Prefix: prefix, Delimiter: delimiter || undefined, MaxUploads: max, IsTruncated: truncated,
    Upload: uploads.map((u) => ({ Key: u.key, UploadId: u.uploadId, Initiated: isoDate(u.createdAt), StorageClass: 'STANDARD',
      ChecksumAlgorithm: u.checksumAlgorithm ?? undefined })),
    CommonPrefixes: prefixes.map((p) => ({ Prefix: p })),
  }));
};
