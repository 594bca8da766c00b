// End-to-end against the real AWS SDK for JavaScript v3: its requests are captured by a request
// handler (no network) and fed to authenticate() and createBodyVerifier() exactly as the gateway
// would receive them: signed headers, unsigned aws-chunked bodies with checksum trailers,
// checksum headers, presigning through the signer with the S3 conventions.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3Client, PutObjectCommand, UploadPartCommand, ListObjectsV2Command, type ChecksumAlgorithm as SdkChecksum } from '@aws-sdk/client-s3';
import { buildQueryString, HttpResponse, type HttpRequest } from '@smithy/core/protocols';
import { authenticate, createBodyVerifier, type AuthRequest, type BodyResult } from '../src/sigv4/index.ts';

const AKID = 'AKIDSDKTEST000000001';
const SECRET = 'sdk/secret+with=odd chars';

interface Captured { req: AuthRequest; body: Buffer }

/** An S3 client whose transport records the request and answers 200. */
function capturingClient(): { client: S3Client; captured: Captured[] } {
  const captured: Captured[] = [];
  const client = new S3Client({
    region: 'us-east-1', endpoint: 'https://s3.shelter.test', forcePathStyle: true,
    credentials: { accessKeyId: AKID, secretAccessKey: SECRET },
    requestHandler: {
      async handle(request: HttpRequest) {
        const chunks: Buffer[] = [];
        const b = request.body as unknown;
        if (typeof b === 'string' || b instanceof Uint8Array) chunks.push(Buffer.from(b));
        else if (b && typeof (b as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
          for await (const c of b as AsyncIterable<string | Uint8Array>) chunks.push(Buffer.from(c));
        }
        const headers: IncomingHttpHeaders = {};
        for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = Buffer.from(v, 'utf8').toString('latin1');
        headers.host ??= request.port ? `${request.hostname}:${request.port}` : request.hostname;
        captured.push({
          req: { method: request.method, rawPath: request.path, rawQuery: buildQueryString(request.query ?? {}), headers },
          body: Buffer.concat(chunks),
        });
        const xml = request.method === 'GET'
          ? '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>'
          : '';
        return { response: new HttpResponse({ statusCode: 200, headers: { etag: '"x"' }, body: Readable.from([Buffer.from(xml)]) }) };
      },
    } as never,
  });
  return { client, captured };
}

async function verify(c: Captured, now = new Date()): Promise<{ out: Buffer; result: BodyResult; payloadKind: string }> {
  const auth = authenticate(c.req, { region: 'us-east-1', now, lookupSecret: (id) => (id === AKID ? SECRET : undefined) });
  if (!auth.ok) assert.fail(`${auth.error.code}: ${auth.error.message}`);
  const v = createBodyVerifier(auth.payload, c.req.headers, { maxBytes: 1 << 30 });
  const out: Buffer[] = [];
  await pipeline(Readable.from([c.body]), v, new Writable({ write(chunk: Buffer, _e, cb) { out.push(chunk); cb(); } }));
  return { out: Buffer.concat(out), result: v.result(), payloadKind: auth.payload.kind };
}

const data = Buffer.from(createHash('sha512').update('sdk').digest('hex').repeat(2000));

describe('AWS SDK for JavaScript v3 requests verify end to end', () => {
  it('ListObjectsV2 with an odd prefix (query canonicalisation)', async () => {
    const { client, captured } = capturingClient();
    await client.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: 'a b+c=d/é~!*', Delimiter: '/', StartAfter: "it's (1)" }));
    const r = authenticate(captured[0]!.req, { region: 'us-east-1', now: new Date(), lookupSecret: () => SECRET });
    assert.ok(r.ok, r.ok ? '' : r.error.message);
  });

  it('PutObject with a stream body: aws-chunked, unsigned payload, CRC32 trailer (the SDK default)', async () => {
    const { client, captured } = capturingClient();
    await client.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'dir/a b+c=é.bin', Body: Readable.from([data.subarray(0, 5000), data.subarray(5000)]), ContentLength: data.length }));
    const c = captured[0]!;
    assert.equal(c.req.headers['x-amz-content-sha256'], 'STREAMING-UNSIGNED-PAYLOAD-TRAILER');
    const { out, result, payloadKind } = await verify(c);
    assert.equal(payloadKind, 'streaming-unsigned-trailer');
    assert.ok(out.equals(data));
    assert.equal(result.checksum?.algorithm, 'CRC32');
  });

  for (const alg of ['CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] as const) {
    it(`PutObject stream with ChecksumAlgorithm ${alg} in the trailer`, async () => {
      const { client, captured } = capturingClient();
      await client.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: Readable.from([data]), ContentLength: data.length, ChecksumAlgorithm: alg as SdkChecksum }));
      const { out, result } = await verify(captured[0]!);
      assert.ok(out.equals(data));
      assert.equal(result.checksum?.algorithm, alg);
    });
  }

  it('PutObject with a Buffer body: checksum as a header, Content-MD5 style integrity', async () => {
    const { client, captured } = capturingClient();
    await client.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: data, ChecksumAlgorithm: 'CRC64NVME' }));
    const c = captured[0]!;
    assert.ok(c.req.headers['x-amz-checksum-crc64nvme']);
    const { out, result } = await verify(c);
    assert.ok(out.equals(data));
    assert.equal(result.checksum?.value, c.req.headers['x-amz-checksum-crc64nvme']);
  });

  it('UploadPart with a stream body', async () => {
    const { client, captured } = capturingClient();
    await client.send(new UploadPartCommand({ Bucket: 'bucket', Key: 'big/object', UploadId: 'up+id/=1', PartNumber: 3, Body: Readable.from([data]), ContentLength: data.length }));
    const { out } = await verify(captured[0]!);
    assert.ok(out.equals(data));
  });

  it('a captured SDK upload whose data is altered in transit is refused (BadDigest)', async () => {
    const { client, captured } = capturingClient();
    await client.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: Readable.from([data]), ContentLength: data.length }));
    const c = captured[0]!;
    const body = Buffer.from(c.body);
    body[body.indexOf('\r\n') + 100]! ^= 1;
    await assert.rejects(verify({ ...c, body }), (e: Error & { code?: string }) => e.code === 'BadDigest');
  });
});
