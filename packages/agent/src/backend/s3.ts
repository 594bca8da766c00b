// The agent's S3 backend: AWS SDK for JavaScript v3 (SigV4, retries with exponential backoff and
// jitter on 5xx, throttling, timeouts and connection resets). HTTPS only unless the user opts in.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import { BackendError, type Backend, type ObjectInfo, type SignedRequest, type StreamBody } from './types.ts';
import { checkEndpoint, keepAliveAgents, tlsFailure } from './endpoint.ts';
import { s3Signer } from './sign.ts';
import { sendSignedGet, sendSignedGetObject, sendSignedPut } from './signedhttp.ts';


export interface S3BackendOptions {
  endpoint: string;
  bucket: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** PEM file of a CA to trust (e.g. the gateway's DATA/tls/ca.pem), in addition to the system's */
  caFile?: string;
  /** allow http:// endpoints (credentials and data travel unencrypted) */
  insecureHttp?: boolean;
  /** path-style addressing (default true: works with every S3-compatible store) */
  pathStyle?: boolean;
  /** maximum attempts per request, first included (default 8) */
  maxAttempts?: number;
  /** parallel connections (default 16) */
  maxSockets?: number;
  /** send flexible checksums only when an operation requires them (old Ceph/MinIO) */
  legacyChecksums?: boolean;
}

/**
 * The small parts regrouped into pieces of about 1 MiB: a pack's parts are its blobs (a few KiB
 * each for source files), and one socket write per blob cost more than this one copy. A part of
 * `direct` bytes or more goes as it is: copying the large chunks of big files (a pack's worth every
 * 16 MiB) cost the main thread more in copies and garbage collection than their writes.
 */
function* coalesce(parts: readonly Buffer[], piece = 1024 * 1024, direct = 64 * 1024): Generator<Buffer> {
  let group: Buffer[] = [];
  let bytes = 0;
  for (const p of parts) {
    if (p.length >= direct) { // a large part goes as it is, never copied
      if (group.length) { yield Buffer.concat(group, bytes); group = []; bytes = 0; }
      yield p;
      continue;
    }
    group.push(p);
    bytes += p.length;
    if (bytes >= piece) { yield Buffer.concat(group, bytes); group = []; bytes = 0; }
  }
  if (group.length) yield Buffer.concat(group, bytes);
}

/**
 * A GET's body. With its length known (always, from shelterd and S3), the bytes go straight into
 * one buffer of that size, which owns its memory (a restore hands it to a worker thread without a
 * copy); the SDK's collector kept every piece and joined them after.
 */
async function readBody(body: Readable, length: number | undefined): Promise<Buffer> {
  if (length === undefined) {
    const pieces: Buffer[] = [];
    for await (const piece of body) pieces.push(piece as Buffer);
    return Buffer.concat(pieces);
  }
  const out = Buffer.allocUnsafeSlow(length);
  let at = 0;
  for await (const piece of body) {
    const p = piece as Buffer;
    if (at + p.length > length) { body.destroy(); throw new Error(`long body: more than the ${length} bytes announced`); }
    out.set(p, at);
    at += p.length;
  }
  if (at !== length) throw new Error(`short body: ${at} of ${length} bytes`);
  return out;
}

/** failures in a row after which a backend's GETs (or PUTs) all go through the SDK */
const MAX_FAST_FAILURES = 3;

/** the S3 client's module, once a backend needed it */
type SdkModule = typeof import('@aws-sdk/client-s3');

export function openS3Backend(o: S3BackendOptions): Backend {
  const url = checkEndpoint(o.endpoint, o.insecureHttp);
  const maxSockets = o.maxSockets ?? 16;
  const clientConfig = (maxAttempts: number, requestHandler: NodeHttpHandler) => ({
    endpoint: o.endpoint,
    region: o.region ?? 'us-east-1',
    forcePathStyle: o.pathStyle ?? true,
    credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
    maxAttempts, // the SDK's own retries: 5xx, throttling, timeouts, resets
    retryMode: 'standard' as const,
    requestChecksumCalculation: o.legacyChecksums ? 'WHEN_REQUIRED' as const : 'WHEN_SUPPORTED' as const,
    responseChecksumValidation: o.legacyChecksums ? 'WHEN_REQUIRED' as const : 'WHEN_SUPPORTED' as const,
    requestHandler,
    // Everything else the SDK would look up in the environment and in ~/.aws/config (the files read
    // at start, ~10 ms): the agent's settings are its own config's, never a shell profile's
    // (an AWS profile's `use_fips_endpoint` must not redirect a backup)
    defaultsMode: 'legacy' as const,
    authSchemePreference: [],
    sigv4aSigningRegionSet: [],
    disableS3ExpressSessionAuth: true,
    useArnRegion: false,
    useDualstackEndpoint: false,
    useFipsEndpoint: false,
    userAgentAppId: 'shelter',
    ignoreConfiguredEndpointUrls: true,
    disableClockSkewCorrection: false, // signing times follow the store's clock (a skewed host still gets in)
  });
  const maxAttempts = o.maxAttempts ?? 8;
  // The S3 client is loaded when first needed (~130 ms of imports): the GETs, PUTs and listings
  // of a run go by signedhttp.ts, and the SDK only sends again what that failed, and the rest.
  let sdk: { mod: SdkModule; client: S3Client; singleShot: S3Client } | undefined;
  let sdkLoading: Promise<NonNullable<typeof sdk>> | undefined;
  const loadSdk = () => (sdkLoading ??= (async () => {
    const [mod, { NodeHttpHandler }] = await Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]);
    const agents = keepAliveAgents(o.caFile, maxSockets);
    const requestHandler = new NodeHttpHandler({ connectionTimeout: 10_000, requestTimeout: 120_000, httpsAgent: agents.https, httpAgent: agents.http });
    // Streamed bodies (packs sent as their parts) cannot be replayed by the SDK's retries, which
    // resend the same request object: `singleShot` makes one attempt and putNew retries with a
    // fresh stream. Same connections (one request handler), same checksums.
    return (sdk = { mod, client: new mod.S3Client(clientConfig(maxAttempts, requestHandler)), singleShot: new mod.S3Client(clientConfig(1, requestHandler)) });
  })());
  /** an S3 error answer the SDK parsed (never one before the SDK was loaded: only the SDK makes them) */
  const isS3Error = (e: unknown): e is S3ServiceException => sdk !== undefined && e instanceof sdk.mod.S3ServiceException;
  const bucket = o.bucket;
  const location = `${url.origin}/${bucket}`;

  const fail = (e: unknown, what: string): never => {
    if (isS3Error(e)) {
      if (e.name === 'AccessDenied' || e.$metadata.httpStatusCode === 403) throw new BackendError('AccessDenied', `${what}: access denied by ${location} (${e.name}: ${e.message})`, { cause: e });
      if (e.name === 'InvalidRange' || e.$metadata.httpStatusCode === 416) {
        throw new BackendError('Integrity', `${what}: the object is shorter than the repository index says (truncated?)`, { cause: e });
      }
      // (AWS and shelterd say BadDigest; MinIO XAmzContentChecksumMismatch)
      if (e.name === 'BadDigest' || e.name === 'XAmzContentChecksumMismatch') {
        throw new BackendError('Integrity', `${what}: the store received bytes whose SHA-256 is not the one they are named by (damaged after they were hashed: a spool file, memory, the way there); nothing was stored`, { cause: e });
      }
      if (e.name === 'NoSuchBucket') throw new BackendError('NoSuchBucket', `${what}: bucket ${bucket} does not exist at ${url.origin}`, { cause: e });
      throw new BackendError('Server', `${what}: ${e.name} (HTTP ${e.$metadata.httpStatusCode ?? '?'}): ${e.message}`, { cause: e });
    }
    if (/checksum mismatch/i.test((e as Error).message ?? '')) {
      throw new BackendError('Integrity', `${what}: the object failed its integrity check (checksum mismatch): it is damaged in storage`, { cause: e });
    }
    const tls = tlsFailure(e, url.origin, o.caFile, what);
    if (tls) throw tls;
    throw new BackendError('Network', `${what}: ${(e as Error).message ?? String(e)} (${location})`, { cause: e });
  };
  /** worth another try: the connection failed while the body was read; not refusals nor damaged data */
  const transient = (e: unknown): boolean => {
    if (/checksum mismatch/i.test((e as Error)?.message ?? '')) return false;
    // an S3 error response was already retried by the SDK: only failures after it (reading the body) are ours
    return !isS3Error(e);
  };
  /** what the SDK's standard retry mode retries: 5xx, throttling, timeouts, connection failures (not a bug or a missing credential) */
  const retryablePut = (e: unknown): boolean => {
    if (!isS3Error(e)) {
      const { code, name, message } = (e ?? {}) as { code?: string; name?: string; message?: string };
      return /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|UND_ERR)/.test(code ?? '')
        || name === 'TimeoutError' || /socket hang up|timed? ?out/i.test(message ?? '');
    }
    const status = e.$metadata.httpStatusCode ?? 0;
    return status >= 500 || status === 429 || e.$retryable !== undefined || /^(SlowDown|Throttl|RequestTimeout)/.test(e.name);
  };
  const backoff = (attempt: number) => new Promise((r) => setTimeout(r, Math.min(10_000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2)));
  const isMissing = (e: unknown) => isS3Error(e) && (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata.httpStatusCode === 404);

  // requests signed here for signedhttp.ts: paths as the SDK sends them (path style), dates
  // corrected by the store's clock as the SDK's own requests are (the skew it has measured so far)
  const signer = s3Signer(o);
  const basePath = `${url.pathname.replace(/\/$/, '')}/${encodeURIComponent(bucket)}`;
  /** the skew the SDK has measured so far (none before it was loaded) */
  const clockOffset = () => (sdk?.client.config as { systemClockOffset?: number } | undefined)?.systemClockOffset ?? 0;
  /**
   * A request on `key` (the bucket itself if undefined) signed for signedhttp.ts (path style only:
   * the paths are the SDK's); `query`'s names and values as SigV4 encodes them, in the URL too.
   */
  const sign = (method: 'GET' | 'PUT', key: string | undefined, headers: Record<string, string>, query: Record<string, string> = {}): SignedRequest => {
    const path = key === undefined ? basePath : `${basePath}/${key.split('/').map(encodeURIComponent).join('/')}`;
    const signed = signer.sign({ method, path, query, headers: { host: url.host, ...headers } }, { signingDate: new Date(Date.now() + clockOffset()) });
    return { url: `${url.origin}${path}${signed.search ? `?${signed.search}` : ''}`, headers: signed.headers, ...(o.caFile ? { caFile: o.caFile } : {}) };
  };
  const pathStyle = o.pathStyle ?? true;
  const signGet = pathStyle ? (key: string, range?: { start: number; end: number }) => sign('GET', key, range ? { range: `bytes=${range.start}-${range.end}` } : {}) : undefined;
  const requests = { signedGets: 0, sdkGets: 0, signedPuts: 0, sdkPuts: 0, signedLists: 0, sdkLists: 0 };
  /**
   * One kind of request sent by signedhttp.ts (path style only): `send` resolves with the result, or
   * undefined (or throws) when the SDK must send it again. Given up after MAX_FAST_FAILURES failures
   * in a row (a store whose answers it cannot read would cost every request a second one); an error
   * `counted` rejects (a missing object) is no failure of the path.
   */
  const signedPath = (kind: 'Gets' | 'Puts' | 'Lists') => {
    let failures = 0;
    return async <T>(send: () => Promise<T | undefined>, counted: (e: unknown) => boolean = () => true): Promise<T | undefined> => {
      if (!pathStyle || failures >= MAX_FAST_FAILURES) return undefined;
      let result: T | undefined;
      try { result = await send(); } catch (e) { if (counted(e)) failures++; return undefined; }
      if (result === undefined) { failures++; return undefined; }
      failures = 0;
      requests[`signed${kind}`]++;
      return result;
    };
  };
  const signedGet = signedPath('Gets'), signedPut = signedPath('Puts'), signedList = signedPath('Lists');

  return {
    location,
    requests,
    ...(signGet ? { signGet } : {}),
    async get(key, range) {
      // signed here and sent by signedhttp.ts (the body read straight into one buffer: ~3.5 times
      // less CPU than the SDK's stream of 16 KiB pieces); any failure, a missing object included,
      // goes the SDK's way below, which retries and names S3's errors. Given up after a few failures
      // in a row (a store whose answers it cannot read would cost every GET a second request).
      const signed = await signedGet(async () => {
        const request = signGet!(key, range);
        return range ? sendSignedGet(request, range.start, range.end) : sendSignedGetObject(request);
      }, (e) => (e as { status?: number }).status !== 404);
      if (signed) return signed;
      // the SDK retries the request, but not the reading of the body that follows it: a connection
      // cut in the middle of a large GET is retried here, whole, with the same backoff policy
      requests.sdkGets++;
      for (let attempt = 1; ; attempt++) {
        try {
          const { client, mod } = await loadSdk();
          const r = await client.send(new mod.GetObjectCommand({ Bucket: bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }));
          return await readBody(r.Body as Readable, r.ContentLength);
        } catch (e) {
          if (isMissing(e)) return undefined;
          if (attempt < maxAttempts && transient(e)) { await backoff(attempt); continue; }
          return fail(e, `reading ${key}`);
        }
      }
    },
    async head(key) {
      try {
        const { client, mod } = await loadSdk();
        const r = await client.send(new mod.HeadObjectCommand({ Bucket: bucket, Key: key }));
        return r.ContentLength ?? 0;
      } catch (e) {
        if (isMissing(e)) return undefined;
        return fail(e, `checking ${key}`);
      }
    },
    async putNew(key, body, sha256) {
      // An object named by its SHA-256 (packs, index and snapshot objects) goes by signedhttp.ts
      // first: the payload signed with that digest, which the store checks, If-None-Match: * (never
      // an overwrite), and a spool file's pack sent through one reused buffer (the SDK's stream made
      // a new buffer per MiB). Any answer but 200 (created) or 412 (exists), or any failure, and
      // the SDK's PUT below sends it again: its retries, S3's error codes.
      // (a small object not named by its digest, the manifest or the config, is hashed here: it goes
      // the same way, and the store checks it the same way)
      const digest = sha256 ?? (Buffer.isBuffer(body) ? createHash('sha256').update(body).digest() : undefined);
      const length = Buffer.isBuffer(body) ? body.length : Array.isArray(body) ? (body as readonly Buffer[]).reduce((n, b) => n + b.length, 0) : (body as StreamBody).length;
      const signed = digest && await signedPut(async () => {
        const request = sign('PUT', key, {
          'content-length': String(length), 'if-none-match': '*', 'x-amz-content-sha256': Buffer.from(digest).toString('hex'),
          ...(o.legacyChecksums ? {} : { 'x-amz-checksum-sha256': Buffer.from(digest).toString('base64') }),
        });
        // (parts regrouped as for the SDK below: one write per small blob cost more than one copy)
        const { status } = await sendSignedPut(request, Array.isArray(body) ? [...coalesce(body)] : body);
        return status === 200 ? 'created' as const : status === 412 ? 'exists' as const : undefined;
      });
      if (signed) return signed;
      // the store checks the bytes against the digest they are named by (an S3 flexible checksum:
      // the SDK then computes none of its own); old Ceph/MinIO (legacyChecksums) get none
      const checksum = sha256 && !o.legacyChecksums ? { ChecksumSHA256: Buffer.from(sha256).toString('base64') } : {};
      requests.sdkPuts++;
      const exists = (e: unknown) => isS3Error(e) && (e.$metadata.httpStatusCode === 412 || e.name === 'PreconditionFailed');
      if (Buffer.isBuffer(body)) {
        try {
          // If-None-Match: * makes the store refuse to replace an existing object (AWS, MinIO, shelterd)
          const { client, mod } = await loadSdk();
          await client.send(new mod.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, IfNoneMatch: '*', ContentLength: body.length, ...checksum }));
          return 'created';
        } catch (e) {
          if (exists(e)) return 'exists';
          return fail(e, `writing ${key}`);
        }
      }
      // Parts, streamed: TLS encrypts them as the socket drains. A single buffer would be encrypted
      // whole into the socket's queue (a second copy of every pack in flight).
      const stream = () => (Array.isArray(body) ? Readable.from(coalesce(body)) : Readable.from((body as StreamBody).chunks()));
      for (let attempt = 1; ; attempt++) {
        try {
          const { singleShot, mod } = await loadSdk();
          await singleShot.send(new mod.PutObjectCommand({ Bucket: bucket, Key: key, Body: stream(), IfNoneMatch: '*', ContentLength: length, ...checksum }));
          return 'created';
        } catch (e) {
          if (exists(e)) return 'exists';
          if (attempt < maxAttempts && retryablePut(e)) { await backoff(attempt); continue; }
          return fail(e, `writing ${key}`);
        }
      }
    },
    async *list(prefix): AsyncIterable<ObjectInfo> {
      let token: string | undefined;
      do {
        // each page by signedhttp.ts, or, if that fails, by the SDK (from the same token)
        const query: Record<string, string> = { 'list-type': '2', prefix, ...(token ? { 'continuation-token': token } : {}) };
        let page = await signedList(async () => parseListPage((await sendSignedGetObject(sign('GET', undefined, {}, query))).toString('utf8')));
        if (!page) {
          requests.sdkLists++;
          try {
            const { client, mod } = await loadSdk();
            const r = await client.send(new mod.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
            page = { items: (r.Contents ?? []).map((c) => ({ key: c.Key!, size: c.Size ?? 0 })), next: r.IsTruncated ? r.NextContinuationToken : undefined };
          } catch (e) { return fail(e, `listing ${prefix}`); }
        }
        yield* page.items;
        token = page.next;
      } while (token);
    },
  };
}

/**
 * A ListObjectsV2 answer's objects and continuation token; throws on anything it does not expect
 * (the SDK then fetches that page). Read by hand, strictly: a maintained XML parser (the SDK's, or
 * fast-xml-parser) costs 50-130 ms to load, and a backup lists on every run; the answer is S3's
 * fixed shape (no CDATA, no DTD, the five XML entities and character references in text).
 */
export function parseListPage(xml: string): { items: ObjectInfo[]; next?: string } {
  const root = /<ListBucketResult\b[^>]*>([\s\S]*)<\/ListBucketResult>\s*$/.exec(xml);
  if (!root || /<!\[CDATA\[|<!DOCTYPE|<!ENTITY/i.test(xml)) throw new Error('not a ListBucketResult this client reads');
  const body = root[1]!;
  const items: ObjectInfo[] = [];
  for (const m of body.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const key = /<Key>([^<]*)<\/Key>/.exec(m[1]!);
    const size = /<Size>(\d{1,15})<\/Size>/.exec(m[1]!);
    if (!key || !size) throw new Error('a listed object without a key or size');
    items.push({ key: xmlText(key[1]!), size: Number(size[1]) });
  }
  if ((body.match(/<Contents>/g) ?? []).length !== items.length) throw new Error('an unclosed Contents element');
  const truncated = /<IsTruncated>(true|false)<\/IsTruncated>/.exec(body);
  if (!truncated) throw new Error('a listing without IsTruncated');
  if (truncated[1] === 'false') return { items };
  const next = /<NextContinuationToken>([^<]+)<\/NextContinuationToken>/.exec(body);
  if (!next) throw new Error('a truncated listing without a continuation token');
  return { items, next: xmlText(next[1]!) };
}

/** XML character data: the five entities and character references decoded, anything else refused */
function xmlText(t: string): string {
  if (/&(?![a-z]+;|#[0-9]{1,7};|#x[0-9a-fA-F]{1,6};)/.test(t)) throw new Error('a bare & in XML text');
  return t.replace(/&([a-z]+|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});/g, (all, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (e[0] !== '#') { if (named[e] === undefined) throw new Error(`an unknown XML entity ${all}`); return named[e]!; }
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    if (code > 0x10ffff) throw new Error(`a bad character reference ${all}`);
    return String.fromCodePoint(code);
  });
}
