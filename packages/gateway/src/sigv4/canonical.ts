// Building blocks of SigV4 as S3 applies it: URI encoding, canonical query and headers, the
// canonical request, the string to sign, the signing key (cached) and constant-time comparison.
import { createHash, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const ALGORITHM = 'AWS4-HMAC-SHA256';
export const TERMINATOR = 'aws4_request';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

// ---------------------------------------------------------------------------------------------
// URI encoding
// ---------------------------------------------------------------------------------------------

// RFC 3986 unreserved characters: the only bytes SigV4 leaves unencoded.
const UNRESERVED = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~') UNRESERVED[c.charCodeAt(0)] = 1;
const HEX_UPPER = '0123456789ABCDEF';
const ALL_UNRESERVED = /^[A-Za-z0-9\-_.~]*$/;

/** AWS URI encoding of raw bytes: unreserved kept, every other byte as %XX (upper-case hex). */
export function uriEncodeBytes(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (UNRESERVED[b] === 1) out += String.fromCharCode(b);
    else out += `%${HEX_UPPER[b >> 4]}${HEX_UPPER[b & 15]}`;
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Decodes one query component to bytes: %XX escapes, '+' as a space (form encoding, as S3 and
 * other S3 servers read it). A '%' not followed by two hex digits is kept literally rather than
 * rejected: the signature then only matches if the client canonicalised it the same way.
 * Characters above 0x7f can only come from a caller that built the string itself; latin1 range
 * is taken as node's byte decoding, anything above as UTF-8.
 */
export function percentDecode(raw: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length && hexValue(raw.charCodeAt(i + 1)) >= 0 && hexValue(raw.charCodeAt(i + 2)) >= 0) {
      out.push(hexValue(raw.charCodeAt(i + 1)) * 16 + hexValue(raw.charCodeAt(i + 2)));
      i += 2;
    } else if (c === 0x2b) {
      out.push(0x20);
    } else if (c <= 0xff) {
      out.push(c);
    } else {
      const cp = raw.codePointAt(i)!;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) out.push(b);
      if (cp > 0xffff) i++;
    }
  }
  return Buffer.from(out);
}

/** Canonical form of one query name or value: decode, then AWS-encode. */
export function canonicalComponent(raw: string): string {
  if (ALL_UNRESERVED.test(raw)) return raw; // the common case, no allocation
  return uriEncodeBytes(percentDecode(raw));
}

// ---------------------------------------------------------------------------------------------
// Query
// ---------------------------------------------------------------------------------------------

export interface QueryParam {
  /** decoded name and value (UTF-8), to read X-Amz-* parameters */
  name: string;
  value: string;
  /** canonical (re-encoded) name and value, for the canonical query string */
  encName: string;
  encValue: string;
}

/** Splits a raw query string. A parameter without '=' has an empty value; empty pieces ('&&') are skipped. */
export function parseQuery(rawQuery: string): QueryParam[] {
  const params: QueryParam[] = [];
  if (rawQuery === '') return params;
  for (const piece of rawQuery.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const rawName = eq < 0 ? piece : piece.slice(0, eq);
    const rawValue = eq < 0 ? '' : piece.slice(eq + 1);
    params.push({
      name: percentDecode(rawName).toString('utf8'),
      value: percentDecode(rawValue).toString('utf8'),
      encName: canonicalComponent(rawName),
      encValue: canonicalComponent(rawValue),
    });
  }
  return params;
}

/** Parameters sorted by canonical name then value (byte order; all ASCII), joined with '&'. */
export function canonicalQueryString(params: readonly QueryParam[]): string {
  const pairs = params.map((p) => [p.encName, p.encValue] as const);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/** All values of a header, or undefined when absent. */
export function headerValues(headers: IncomingHttpHeaders, name: string): string[] | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : [v];
}

/**
 * One header as a string. Repeated values are joined with ',' so that a header that must have a
 * single well-formed value (a date, a hash, a digest) fails its format check instead of one of
 * the values being picked silently.
 */
export function getHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(',') : v;
}

/** Canonical header value: spaces/tabs runs collapsed, ends trimmed, repeated values joined by ','. */
export function canonicalHeaderValue(values: readonly string[]): string {
  return values.map((v) => v.replace(/[ \t]+/g, ' ').replace(/^ | $/g, '')).join(',');
}

// ---------------------------------------------------------------------------------------------
// Canonical request and signature
// ---------------------------------------------------------------------------------------------

export interface CanonicalInput {
  method: string;
  /** raw path, used verbatim: S3 neither normalises nor double-encodes it */
  rawPath: string;
  canonicalQuery: string;
  /** sorted, lower-case signed header names */
  signedHeaders: readonly string[];
  headers: IncomingHttpHeaders;
  payloadHash: string;
}

export function canonicalRequest(input: CanonicalInput): string {
  let headerBlock = '';
  for (const name of input.signedHeaders) {
    let values = headerValues(input.headers, name);
    // HTTP/2 carries the host as :authority; the client signed it as 'host'.
    if (values === undefined && name === 'host') values = headerValues(input.headers, ':authority');
    headerBlock += `${name}:${canonicalHeaderValue(values ?? [])}\n`;
  }
  return `${input.method}\n${input.rawPath === '' ? '/' : input.rawPath}\n${input.canonicalQuery}\n${headerBlock}\n${input.signedHeaders.join(';')}\n${input.payloadHash}`;
}

/**
 * Bytes of a canonical string. Node hands us header values as the latin1 decoding of the wire
 * bytes, so latin1 gives back exactly what the client hashed; a string with characters beyond
 * latin1 can only come from a caller that built it as Unicode, whose bytes are UTF-8.
 */
function canonicalBytes(s: string): Buffer {
  // eslint-disable-next-line no-control-regex
  return Buffer.from(s, /[^\u0000-\u00ff]/.test(s) ? 'utf8' : 'latin1');
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(typeof data === 'string' ? canonicalBytes(data) : data).digest('hex');
}

export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return `${ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`;
}

export function hmac(key: Buffer | string | KeyObject, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

export function signHex(signingKey: Buffer | KeyObject, toSign: string): string {
  return hmac(signingKey, toSign).toString('hex');
}

// The four-HMAC key derivation runs on every request; keys only change per secret, day, region
// and service, so a small cache removes it from the hot path. Insertion-ordered Map: the oldest
// entry is evicted first, which bounds memory whatever the number of keys.
const KEY_CACHE_MAX = 512;
const keyCache = new Map<string, Buffer>();

export function deriveSigningKey(secret: string, shortDate: string, region: string, service: string): Buffer {
  const cacheKey = `${shortDate}\u0000${region}\u0000${service}\u0000${secret}`;
  const hit = keyCache.get(cacheKey);
  if (hit !== undefined) return hit;
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, shortDate), region), service), TERMINATOR);
  if (keyCache.size >= KEY_CACHE_MAX) {
    const oldest = keyCache.keys().next();
    if (oldest.done !== true) keyCache.delete(oldest.value);
  }
  keyCache.set(cacheKey, key);
  return key;
}

/** For tests: the cache must never grow beyond its bound. */
export function signingKeyCacheSize(): number {
  return keyCache.size;
}

/**
 * Constant-time comparison of a computed hex signature with the one the client sent. Lengths are
 * public (always 64 for a well-formed signature), so a length mismatch returns early.
 */
export function signaturesEqual(expectedHex: string, providedHex: string): boolean {
  const a = Buffer.from(expectedHex, 'latin1');
  const b = Buffer.from(providedHex, 'latin1');
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/** Parses 'YYYYMMDDTHHMMSSZ' (ISO 8601 basic), or returns undefined. */
export function parseAmzDate(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const t = Date.UTC(y, mo - 1, d, h, mi, se);
  const date = new Date(t);
  // Date.UTC rolls over out-of-range fields (month 13, second 61): reject those.
  if (formatAmzDate(date) !== s) return undefined;
  return date;
}

export function formatAmzDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** Parses an RFC 7231 IMF-fixdate ('Fri, 24 May 2013 00:00:00 GMT'), or returns undefined. */
export function parseHttpDate(s: string): Date | undefined {
  if (!HTTP_DATE.test(s)) return undefined;
  const t = Date.parse(s);
  if (!Number.isFinite(t)) return undefined;
  const d = new Date(t);
  if (d.toUTCString() !== s) return undefined; // rejects 31 Feb and similar roll-overs
  return d;
}
