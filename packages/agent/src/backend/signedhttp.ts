// The agent's own HTTP/1.1 client for requests signed elsewhere (s3.ts sign, signGet): GETs of
// a whole object or a byte range, read straight into one buffer (a restore's worker threads send
// theirs, so that a range's bytes arrive where they are decrypted and written), and PUTs of a
// pack streamed from its spool file through one reused buffer. One attempt, no retries: whatever
// goes wrong is reported and the caller sends the request again through the S3 client (retries,
// backoff, S3's error codes).
//
// Over node:tls (node:net for an --insecure-http endpoint) with `onread`: the socket's bytes land in
// buffers this module hands out, a body's straight in the caller's (decrypted into it, for TLS).
// Through node:http(s) each 16 KiB of a body was a fresh buffer in a stream, then copied into the
// caller's: 800 MiB of 8 MiB ranges from a local TLS server cost 1.6-1.8 CPU s and 146 MiB of peak
// RSS that way, 0.44-0.47 s and 72 MiB this way.
// Only what these requests need is understood: for a GET, a 206 whose Content-Range is the range
// asked for (a 200 for a whole object) and whose Content-Length is its length; for a PUT, any status
// with a Content-Length of at most MAX_ANSWER_BODY. Anything else (chunked encoding, a head over
// MAX_HEAD bytes, a short or long body) is an error.
import { connect as netConnect, isIP, type OnReadOpts, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { secureContextFor } from './endpoint.ts';
import type { SignedRequest, StreamBody } from './types.ts';

/** no byte for this long: the request is given up (the SDK's requestTimeout) */
const IDLE_TIMEOUT = 120_000;
/** no connection (TLS handshake included) within this: given up (the SDK's connectionTimeout) */
const CONNECT_TIMEOUT = 10_000;
/** the status line and headers of an answer, at most */
const MAX_HEAD = 16 * 1024;
/** the body of a PUT's answer (empty, or an S3 error document), at most */
const MAX_ANSWER_BODY = 64 * 1024;
/** idle connections kept per endpoint */
const MAX_IDLE = 8;
/** a PUT's body goes out through a buffer of this size, reused piece after piece */
const PUT_PIECE = 1024 * 1024;

/** the request a connection is answering: the head as it arrives, then the body into `out` */
interface Exchange {
  method: 'GET' | 'PUT';
  /** GET: the range asked for (a 206 of it expected), or undefined for the whole object (a 200) */
  range?: { start: number; end: number };
  /** of the answer's body: a range's, or, once the head has said, the whole object's or a PUT answer's */
  length: number;
  into?: (length: number) => Buffer;
  out?: Buffer;
  /** body bytes in `out` */
  at: number;
  /** the answer's status, once its head is in */
  status?: number;
  resolve(b: Buffer): void;
  reject(e: Error): void;
}

interface Connection {
  socket: Socket;
  /** where the status line and headers arrive (and where bytes go while idle: any is an error) */
  head: Buffer;
  headLength: number;
  exchange?: Exchange;
  /** the server may take another request on it */
  reusable: boolean;
  /** connected (for TLS: the handshake done) */
  connected: boolean;
  /** the request is still being written (a PUT's body) */
  sending: boolean;
}

/** idle connections by endpoint (origin and CA file) */
const idle = new Map<string, Connection[]>();
/** PUT bodies' piece buffers not in use */
const sparePieces: Buffer[] = [];

/**
 * Bytes [start, end] of the object, as `request` asks for them: a buffer of exactly that length
 * (`into`'s, or one that owns its memory), or an Error saying what went wrong (any status but 206
 * with the range asked for, a body shorter or longer than announced, the connection, a timeout;
 * with `status` when the server answered).
 */
export async function sendSignedGet(request: SignedRequest, start: number, end: number, into?: (length: number) => Buffer): Promise<Buffer> {
  return (await send(request, { method: 'GET', range: { start, end }, length: end - start + 1, into })).body;
}

/** The whole object `request` (signed without a Range) asks for: its bytes, or an Error as above (404 included). */
export async function sendSignedGetObject(request: SignedRequest): Promise<Buffer> {
  return (await send(request, { method: 'GET', length: -1 })).body;
}

/**
 * Sends a PUT of `body` (its length must be the signed Content-Length): the answer's status and
 * body (an S3 error document, if any), or an Error if no whole answer came (the connection, a
 * timeout, an answer this client does not read).
 */
export function sendSignedPut(request: SignedRequest, body: Buffer | readonly Buffer[] | StreamBody): Promise<{ status: number; body: Buffer }> {
  return send(request, { method: 'PUT', length: -1 }, body);
}

function send(request: SignedRequest, what: Pick<Exchange, 'method' | 'range' | 'length' | 'into'>, body?: Buffer | readonly Buffer[] | StreamBody): Promise<{ status: number; body: Buffer }> {
  const url = new URL(request.url);
  const pool = `${url.origin} ${request.caFile ?? ''}`;
  return new Promise((resolve, reject) => {
    const exchange: Exchange = { ...what, at: 0, resolve: (b) => resolve({ status: exchange.status!, body: b }), reject };
    let head: string;
    try { head = requestHead(what.method, url, request.headers); } catch (e) { reject(e as Error); return; }
    let c: Connection;
    try { c = takeIdle(pool) ?? open(url, request.caFile, pool); } catch (e) { reject(e as Error); return; }
    c.socket.ref();
    c.exchange = exchange;
    c.headLength = 0;
    c.socket.setTimeout(c.connected ? IDLE_TIMEOUT : CONNECT_TIMEOUT);
    if (!body) { c.socket.write(head); return; }
    c.sending = true;
    void writeBody(c, pool, exchange, head, body);
  });
}

/**
 * A PUT's head and body, each piece written once the one before has left (its buffer is then
 * reused). Stops once the exchange is over: an answer that came first (the server refused the
 * request; the connection is then not reused), or a failure.
 */
async function writeBody(c: Connection, pool: string, x: Exchange, head: string, body: Buffer | readonly Buffer[] | StreamBody): Promise<void> {
  const write = (b: Uint8Array | string) => new Promise<Error | null | undefined>((res) => c.socket.write(b, res));
  let piece: Buffer | undefined;
  try {
    if (Buffer.isBuffer(body) && body.length <= PUT_PIECE) { await write(Buffer.concat([Buffer.from(head, 'latin1'), body])); return; }
    if (await write(head)) return;
    let parts: AsyncIterable<Buffer> | Iterable<Buffer>;
    if (Buffer.isBuffer(body)) parts = [body];
    else if (Array.isArray(body)) parts = body as readonly Buffer[];
    else {
      const stream = body as StreamBody;
      if (stream.chunksInto) parts = stream.chunksInto((piece = sparePieces.pop() ?? Buffer.allocUnsafeSlow(PUT_PIECE)));
      else parts = stream.chunks();
    }
    for await (const part of parts) {
      if (c.exchange !== x) return;
      if (await write(part)) return;
    }
  } catch (e) {
    // the body could not be read (its spool file): the request is cut short, the connection dropped
    if (c.exchange === x) drop(c, pool, e as Error);
  } finally {
    if (piece) sparePieces.push(piece);
    c.sending = false;
  }
}

/** an idle connection to the endpoint still open for writing, if there is one */
function takeIdle(pool: string): Connection | undefined {
  const list = idle.get(pool);
  for (let c = list?.pop(); c; c = list!.pop()) {
    if (!c.socket.destroyed && c.socket.writable) return c;
    c.socket.destroy();
  }
  return undefined;
}

/** the request line and the signed headers (Host added if the signer left it out) */
function requestHead(method: string, url: URL, headers: Record<string, string>): string {
  const lines = [`${method} ${url.pathname}${url.search} HTTP/1.1`];
  const names = new Set(Object.keys(headers).map((k) => k.toLowerCase()));
  if (!names.has('host')) lines.push(`host: ${url.host}`);
  for (const [k, v] of Object.entries(headers)) {
    // (signed values never hold these: a header split in two would be a request of someone else's making)
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new Error(`header ${JSON.stringify(k)} holds a line break`);
    lines.push(`${k}: ${v}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function open(url: URL, caFile: string | undefined, pool: string): Connection {
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  // (URL keeps an IPv6 address in brackets)
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const c: Connection = { socket: undefined as unknown as Socket, head: Buffer.allocUnsafe(MAX_HEAD), headLength: 0, reusable: true, connected: false, sending: false };
  const onread: OnReadOpts = {
    buffer: () => nextBuffer(c),
    callback: (n) => {
      // (an exception here would be the process's: it fails the request instead)
      try { received(c, pool, n); } catch (e) { drop(c, pool, e as Error); }
      return true;
    },
  };
  c.socket = url.protocol === 'https:'
    // the server's certificate is checked against the host name (or IP address) of the URL.
    // (`onread` works for tls.connect as for net.connect since Node 15; @types/node omits it)
    ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), secureContext: secureContextFor(caFile), ...{ onread } })
    : netConnect({ host, port, onread });
  c.socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
    c.connected = true;
    if (c.exchange) c.socket.setTimeout(IDLE_TIMEOUT);
  });
  c.socket.on('timeout', () => drop(c, pool, new Error(c.connected ? `no byte for ${IDLE_TIMEOUT / 1000} s` : `no connection within ${CONNECT_TIMEOUT / 1000} s`)));
  c.socket.on('error', (e) => drop(c, pool, e));
  c.socket.on('close', () => drop(c, pool, closedEarly(c)));
  return c;
}

/** where the socket's next bytes go: the rest of the head buffer, or the rest of the body's */
function nextBuffer(c: Connection): Uint8Array {
  const x = c.exchange;
  // (never an empty buffer: a TLS read into one would not advance)
  if (x?.out && x.at < x.length) return x.out.subarray(x.at, x.length);
  if (x && c.headLength < MAX_HEAD) return c.head.subarray(c.headLength);
  return c.head;
}

function received(c: Connection, pool: string, n: number): void {
  const x = c.exchange;
  if (!x) { drop(c, pool, new Error('bytes from the server with no request')); return; }
  if (x.out) {
    x.at += n;
    if (x.at === x.length) finish(c, pool);
    return;
  }
  c.headLength += n;
  const headEnd = c.head.subarray(0, c.headLength).indexOf('\r\n\r\n');
  if (headEnd < 0) {
    if (c.headLength >= MAX_HEAD) drop(c, pool, new Error(`an answer whose head is over ${MAX_HEAD} bytes`));
    return;
  }
  const why = checkHead(c, x, c.head.toString('latin1', 0, headEnd));
  if (why) { drop(c, pool, Object.assign(new Error(why), { status: x.status })); return; }
  x.out = x.into ? x.into(x.length) : Buffer.allocUnsafeSlow(x.length);
  // the body's first bytes came with the head
  const early = c.head.subarray(headEnd + 4, c.headLength);
  if (early.length > x.length) { drop(c, pool, new Error(`long body: more than the ${x.length} bytes asked for`)); return; }
  x.at = early.copy(x.out, 0);
  if (x.at === x.length) finish(c, pool);
}

/** why an answer's head is not one this client reads (for a GET: the 206 of the range asked for), or undefined if it is */
function checkHead(c: Connection, x: Exchange, head: string): string | undefined {
  const [status, ...lines] = head.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(status ?? '');
  if (!m) return `not an HTTP/1 answer: ${JSON.stringify((status ?? '').slice(0, 60))}`;
  x.status = Number(m[2]);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `a header line without a name: ${JSON.stringify(line.slice(0, 60))}`;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    // (repeated headers that matter here are refused: which one counts would be a guess)
    if (headers.has(name) && (name === 'content-length' || name === 'content-range' || name === 'transfer-encoding')) return `two ${name} headers`;
    headers.set(name, value);
  }
  const connection = (headers.get('connection') ?? '').toLowerCase();
  c.reusable = m[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
  if (x.method === 'GET') {
    // (the status first: an error's answer is never read)
    const range = /^bytes (\d+)-(\d+)\//.exec(headers.get('content-range') ?? '');
    const wanted = x.range;
    if (!wanted) {
      if (m[2] !== '200') return `HTTP ${m[2]} (the whole object asked for)`;
    } else if (m[2] !== '206' || !range || Number(range[1]) !== wanted.start || Number(range[2]) !== wanted.end) {
      return `HTTP ${m[2]}${range ? ` for bytes ${range[1]}-${range[2]}` : ''} (bytes ${wanted.start}-${wanted.end} asked for)`;
    }
  }
  if (headers.has('transfer-encoding')) return `an answer in ${headers.get('transfer-encoding')} transfer encoding`;
  const declared = headers.get('content-length');
  if (declared === undefined || !/^\d{1,15}$/.test(declared)) return 'an answer without a valid Content-Length';
  if (x.method === 'PUT') {
    if (Number(declared) > MAX_ANSWER_BODY) return `an answer of ${declared} bytes to a PUT`;
    x.length = Number(declared);
    return undefined;
  }
  if (!x.range) x.length = Number(declared);
  if (Number(declared) > x.length) return `long body: more than the ${x.length} bytes asked for (Content-Length ${declared})`;
  if (Number(declared) < x.length) return `short body: Content-Length ${declared} of the ${x.length} bytes asked for`;
  return undefined;
}

/**
 * The answer is in: the connection waits for the next request, or is closed if it cannot take
 * one (the server said so, or the answer came before the request's body was all sent).
 */
function finish(c: Connection, pool: string): void {
  const x = c.exchange!;
  c.exchange = undefined;
  c.socket.setTimeout(0);
  const list = idle.get(pool) ?? [];
  if (c.reusable && !c.sending && list.length < MAX_IDLE && !c.socket.destroyed) {
    list.push(c);
    idle.set(pool, list);
    // an idle connection keeps no thread alive
    c.socket.unref();
  } else c.socket.destroy();
  x.resolve(x.out!);
}

/** what to say when the connection ends before its answer is whole */
function closedEarly(c: Connection): Error {
  const x = c.exchange;
  if (x?.out) return new Error(`the body broke off after ${x.at} of ${x.length} bytes (connection closed)`);
  return new Error('socket hang up: the connection closed before the whole answer');
}

/** the connection is closed and forgotten; the request it was answering, if any, fails with `e` */
function drop(c: Connection, pool: string, e: Error): void {
  const list = idle.get(pool);
  const i = list?.indexOf(c) ?? -1;
  if (i >= 0) list!.splice(i, 1);
  const x = c.exchange;
  c.exchange = undefined;
  c.socket.destroy();
  if (!x) return;
  x.reject(x.out && !e.message.startsWith('the body broke off') ? new Error(`the body broke off after ${x.at} of ${x.length} bytes (${e.message})`) : e);
}
