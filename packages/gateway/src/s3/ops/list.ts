// ListObjectsV2, ListObjects (v1), ListObjectVersions, ListBuckets.
import type { Context } from '../../context.ts';
import type { Version } from '../../meta/types.ts';
import { visibleBucket } from '../../policy/policy.ts';
import { S3Error } from '../errors.ts';
import type { S3Operation, S3Request } from '../request.ts';
import { isoDate, xmlDocument, type XmlNode } from '../xml.ts';
import { quoteEtag, requireBucket } from './common.ts';

/** beyond every string with this prefix in UTF-8 binary order (keys never hold U+10FFFF in practice; the walk re-checks) */
const after = (prefix: string) => prefix + '\u{10FFFF}';

function maxKeys(r: S3Request, name = 'max-keys'): number {
  const raw = r.query.get(name);
  if (raw === null) return 1000;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new S3Error('InvalidArgument', `Provided ${name} not an integer or within integer range`);
  return Math.min(n, 1000);
}

interface Walk<T> { items: T[]; prefixes: string[]; truncated: boolean; last: string | null }

/**
 * The S3 listing walk: entries in key order from a position, filtered by prefix, rolled up into
 * common prefixes at the delimiter, up to `max` results (entries + prefixes).
 * `fetch(fromKey, inclusive, n, tail)` returns up to n entries with key >= / > fromKey, or, when
 * `tail` (the last entry seen) is given, the entries right after it (several entries may share a key).
 */
function walk<T extends { key: string }>(prefix: string, delimiter: string, startKey: string, startInclusive: boolean, max: number,
  fetch: (fromKey: string, inclusive: boolean, n: number, tail: T | null) => T[], startTail: T | null = null): Walk<T> {
  const items: T[] = [];
  const prefixes: string[] = [];
  let last: string | null = null;
  if (max === 0) return { items, prefixes, truncated: false, last };
  let from = startKey < prefix ? prefix : startKey;
  let inclusive = startKey < prefix ? true : startInclusive;
  let tailEntry: T | null = startTail;
  let skipPrefix: string | null = null;
  for (;;) {
    const batch = fetch(from, inclusive, Math.min(1000, max + 1), tailEntry);
    if (batch.length === 0) return { items, prefixes, truncated: false, last };
    for (const e of batch) {
      if (!e.key.startsWith(prefix)) {
        if (e.key > prefix) return { items, prefixes, truncated: false, last };
        continue;
      }
      if (skipPrefix !== null && e.key.startsWith(skipPrefix)) continue;
      const d = delimiter ? e.key.indexOf(delimiter, prefix.length) : -1;
      if (d >= 0) {
        const cp = e.key.slice(0, d + delimiter.length);
        // a prefix at or before the marker was returned by the previous page
        if (startKey !== '' && cp <= startKey) { skipPrefix = cp; continue; }
        if (items.length + prefixes.length >= max) return { items, prefixes, truncated: true, last };
        prefixes.push(cp);
        last = cp;
        skipPrefix = cp;
      } else {
        if (items.length + prefixes.length >= max) return { items, prefixes, truncated: true, last };
        items.push(e);
        last = e.key;
      }
    }
    const tail = batch[batch.length - 1]!;
    if (skipPrefix !== null && tail.key.startsWith(skipPrefix)) { from = after(skipPrefix); inclusive = true; tailEntry = null; }
    else { from = tail.key; inclusive = false; tailEntry = tail; }
  }
}

const owner = (r: S3Request) => ({ ID: r.principal.kind === 'server' ? r.principal.serverId : r.principal.accessKeyId, DisplayName: r.principal.kind === 'server' ? r.principal.bucket : 'operator' });

function encoder(r: S3Request): (s: string) => string {
  const t = r.query.get('encoding-type');
  if (t !== null && t !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request');
  return t === 'url' ? (s) => encodeURIComponent(s).replace(/%2F/g, '/') : (s) => s;
}

function contents(v: Version, enc: (s: string) => string, withOwner: XmlNode | undefined): XmlNode {
  return {
    Key: enc(v.key), LastModified: isoDate(v.lastModified), ETag: quoteEtag(v.etag), ChecksumAlgorithm: v.checksum?.algorithm,
    Size: v.size, Owner: withOwner, StorageClass: 'STANDARD',
  };
}

export const listObjectsV2: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const max = maxKeys(r);
  const token = r.query.get('continuation-token');
  let start = r.query.get('start-after') ?? '';
  if (token !== null) {
    const decoded = Buffer.from(token, 'base64url').toString('utf8');
    if (!token || Buffer.from(decoded).toString('base64url') !== token) throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect');
    start = decoded;
  }
  const enc = encoder(r);
  const res = walk(prefix, delimiter, start, false, max, (from, inc, n) => ctx.meta.listCurrent(bucket.name, from, inc, n));
  const withOwner = r.query.get('fetch-owner') === 'true' ? owner(r) : undefined;
  return xmlOk(xmlDocument('ListBucketResult', {
    Name: bucket.name, Prefix: enc(prefix), Delimiter: delimiter ? enc(delimiter) : undefined, MaxKeys: max,
    EncodingType: r.query.get('encoding-type') ?? undefined, KeyCount: res.items.length + res.prefixes.length,
    ContinuationToken: token ?? undefined, StartAfter: r.query.get('start-after') ? enc(r.query.get('start-after')!) : undefined,
    IsTruncated: res.truncated,
    NextContinuationToken: res.truncated && res.last !== null ? Buffer.from(res.last).toString('base64url') : undefined,
    Contents: res.items.map((v) => contents(v, enc, withOwner)),
    CommonPrefixes: res.prefixes.map((p) => ({ Prefix: enc(p) })),
  }));
};

export const listObjects: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const marker = r.query.get('marker') ?? '';
  const max = maxKeys(r);
  const enc = encoder(r);
  const res = walk(prefix, delimiter, marker, false, max, (from, inc, n) => ctx.meta.listCurrent(bucket.name, from, inc, n));
  return xmlOk(xmlDocument('ListBucketResult', {
    Name: bucket.name, Prefix: enc(prefix), Marker: enc(marker), NextMarker: res.truncated && delimiter && res.last !== null ? enc(res.last) : undefined,
    MaxKeys: max, Delimiter: delimiter ? enc(delimiter) : undefined, EncodingType: r.query.get('encoding-type') ?? undefined, IsTruncated: res.truncated,
    Contents: res.items.map((v) => contents(v, enc, owner(r))),
    CommonPrefixes: res.prefixes.map((p) => ({ Prefix: enc(p) })),
  }));
};

export const listObjectVersions: S3Operation = async (ctx, r) => {
  const bucket = requireBucket(ctx, r);
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const keyMarker = r.query.get('key-marker') ?? '';
  const versionMarker = r.query.get('version-id-marker') ?? '';
  const max = maxKeys(r);
  const enc = encoder(r);
  let markerSeq: number | null = null;
  if (versionMarker) {
    const mv = ctx.meta.version(bucket.name, versionMarker);
    if (!mv || mv.key !== keyMarker) throw new S3Error('InvalidArgument', 'Invalid version id specified');
    markerSeq = mv.seq;
  }
  // entries are versions: the walk's key order, then newest first within a key
  const startTail = markerSeq !== null ? ctx.meta.version(bucket.name, versionMarker) ?? null : null;
  const res = walk<Version>(prefix, delimiter, keyMarker, false, max,
    (from, inc, n, tail) => (tail ? ctx.meta.listVersionsAfter(bucket.name, tail.key, tail.seq, false, n) : ctx.meta.listVersionsAfter(bucket.name, from, null, inc, n)),
    startTail);
  const latest = new Map<string, number>();
  const isLatest = (v: Version) => {
    let s = latest.get(v.key);
    if (s === undefined) { s = ctx.meta.currentVersion(bucket.name, v.key)?.seq ?? -1; latest.set(v.key, s); }
    return s === v.seq;
  };
  const versions: XmlNode[] = [];
  const markers: XmlNode[] = [];
  for (const v of res.items) {
    if (v.deleteMarker) markers.push({ Key: enc(v.key), VersionId: v.versionId, IsLatest: isLatest(v), LastModified: isoDate(v.lastModified), Owner: owner(r) });
    else versions.push({ Key: enc(v.key), VersionId: v.versionId, IsLatest: isLatest(v), LastModified: isoDate(v.lastModified), ETag: quoteEtag(v.etag),
      ChecksumAlgorithm: v.checksum?.algorithm, Size: v.size, StorageClass: 'STANDARD', Owner: owner(r) });
  }
  const lastItem = res.items[res.items.length - 1];
  const nextIsPrefix = res.last !== null && lastItem?.key !== res.last;
  return xmlOk(xmlDocument('ListVersionsResult', {
    Name: bucket.name, Prefix: enc(prefix), KeyMarker: enc(keyMarker), VersionIdMarker: versionMarker, MaxKeys: max,
    Delimiter: delimiter ? enc(delimiter) : undefined, EncodingType: r.query.get('encoding-type') ?? undefined, IsTruncated: res.truncated,
    NextKeyMarker: res.truncated && res.last !== null ? enc(res.last) : undefined,
    NextVersionIdMarker: res.truncated && !nextIsPrefix && lastItem ? lastItem.versionId : undefined,
    Version: versions, DeleteMarker: markers,
    CommonPrefixes: res.prefixes.map((p) => ({ Prefix: enc(p) })),
  }));
};

export const listBuckets: S3Operation = async (ctx, r) => {
  const buckets = ctx.meta.buckets().filter((b) => visibleBucket(r.principal, b.name));
  return xmlOk(xmlDocument('ListAllMyBucketsResult', {
    Owner: owner(r),
    Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: isoDate(b.createdAt) })) },
  }));
};

export function xmlOk(body: string) {
  return { status: 200, headers: { 'content-type': 'application/xml' }, body };
}

export type { Context };
