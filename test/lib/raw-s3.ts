// A tiny raw S3 client for attack tests. It signs requests with @smithy/signature-v4 exactly as
// the AWS SDKs do, then hands the signed request back to the test, which may tamper with it
// (body, headers, path, query) before it is sent. It also builds aws-chunked bodies by hand
// (signed chunks, unsigned payload with a checksum trailer, signed chunks with a signed trailer),
// presigns URLs with a chosen date and expiry, and signs with a chosen clock (to test skew and
// replays). Nothing here retries, follows redirects or fixes anything up: what the test builds
// is what goes on the wire.
import { createHash, createHmac } from 'node:crypto';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { crc32 } from 'node:zlib';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';

export interface Credentials { accessKeyId: string; secretAccessKey: string }

export interface RawS3Options {
  /** e.g. https://127.0.0.1:43123 */
  endpoint: string;
  /** PEM of the CA to trust (the gateway's DATA/tls/ca.pem) */
  ca?: string;
  region?: string;
  /** absent: requests are sent anonymously (no signature at all) */
  credentials?: Credentials;
}

/** What a test asks for, before signing. */
export interface RequestSpec {
  method: string;
  bucket?: string;
  /** object key, raw (it is URI-encoded per segment, '/' kept, as the SDKs do) */
  key?: string;
  /** already-encoded path, used verbatim (overrides bucket/key): for traversal and encoding tricks */
  path?: string;
  /** query parameters, raw values ('' for sub-resources such as ?versioning) */
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /**
   * value of x-amz-content-sha256: 'signed' (default: hex SHA-256 of the body), 'unsigned'
   * (UNSIGNED-PAYLOAD), or any literal string (e.g. a streaming mode or a wrong hash).
   */
  payload?: 'signed' | 'unsigned' | (string & {});
  /** the signer's clock (default: now) */
  date?: Date;
  /** override the Host header that is signed and sent */
  host?: string;
}

/** A request ready for the wire. Every field may be changed by the test after signing. */
export interface SignedRequest {
  method: string;
  /** encoded path, sent verbatim */
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: Buffer;
  /** signing context, for aws-chunked signatures */
  signing?: SigningContext;
}

export interface SigningContext {
  amzDate: string;
  scope: string;
  signingKey: Buffer;
  /** the signature of the request headers (the seed of the chunk signature chain) */
  seedSignature: string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** the <Code> of an S3 XML error, or null */
  code: string | null;
  message: string | null;
  /** x-amz-request-id header, else the <RequestId> of the error body */
  requestId: string | null;
}

export interface SendOptions {
  /** stream the body from here instead of req.body (content-length must then be set by the test) */
  bodyStream?: AsyncIterable<Buffer>;
  /** abort (and reject) after this many ms; default 30 s */
  timeoutMs?: number;
  /** called with the client request once it exists (to destroy it, watch the socket...) */
  onRequest?: (req: http.ClientRequest) => void;
}

/** RFC 3986 encoding, as SigV4 wants it (same as the SDKs' escapeUri). */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Path-style path for bucket/key, each key segment encoded, '/' kept. */
export function objectPath(bucket?: string, key?: string): string {
  if (!bucket) return '/';
  if (key === undefined) return `/${uriEncode(bucket)}`;
  return `/${uriEncode(bucket)}/${key.split('/').map(uriEncode).join('/')}`;
}

export function queryString(query: Record<string, string>): string {
  const parts = Object.keys(query).map((k) => (query[k] === '' ? uriEncode(k) : `${uriEncode(k)}=${uriEncode(query[k]!)}`));
  return parts.length ? `?${parts.join('&')}` : '';
}

export const sha256Hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
export const md5Base64 = (b: Buffer | string): string => createHash('md5').update(b).digest('base64');
export function crc32Base64(b: Buffer): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(b) >>> 0);
  return out.toString('base64');
}
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

export function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export function signingKey(secret: string, shortDate: string, region: string, service = 's3'): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, shortDate), region), service), 'aws4_request');
}

export function parseErrorCode(text: string): { code: string | null; message: string | null; requestId: string | null } {
  const pick = (tag: string) => {
    const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(text);
    return m ? m[1]! : null;
  };
  if (!/<Error>/.test(text)) return { code: null, message: null, requestId: null };
  return { code: pick('Code'), message: pick('Message'), requestId: pick('RequestId') };
}

export class RawS3 {
  readonly endpoint: URL;
  readonly region: string;
  readonly credentials: Credentials | undefined;
  readonly ca: string | undefined;

  constructor(opts: RawS3Options) {
    this.endpoint = new URL(opts.endpoint);
    this.region = opts.region ?? 'us-east-1';
    this.credentials = opts.credentials;
    this.ca = opts.ca;
  }

  /** The same client with other credentials (or none). */
  as(credentials: Credentials | undefined): RawS3 {
    return new RawS3({ endpoint: this.endpoint.href, region: this.region, credentials, ca: this.ca });
  }

  get hostHeader(): string { return this.endpoint.host; }

  private buildPath(spec: RequestSpec): string {
    return spec.path ?? objectPath(spec.bucket, spec.key);
  }

  /** Signs with SigV4 in the Authorization header. Returns a mutable request. */
  async sign(spec: RequestSpec): Promise<SignedRequest> {
    const body = spec.body === undefined ? undefined : Buffer.from(spec.body);
    const path = this.buildPath(spec);
    const query = { ...(spec.query ?? {}) };
    const headers: Record<string, string> = { host: spec.host ?? this.hostHeader };
    for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k.toLowerCase()] = v;
    const payload = spec.payload ?? 'signed';
    if (headers['x-amz-content-sha256'] === undefined) {
      headers['x-amz-content-sha256'] = payload === 'signed' ? sha256Hex(body ?? Buffer.alloc(0))
        : payload === 'unsigned' ? UNSIGNED_PAYLOAD : payload;
    }
    if (!this.credentials) return { method: spec.method, path, query, headers, body };
    const date = spec.date ?? new Date();
    const signer = new SignatureV4({
      credentials: this.credentials, region: this.region, service: 's3', sha256: Sha256,
      uriEscapePath: false, applyChecksum: false,
    });
    const signed = await signer.sign({
      method: spec.method, protocol: this.endpoint.protocol, hostname: this.endpoint.hostname,
      port: Number(this.endpoint.port) || undefined, path, query, headers, // body is hashed by us, above
    } as Parameters<SignatureV4['sign']>[0], { signingDate: date }) as { headers: Record<string, string> };
    const auth = signed.headers['authorization']!;
    const seedSignature = /Signature=([0-9a-f]{64})/.exec(auth)![1]!;
    const ad = signed.headers['x-amz-date']!;
    const shortDate = ad.slice(0, 8);
    return {
      method: spec.method, path, query, headers: { ...signed.headers }, body,
      signing: {
        amzDate: ad, scope: `${shortDate}/${this.region}/s3/aws4_request`,
        signingKey: signingKey(this.credentials.secretAccessKey, shortDate, this.region), seedSignature,
      },
    };
  }

  /** Presigned URL (query-string auth) for the spec, signed at `date` (default now), valid `expiresIn` s. */
  async presign(spec: RequestSpec, opts: { date?: Date; expiresIn?: number } = {}): Promise<string> {
    if (!this.credentials) throw new Error('presign needs credentials');
    const path = this.buildPath(spec);
    const headers: Record<string, string> = { host: spec.host ?? this.hostHeader };
    for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k.toLowerCase()] = v;
    // Presigned requests carry UNSIGNED-PAYLOAD, as the SDKs' presigners do (hoisted into the query).
    headers['x-amz-content-sha256'] = UNSIGNED_PAYLOAD;
    const signer = new SignatureV4({
      credentials: this.credentials, region: this.region, service: 's3', sha256: Sha256, uriEscapePath: false,
    });
    const signed = await signer.presign({
      method: spec.method, protocol: this.endpoint.protocol, hostname: this.endpoint.hostname,
      port: Number(this.endpoint.port) || undefined, path, query: { ...(spec.query ?? {}) }, headers,
    } as Parameters<SignatureV4['presign']>[0], { signingDate: opts.date ?? new Date(), expiresIn: opts.expiresIn ?? 900 });
    return `${this.endpoint.origin}${path}${queryString(signed.query as Record<string, string>)}`;
  }

  /** Sends a (possibly tampered) signed request. */
  send(req: SignedRequest, opts: SendOptions = {}): Promise<RawResponse> {
    const headers: Record<string, string> = { ...req.headers };
    if (!opts.bodyStream && headers['content-length'] === undefined && !headers['transfer-encoding']) {
      headers['content-length'] = String(req.body?.length ?? 0);
    }
    return this.rawRequest(req.method, `${req.path}${queryString(req.query)}`, headers, req.body, opts);
  }

  /** Signs and sends. */
  async request(spec: RequestSpec, opts: SendOptions = {}): Promise<RawResponse> {
    return this.send(await this.sign(spec), opts);
  }

  /** Sends a request to a full URL (e.g. a presigned one) with no signing at all. */
  fetchUrl(url: string, method = 'GET', body?: Buffer, headers: Record<string, string> = {}): Promise<RawResponse> {
    const u = new URL(url);
    const h: Record<string, string> = { host: u.host, ...headers };
    if (body || method === 'PUT' || method === 'POST') h['content-length'] = String(body?.length ?? 0);
    return this.rawRequest(method, `${u.pathname}${u.search}`, h, body, {});
  }

  rawRequest(method: string, pathAndQuery: string, headers: Record<string, string>, body: Buffer | undefined, opts: SendOptions): Promise<RawResponse> {
    const mod = this.endpoint.protocol === 'https:' ? https : http;
    return new Promise<RawResponse>((resolve, reject) => {
      const r = mod.request({
        protocol: this.endpoint.protocol, hostname: this.endpoint.hostname, port: this.endpoint.port,
        method, path: pathAndQuery, headers, ca: this.ca, agent: false, setHost: false,
        // keep the header names/values exactly as signed; Node's limits on response headers are fine
      } as https.RequestOptions, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          clearTimeout(timer);
          if (!r.writableFinished) r.destroy(); // the server answered before taking the whole body
          const buf = Buffer.concat(chunks);
          const text = buf.toString('utf8');
          const err = parseErrorCode(text);
          const hdrId = res.headers['x-amz-request-id'];
          resolve({
            status: res.statusCode ?? 0, headers: res.headers, body: buf, text,
            code: err.code, message: err.message,
            requestId: (typeof hdrId === 'string' && hdrId) ? hdrId : err.requestId,
          });
        });
      });
      const timer = setTimeout(() => r.destroy(new Error(`request timed out after ${opts.timeoutMs ?? 30_000} ms`)), opts.timeoutMs ?? 30_000);
      r.on('error', (e) => { clearTimeout(timer); reject(e); });
      opts.onRequest?.(r);
      if (opts.bodyStream) {
        r.flushHeaders(); // send the headers now, even if the body never comes
        void (async () => {
          try {
            for await (const chunk of opts.bodyStream!) {
              if (r.destroyed) return;
              if (!r.write(chunk)) {
                await new Promise<void>((res) => {
                  const go = () => { r.off('drain', go); r.off('close', go); res(); };
                  r.on('drain', go); r.on('close', go);
                });
              }
            }
            r.end();
          } catch (e) { r.destroy(e as Error); }
        })();
      } else {
        r.end(body);
      }
    });
  }

  /**
   * Writes raw bytes on a fresh connection (TLS if the endpoint is https) and collects whatever
   * comes back until the server closes (a reset after a response still returns that response).
   */
  rawExchange(data: Buffer | string, timeoutMs = 10_000): Promise<{ received: string; status: number | null; error: string | null }> {
    return new Promise((resolve) => {
      const host = this.endpoint.hostname;
      const port = Number(this.endpoint.port) || (this.endpoint.protocol === 'https:' ? 443 : 80);
      const sock: net.Socket = this.endpoint.protocol === 'https:'
        ? tls.connect({ host, port, ca: this.ca, servername: 'localhost' })
        : net.connect({ host, port });
      let received = '';
      let error: string | null = null;
      const done = () => {
        clearTimeout(timer);
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(received);
        resolve({ received, status: m ? Number(m[1]) : null, error });
      };
      const timer = setTimeout(() => { error = 'timeout'; sock.destroy(); }, timeoutMs);
      sock.on('data', (d: Buffer) => { received += d.toString('latin1'); });
      sock.on('error', (e) => { error = e.message; });
      sock.on('close', done);
      sock.once(this.endpoint.protocol === 'https:' ? 'secureConnect' : 'connect', () => sock.write(data));
    });
  }

  // ---- aws-chunked -------------------------------------------------------------------------

  /**
   * STREAMING-AWS4-HMAC-SHA256-PAYLOAD: signs the headers, then every chunk (chained from the seed
   * signature). Returns the signed request (body already built) and the chunk list, which a test may
   * tamper with and re-encode with `encodeSignedChunks`.
   */
  async signChunked(spec: RequestSpec, data: Buffer, chunkSize = 64 * 1024, opts: { trailer?: { name: string; value: string } } = {}): Promise<{ req: SignedRequest; chunks: SignedChunk[]; trailer?: SignedTrailer }> {
    const headers: Record<string, string> = {
      ...(spec.headers ?? {}),
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.length),
    };
    if (opts.trailer) headers['x-amz-trailer'] = opts.trailer.name;
    const req = await this.sign({ ...spec, body: undefined, headers, payload: opts.trailer ? STREAMING_SIGNED_TRAILER : STREAMING_SIGNED });
    const ctx = req.signing!;
    const chunks = signChunks(ctx, splitChunks(data, chunkSize));
    let trailer: SignedTrailer | undefined;
    if (opts.trailer) {
      const prev = chunks[chunks.length - 1]!.signature;
      trailer = { name: opts.trailer.name, value: opts.trailer.value, signature: signTrailer(ctx, prev, opts.trailer.name, opts.trailer.value) };
    }
    req.body = encodeSignedChunks(chunks, trailer);
    return { req, chunks, ...(trailer ? { trailer } : {}) };
  }

  /**
   * STREAMING-UNSIGNED-PAYLOAD-TRAILER: headers signed, chunks unsigned, checksum in a trailer.
   * `checksum` defaults to the true CRC32 of `data`; pass another value to lie.
   */
  async signUnsignedTrailer(spec: RequestSpec, data: Buffer, opts: { chunkSize?: number; trailerName?: string; checksum?: string } = {}): Promise<SignedRequest> {
    const name = opts.trailerName ?? 'x-amz-checksum-crc32';
    const headers: Record<string, string> = {
      ...(spec.headers ?? {}),
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.length),
      'x-amz-trailer': name,
    };
    const req = await this.sign({ ...spec, body: undefined, headers, payload: STREAMING_UNSIGNED_TRAILER });
    req.body = encodeUnsignedTrailerBody(data, name, opts.checksum ?? crc32Base64(data), opts.chunkSize ?? 64 * 1024);
    return req;
  }
}

export interface SignedChunk { data: Buffer; signature: string }
export interface SignedTrailer { name: string; value: string; signature: string }

/** Splits data into chunks; the terminating empty chunk is appended. */
export function splitChunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, Math.min(i + size, data.length)));
  out.push(Buffer.alloc(0));
  return out;
}

/** Chunk signature: HMAC(signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n<prev>\n<sha256('')>\n<sha256(chunk)>"). */
export function chunkSignature(ctx: SigningContext, prev: string, chunk: Buffer): string {
  const sts = ['AWS4-HMAC-SHA256-PAYLOAD', ctx.amzDate, ctx.scope, prev, EMPTY_SHA256, sha256Hex(chunk)].join('\n');
  return createHmac('sha256', ctx.signingKey).update(sts).digest('hex');
}

export function signChunks(ctx: SigningContext, datas: Buffer[]): SignedChunk[] {
  let prev = ctx.seedSignature;
  return datas.map((data) => {
    const signature = chunkSignature(ctx, prev, data);
    prev = signature;
    return { data, signature };
  });
}

/** Trailer signature: HMAC(key, "AWS4-HMAC-SHA256-TRAILER\n<date>\n<scope>\n<prev>\n<sha256('name:value\n')>"). */
export function signTrailer(ctx: SigningContext, prev: string, name: string, value: string): string {
  const sts = ['AWS4-HMAC-SHA256-TRAILER', ctx.amzDate, ctx.scope, prev, sha256Hex(`${name}:${value}\n`)].join('\n');
  return createHmac('sha256', ctx.signingKey).update(sts).digest('hex');
}

/** `<hex size>;chunk-signature=<sig>\r\n<data>\r\n` ... `0;chunk-signature=<sig>\r\n` [trailer] `\r\n` */
export function encodeSignedChunks(chunks: SignedChunk[], trailer?: SignedTrailer): Buffer {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    parts.push(Buffer.from(`${c.data.length.toString(16)};chunk-signature=${c.signature}\r\n`));
    if (c.data.length > 0) { parts.push(c.data); parts.push(Buffer.from('\r\n')); }
  }
  if (trailer) {
    parts.push(Buffer.from(`${trailer.name}:${trailer.value}\r\nx-amz-trailer-signature:${trailer.signature}\r\n`));
  }
  parts.push(Buffer.from('\r\n'));
  return Buffer.concat(parts);
}

/** `<hex size>\r\n<data>\r\n` ... `0\r\n<name>:<value>\r\n\r\n` */
export function encodeUnsignedTrailerBody(data: Buffer, name: string, value: string, chunkSize = 64 * 1024): Buffer {
  const parts: Buffer[] = [];
  for (const c of splitChunks(data, chunkSize)) {
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`));
    if (c.length > 0) { parts.push(c); parts.push(Buffer.from('\r\n')); }
  }
  parts.push(Buffer.from(`${name}:${value}\r\n\r\n`));
  return Buffer.concat(parts);
}

/** S3 list responses: pulls every <Tag>...</Tag> block. */
export function xmlBlocks(text: string, tag: string): string[] {
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g');
  const out: string[] = [];
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1]!);
  return out;
}

export function xmlValue(text: string, tag: string): string | null {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(text);
  return m ? decodeXml(m[1]!) : null;
}

export function decodeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#(\d+)|#x([0-9a-fA-F]+));/g, (_, n: string, d?: string, x?: string) =>
    d ? String.fromCodePoint(Number(d)) : x ? String.fromCodePoint(parseInt(x, 16))
      : ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[n]!);
}

export interface ListedVersion { key: string; versionId: string; isLatest: boolean; deleteMarker: boolean; size: number; etag: string | null }

/** ListObjectVersions, all pages. */
export async function listAllVersions(s3: RawS3, bucket: string, prefix?: string): Promise<ListedVersion[]> {
  const out: ListedVersion[] = [];
  let keyMarker: string | null = null;
  let versionMarker: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const query: Record<string, string> = { versions: '' };
    if (prefix !== undefined) query['prefix'] = prefix;
    if (keyMarker !== null) query['key-marker'] = keyMarker;
    if (versionMarker !== null) query['version-id-marker'] = versionMarker;
    const r = await s3.request({ method: 'GET', bucket, query });
    if (r.status !== 200) throw new Error(`ListObjectVersions ${bucket}: ${r.status} ${r.code} ${r.text}`);
    for (const v of xmlBlocks(r.text, 'Version')) {
      out.push({
        key: xmlValue(v, 'Key')!, versionId: xmlValue(v, 'VersionId')!, isLatest: xmlValue(v, 'IsLatest') === 'true',
        deleteMarker: false, size: Number(xmlValue(v, 'Size')), etag: xmlValue(v, 'ETag'),
      });
    }
    for (const v of xmlBlocks(r.text, 'DeleteMarker')) {
      out.push({ key: xmlValue(v, 'Key')!, versionId: xmlValue(v, 'VersionId')!, isLatest: xmlValue(v, 'IsLatest') === 'true', deleteMarker: true, size: 0, etag: null });
    }
    if (xmlValue(r.text, 'IsTruncated') !== 'true') return out;
    keyMarker = xmlValue(r.text, 'NextKeyMarker');
    versionMarker = xmlValue(r.text, 'NextVersionIdMarker');
  }
  throw new Error('ListObjectVersions did not end');
}
