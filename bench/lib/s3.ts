// A lean S3 client for benchmarks: PutObject, GetObject, CreateBucket with SigV4, path-style.
// The same code drives every S3 target, so differences between targets are the servers'.
//
// Signing: `native` (default) is SigV4 with node:crypto and the signing key cached per day as a
// KeyObject; it is checked against @smithy/signature-v4 (the AWS SDK's signer) at startup
// (`selfTestSigner`). `smithy` signs every request with @smithy/signature-v4 (~45% of the client's
// CPU on 4 KiB requests, mostly HMAC key setup).
// Transport: `http1` (default, bench/lib/http1.ts, minimal keep-alive HTTP/1.1 over net/tls) or
// `node` (node:http / node:https with a keep-alive agent: ~3x the client CPU on large GETs).
import { createHash, createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { SignatureV4 } from '@smithy/signature-v4';
import { Http1Client } from './http1.ts';

function toBytes(d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof d === 'string') return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** node:crypto-backed hash with the interface @smithy/signature-v4 expects (aws-crypto's is pure JS). */
class NodeSha256 {
  private readonly h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', toBytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void { this.h.update(toBytes(data)); }
  digest(): Promise<Uint8Array> { return Promise.resolve(this.h.digest()); }
  reset(): void { throw new Error('not supported'); }
}

/**
 * How the payload is declared in x-amz-content-sha256:
 * - unsigned: `UNSIGNED-PAYLOAD` (the body is not hashed by the client; the server need not hash it)
 * - sha256: hex SHA-256 of the body, computed by the client and verified by the server
 */
export type PayloadMode = 'unsigned' | 'sha256';
export type SignerKind = 'native' | 'smithy';
export type TransportKind = 'http1' | 'node';

export interface S3ClientOptions {
  endpoint: string; // http(s)://host:port
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
  /** PEM of a CA to trust (HTTPS only); nothing else is trusted then */
  ca?: string;
  /** sockets of the node:http agent (transport `node`) */
  maxSockets?: number;
  payload?: PayloadMode;
  signer?: SignerKind;
  transport?: TransportKind;
}

export class S3Error extends Error {
  readonly status: number;
  constructor(status: number, method: string, path: string, body: string) {
    super(`${method} ${path}: HTTP ${status} ${body.slice(0, 300)}`);
    this.status = status;
  }
}

const sha256hex = (d: string | Uint8Array) => createHash('sha256').update(d).digest('hex');

/** SigV4 (header form) for S3: all given headers are signed; names must be lower-case. */
export class NativeSigV4 {
  private day = '';
  private key: KeyObject | null = null;
  private readonly accessKeyId: string;
  private readonly secret: string;
  private readonly region: string;

  constructor(accessKeyId: string, secretAccessKey: string, region: string) {
    this.accessKeyId = accessKeyId;
    this.secret = secretAccessKey;
    this.region = region;
  }

  private signingKey(day: string): KeyObject {
    if (day !== this.day || !this.key) {
      const kDate = createHmac('sha256', `AWS4${this.secret}`).update(day).digest();
      const kRegion = createHmac('sha256', kDate).update(this.region).digest();
      const kService = createHmac('sha256', kRegion).update('s3').digest();
      this.key = createSecretKey(createHmac('sha256', kService).update('aws4_request').digest());
      this.day = day;
    }
    return this.key;
  }

  /** Adds x-amz-date and authorization to `headers` (which must hold host and x-amz-content-sha256). */
  sign(method: string, path: string, headers: Record<string, string>, date = new Date()): Record<string, string> {
    const amzDate = date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    headers['x-amz-date'] = amzDate;
    const names = Object.keys(headers).sort();
    let canonHeaders = '';
    for (const n of names) canonHeaders += `${n}:${headers[n]!.trim().replace(/\s+/g, ' ')}\n`;
    const signedHeaders = names.join(';');
    const creq = `${method}\n${path}\n\n${canonHeaders}\n${signedHeaders}\n${headers['x-amz-content-sha256']}`;
    const scope = `${day}/${this.region}/s3/aws4_request`;
    const sts = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256hex(creq)}`;
    const sig = createHmac('sha256', this.signingKey(day)).update(sts).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${sig}`;
    return headers;
  }
}

/** Signs two requests with both signers at a fixed date and throws if they differ. */
export async function selfTestSigner(): Promise<void> {
  const date = new Date('2025-03-04T05:06:07Z');
  const smithy = new SignatureV4({
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
    region: 'us-east-1', service: 's3', sha256: NodeSha256, uriEscapePath: false, applyChecksum: false,
  });
  const native = new NativeSigV4('AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', 'us-east-1');
  for (const [method, path, extra] of [
    ['PUT', '/bucket/a/b-1', { 'content-length': '4096', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }],
    ['GET', '/bucket/x', { 'x-amz-content-sha256': sha256hex('') }],
  ] as const) {
    const headers = { host: '127.0.0.1:7480', ...extra };
    const a = await smithy.sign({ method, protocol: 'http:', hostname: '127.0.0.1', port: 7480, path, query: {}, headers: { ...headers } },
      { signingDate: date });
    const b = native.sign(method, path, { ...headers }, date);
    if (a.headers.authorization !== b.authorization) {
      throw new Error(`native SigV4 differs from @smithy/signature-v4:\n${a.headers.authorization}\n${b.authorization}`);
    }
  }
}

/** S3 keys as request paths: every segment percent-encoded as SigV4 wants (S3: no double encoding). */
function encodePath(p: string): string {
  return p.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

export class LeanS3 {
  private readonly url: URL;
  private readonly host: string;
  private readonly agent: http.Agent | null = null;
  private readonly h1: Http1Client | null = null;
  private readonly native: NativeSigV4 | null = null;
  private readonly smithy: SignatureV4 | null = null;
  readonly payload: PayloadMode;

  constructor(o: S3ClientOptions) {
    this.url = new URL(o.endpoint);
    this.host = this.url.host;
    this.payload = o.payload ?? 'unsigned';
    if ((o.transport ?? 'http1') === 'http1') {
      this.h1 = new Http1Client(this.url, o.ca);
    } else {
      const sockets = o.maxSockets ?? 64;
      const agentOpts = { keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets, scheduling: 'lifo' as const };
      this.agent = this.url.protocol === 'https:' ? new https.Agent({ ...agentOpts, ...(o.ca ? { ca: o.ca } : {}) }) : new http.Agent(agentOpts);
    }
    const region = o.region ?? 'us-east-1';
    if ((o.signer ?? 'native') === 'native') {
      this.native = new NativeSigV4(o.accessKeyId, o.secretAccessKey, region);
    } else {
      this.smithy = new SignatureV4({
        credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
        region, service: 's3', sha256: NodeSha256, uriEscapePath: false, applyChecksum: false,
      });
    }
  }

  private async sign(method: string, path: string, headers: Record<string, string>): Promise<Record<string, string>> {
    const h = { host: this.host, ...headers };
    if (this.native) return this.native.sign(method, path, h);
    const signed = await this.smithy!.sign({
      method, protocol: this.url.protocol, hostname: this.url.hostname,
      port: this.url.port ? Number(this.url.port) : undefined, path, query: {}, headers: h,
    });
    return signed.headers as Record<string, string>;
  }

  /** One request; rejects on a non-2xx status. `collect`: return the body (else only count it). */
  private async send(method: string, path: string, headers: Record<string, string>, body: Uint8Array | null,
    collect: boolean): Promise<{ status: number; bytes: number; body?: Buffer; afterSendMs?: number }> {
    const h = await this.sign(method, path, headers);
    if (this.h1) {
      const r = await this.h1.request(method, path, h, body, collect);
      if (r.status < 200 || r.status >= 300) throw new S3Error(r.status, method, path, r.body?.toString('utf8') ?? '');
      return r;
    }
    const request = this.url.protocol === 'https:' ? https.request : http.request;
    return await new Promise((resolve, reject) => {
      const req = request({
        agent: this.agent!, protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port,
        method, path, headers: h,
      }, (res) => {
        const status = res.statusCode ?? 0;
        let bytes = 0;
        const chunks: Buffer[] = [];
        const keep = collect || status >= 300;
        res.on('data', (c: Buffer) => { bytes += c.length; if (keep) chunks.push(c); });
        res.on('error', reject);
        res.on('end', () => {
          if (status < 200 || status >= 300) reject(new S3Error(status, method, path, Buffer.concat(chunks).toString('utf8')));
          else resolve(collect ? { status, bytes, body: Buffer.concat(chunks) } : { status, bytes });
        });
      });
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  }

  private payloadHash(body: Uint8Array | null): string {
    if (this.payload === 'unsigned' && body) return 'UNSIGNED-PAYLOAD';
    return sha256hex(body ?? new Uint8Array(0));
  }

  /** PutObject; resolves with the ms between the end of the upload and the response (http1 only) */
  async putObject(bucket: string, key: string, body: Uint8Array): Promise<number | undefined> {
    const r = await this.send('PUT', encodePath(`/${bucket}/${key}`), {
      'content-length': String(body.length),
      'x-amz-content-sha256': this.payloadHash(body),
    }, body, false);
    return r.afterSendMs;
  }

  /** GetObject; the body is read and dropped. Resolves with the number of body bytes. */
  async getObject(bucket: string, key: string): Promise<number> {
    return (await this.send('GET', encodePath(`/${bucket}/${key}`), { 'x-amz-content-sha256': this.payloadHash(null) }, null, false)).bytes;
  }

  async getObjectBody(bucket: string, key: string): Promise<Buffer> {
    return (await this.send('GET', encodePath(`/${bucket}/${key}`), { 'x-amz-content-sha256': this.payloadHash(null) }, null, true)).body!;
  }

  /** CreateBucket; with objectLock the bucket is versioned with Object Lock enabled. */
  async createBucket(bucket: string, opts: { objectLock?: boolean } = {}): Promise<void> {
    const headers: Record<string, string> = { 'content-length': '0', 'x-amz-content-sha256': this.payloadHash(null) };
    if (opts.objectLock) headers['x-amz-bucket-object-lock-enabled'] = 'true';
    await this.send('PUT', encodePath(`/${bucket}`), headers, null, false);
  }

  close(): void { this.agent?.destroy(); this.h1?.close(); }
}
