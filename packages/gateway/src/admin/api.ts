// The admin HTTP API (the console uses it): bearer-token authenticated, JSON in and out, every call
// audited. Tokens are created with `shelterd admin token create` and stored hashed.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AccountError, createServer, describeServer, findServer, resetCredentials, setServerDisabled, type Actor } from '../accounts.ts';
import { readHead, verifyRecords } from '../audit/log.ts';
import type { Context } from '../context.ts';
import { hashToken } from '../secrets.ts';
import { cancelDeletionRequest, DeletionError, fileDeletionRequest, getDeletionRequest, listDeletionRequests, requestTarget, type DeletionStatus } from '../deletion/requests.ts';
import { DEFAULT_POLICY_NAME, retentionPolicies, setRetentionPolicy } from '../deletion/scheduler.ts';
import { storageUsage } from '../deletion/usage.ts';

const MAX_BODY = 64 * 1024;

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new AccountError('Invalid', 'request body too large');
    chunks.push(c as Buffer);
  }
  if (n === 0) return {};
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>; } catch { throw new AccountError('Invalid', 'body is not JSON'); }
}

export function adminHandler(ctx: Context, opts: { log: (ev: Record<string, unknown>) => void }) {
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent); // drop "_admin"
    const method = req.method ?? 'GET';
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': requestId, 'cache-control': 'no-store' }).end(text);
    };
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    const who = token ? ctx.meta.tokenByHash(hashToken(token)) : undefined;
    const operation = `admin.${method} /${parts.join('/')}`;
    if (!who) {
      await ctx.audit.append({ requestId, source: 'anonymous', remote: req.socket.remoteAddress ?? null, operation, status: 401, error: 'Unauthorized' });
      req.resume();
      return send(401, { error: 'Unauthorized', message: 'a valid bearer token is required' });
    }
    const actor: Actor = { source: `admin:${who.name}`, requestId, remote: req.socket.remoteAddress ?? null };
    try {
      const [resource, name, action] = parts;
      if (resource === 'servers' && method === 'GET' && !name) return send(200, ctx.meta.servers().map((s) => describeServer(ctx, s)));
      if (resource === 'servers' && method === 'POST' && !name) {
        const body = await jsonBody(req);
        const made = createServer(ctx, actor, String(body.name ?? ''));
        return send(201, { ...describeServer(ctx, made.server), ...made.credentials });
      }
      if (resource === 'servers' && name && method === 'GET' && !action) return send(200, describeServer(ctx, findServer(ctx, name)));
      if (resource === 'servers' && name && method === 'POST' && action === 'reset-credentials') return send(200, resetCredentials(ctx, actor, name));
      if (resource === 'servers' && name && method === 'POST' && (action === 'disable' || action === 'enable')) {
        return send(200, describeServer(ctx, setServerDisabled(ctx, actor, name, action === 'disable')));
      }
      if (resource === 'servers' && name && method === 'GET' && action === 'usage') return send(200, storageUsage(ctx, findServer(ctx, name).bucket));
      if (resource === 'servers' && name && method === 'GET' && action === 'retention') return send(200, retentionPolicies(ctx, findServer(ctx, name).bucket));
      if (resource === 'servers' && name && method === 'PUT' && action === 'retention') {
        const body = await jsonBody(req);
        const backup = typeof body.backup === 'string' ? body.backup : DEFAULT_POLICY_NAME;
        return send(200, setRetentionPolicy(ctx, actor, findServer(ctx, name).bucket, backup, body.policy ?? null));
      }
      if (resource === 'deletions' && method === 'GET' && !name) {
        const server = url.searchParams.get('server');
        const status = url.searchParams.get('status') as DeletionStatus | null;
        return send(200, listDeletionRequests(ctx, { bucket: server ? findServer(ctx, server).bucket : undefined, status: status ?? undefined }));
      }
      if (resource === 'deletions' && method === 'POST' && !name) {
        const body = await jsonBody(req);
        const bucket = findServer(ctx, String(body.server ?? '')).bucket;
        const r = fileDeletionRequest(ctx, actor, { bucket, ...requestTarget(body), reason: String(body.reason ?? ''),
          delayDays: body.delayDays === undefined ? undefined : Number(body.delayDays) });
        return send(201, r);
      }
      if (resource === 'deletions' && name && method === 'GET' && !action) return send(200, getDeletionRequest(ctx, name));
      if (resource === 'deletions' && name && method === 'POST' && action === 'cancel') {
        const body = await jsonBody(req);
        return send(200, cancelDeletionRequest(ctx, actor, name, typeof body.reason === 'string' ? body.reason : undefined));
      }
      if (resource === 'audit' && method === 'GET' && !name) {
        const since = url.searchParams.get('since') ?? undefined;
        const limit = Math.min(Number(url.searchParams.get('limit') ?? 1000) || 1000, 10_000);
        const out = [];
        for (const rec of ctx.audit.iterate({ since })) { out.push(rec); if (out.length >= limit) break; }
        await ctx.audit.append({ ...actor, operation: 'admin.ReadAudit', status: 200 });
        return send(200, out);
      }
      if (resource === 'audit' && name === 'verify' && method === 'GET') {
        const result = verifyRecords(ctx.audit.iterate(), readHead(ctx.auditHeadFile));
        await ctx.audit.append({ ...actor, operation: 'admin.VerifyAudit', status: 200 });
        return send(200, result);
      }
      await ctx.audit.append({ ...actor, operation, status: 404, error: 'NotFound' });
      return send(404, { error: 'NotFound', message: `no route ${method} ${url.pathname}` });
    } catch (e) {
      if (e instanceof AccountError || e instanceof DeletionError) {
        const status = e.code === 'NotFound' ? 404 : e.code === 'Conflict' ? 409 : 400;
        await ctx.audit.append({ ...actor, operation, status, error: e.code });
        return send(status, { error: e.code, message: e.message });
      }
      opts.log({ level: 'error', msg: 'admin api error', requestId, error: String((e as Error)?.stack ?? e) });
      return send(500, { error: 'InternalError', message: 'internal error', requestId });
    }
  };
}
