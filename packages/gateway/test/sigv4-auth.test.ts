// SigV4 request authentication (Authorization header and presigned URLs), checked against
// signatures produced by @smithy/signature-v4 (the signer of the AWS SDK for JavaScript v3),
// plus one negative test per refusal.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { buildQueryString } from '@smithy/core/protocols';
import { authenticate, type AuthOptions, type AuthRequest, type AuthResult, type SigV4ErrorCode } from '../src/sigv4/index.ts';
import { canonicalHeaderValue, deriveSigningKey, parseQuery, canonicalQueryString, signingKeyCacheSize } from '../src/sigv4/canonical.ts';

const AKID = 'AKIDSHELTERTEST00001';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const REGION = 'us-east-1';
const HOST = 'shelter.example.test:8443';
const NOW = new Date('2025-03-14T15:09:26Z');
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const secrets: Record<string, string> = { [AKID]: SECRET, AKIDSECOND0000000002: 'another secret with spaces + symbols=/' };

function options(over: Partial<AuthOptions> = {}): AuthOptions {
  return { region: REGION, now: NOW, lookupSecret: (id) => secrets[id], ...over };
}

/** RFC 3986 encoding as the SDKs apply it to keys and query values. */
const uriEncode = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const objectPath = (bucket: string, key: string): string => `/${bucket}/${key.split('/').map(uriEncode).join('/')}`;

/** What node would show us for a header sent as UTF-8 bytes: their latin1 decoding. */
const wire = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

interface Spec {
  method?: string;
  path: string;
  query?: Record<string, string | string[]>;
  headers?: Record<string, string>;
  payload?: string;
  date?: Date;
  region?: string;
  service?: string;
  accessKeyId?: string;
  secret?: string;
}

function signer(spec: Spec): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: spec.accessKeyId ?? AKID, secretAccessKey: spec.secret ?? SECRET },
    region: spec.region ?? REGION, service: spec.service ?? 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false,
  });
}

/** Signs with the SDK signer and returns the request as the gateway would see it off the wire. */
async function signHeader(spec: Spec): Promise<AuthRequest> {
  const headers: Record<string, string> = { host: HOST, 'x-amz-content-sha256': spec.payload ?? EMPTY_SHA256, ...(spec.headers ?? {}) };
  const query = spec.query ?? {};
  const signed = await signer(spec).sign({
    method: spec.method ?? 'GET', protocol: 'https:', hostname: 'shelter.example.test', port: 8443,
    path: spec.path, query, headers,
  } as Parameters<SignatureV4['sign']>[0], { signingDate: spec.date ?? NOW }) as { headers: Record<string, string> };
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(signed.headers)) out[k.toLowerCase()] = wire(v);
  return { method: spec.method ?? 'GET', rawPath: spec.path, rawQuery: buildQueryString(query), headers: out };
}

/**
 * Presigns with the SDK signer as the S3 presigner does (x-amz-content-sha256: UNSIGNED-PAYLOAD,
 * hoisted into the query with the other x-amz-* headers); returns the request a client following
 * the URL would send.
 */
async function presign(spec: Spec, expiresIn = 900): Promise<AuthRequest> {
  const headers: Record<string, string> = { host: HOST, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...(spec.headers ?? {}) };
  const signed = await signer(spec).presign({
    method: spec.method ?? 'GET', protocol: 'https:', hostname: 'shelter.example.test', port: 8443,
    path: spec.path, query: spec.query ?? {}, headers,
  } as Parameters<SignatureV4['presign']>[0], { signingDate: spec.date ?? NOW, expiresIn });
  const sent: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(signed.headers)) sent[k.toLowerCase()] = wire(v);
  return { method: spec.method ?? 'GET', rawPath: spec.path, rawQuery: buildQueryString(signed.query as Record<string, string | string[]>), headers: sent };
}

function ok(r: AuthResult): Extract<AuthResult, { ok: true }> {
  if (!r.ok) assert.fail(`expected success, got ${r.error.code}: ${r.error.message}`);
  return r;
}

function fails(r: AuthResult, code: SigV4ErrorCode, status?: number, message?: RegExp): void {
  if (r.ok) assert.fail(`expected ${code}, got success`);
  assert.equal(r.error.code, code, r.error.message);
  if (status !== undefined) assert.equal(r.error.status, status);
  if (message) assert.match(r.error.message, message);
}

function setQueryParam(req: AuthRequest, name: string, value: string): AuthRequest {
  const parts = req.rawQuery.split('&').filter((p) => !p.startsWith(`${name}=`));
  parts.push(`${name}=${value}`);
  return { ...req, rawQuery: parts.join('&') };
}

describe('SigV4 header auth: accepts what the AWS SDK signer produces', () => {
  it('plain GET', async () => {
    const r = ok(authenticate(await signHeader({ path: '/bucket/key.txt' }), options()));
    assert.equal(r.accessKeyId, AKID);
    assert.equal(r.presigned, false);
    assert.deepEqual(r.payload, { kind: 'sha256', hex: EMPTY_SHA256 });
  });

  it('keys with spaces, unicode, +, =, and special characters (path used verbatim)', async () => {
    for (const key of ['dir/a b+c=d.txt', 'données/été/日本語.bin', "x!'()*~_-.y", 'sub/dir/', 'a%2Fb', 'tab\there', 'plus+plus']) {
      const r = authenticate(await signHeader({ path: objectPath('bucket', key), method: 'PUT', payload: 'UNSIGNED-PAYLOAD' }), options());
      assert.ok(r.ok, `key ${JSON.stringify(key)}: ${r.ok ? '' : r.error.message}`);
      assert.deepEqual(r.payload, { kind: 'unsigned' });
    }
  });

  it('query parameters: sub-resources, special values, repeated names', async () => {
    const queries: Array<Record<string, string | string[]>> = [
      { 'list-type': '2', prefix: 'a b+c=d/é', delimiter: '/', 'max-keys': '1000' },
      { versioning: '' },
      { uploads: '' },
      { 'continuation-token': 'abc/+=xyz==', 'start-after': '~tilde*star' },
      { tag: ['zeta', 'alpha', 'mid'], other: 'x' },
      { 'X-Custom': 'UPPER lower', 'a.b_c-d~e': '1' },
    ];
    for (const query of queries) {
      const r = authenticate(await signHeader({ path: '/bucket', query }), options());
      assert.ok(r.ok, `query ${JSON.stringify(query)}: ${r.ok ? '' : r.error.message}`);
    }
  });

  it("'+' and '%20' in the raw query both mean a space", async () => {
    const req = await signHeader({ path: '/bucket', query: { prefix: 'a b c' } });
    assert.equal(req.rawQuery, 'prefix=a%20b%20c');
    ok(authenticate({ ...req, rawQuery: 'prefix=a+b+c' }, options()));
    ok(authenticate({ ...req, rawQuery: 'prefix=a%20b+c' }, options()));
  });

  it('lower-case percent escapes and unencoded sub-delims are canonicalised', async () => {
    const req = await signHeader({ path: '/bucket', query: { prefix: 'a/b,c' } });
    assert.equal(req.rawQuery, 'prefix=a%2Fb%2Cc');
    ok(authenticate({ ...req, rawQuery: 'prefix=a%2fb%2cc' }, options()));
    ok(authenticate({ ...req, rawQuery: 'prefix=a/b,c' }, options()));
  });

  it('header values: unicode metadata, inner spaces, many headers, second key with odd secret', async () => {
    const r = ok(authenticate(await signHeader({
      path: objectPath('bucket', 'k'), method: 'PUT', payload: 'UNSIGNED-PAYLOAD',
      accessKeyId: 'AKIDSECOND0000000002', secret: secrets.AKIDSECOND0000000002,
      headers: {
        'x-amz-meta-name': 'café  crème   brûlée', 'content-type': 'text/plain;  charset=utf-8',
        'x-amz-meta-empty': '', 'x-amz-storage-class': 'STANDARD', 'content-md5': '1B2M2Y8AsgTpgAmY7PhCfg==',
      },
    }), options()));
    assert.equal(r.accessKeyId, 'AKIDSECOND0000000002');
  });

  it('streaming payloads give the PayloadSpec the body verifier needs', async () => {
    const req = await signHeader({ path: '/bucket/k', method: 'PUT', payload: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', headers: { 'x-amz-decoded-content-length': '10', 'content-encoding': 'aws-chunked', 'x-amz-trailer': 'x-amz-checksum-crc32' } });
    const r = ok(authenticate(req, options()));
    assert.equal(r.payload.kind, 'streaming-signed');
    if (r.payload.kind !== 'streaming-signed') return;
    assert.equal(r.payload.trailer, true);
    assert.equal(r.payload.seedSignature, /Signature=([0-9a-f]{64})/.exec(req.headers.authorization as string)![1]);
    assert.equal(r.payload.amzDate, '20250314T150926Z');
    assert.equal(r.payload.scope, '20250314/us-east-1/s3/aws4_request');
    assert.deepEqual(r.payload.signingKey, deriveSigningKey(SECRET, '20250314', REGION, 's3'));
    const r2 = ok(authenticate(await signHeader({ path: '/b/k', method: 'PUT', payload: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' }), options()));
    assert.equal(r2.payload.kind === 'streaming-signed' && r2.payload.trailer, false);
    const r3 = ok(authenticate(await signHeader({ path: '/b/k', method: 'PUT', payload: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' }), options()));
    assert.deepEqual(r3.payload, { kind: 'streaming-unsigned-trailer' });
  });

  it('within the skew window on both sides', async () => {
    ok(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() - 14 * 60_000) }), options()));
    ok(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() + 14 * 60_000) }), options()));
  });

  it('the Date header is accepted as the timestamp when x-amz-date is absent (and signed)', () => {
    const date = 'Fri, 14 Mar 2025 15:09:26 GMT';
    const headers: IncomingHttpHeaders = { host: HOST, date, 'x-amz-content-sha256': EMPTY_SHA256 };
    const canonical = ['GET', '/bucket', '', `date:${date}`, `host:${HOST}`, `x-amz-content-sha256:${EMPTY_SHA256}`, '', 'date;host;x-amz-content-sha256', EMPTY_SHA256].join('\n');
    const scope = '20250314/us-east-1/s3/aws4_request';
    const sts = ['AWS4-HMAC-SHA256', '20250314T150926Z', scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const key = ['20250314', REGION, 's3', 'aws4_request'].reduce<Buffer | string>((k, d) => createHmac('sha256', k).update(d).digest(), `AWS4${SECRET}`);
    const sig = createHmac('sha256', key).update(sts).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${AKID}/${scope},SignedHeaders=date;host;x-amz-content-sha256,Signature=${sig}`;
    ok(authenticate({ method: 'GET', rawPath: '/bucket', rawQuery: '', headers }, options()));
    // The Date header is the timestamp here: leaving it unsigned is refused.
    const unsigned = { ...headers, authorization: (headers.authorization as string).replace('date;host', 'host') };
    fails(authenticate({ method: 'GET', rawPath: '/bucket', rawQuery: '', headers: unsigned }, options()), 'AccessDenied', 403, /not signed: date/);
  });

  it('repeated header values (headersDistinct) are joined with commas', () => {
    assert.equal(canonicalHeaderValue(['a', '  b   c ']), 'a,b c');
    assert.equal(canonicalHeaderValue(['\tx \t y\t']), 'x y');
  });

  it('canonical query sorts by name then value, by byte order', () => {
    assert.equal(canonicalQueryString(parseQuery('b=2&a=2&a=1&B=0&a&c=%7e&d=%41')), 'B=0&a=&a=1&a=2&b=2&c=~&d=A');
  });

  it('the signing key cache stays bounded', () => {
    for (let i = 0; i < 2000; i++) deriveSigningKey(`secret-${i}`, '20250314', REGION, 's3');
    assert.ok(signingKeyCacheSize() <= 512);
  });
});

describe('SigV4 header auth: refusals', () => {
  it('anonymous request -> AccessDenied', () => {
    fails(authenticate({ method: 'GET', rawPath: '/bucket', rawQuery: '', headers: { host: HOST } }, options()), 'AccessDenied', 403);
  });

  it('SigV2 header or query -> InvalidRequest (SigV4 only)', () => {
    fails(authenticate({ method: 'GET', rawPath: '/b', rawQuery: '', headers: { host: HOST, authorization: `AWS ${AKID}:c2lnbmF0dXJl` } }, options()), 'InvalidRequest', 400, /Signature Version 4/);
    fails(authenticate({ method: 'GET', rawPath: '/b', rawQuery: `AWSAccessKeyId=${AKID}&Expires=1700000000&Signature=abc`, headers: { host: HOST } }, options()), 'InvalidRequest', 400, /Signature Version 4/);
  });

  it('SigV4a and unknown schemes', () => {
    fails(authenticate({ method: 'GET', rawPath: '/b', rawQuery: '', headers: { host: HOST, authorization: 'AWS4-ECDSA-P256-SHA256 Credential=x' } }, options()), 'InvalidRequest');
    fails(authenticate({ method: 'GET', rawPath: '/b', rawQuery: '', headers: { host: HOST, authorization: 'Bearer abc' } }, options()), 'InvalidArgument');
  });

  it('header and query auth together -> InvalidArgument', async () => {
    const req = await signHeader({ path: '/b' });
    fails(authenticate({ ...req, rawQuery: 'X-Amz-Algorithm=AWS4-HMAC-SHA256' }, options()), 'InvalidArgument', 400);
    fails(authenticate({ ...req, rawQuery: 'X-Amz-Signature=00' }, options()), 'InvalidArgument', 400);
  });

  it('tampered signed header -> SignatureDoesNotMatch', async () => {
    const req = await signHeader({ path: '/b/k', method: 'PUT', payload: 'UNSIGNED-PAYLOAD', headers: { 'x-amz-meta-owner': 'alice' } });
    fails(authenticate({ ...req, headers: { ...req.headers, 'x-amz-meta-owner': 'mallory' } }, options()), 'SignatureDoesNotMatch', 403);
    fails(authenticate({ ...req, headers: { ...req.headers, host: 'other.example.test' } }, options()), 'SignatureDoesNotMatch', 403);
    fails(authenticate({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': EMPTY_SHA256 } }, options()), 'SignatureDoesNotMatch', 403);
  });

  it('tampered method, path or query -> SignatureDoesNotMatch', async () => {
    const req = await signHeader({ path: '/bucket/a', query: { 'list-type': '2' } });
    fails(authenticate({ ...req, method: 'DELETE' }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, rawPath: '/bucket/b' }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, rawPath: '/bucket/./a' }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, rawQuery: 'list-type=2&versions' }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, rawQuery: '' }, options()), 'SignatureDoesNotMatch');
  });

  it('tampered signature -> SignatureDoesNotMatch; wrong secret -> SignatureDoesNotMatch', async () => {
    const req = await signHeader({ path: '/b' });
    const auth = req.headers.authorization as string;
    const flipped = auth.slice(0, -1) + (auth.endsWith('0') ? '1' : '0');
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: flipped } }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: auth.slice(0, -2) } }, options()), 'SignatureDoesNotMatch');
    fails(authenticate(await signHeader({ path: '/b', secret: 'not the secret' }), options()), 'SignatureDoesNotMatch');
  });

  it('unknown or disabled access key -> InvalidAccessKeyId (the claimed key is reported)', async () => {
    const r = authenticate(await signHeader({ path: '/b', accessKeyId: 'AKIDUNKNOWN000000000' }), options());
    fails(r, 'InvalidAccessKeyId', 403);
    assert.equal(!r.ok && r.accessKeyId, 'AKIDUNKNOWN000000000');
  });

  it('wrong region, service, date or terminator in the scope -> AuthorizationHeaderMalformed', async () => {
    fails(authenticate(await signHeader({ path: '/b', region: 'eu-west-3' }), options()), 'AuthorizationHeaderMalformed', 400, /region 'eu-west-3' is wrong; expecting 'us-east-1'/);
    fails(authenticate(await signHeader({ path: '/b', service: 'iam' }), options()), 'AuthorizationHeaderMalformed', 400, /service/);
    const req = await signHeader({ path: '/b' });
    const auth = req.headers.authorization as string;
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: auth.replace('/20250314/', '/20250313/') } }, options()), 'AuthorizationHeaderMalformed', 400, /date/i);
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: auth.replace('/aws4_request', '/aws5_request') } }, options()), 'AuthorizationHeaderMalformed');
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: auth.replace(`${AKID}/`, '') } }, options()), 'AuthorizationHeaderMalformed');
  });

  it('malformed or incomplete Authorization header', async () => {
    const req = await signHeader({ path: '/b' });
    const auth = req.headers.authorization as string;
    const withAuth = (a: string): AuthRequest => ({ ...req, headers: { ...req.headers, authorization: a } });
    fails(authenticate(withAuth(auth.replace(/, Signature=[0-9a-f]+/, '')), options()), 'IncompleteSignature', 400);
    fails(authenticate(withAuth(auth.replace(/SignedHeaders=[^,]+, /, '')), options()), 'IncompleteSignature');
    fails(authenticate(withAuth(`${auth}, Extra=1`), options()), 'AuthorizationHeaderMalformed');
    fails(authenticate(withAuth(auth.replace('SignedHeaders=', 'SignedHeaders=HOST;')), options()), 'AuthorizationHeaderMalformed');
    // host must be signed
    const noHost = auth.replace('SignedHeaders=host;', 'SignedHeaders=');
    fails(authenticate(withAuth(noHost), options()), 'AuthorizationHeaderMalformed', 400, /Host/);
  });

  it('clock skew over 15 minutes either way -> RequestTimeTooSkewed', async () => {
    fails(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() - 16 * 60_000) }), options()), 'RequestTimeTooSkewed', 403);
    fails(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() + 16 * 60_000) }), options()), 'RequestTimeTooSkewed', 403);
    // a replay of a request signed yesterday
    fails(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() - 86_400_000) }), options()), 'RequestTimeTooSkewed');
    ok(authenticate(await signHeader({ path: '/b', date: new Date(NOW.getTime() - 16 * 60_000) }), options({ maxSkewSeconds: 1000 })));
  });

  it('missing or invalid timestamp -> AccessDenied', async () => {
    const req = await signHeader({ path: '/b' });
    const { 'x-amz-date': _drop, ...noDate } = req.headers;
    fails(authenticate({ ...req, headers: noDate }, options()), 'AccessDenied', 403, /Date/);
    fails(authenticate({ ...req, headers: { ...req.headers, 'x-amz-date': '20250314T250926Z' } }, options()), 'AccessDenied');
  });

  it('x-amz-content-sha256 missing -> MissingSecurityHeader, invalid -> InvalidArgument, SigV4a streaming -> InvalidRequest', async () => {
    const { 'x-amz-content-sha256': _drop, ...rest } = (await signHeader({ path: '/b' })).headers;
    fails(authenticate({ method: 'GET', rawPath: '/b', rawQuery: '', headers: rest }, options()), 'MissingSecurityHeader', 400);
    fails(authenticate(await signHeader({ path: '/b', payload: 'not-a-hash' }), options()), 'InvalidArgument', 400);
    fails(authenticate(await signHeader({ path: '/b', payload: 'abcd' }), options()), 'InvalidArgument');
    fails(authenticate(await signHeader({ path: '/b', payload: 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD' }), options()), 'InvalidRequest');
  });

  it('an x-amz-* header added after signing -> AccessDenied', async () => {
    const req = await signHeader({ path: '/b/k', method: 'PUT', payload: 'UNSIGNED-PAYLOAD' });
    fails(authenticate({ ...req, headers: { ...req.headers, 'x-amz-bypass-governance-retention': 'true' } }, options()), 'AccessDenied', 403, /not signed: x-amz-bypass-governance-retention/);
    // other unsigned headers (user-agent, content-type...) are fine, as with AWS
    ok(authenticate({ ...req, headers: { ...req.headers, 'user-agent': 'x', 'content-type': 'a/b' } }, options()));
  });
});

describe('SigV4 presigned URLs', () => {
  it('accepts SDK presigned URLs, with special keys and query parameters', async () => {
    for (const key of ['plain.txt', 'dir/a b+c=d.txt', 'données/日本語', "q!'()*"]) {
      const req = await presign({ path: objectPath('bucket', key), query: { versionId: 'v1+/=', 'response-content-type': 'text/plain; x=y' } });
      const r = ok(authenticate(req, options()));
      assert.equal(r.presigned, true);
      assert.deepEqual(r.payload, { kind: 'unsigned' });
    }
  });

  it('X-Amz-Content-Sha256 hoisted into the query (S3 presigner style)', async () => {
    const req = await presign({ path: '/b/k', method: 'PUT', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
    assert.match(req.rawQuery, /x-amz-content-sha256=UNSIGNED-PAYLOAD/i);
    assert.deepEqual(ok(authenticate(req, options())).payload, { kind: 'unsigned' });
    const hex = createHash('sha256').update('body').digest('hex');
    const req2 = await presign({ path: '/b/k', method: 'PUT', headers: { 'x-amz-content-sha256': hex } });
    assert.deepEqual(ok(authenticate(req2, options())).payload, { kind: 'sha256', hex });
  });

  it('URL without X-Amz-Content-Sha256 (botocore / minio-go style) signs UNSIGNED-PAYLOAD', () => {
    const scope = '20250314/us-east-1/s3/aws4_request';
    const params: Record<string, string> = {
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Credential': `${AKID}/${scope}`, 'X-Amz-Date': '20250314T150926Z',
      'X-Amz-Expires': '600', 'X-Amz-SignedHeaders': 'host', 'response-content-disposition': 'attachment; filename="a b.txt"',
    };
    const enc = Object.keys(params).sort().map((k) => `${uriEncode(k)}=${uriEncode(params[k]!)}`).join('&');
    const canonical = ['GET', '/bucket/a%20b.txt', enc, `host:${HOST}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
    const sts = ['AWS4-HMAC-SHA256', '20250314T150926Z', scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const sig = createHmac('sha256', deriveSigningKey(SECRET, '20250314', REGION, 's3')).update(sts).digest('hex');
    const req: AuthRequest = { method: 'GET', rawPath: '/bucket/a%20b.txt', rawQuery: `${enc}&X-Amz-Signature=${sig}`, headers: { host: HOST } };
    assert.deepEqual(ok(authenticate(req, options())).payload, { kind: 'unsigned' });
  });

  it('signed extra headers must be sent as signed', async () => {
    const req = await presign({ path: '/b/k', headers: { 'if-match': '"abc"' } });
    assert.match(req.rawQuery, /X-Amz-SignedHeaders=host%3Bif-match/);
    ok(authenticate(req, options()));
    fails(authenticate({ ...req, headers: { ...req.headers, 'if-match': '"zzz"' } }, options()), 'SignatureDoesNotMatch');
  });

  it('expiry: valid up to date+expires, then AccessDenied "Request has expired"', async () => {
    const req = await presign({ path: '/b/k' }, 3600);
    ok(authenticate(req, options({ now: new Date(NOW.getTime() + 3600_000) })));
    fails(authenticate(req, options({ now: new Date(NOW.getTime() + 3601_000) })), 'AccessDenied', 403, /^Request has expired$/);
    fails(authenticate(req, options({ now: new Date(NOW.getTime() + 30 * 86_400_000) })), 'AccessDenied', 403, /expired/);
  });

  it('not valid yet when dated in the future beyond the skew', async () => {
    const req = await presign({ path: '/b/k', date: new Date(NOW.getTime() + 3600_000) }, 7200);
    fails(authenticate(req, options()), 'AccessDenied', 403, /not valid yet/);
    ok(authenticate(await presign({ path: '/b/k', date: new Date(NOW.getTime() + 60_000) }), options()));
  });

  it('X-Amz-Expires over a week or invalid -> AuthorizationQueryParametersError', async () => {
    const req = await presign({ path: '/b/k' });
    fails(authenticate(setQueryParam(req, 'X-Amz-Expires', '604801'), options()), 'AuthorizationQueryParametersError', 400, /604800/);
    fails(authenticate(setQueryParam(req, 'X-Amz-Expires', 'soon'), options()), 'AuthorizationQueryParametersError', 400, /number/);
    fails(authenticate(setQueryParam(req, 'X-Amz-Expires', '-5'), options()), 'AuthorizationQueryParametersError', 400, /non-negative/);
    fails(authenticate(setQueryParam(req, 'X-Amz-Expires', '3600'), options({ maxPresignedExpiresSeconds: 600 })), 'AuthorizationQueryParametersError');
    // a valid value other than the signed one breaks the signature
    fails(authenticate(setQueryParam(req, 'X-Amz-Expires', '3600'), options()), 'SignatureDoesNotMatch');
  });

  it('missing, repeated or malformed parameters -> AuthorizationQueryParametersError', async () => {
    const req = await presign({ path: '/b/k' });
    const without = (name: string): AuthRequest => ({ ...req, rawQuery: req.rawQuery.split('&').filter((p) => !p.startsWith(`${name}=`)).join('&') });
    for (const name of ['X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Algorithm']) {
      fails(authenticate(without(name), options()), 'AuthorizationQueryParametersError', 400);
    }
    fails(authenticate({ ...req, rawQuery: `${req.rawQuery}&X-Amz-Signature=${'0'.repeat(64)}` }, options()), 'AuthorizationQueryParametersError');
    fails(authenticate(setQueryParam(req, 'X-Amz-Algorithm', 'AWS4-HMAC-SHA512'), options()), 'AuthorizationQueryParametersError');
    fails(authenticate(setQueryParam(req, 'X-Amz-Date', '2025-03-14T15:09:26Z'), options()), 'AuthorizationQueryParametersError');
  });

  it('wrong region in the scope -> AuthorizationQueryParametersError', async () => {
    fails(authenticate(await presign({ path: '/b/k', region: 'ap-south-1' }), options()), 'AuthorizationQueryParametersError', 400, /region/);
  });

  it('tampered query or path -> SignatureDoesNotMatch', async () => {
    const req = await presign({ path: '/b/k', query: { versionId: 'v1' } });
    fails(authenticate({ ...req, rawQuery: req.rawQuery.replace('versionId=v1', 'versionId=v2') }, options()), 'SignatureDoesNotMatch', 403);
    fails(authenticate({ ...req, rawQuery: `${req.rawQuery}&acl` }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, rawPath: '/b/other' }, options()), 'SignatureDoesNotMatch');
    fails(authenticate({ ...req, method: 'PUT' }, options()), 'SignatureDoesNotMatch');
  });

  it('unknown key -> InvalidAccessKeyId; with an Authorization header -> InvalidArgument', async () => {
    fails(authenticate(await presign({ path: '/b/k', accessKeyId: 'AKIDNOPE' }), options()), 'InvalidAccessKeyId', 403);
    const req = await presign({ path: '/b/k' });
    fails(authenticate({ ...req, headers: { ...req.headers, authorization: 'AWS4-HMAC-SHA256 Credential=x' } }, options()), 'InvalidArgument');
  });

  it('signed streaming payload is refused in a URL', async () => {
    const req = await presign({ path: '/b/k', method: 'PUT', headers: { 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' } });
    fails(authenticate(req, options()), 'InvalidRequest');
  });
});
