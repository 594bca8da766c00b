// The S3 request pipeline: address -> operation -> SigV4 -> policy -> operation -> audit -> response.
// Every request, allowed or refused, leaves exactly one audit record for itself (G6).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AuditEntry } from '../audit/log.ts';
import type { Context } from '../context.ts';
import { authorize, type Operation, type Principal } from '../policy/policy.ts';
import { unseal } from '../secrets.ts';
import { authenticate } from '../sigv4/index.ts';
import { S3Error, type S3ErrorCode } from './errors.ts';
import type { Limits } from './limits.ts';
import { address, route } from './router.ts';
import type { S3Operation, S3Request, S3Response } from './request.ts';
import { escapeXml } from './xml.ts';
import * as bucketOps from './ops/bucket.ts';
import * as deleteOps from './ops/delete.ts';
import * as deletionOps from './ops/deletion.ts';
import * as listOps from './ops/list.ts';
import * as lockOps from './ops/lock.ts';
import * as mpOps from './ops/multipart.ts';
import * as objectOps from './ops/object.ts';

const OPERATIONS: Partial<Record<Operation, S3Operation>> = {
  ListBuckets: listOps.listBuckets, ListObjects: listOps.listObjects, ListObjectsV2: listOps.listObjectsV2,
  ListObjectVersions: listOps.listObjectVersions, ListMultipartUploads: mpOps.listMultipartUploads,
  HeadBucket: bucketOps.headBucket, GetBucketLocation: bucketOps.getBucketLocation, GetBucketVersioning: bucketOps.getBucketVersioning,
  CreateBucket: bucketOps.createBucket, DeleteBucket: bucketOps.deleteBucket,
  GetObjectLockConfiguration: lockOps.getObjectLockConfiguration, PutObjectLockConfiguration: lockOps.putObjectLockConfiguration,
  PutObject: objectOps.putObject, GetObject: objectOps.getObject, HeadObject: objectOps.headObject, CopyObject: objectOps.copyObject,
  DeleteObject: deleteOps.deleteObject, DeleteObjects: deleteOps.deleteObjects,
  CreateMultipartUpload: mpOps.createMultipartUpload, UploadPart: mpOps.uploadPart, CompleteMultipartUpload: mpOps.completeMultipartUpload,
  AbortMultipartUpload: mpOps.abortMultipartUpload, ListParts: mpOps.listParts,
  GetObjectRetention: lockOps.getObjectRetention, PutObjectRetention: lockOps.putObjectRetention,
  GetObjectLegalHold: lockOps.getObjectLegalHold, PutObjectLegalHold: lockOps.putObjectLegalHold,
  CreateDeletionRequest: deletionOps.createDeletionRequest, ListDeletionRequests: deletionOps.listBucketDeletionRequests,
};

export interface HandlerOptions { domains: string[]; limits: Limits; log: (ev: Record<string, unknown>) => void }

interface ErrorLike { code: string; status: number; message: string; headers?: Record<string, string>; fields?: Record<string, string> }

function asError(e: unknown): ErrorLike {
  if (e instanceof S3Error) return e;
  const x = e as { code?: unknown; status?: unknown; message?: unknown };
  if (typeof x?.code === 'string' && typeof x.status === 'number') return { code: x.code, status: x.status, message: String(x.message ?? '') };
  if (x?.code === 'ERR_STREAM_PREMATURE_CLOSE' || x?.code === 'ECONNRESET' || x?.code === 'ERR_STREAM_DESTROYED') {
    return { code: 'IncompleteBody', status: 400, message: 'You did not provide the number of bytes specified by the Content-Length HTTP header.' };
  }
  if (x?.code === 'EBLOBDAMAGED' || x?.code === 'ENOENT') {
    return { code: 'InternalError', status: 500, message: 'The stored data of this object is damaged or missing on the gateway; the operator must repair it (shelterd fsck).' };
  }
  if (x?.code === 'ENOSPC') return { code: 'ServiceUnavailable', status: 503, message: 'The gateway is out of storage space; nothing was written. Retry later.' };
  return { code: 'InternalError', status: 500, message: 'We encountered an internal error. Please try again.' };
}

function errorXml(err: ErrorLike, resource: string, requestId: string): string {
  const extra = Object.entries(err.fields ?? {}).map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err.code}</Code><Message>${escapeXml(err.message)}</Message>${extra}` +
    `<Resource>${escapeXml(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>${requestId}</HostId></Error>`;
}

/** bytes of an unread request body we are willing to swallow to deliver an error response cleanly */
const DRAIN_LIMIT = 8 * 1024 * 1024;
/** and how long we wait for them */
const DRAIN_TIMEOUT_MS = 30_000;

/**
 * Before an error answer to a request whose body is still arriving: read and discard the rest (up to
 * DRAIN_LIMIT bytes and DRAIN_TIMEOUT_MS), then answer. Answering first and closing would reset the
 * connection while the client is still sending, and it would see EPIPE or ECONNRESET instead of the
 * S3 error code. A body declared (or found) larger than the limit is not read: the answer goes at
 * once with `Connection: close` (a declared 5 GiB upload is refused without waiting for it).
 */
async function drainBeforeAnswer(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.complete || req.destroyed) return;
  const declared = Number(req.headers['content-length']);
  if (declared > DRAIN_LIMIT) {
    res.setHeader('connection', 'close');
    return;
  }
  await new Promise<void>((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', done).off('close', done).off('error', done);
      resolve();
    };
    const giveUp = (): void => {
      res.setHeader('connection', 'close');
      done();
    };
    const onData = (c: Buffer): void => {
      seen += c.length;
      if (seen > DRAIN_LIMIT) giveUp();
    };
    const timer = setTimeout(giveUp, DRAIN_TIMEOUT_MS);
    // detached from whatever the operation piped it into: a body verifier nobody reads any more
    // (the storage failed before reading) would pause it again, and the drain would stall
    req.unpipe();
    req.on('data', onData).once('end', done).once('close', done).once('error', done);
    req.resume();
  });
}

export function s3Handler(ctx: Context, opts: HandlerOptions) {
  // unsealed secrets, keyed by the sealed bytes: revocation still takes effect on the next request
  // (activeKey is read from the database every time), only the AES-GCM unseal is saved
  const unsealed = new Map<string, { sealed: Buffer; secret: string }>();
  const secretOf = (k: ReturnType<typeof ctx.meta.activeKey>, accessKeyId: string): string | undefined => {
    if (!k) { unsealed.delete(accessKeyId); return undefined; }
    const hit = unsealed.get(accessKeyId);
    if (hit && hit.sealed.equals(k.sealed)) return hit.secret;
    const secret = unseal(ctx.master, k.sealed, accessKeyId);
    if (unsealed.size > 10_000) unsealed.clear();
    unsealed.set(accessKeyId, { sealed: Buffer.from(k.sealed), secret });
    return secret;
  };
  const sourceOfKey = (accessKeyId: string | undefined): string => {
    if (!accessKeyId) return 'anonymous';
    const owner = ctx.meta.keyOwner(accessKeyId);
    if (!owner) return 'anonymous';
    return owner.role === 'server' ? `server:${owner.serverId}` : `operator:${accessKeyId}`;
  };

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const rawQuery = q < 0 ? '' : url.slice(q + 1);
    const remote = req.socket.remoteAddress ?? null;
    const entry: AuditEntry = { requestId, source: 'anonymous', remote, operation: 'Unknown', status: 0 };
    let r: S3Request | undefined;
    let audited = false;
    let response: S3Response;
    try {
      const query = new URLSearchParams(rawQuery);
      entry.versionId = query.get('versionId');
      // name the operation first (for the audit record), but authenticate before reporting a routing error
      let a: ReturnType<typeof address> = { bucket: null, key: null };
      let op: Operation = 'Unknown';
      let routeError: unknown;
      try {
        a = address(req.headers.host, rawPath, opts.domains);
        entry.bucket = a.bucket;
        entry.key = a.key;
        op = route(req.method ?? 'GET', a, query, req.headers);
        entry.operation = op;
      } catch (e) { routeError = e; }
      // the key row is read once per request: authenticate() asks for the secret, the principal comes from the same row
      let key: ReturnType<typeof ctx.meta.activeKey>;
      const auth = authenticate({ method: req.method ?? 'GET', rawPath, rawQuery, headers: req.headers },
        { region: ctx.region, now: ctx.now(), lookupSecret: (id) => secretOf((key = ctx.meta.activeKey(id)), id) });
      entry.accessKeyId = auth.ok ? auth.accessKeyId : auth.accessKeyId ?? null;
      // the active key row read for the signature already says who it is; only an inactive or
      // unknown key needs the lookup that tells who tried
      entry.source = key ? (key.role === 'server' ? `server:${key.serverId}` : `operator:${key.accessKeyId}`) : sourceOfKey(auth.accessKeyId);
      if (!auth.ok) throw auth.error;
      if (routeError) throw routeError;
      if (!key) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
      let principal: Principal;
      if (key.role === 'server') {
        const server = ctx.meta.serverById(key.serverId!);
        if (!server) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
        principal = { kind: 'server', serverId: server.id, bucket: server.bucket, accessKeyId: auth.accessKeyId };
      } else {
        principal = { kind: 'operator', accessKeyId: auth.accessKeyId };
      }
      authorize(principal, op, { bucket: a.bucket, key: a.key, versionId: query.get('versionId') });
      const impl = OPERATIONS[op];
      if (!impl) throw new S3Error('NotImplemented', 'A header or query you provided implies functionality that is not implemented.');
      const s3req: S3Request = {
        requestId, op, method: req.method ?? 'GET', bucket: a.bucket, key: a.key, query, headers: req.headers, req,
        principal, payload: auth.payload, limits: opts.limits, audit: {}, source: entry.source, remote,
        commit: (fn, status = 200) => ctx.db.write(() => {
          const v = fn();
          ctx.audit.appendInTx({ ...entry, key: s3req.audit.key ?? entry.key, versionId: s3req.audit.versionId ?? null,
            bytes: s3req.audit.bytes ?? 0, status: typeof status === 'function' ? status(v) : status, detail: s3req.audit.detail ?? null });
          audited = true;
          return v;
        }),
      };
      r = s3req;
      response = await impl(ctx, s3req);
    } catch (e) {
      const err = asError(e);
      if (err.status >= 500) opts.log({ level: 'error', msg: 'internal error', requestId, operation: entry.operation, error: String((e as Error)?.stack ?? e) });
      entry.status = err.status;
      entry.error = err.code;
      entry.bytes = 0;
      if (r?.audit.versionId) entry.versionId = r.audit.versionId;
      if (!audited) {
        try { await ctx.audit.append(entry); } catch (ae) { opts.log({ level: 'error', msg: 'audit append failed', requestId, error: String(ae) }); }
      }
      await drainBeforeAnswer(req, res);
      const headers: Record<string, string | number> = { 'x-amz-request-id': requestId, 'x-amz-id-2': requestId, server: 'Shelter', ...(err.headers ?? {}) };
      if (err.status === 304 || req.method === 'HEAD') {
        res.writeHead(err.status, headers).end();
      } else {
        const body = errorXml(err, rawPath, requestId);
        res.writeHead(err.status, { ...headers, 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
      }
      return;
    }
    if (!audited) {
      entry.status = response.status;
      entry.versionId = r!.audit.versionId ?? null;
      entry.bytes = r!.audit.bytes ?? 0;
      entry.detail = r!.audit.detail ?? null;
      await ctx.audit.append(entry);
    }
    const headers: Record<string, string | number> = { 'x-amz-request-id': requestId, 'x-amz-id-2': requestId, server: 'Shelter', ...response.headers };
    const body = response.body;
    if (body === undefined || req.method === 'HEAD') {
      if (body instanceof Readable) body.destroy();
      if (headers['content-length'] === undefined) headers['content-length'] = 0;
      res.writeHead(response.status, headers).end();
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      headers['content-length'] = Buffer.byteLength(body);
      res.writeHead(response.status, headers).end(body);
    } else {
      res.writeHead(response.status, headers);
      // A large body's head goes out on its own, before the body's first chunk is read. Written
      // in the same tick, head and chunk reach the TLS socket together, and a TLS socket given
      // several buffers at once copies them all into one fresh buffer first: for the ~1 MiB
      // ranges of a restore that was most of the body bytes copied, into newly faulted-in memory.
      // (A small body goes with its head: one write and one TLS record, not two.)
      if (!(Number(headers['content-length']) <= SMALL_BODY_BYTES)) res.flushHeaders();
      try {
        await pipeline(body, res);
      } catch (e) {
        // the status line is gone: all we can do is cut the connection so the client sees a short body
        opts.log({ level: 'warn', msg: 'response body failed', requestId, error: String(e) });
        res.destroy();
      }
    }
  };
}

/** a response body up to this size is sent with its head (see above) */
const SMALL_BODY_BYTES = 64 * 1024;

export type { S3ErrorCode };
