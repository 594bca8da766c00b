// `shelterd serve`: one process, HTTPS by default, the S3 API on every path and the admin API
// under /_admin/ ('_' cannot start a bucket name, so the two never collide).
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { adminHandler } from './admin/api.ts';
import type { Context } from './context.ts';
import { s3Handler } from './s3/handler.ts';
import { DEFAULT_LIMITS, type Limits } from './s3/limits.ts';
import { ensureTls } from './tls.ts';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export interface ServeOptions {
  host: string;
  port: number;
  insecureHttp?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  /** extra names for the generated certificate and virtual-hosted-style domains */
  names?: string[];
  limits?: Partial<Limits>;
  log: (ev: Record<string, unknown>) => void;
}

export interface Running { server: Server; url: string; close(): Promise<void> }

export async function serve(ctx: Context, opts: ServeOptions): Promise<Running> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const recovered = await ctx.blobs.recover((ids) => ctx.meta.referencedBlobs(ids));
  if (recovered.committed || recovered.removed) opts.log({ level: 'info', msg: 'recovered unfinished writes', ...recovered });

  const domains = ['s3.localhost', ...(opts.names ?? []).filter((n) => !/^[\d.:]+$/.test(n))];
  const s3 = s3Handler(ctx, { domains, limits, log: opts.log });
  const admin = adminHandler(ctx, { log: opts.log });
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const p = (req.url ?? '/').startsWith('/_admin/') ? admin(req, res) : s3(req, res);
    p.catch((e: unknown) => {
      opts.log({ level: 'error', msg: 'unhandled request error', error: String((e as Error)?.stack ?? e) });
      if (!res.headersSent) res.writeHead(500).end(); else res.destroy();
    });
  };
  const common = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: 65_000,
  };
  let server: Server;
  if (opts.insecureHttp) {
    opts.log({ level: 'warn', msg: 'serving plain HTTP: credentials and data cross the network unencrypted (--insecure-http)' });
    server = createHttpServer(common, onRequest);
  } else {
    const tls = opts.tlsCert && opts.tlsKey
      ? { cert: readFileSync(opts.tlsCert, 'utf8'), key: readFileSync(opts.tlsKey, 'utf8') }
      : ensureTls(ctx.dataDir, [opts.host, ...(opts.names ?? []), ...(opts.names ?? []).map((n) => `*.${n}`)].filter((n) => n && n !== '0.0.0.0' && n !== '::'));
    server = createHttpsServer({ ...common, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, onRequest) as unknown as Server;
  }
  // requests Node's parser refuses (headers over the limit, malformed HTTP): answer with a status
  // the client can read, close gracefully, and audit the attempt
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (err.code !== 'ECONNRESET' && socket.writable) {
      const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
    if (err.code === 'ECONNRESET') return;
    ctx.audit.append({ requestId: randomBytes(8).toString('hex').toUpperCase(), source: 'anonymous', remote: (socket as import('node:net').Socket).remoteAddress ?? null,
      operation: 'MalformedHttpRequest', status, error: err.code ?? 'BadRequest' }).catch(() => { /* closing */ });
  });
  server.maxConnections = limits.maxConnections;
  server.setTimeout(limits.idleTimeoutMs);
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(opts.port, opts.host, () => res());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${opts.insecureHttp ? 'http' : 'https'}://${host}:${addr.port}`;
  return {
    server,
    url,
    close: () => new Promise<void>((res) => { server.close(() => res()); server.closeIdleConnections(); }),
  };
}
