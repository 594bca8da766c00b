// An HTTP (or HTTPS, given a key and certificate) server for a memory bucket's objects that
// answers ranged GETs as S3 does (206, Content-Range), or misbehaves as told for a given request:
// the far end of the GETs a restore's workers send themselves (backend signGet), without a
// gateway. `signGet` points a backend at it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SignedRequest } from '../../src/backend/types.ts';

/**
 * What the server does with a request (a PUT knows `ok`, `500` and `reset`): `ok`; `500`; `whole` (200 and the whole object, as a store
 * that ignores Range); `shifted` (206 for the range one byte later); `short` (the announced length,
 * then the connection closed half way); `long` (206 announcing and sending one byte more);
 * `reset` (the connection destroyed before any answer).
 */
export type Behaviour = 'ok' | '500' | 'whole' | 'shifted' | 'short' | 'long' | 'reset';

export interface RangeServer {
  url: string;
  /** requests received, in order (object key, Range header, User-Agent) */
  requests: Array<{ key: string; range: string; agent: string }>;
  /** connections accepted */
  connections(): number;
  /** a signGet for a backend: GETs of this server */
  signGet(key: string, range: { start: number; end: number }): SignedRequest;
  close(): Promise<void>;
}

/** keys per page of a listing */
const LIST_PAGE = 2;

export async function serveObjects(objects: Map<string, Buffer>, behave: (request: number) => Behaviour = () => 'ok', tls?: { key: string; cert: string; caFile: string }): Promise<RangeServer> {
  const requests: RangeServer['requests'] = [];
  let connections = 0;
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const key = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!);
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const range = String(req.headers.range ?? '');
    const how = behave(requests.length);
    requests.push({ key, range, agent: String(req.headers['user-agent'] ?? '') });
    if (req.method === 'GET' && query.get('list-type') === '2') {
      // ListObjectsV2 of the bucket (/b or /b/), LIST_PAGE keys a page (the token: the last key given)
      if (how !== 'ok') { res.writeHead(500, { 'content-length': 13 }).end('InternalError'); return; }
      const bucket = key.replace(/\/$/, '');
      const prefix = `${bucket}/${query.get('prefix') ?? ''}`;
      const after = query.get('continuation-token') ?? '';
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > `${bucket}/${after}`).sort();
      const page = keys.slice(0, LIST_PAGE);
      const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
      const body = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name>` +
        page.map((k) => `<Contents><Key>${esc(k.slice(bucket.length + 1))}</Key><Size>${objects.get(k)!.length}</Size></Contents>`).join('') +
        (keys.length > LIST_PAGE ? `<IsTruncated>true</IsTruncated><NextContinuationToken>${esc(page.at(-1)!.slice(bucket.length + 1))}</NextContinuationToken>` : '<IsTruncated>false</IsTruncated>') +
        '</ListBucketResult>';
      res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    if (req.method === 'PUT') {
      // stored if absent (If-None-Match: * honoured); `500` and `reset` as for a GET
      const parts: Buffer[] = [];
      req.on('data', (p: Buffer) => parts.push(p));
      req.on('end', () => {
        if (how === 'reset') { req.socket.destroy(); return; }
        if (how === '500') { res.writeHead(500, { 'content-length': 13 }).end('InternalError'); return; }
        if (objects.has(key) && req.headers['if-none-match'] === '*') { res.writeHead(412, { 'content-length': 0 }).end(); return; }
        objects.set(key, Buffer.concat(parts));
        res.writeHead(200, { 'content-length': 0 }).end();
      });
      return;
    }
    const body = objects.get(key);
    const m = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (!body || (range && !m)) { res.writeHead(404, { 'content-type': 'application/xml' }).end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>'); return; }
    // no Range: the whole object (200), unless told to fail
    if (!m && how === 'ok') { res.writeHead(200, { 'content-length': body.length }).end(body); return; }
    const start = m ? Number(m[1]) : 0, end = m ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    switch (how) {
      case '500': res.writeHead(500).end('InternalError'); return;
      case 'reset': req.socket.destroy(); return;
      case 'whole': res.writeHead(200, { 'content-length': body.length }).end(body); return;
      case 'shifted': {
        const part = body.subarray(start + 1, end + 2);
        res.writeHead(206, { 'content-range': `bytes ${start + 1}-${start + part.length}/${body.length}`, 'content-length': part.length }).end(part);
        return;
      }
      case 'long': {
        const part = body.subarray(start, end + 2);
        res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': part.length }).end(part);
        return;
      }
      case 'short': {
        const part = body.subarray(start, end + 1);
        res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': part.length });
        res.write(part.subarray(0, part.length >> 1), () => req.socket.destroy());
        return;
      }
      case 'ok': {
        const part = body.subarray(start, end + 1);
        res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': part.length }).end(part);
      }
    }
  };
  const server: Server = tls ? createTlsServer({ key: tls.key, cert: tls.cert }, handle) : createServer(handle);
  server.on(tls ? 'secureConnection' : 'connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url, requests, connections: () => connections,
    signGet(key, range) { return { url: `${url}/${encodeURIComponent(key)}`, headers: { range: `bytes=${range.start}-${range.end}` }, ...(tls ? { caFile: tls.caFile } : {}) }; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
