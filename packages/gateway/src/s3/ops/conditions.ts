// HTTP conditional requests (RFC 9110 section 13, as S3 applies them).
import { S3Error } from '../errors.ts';

type Headers = Record<string, string | string[] | undefined>;

const one = (h: Headers, n: string) => { const v = h[n]; return Array.isArray(v) ? v[0] : v; };
const etagMatches = (list: string, etag: string | null) =>
  list.split(',').map((s) => s.trim().replace(/^W\//, '')).some((t) => t === '*' || (etag !== null && (t === `"${etag}"` || t === etag)));

/**
 * Evaluates If-Match / If-Unmodified-Since (412) and If-None-Match / If-Modified-Since (304).
 * Returns true when the answer is 304 Not Modified; throws PreconditionFailed for 412.
 */
export function checkConditions(h: Headers, etag: string | null, lastModified: number): boolean {
  const ifMatch = one(h, 'if-match');
  const ifUnmodified = one(h, 'if-unmodified-since');
  const ifNoneMatch = one(h, 'if-none-match');
  const ifModified = one(h, 'if-modified-since');
  const seconds = Math.floor(lastModified / 1000) * 1000;
  const fail = (c: string) => new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { fields: { Condition: c } });
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, etag)) throw fail('If-Match');
  } else if (ifUnmodified !== undefined) {
    const t = Date.parse(ifUnmodified);
    if (Number.isFinite(t) && seconds > t) throw fail('If-Unmodified-Since');
  }
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, etag)) return true;
  } else if (ifModified !== undefined) {
    const t = Date.parse(ifModified);
    if (Number.isFinite(t) && seconds <= t) return true;
  }
  return false;
}
