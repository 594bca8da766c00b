// Pieces shared by the operation families.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Context } from '../../context.ts';
import type { Bucket, LockMode, StoredHeaders, Version } from '../../meta/types.ts';
import { S3Error } from '../errors.ts';
import { MAX_KEY_BYTES } from '../names.ts';
import { header, type S3Request } from '../request.ts';

const VERSION_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._';
/** 32 random characters, the shape of AWS version ids */
export function newVersionId(): string {
  const b = randomBytes(32);
  let s = '';
  for (const x of b) s += VERSION_ALPHABET[x & 63];
  return s;
}

export function newUploadId(): string {
  return randomBytes(24).toString('base64url');
}

/** The bucket addressed by the request; NoSuchBucket if it does not exist. */
export function requireBucket(ctx: Context, r: S3Request): Bucket {
  const b = r.bucket !== null ? ctx.meta.bucket(r.bucket) : undefined;
  if (!b) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { fields: { BucketName: r.bucket ?? '' } });
  return b;
}

export function requireKey(r: S3Request): string {
  const key = r.key;
  if (key === null) throw new S3Error('InvalidRequest', 'A key is required');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error('KeyTooLongError', 'Your key is too long');
  return key;
}

const STORED = ['content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires', 'x-amz-website-redirect-location'];

/** user metadata (x-amz-meta-*) and the standard headers S3 stores and returns; bounded like AWS (2 KiB) */
export function storedHeaders(r: S3Request): StoredHeaders {
  const out: StoredHeaders = {};
  let metaBytes = 0;
  for (const [name, value] of Object.entries(r.headers)) {
    if (value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : value;
    if (name.startsWith('x-amz-meta-')) {
      metaBytes += name.length - 11 + Buffer.byteLength(v);
      out[name] = v;
    } else if (STORED.includes(name)) {
      // content-encoding "aws-chunked" describes the transfer, not the object
      if (name === 'content-encoding') {
        const rest = v.split(',').map((s) => s.trim()).filter((s) => s && s !== 'aws-chunked').join(',');
        if (rest) out[name] = rest;
      } else out[name] = v;
    }
  }
  if (metaBytes > r.limits.maxUserMetadataBytes) throw new S3Error('MetadataTooLarge', 'Your metadata headers exceed the maximum allowed metadata size.');
  return out;
}

export function contentType(r: S3Request): string {
  return header(r, 'content-type') || 'binary/octet-stream';
}

export interface LockSettings { mode: LockMode | null; retainUntil: number | null; legalHold: boolean }

export function parseLockMode(v: string | undefined): LockMode | null {
  if (v === undefined || v === '') return null;
  if (v === 'GOVERNANCE' || v === 'COMPLIANCE') return v;
  throw new S3Error('InvalidArgument', 'Unknown wormMode directive.');
}

export function parseDate(v: string, what: string): number {
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new S3Error('InvalidArgument', `The ${what} is not a valid date.`);
  return t;
}

/** object lock of a new version: explicit x-amz-object-lock-* headers, else the bucket's default retention */
export function lockForNewVersion(r: S3Request, bucket: Bucket, now: number): LockSettings {
  const mode = parseLockMode(header(r, 'x-amz-object-lock-mode'));
  const untilRaw = header(r, 'x-amz-object-lock-retain-until-date');
  const hold = header(r, 'x-amz-object-lock-legal-hold');
  if (hold !== undefined && hold !== 'ON' && hold !== 'OFF') throw new S3Error('InvalidArgument', 'Legal Hold must be either of ON or OFF');
  if ((mode === null) !== (untilRaw === undefined)) {
    throw new S3Error('InvalidArgument', 'x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied');
  }
  const legalHold = hold === 'ON';
  if (mode !== null) {
    const until = parseDate(untilRaw!, 'retain until date');
    if (until <= now) throw new S3Error('InvalidArgument', 'The retain until date must be in the future!');
    return { mode, retainUntil: until, legalHold };
  }
  if (bucket.lockMode) {
    const until = new Date(now);
    if (bucket.lockDays) until.setUTCDate(until.getUTCDate() + bucket.lockDays);
    if (bucket.lockYears) until.setUTCFullYear(until.getUTCFullYear() + bucket.lockYears);
    return { mode: bucket.lockMode, retainUntil: until.getTime(), legalHold };
  }
  return { mode: null, retainUntil: null, legalHold };
}

export const quoteEtag = (etag: string | null) => (etag ? `"${etag}"` : '');

/** Response headers describing a version (GET/HEAD). */
export function versionHeaders(v: Version): Record<string, string | number> {
  const h: Record<string, string | number> = {
    'last-modified': new Date(v.lastModified).toUTCString(),
    etag: quoteEtag(v.etag),
    'x-amz-version-id': v.versionId,
    'content-type': v.contentType ?? 'binary/octet-stream',
    'accept-ranges': 'bytes',
  };
  for (const [k, val] of Object.entries(v.headers)) h[k] = val;
  if (v.retentionMode && v.retainUntil !== null) {
    h['x-amz-object-lock-mode'] = v.retentionMode;
    h['x-amz-object-lock-retain-until-date'] = new Date(v.retainUntil).toISOString();
  }
  if (v.legalHold) h['x-amz-object-lock-legal-hold'] = 'ON';
  if (v.blobs.length > 1) h['x-amz-mp-parts-count'] = v.blobs.length;
  return h;
}

/** The bytes [start, end] of a version, read across its blobs in order. */
export async function versionBody(ctx: Context, v: Version, start: number, end: number): Promise<Readable> {
  const pieces: Array<{ id: string; from: number; to: number }> = [];
  let offset = 0;
  for (const [id, size] of v.blobs) {
    const a = Math.max(start, offset);
    const b = Math.min(end, offset + size - 1);
    if (a <= b) pieces.push({ id, from: a - offset, to: b - offset });
    offset += size;
  }
  if (pieces.length === 0) return Readable.from([]);
  if (pieces.length === 1) return ctx.blobs.read(pieces[0]!.id, pieces[0]!.from, pieces[0]!.to);
  // open the first piece now so a missing blob fails before the response starts
  const first = await ctx.blobs.read(pieces[0]!.id, pieces[0]!.from, pieces[0]!.to);
  return Readable.from((async function* () {
    yield* first;
    for (const p of pieces.slice(1)) yield* await ctx.blobs.read(p.id, p.from, p.to);
  })(), { objectMode: false });
}

/** Declared body size (decoded length for aws-chunked), checked against a limit before reading. */
export function declaredLength(r: S3Request, max: number): number | undefined {
  const raw = header(r, 'x-amz-decoded-content-length') ?? header(r, 'content-length');
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new S3Error('InvalidArgument', 'Invalid content length');
  if (n > max) throw new S3Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size', { fields: { MaxSizeAllowed: String(max), ProposedSize: String(n) } });
  return n;
}
