// Shelter's own S3 extension for the agent (`shelter forget`): a server files a deletion request
// for a snapshot of its own bucket, signed with its own SigV4 credentials, and lists its bucket's
// requests. Filing removes nothing: the request waits out the deletion delay (deletion/requests.ts).
//   POST /BUCKET?deletion-request   body {"snapshot":"<64 hex>","reason":"..."}  -> 201 JSON request
//   GET  /BUCKET?deletion-requests                                              -> 200 JSON array
import type { Context } from '../../context.ts';
import { DeletionError, fileDeletionRequestInTx, listDeletionRequests } from '../../deletion/requests.ts';
import { S3Error } from '../errors.ts';
import { readSmallBody, type S3Operation, type S3Request } from '../request.ts';
import { requireBucket } from './common.ts';

const json = (status: number, value: unknown) => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

function asS3Error(e: unknown): unknown {
  if (!(e instanceof DeletionError)) return e;
  if (e.code === 'NotFound') return new S3Error('NoSuchKey', e.message);
  return new S3Error('InvalidArgument', e.message);
}

export const createDeletionRequest: S3Operation = async (ctx: Context, r: S3Request) => {
  const bucket = requireBucket(ctx, r);
  const body = await readSmallBody(r, 8192);
  let input: { snapshot?: unknown; reason?: unknown };
  try { input = JSON.parse(body.toString('utf8')) as typeof input; } catch { throw new S3Error('InvalidArgument', 'The body must be a JSON object {"snapshot": "<id>", "reason": "..."}.'); }
  if (typeof input !== 'object' || input === null || typeof input.snapshot !== 'string') {
    throw new S3Error('InvalidArgument', 'The body must be a JSON object {"snapshot": "<id>", "reason": "..."}.');
  }
  const snapshot = input.snapshot;
  const reason = typeof input.reason === 'string' && input.reason.trim() ? input.reason : `requested by the server (${r.source})`;
  try {
    const { request, created } = await r.commit(() => {
      const out = fileDeletionRequestInTx(ctx, r.source, { bucket: bucket.name, kind: 'snapshot', target: snapshot, reason });
      r.audit.detail = { request: out.request.id, kind: 'snapshot', target: snapshot, reason, dueAt: out.request.dueAt, existing: !out.created };
      return out;
    }, (out) => (out.created ? 201 : 200));
    return json(created ? 201 : 200, request);
  } catch (e) {
    throw asS3Error(e);
  }
};

export const listBucketDeletionRequests: S3Operation = async (ctx: Context, r: S3Request) => {
  const bucket = requireBucket(ctx, r);
  r.req.resume();
  return json(200, listDeletionRequests(ctx, { bucket: bucket.name }));
};
