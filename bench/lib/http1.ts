// A minimal HTTP/1.1 client over node:net / node:tls with keep-alive connections, for the
// benchmark only. Node's http client costs ~0.7 CPU core to receive 16 MiB bodies at ~770 MiB/s
// on this machine (a fresh 64 KiB Buffer per socket read, the garbage collector, the stream
// machinery); on two cores shared with the server that makes the client the bottleneck. This one
// reads plain-TCP sockets into one reusable buffer per connection (net `onread`), counts body bytes
// instead of allocating them, and writes a request as one header string plus the body buffer.
// It speaks enough HTTP/1.1 for S3 servers: Content-Length and chunked bodies, keep-alive,
// `Connection: close`, bodies delimited by the end of the connection.
import net from 'node:net';
import tls from 'node:tls';

export interface HttpResponse {
  status: number;
  /** lower-cased names */
  headers: Record<string, string>;
  /** body bytes received */
  bytes: number;
  /** the body, when collected */
  body?: Buffer;
  /**
   * ms from the moment the whole request was handed to the kernel to the response head: for an
   * upload, roughly the time the server needed after receiving the body (storing, fsync, commit)
   */
  afterSendMs?: number;
}

interface Pending {
  method: string;
  collect: boolean;
  resolve: (r: HttpResponse) => void;
  reject: (e: Error) => void;
  /** bytes of the response seen so far (0: the connection may simply have been stale) */
  seen: number;
}

const READ_BUF = 256 * 1024;
const MAX_HEAD = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

type State = 'head' | 'body' | 'until-close' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer';

class Conn {
  readonly sock: net.Socket;
  ready: Promise<void>;
  closed = false;
  pending: Pending | null = null;
  private state: State = 'head';
  private head: Buffer = Buffer.alloc(0);
  private line = '';
  private remaining = 0;
  private res: HttpResponse = { status: 0, headers: {}, bytes: 0 };
  private chunks: Buffer[] = [];
  private keepAlive = true;
  private collectThis = false;
  private sentAt = 0;

  private readonly onIdle: (c: Conn) => void;
  private readonly onGone: (c: Conn) => void;

  constructor(url: URL, ca: string | undefined, onIdle: (c: Conn) => void, onGone: (c: Conn) => void) {
    this.onIdle = onIdle;
    this.onGone = onGone;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (url.protocol === 'https:') {
      this.sock = tls.connect({ host, port, ...(ca ? { ca } : {}), ...(net.isIP(host) ? {} : { servername: host }) });
      this.sock.setNoDelay(true);
      this.sock.on('data', (d: Buffer) => this.feed(d, 0, d.length));
      this.ready = new Promise((res, rej) => { this.sock.once('secureConnect', () => res()); this.sock.once('error', rej); });
    } else {
      const buffer = Buffer.allocUnsafe(READ_BUF);
      this.sock = net.connect({
        host, port, noDelay: true,
        onread: { buffer, callback: (n: number, b: Uint8Array) => { this.feed(b as Buffer, 0, n); return true; } },
      });
      this.ready = new Promise((res, rej) => { this.sock.once('connect', () => res()); this.sock.once('error', rej); });
    }
    this.ready.catch(() => {});
    this.sock.setTimeout(300_000, () => this.sock.destroy(new Error('socket idle for 300 s')));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  private fail(e: Error): void {
    const wasClosed = this.closed;
    this.closed = true;
    const p = this.pending;
    this.pending = null;
    if (p) {
      if (this.state === 'until-close' && !(e as NodeJS.ErrnoException).code) this.done(p);
      else p.reject(Object.assign(e, { staleConnection: p.seen === 0 }));
    }
    if (!wasClosed) this.onGone(this);
  }

  send(method: string, head: string, body: Uint8Array | null, collect: boolean): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      this.pending = { method, collect, resolve, reject, seen: 0 };
      this.state = 'head';
      this.head = Buffer.alloc(0);
      this.res = { status: 0, headers: {}, bytes: 0 };
      this.chunks = [];
      this.sentAt = 0;
      const sent = () => { this.sentAt = performance.now(); };
      this.sock.cork();
      if (body && body.length) { this.sock.write(head, 'latin1'); this.sock.write(body, sent); } else this.sock.write(head, 'latin1', sent);
      this.sock.uncork();
    });
  }

  /** data[off, end) arrived; `data` may be a reused buffer: copy what must outlive the call. */
  private feed(data: Buffer, off: number, end: number): void {
    const p = this.pending;
    if (!p) { if (end > off) this.sock.destroy(); return; } // unsolicited bytes: drop the connection
    p.seen += end - off;
    while (off < end && this.pending) {
      switch (this.state) {
        case 'head': {
          const scanFrom = Math.max(0, this.head.length - 3);
          const probe = Buffer.concat([this.head.subarray(scanFrom), data.subarray(off, Math.min(end, off + MAX_HEAD))]);
          const i = probe.indexOf(CRLFCRLF);
          if (i < 0) {
            this.head = Buffer.concat([this.head, data.subarray(off, end)]);
            if (this.head.length > MAX_HEAD) { this.sock.destroy(new Error('response head too large')); return; }
            return;
          }
          const used = i + 4 - (this.head.length - scanFrom); // bytes of data[off..] in the head
          const text = Buffer.concat([this.head, data.subarray(off, off + used)]).toString('latin1');
          off += used;
          this.head = Buffer.alloc(0);
          this.onHead(text);
          break;
        }
        case 'body': case 'chunk-data': case 'until-close': {
          const n = this.state === 'until-close' ? end - off : Math.min(this.remaining, end - off);
          this.onBody(data, off, n);
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            if (this.state === 'body') this.complete();
            else if (this.state === 'chunk-data') this.state = 'chunk-crlf';
          }
          break;
        }
        case 'chunk-size': case 'chunk-crlf': case 'trailer': {
          const nl = data.indexOf(10, off);
          const stop = nl < 0 || nl >= end ? end : nl + 1;
          this.line += data.toString('latin1', off, stop);
          off = stop;
          if (!this.line.endsWith('\n')) break;
          const line = this.line.trim();
          this.line = '';
          if (this.state === 'chunk-crlf') { this.state = 'chunk-size'; break; }
          if (this.state === 'trailer') { if (line === '') this.complete(); break; }
          const size = parseInt(line.split(';')[0]!, 16);
          if (!Number.isFinite(size) || size < 0) { this.sock.destroy(new Error(`bad chunk size "${line}"`)); return; }
          if (size === 0) this.state = 'trailer';
          else { this.remaining = size; this.state = 'chunk-data'; }
          break;
        }
      }
    }
  }

  private onHead(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
    if (!m) { this.sock.destroy(new Error(`bad status line "${lines[0]}"`)); return; }
    const status = Number(m[2]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
    }
    if (status >= 100 && status < 200) return; // interim response: the real head follows
    this.res = { status, headers, bytes: 0, ...(this.sentAt ? { afterSendMs: performance.now() - this.sentAt } : {}) };
    this.keepAlive = m[1] === '1' ? !/\bclose\b/i.test(headers.connection ?? '') : /keep-alive/i.test(headers.connection ?? '');
    this.collectThis = this.pending!.collect || status >= 300;
    if (this.pending!.method === 'HEAD' || status === 204 || status === 304) { this.complete(); return; }
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) { this.state = 'chunk-size'; return; }
    if (headers['content-length'] !== undefined) {
      this.remaining = Number(headers['content-length']);
      if (this.remaining === 0) this.complete(); else this.state = 'body';
      return;
    }
    this.keepAlive = false;
    this.state = 'until-close';
  }

  private onBody(data: Buffer, off: number, n: number): void {
    this.res.bytes += n;
    if (this.collectThis) this.chunks.push(Buffer.from(data.subarray(off, off + n))); // copy: data is reused
  }

  private complete(): void {
    const p = this.pending!;
    this.pending = null;
    this.state = 'head';
    this.done(p);
    if (this.keepAlive && !this.closed) this.onIdle(this);
    else { this.closed = true; this.sock.destroy(); this.onGone(this); }
  }

  private done(p: Pending): void {
    if (this.collectThis) this.res.body = Buffer.concat(this.chunks);
    this.chunks = [];
    p.resolve(this.res);
  }

  destroy(): void { this.closed = true; this.sock.destroy(); }
}

export class Http1Client {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly hostHeader: string;

  private readonly url: URL;
  private readonly ca: string | undefined;

  constructor(url: URL, ca?: string) {
    this.url = url;
    this.ca = ca;
    this.hostHeader = url.host;
  }

  get host(): string { return this.hostHeader; }

  private async acquire(fresh: boolean): Promise<Conn> {
    while (!fresh && this.idle.length) {
      const c = this.idle.pop()!;
      if (!c.closed && !c.sock.destroyed) return c;
    }
    const c = new Conn(this.url, this.ca, (x) => this.idle.push(x), (x) => {
      this.all.delete(x);
      const i = this.idle.indexOf(x);
      if (i >= 0) this.idle.splice(i, 1);
    });
    this.all.add(c);
    await c.ready;
    return c;
  }

  /**
   * One request. `headers` must already carry everything (host, content-length, authorization).
   * A request that fails on a reused connection before any response byte arrived (the server
   * closed an idle keep-alive connection) is retried once on a new connection.
   */
  async request(method: string, path: string, headers: Record<string, string>, body: Uint8Array | null, collect: boolean): Promise<HttpResponse> {
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
    head += '\r\n';
    for (let attempt = 0; ; attempt++) {
      const c = await this.acquire(attempt > 0);
      try {
        return await c.send(method, head, body, collect);
      } catch (e) {
        if (attempt === 0 && (e as { staleConnection?: boolean }).staleConnection) continue;
        throw e;
      }
    }
  }

  close(): void {
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.length = 0;
  }
}
