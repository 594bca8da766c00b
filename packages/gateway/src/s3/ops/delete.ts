// DeleteObject and DeleteObjects. In this gateway a delete never destroys data (G7): it appends a
// delete marker, and every version stays. Deleting a specific version is refused by policy/;
// versions disappear only through the delayed deletion workflow (G8).
import type { Context } from '../../context.ts';
import type { Version } from '../../meta/types.ts';
import { authorize } from '../../policy/policy.ts';
import { S3Error, isS3Error } from '../errors.ts';
import { MAX_KEY_BYTES } from '../names.ts';
import { readXml, type S3Operation } from '../request.ts';
import { xmlDocument, type XmlNode } from '../xml.ts';
import { newVersionId, requireBucket, requireKey } from './common.ts';

function deleteMarker(ctx: Context, bucket: string, key: string, writer: string): Omit<Version, 'seq'> {
  return {
    bucket, key, versionId: newVersionId(), deleteMarker: true, size: 0, etag: null, lastModified: ctx.now().getTime(),
    contentType: null, headers: {}, checksum: null, blobs: [], retentionMode: null, retainUntil: null, legalHold: false, writer,
  };
}

export const deleteObject: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const key = requireKey(r);
  r.req.resume();
  const marker = deleteMarker(ctx, bucket.name, key, r.source);
  r.audit.versionId = marker.versionId;
  r.audit.detail = { deleteMarkerCreated: true };
  await r.commit(() => { ctx.meta.insertVersion(marker); }, 204);
  return { status: 204, headers: { 'x-amz-delete-marker': 'true', 'x-amz-version-id': marker.versionId } };
};

export const deleteObjects: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const doc = await readXml(r, r.limits.maxDeleteXmlBytes);
  const del = doc.Delete as { Object?: Array<{ Key?: unknown; VersionId?: unknown }>; Quiet?: unknown } | undefined;
  if (!del || typeof del !== 'object') throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  const objects = del.Object ?? [];
  if (objects.length === 0 || objects.length > r.limits.maxDeleteKeys) throw new S3Error('MalformedXML', `A DeleteObjects request names 1 to ${r.limits.maxDeleteKeys} keys.`);
  const quiet = String(del.Quiet ?? 'false') === 'true';
  const deleted: XmlNode[] = [];
  const errors: XmlNode[] = [];
  await r.commit(() => {
    for (const o of objects) {
      const key = typeof o.Key === 'string' ? o.Key : String(o.Key ?? '');
      const versionId = o.VersionId === undefined ? null : String(o.VersionId);
      try {
        if (key === '' || Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error('InvalidArgument', 'Invalid key');
        authorize(r.principal, 'DeleteObject', { bucket: bucket.name, key, versionId });
        const marker = deleteMarker(ctx, bucket.name, key, r.source);
        ctx.meta.insertVersion(marker);
        ctx.audit.appendInTx({ requestId: r.requestId, source: r.source, remote: r.remote, operation: 'DeleteObject', bucket: bucket.name, key, versionId: marker.versionId, status: 204, detail: { deleteMarkerCreated: true } });
        if (!quiet) deleted.push({ Key: key, DeleteMarker: 'true', DeleteMarkerVersionId: marker.versionId });
      } catch (e) {
        if (!isS3Error(e)) throw e;
        ctx.audit.appendInTx({ requestId: r.requestId, source: r.source, remote: r.remote, operation: 'DeleteObject', bucket: bucket.name, key, versionId, status: e.status, error: e.code });
        errors.push({ Key: key, VersionId: versionId ?? undefined, Code: e.code, Message: e.message });
      }
    }
  });
  r.audit.detail = { keys: objects.length, errors: errors.length };
  return { status: 200, headers: { 'content-type': 'application/xml' }, body: xmlDocument('DeleteResult', { Deleted: deleted, Error: errors }) };
};
