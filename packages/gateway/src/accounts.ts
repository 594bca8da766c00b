// Servers, their buckets and credentials, operator keys and admin tokens (G5). The CLI and the
// admin API both call these functions; each change is audited in the same transaction.
import type { Context } from './context.ts';
import { hashToken, newAccessKey, newToken, randomId, seal } from './secrets.ts';
import type { Bucket, LockMode, Server } from './meta/types.ts';
import { validateBucketName } from './s3/names.ts';

export interface Actor { source: string; requestId: string; remote?: string | null }

export interface NewCredentials { accessKeyId: string; secretAccessKey: string }

export class AccountError extends Error {
  readonly code: 'NotFound' | 'Conflict' | 'Invalid';
  constructor(code: AccountError['code'], message: string) { super(message); this.code = code; }
}

const SERVER_NAME = /^[a-z0-9][a-z0-9-]{0,46}[a-z0-9]$|^[a-z0-9]$/;

export interface BucketLockDefault { mode: LockMode | null; days: number | null; years: number | null }

function issueKey(ctx: Context, role: 'server' | 'operator', serverId: string | null): NewCredentials {
  const cred = newAccessKey(role);
  ctx.meta.insertKey({ accessKeyId: cred.accessKeyId, role, serverId, createdAt: ctx.now().getTime(), revokedAt: null },
    seal(ctx.master, cred.secretAccessKey, cred.accessKeyId));
  return cred;
}

export function createServer(ctx: Context, actor: Actor, name: string, opts: { bucket?: string; lock?: BucketLockDefault } = {})
  : { server: Server; credentials: NewCredentials } {
  if (!SERVER_NAME.test(name)) throw new AccountError('Invalid', 'a server name is 1-48 characters of a-z, 0-9 and -, not starting or ending with -');
  const bucket = opts.bucket ?? `srv-${name}`;
  const bad = validateBucketName(bucket);
  if (bad) throw new AccountError('Invalid', `bucket name ${bucket}: ${bad}`);
  return ctx.db.writeNow(() => {
    if (ctx.meta.serverByName(name)) throw new AccountError('Conflict', `server ${name} already exists`);
    if (ctx.meta.bucket(bucket)) throw new AccountError('Conflict', `bucket ${bucket} already exists`);
    const server: Server = { id: randomId(8), name, bucket, createdAt: ctx.now().getTime(), disabledAt: null };
    ctx.meta.insertServer(server);
    insertBucket(ctx, bucket, server.id, opts.lock);
    const credentials = issueKey(ctx, 'server', server.id);
    ctx.audit.appendInTx({ ...actor, operation: 'admin.CreateServer', bucket, status: 200,
      detail: { server: name, serverId: server.id, accessKeyId: credentials.accessKeyId } });
    return { server, credentials };
  });
}

export function insertBucket(ctx: Context, name: string, serverId: string | null, lock?: BucketLockDefault): Bucket {
  const b: Bucket = { name, serverId, createdAt: ctx.now().getTime(), lockMode: lock?.mode ?? null, lockDays: lock?.days ?? null, lockYears: lock?.years ?? null };
  ctx.meta.insertBucket(b);
  return b;
}

export function findServer(ctx: Context, name: string): Server {
  const s = ctx.meta.serverByName(name);
  if (!s) throw new AccountError('NotFound', `no server named ${name}`);
  return s;
}

/** New key for the server; every previous key stops working at once (the next request checks). */
export function resetCredentials(ctx: Context, actor: Actor, name: string): NewCredentials {
  return ctx.db.writeNow(() => {
    const s = findServer(ctx, name);
    ctx.meta.revokeKeysOfServer(s.id, ctx.now().getTime());
    const cred = issueKey(ctx, 'server', s.id);
    ctx.audit.appendInTx({ ...actor, operation: 'admin.ResetCredentials', bucket: s.bucket, status: 200, detail: { server: name, accessKeyId: cred.accessKeyId } });
    return cred;
  });
}

export function setServerDisabled(ctx: Context, actor: Actor, name: string, disabled: boolean): Server {
  return ctx.db.writeNow(() => {
    const s = findServer(ctx, name);
    ctx.meta.setServerDisabled(s.id, disabled ? ctx.now().getTime() : null);
    ctx.audit.appendInTx({ ...actor, operation: disabled ? 'admin.DisableServer' : 'admin.EnableServer', bucket: s.bucket, status: 200, detail: { server: name } });
    return ctx.meta.serverById(s.id)!;
  });
}

export function describeServer(ctx: Context, s: Server) {
  return {
    id: s.id, name: s.name, bucket: s.bucket, createdAt: new Date(s.createdAt).toISOString(),
    disabled: s.disabledAt !== null,
    accessKeys: ctx.meta.keysOfServer(s.id).map((k) => ({ accessKeyId: k.accessKeyId, createdAt: new Date(k.createdAt).toISOString(), active: k.revokedAt === null })),
    usage: ctx.meta.bucketUsage(s.bucket),
  };
}

export function createOperatorKey(ctx: Context, actor: Actor): NewCredentials {
  return ctx.db.writeNow(() => {
    const cred = issueKey(ctx, 'operator', null);
    ctx.audit.appendInTx({ ...actor, operation: 'admin.CreateOperatorKey', status: 200, detail: { accessKeyId: cred.accessKeyId } });
    return cred;
  });
}

export function createAdminToken(ctx: Context, actor: Actor, name: string): { id: string; token: string } {
  return ctx.db.writeNow(() => {
    const token = newToken();
    const id = randomId(8);
    ctx.meta.insertToken(id, hashToken(token), name, ctx.now().getTime());
    ctx.audit.appendInTx({ ...actor, operation: 'admin.CreateAdminToken', status: 200, detail: { tokenId: id, name } });
    return { id, token };
  });
}
