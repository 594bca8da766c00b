// Retention policy evaluation: which snapshots of ONE backup name are kept, which expire. Pure: no
// clock, no I/O; the caller passes `now` and the snapshot list and acts on the answer.
//
// SNAPSHOT  { id: string; time: number } -- time in milliseconds since the epoch, UTC. Ids are unique.
//
// POLICY (JSON written by operators; parseRetentionPolicy validates it strictly and throws
// RetentionPolicyError naming the offending field):
//   { "keepWithin": "30d" }                                  keep every snapshot younger than the span
//   { "tiers": [ {"span":"7d","keep":"all"},                  all snapshots of the last 7 days,
//                {"span":"3w","keep":3,"per":"week"},         then 3 per week for the 3 weeks before,
//                {"span":"8w","keep":1,"per":"week"},         then 1 per week for the 8 weeks before,
//                {"span":"12m","keep":1,"per":"month"} ] }    then 1 per month for the 12 months before
//   Both fields may be given (keepWithin then keeps in addition to the tiers); at least one must be.
//   Any other field, at the top or in a tier, is an error. The value must already be parsed JSON (an
//   object), not JSON text.
//   span:  an integer 1..1000 immediately followed by a unit, lower case, no spaces: d = day (24 h),
//          w = week (7 x 24 h), m = calendar month, y = calendar year (12 calendar months).
//   keep:  "all", or an integer 1..100 together with "per": "day" | "week" | "month".
//          "per" is required with a number and forbidden with "all". 1 to 20 tiers.
//
// EVALUATION at time `now` (all calendar arithmetic in UTC; every window excludes its older end and
// includes its newer end):
// 1. Future: a snapshot with time > now is kept (clock skew), reason "future".
// 2. Tiers are consecutive windows going back from now: tier 1 covers (B1, B0], tier 2 (B2, B1], ...
//    with B0 = now and Bk = B(k-1) minus the span of tier k. For d and w that is a subtraction of
//    milliseconds. For m and y it is calendar arithmetic from the previous boundary: same time of day,
//    month moved back by the count (y: 12 x count), day of month clamped to the length of the target
//    month (2026-03-31 minus 1m = 2026-02-28; minus 1m again = 2026-01-28, since each step starts from
//    the previous boundary).
//    keep "all": every snapshot in the tier's window is kept, reason "tier K: all within <span>".
//    keep N per P: periods are absolute UTC calendar periods -- day = UTC date, week = ISO week
//    (Monday 00:00 UTC to the next Monday), month = calendar month -- not periods counted from now.
//    Each period is cut into N equal slices by milliseconds: a time t of a period [S, E) is in slice
//    floor((t - S) * N / (E - S)) + 1. In every slice, the newest snapshot whose time lies inside the
//    tier's window is kept (so "3 per week" keeps a spread over the week, not the 3 newest). A period
//    may straddle two tiers; each tier only considers the part inside its own window. Reason
//    "tier K: newest of <period> slice J/N" (without " slice J/N" when N = 1); <period> is
//    2026-11-20, 2026-W47 (ISO week-numbering year) or 2026-11.
// 3. keepWithin: every snapshot in (now - span, now] is kept (same span arithmetic, from now),
//    reason "keepWithin <span>".
// 4. Floor that no policy lowers: for each of the last 7 UTC dates (today's and the 6 before), the
//    newest snapshot of that date (not after now) is kept, reason "floor: newest of 2026-11-20".
//    Calendar dates, not sliding 24-hour windows: evaluated again and again, a sliding window would
//    pass the role to each new snapshot and expire the one before. It applies to every non-null policy.
// 5. Everything else expires, in particular every snapshot older than the last tier that neither
//    keepWithin nor the floor keeps. A snapshot kept by any rule is kept; its reason is that of the
//    first matching rule in the order above (future, tier, keepWithin, floor).
// A null policy (no policy configured) keeps everything, reason "no policy".
// "Newest" means greatest time; between equal times, the greatest id (plain string comparison).
// Result: `keep` maps id -> reason, in order oldest first; `expire` lists ids oldest first (ties by id).
// Cost: one sort, then O(n) plus O(log n) per tier -- fine for 100,000 snapshots.
//
// NOTE for the deleting caller: representatives are chosen among the snapshots that still exist, so
// running the evaluation daily and deleting what expires can keep, e.g., a month's last surviving
// snapshot rather than its last-day one. Within one tier a slice's representative only ever moves to
// a newer snapshot entering that tier; when a period moves to a sparser tier (3/week -> 1/week) the
// extra representatives expire, as the policy asks.

export interface Snapshot { readonly id: string; readonly time: number }

export type SpanUnit = 'd' | 'w' | 'm' | 'y';
export interface Span { readonly count: number; readonly unit: SpanUnit }
export type RetentionPeriod = 'day' | 'week' | 'month';
export type RetentionTier =
  | { readonly span: Span; readonly keep: 'all' }
  | { readonly span: Span; readonly keep: number; readonly per: RetentionPeriod };
export interface RetentionPolicy { readonly keepWithin: Span | null; readonly tiers: readonly RetentionTier[] }

export interface RetentionResult { keep: Map<string, string>; expire: string[] }

export class RetentionPolicyError extends Error {
  /** JSON path of the offending field, e.g. `tiers[1].keep`; '' for the policy as a whole. */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`retention policy${field ? ` field ${field}` : ''}: ${message}`);
    this.name = 'RetentionPolicyError';
    this.field = field;
  }
}

export const MAX_TIERS = 20;
export const MAX_SPAN_COUNT = 1000;
export const MAX_KEEP = 100;
export const FLOOR_DAYS = 7;

const DAY = 86_400_000;
const PERIODS: readonly RetentionPeriod[] = ['day', 'week', 'month'];
const TOP_FIELDS = ['keepWithin', 'tiers'];
const TIER_FIELDS = ['span', 'keep', 'per'];

// ---------------------------------------------------------------------------------------------
// Parsing and description

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkFields(obj: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new RetentionPolicyError(`${path}${path ? '.' : ''}${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
    }
  }
}

const SPAN_RE = /^([1-9][0-9]{0,3})([dwmy])$/;

function parseSpan(v: unknown, path: string): Span {
  const m = typeof v === 'string' ? SPAN_RE.exec(v) : null;
  const count = m ? Number(m[1]) : NaN;
  if (!m || count > MAX_SPAN_COUNT) {
    throw new RetentionPolicyError(path,
      `must be a span: an integer from 1 to ${MAX_SPAN_COUNT} followed by d (days), w (weeks), m (months) or y (years), e.g. "30d"; got ${describeValue(v)}`);
  }
  return { count, unit: m[2] as SpanUnit };
}

function parseTier(v: unknown, path: string): RetentionTier {
  if (!isPlainObject(v)) {
    throw new RetentionPolicyError(path, `must be an object like {"span":"7d","keep":"all"} or {"span":"3w","keep":3,"per":"week"}; got ${describeValue(v)}`);
  }
  checkFields(v, TIER_FIELDS, path);
  if (!('span' in v)) throw new RetentionPolicyError(`${path}.span`, 'is required');
  const span = parseSpan(v.span, `${path}.span`);
  if (!('keep' in v)) throw new RetentionPolicyError(`${path}.keep`, 'is required ("all" or an integer)');
  const keep = v.keep;
  if (keep === 'all') {
    if ('per' in v) throw new RetentionPolicyError(`${path}.per`, 'must not be given when keep is "all"');
    return { span, keep: 'all' };
  }
  if (typeof keep !== 'number' || !Number.isInteger(keep) || keep < 1 || keep > MAX_KEEP) {
    throw new RetentionPolicyError(`${path}.keep`, `must be "all" or an integer from 1 to ${MAX_KEEP}; got ${describeValue(keep)}`);
  }
  if (!('per' in v)) throw new RetentionPolicyError(`${path}.per`, 'is required when keep is a number: "day", "week" or "month"');
  const per = v.per;
  if (typeof per !== 'string' || !(PERIODS as readonly string[]).includes(per)) {
    throw new RetentionPolicyError(`${path}.per`, `must be "day", "week" or "month"; got ${describeValue(per)}`);
  }
  return { span, keep, per: per as RetentionPeriod };
}

/** Validates a policy as written by an operator (already JSON-parsed). Throws RetentionPolicyError. */
export function parseRetentionPolicy(json: unknown): RetentionPolicy {
  if (!isPlainObject(json)) {
    throw new RetentionPolicyError('', `must be a JSON object like {"keepWithin":"30d"} or {"tiers":[...]}; got ${describeValue(json)}`);
  }
  checkFields(json, TOP_FIELDS, '');
  if (!('keepWithin' in json) && !('tiers' in json)) {
    throw new RetentionPolicyError('', 'must set "keepWithin", "tiers" or both');
  }
  const keepWithin = 'keepWithin' in json ? parseSpan(json.keepWithin, 'keepWithin') : null;
  const tiers: RetentionTier[] = [];
  if ('tiers' in json) {
    const t = json.tiers;
    if (!Array.isArray(t)) throw new RetentionPolicyError('tiers', `must be an array of tiers; got ${describeValue(t)}`);
    if (t.length === 0) throw new RetentionPolicyError('tiers', 'must contain at least one tier');
    if (t.length > MAX_TIERS) throw new RetentionPolicyError('tiers', `must contain at most ${MAX_TIERS} tiers; got ${t.length}`);
    t.forEach((tier, i) => tiers.push(parseTier(tier, `tiers[${i}]`)));
  }
  return { keepWithin, tiers };
}

export function formatSpan(s: Span): string { return `${s.count}${s.unit}`; }

/** One human-readable line. */
export function describeRetentionPolicy(p: RetentionPolicy | null): string {
  if (!p) return 'no retention policy: every snapshot is kept';
  const parts: string[] = [];
  if (p.keepWithin) parts.push(`every snapshot younger than ${formatSpan(p.keepWithin)}`);
  if (p.tiers.length) {
    parts.push(p.tiers.map((t, i) => {
      const what = t.keep === 'all' ? 'all snapshots' : `${t.keep} per ${t.per}`;
      return i === 0 ? `${what} for the last ${formatSpan(t.span)}` : `then ${what} for ${formatSpan(t.span)} more`;
    }).join(', '));
  }
  return `keep ${parts.join('; and ')}; always the newest snapshot of each of the last ${FLOOR_DAYS} days and any dated in the future; everything else expires`;
}

// ---------------------------------------------------------------------------------------------
// UTC calendar arithmetic (proleptic Gregorian, on day numbers; no Date, so no two-digit-year quirks)

const floorDiv = (a: number, b: number) => Math.floor(a / b);

/** Days since 1970-01-01 of y-m-d (m 1..12). H. Hinnant's days_from_civil. */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = floorDiv(y, 400);
  const yoe = y - era * 400;
  const doy = floorDiv(153 * (m + (m > 2 ? -3 : 9)) + 2, 5) + d - 1;
  const doe = yoe * 365 + floorDiv(yoe, 4) - floorDiv(yoe, 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z: number): { y: number; m: number; d: number } {
  z += 719468;
  const era = floorDiv(z, 146097);
  const doe = z - era * 146097;
  const yoe = floorDiv(doe - floorDiv(doe, 1460) + floorDiv(doe, 36524) - floorDiv(doe, 146096), 365);
  const doy = doe - (365 * yoe + floorDiv(yoe, 4) - floorDiv(yoe, 100));
  const mp = floorDiv(5 * doy + 2, 153);
  const d = doy - floorDiv(153 * mp + 2, 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return { y: yoe + era * 400 + (m <= 2 ? 1 : 0), m, d };
}

function daysInMonth(y: number, m: number): number {
  return daysFromCivil(m === 12 ? y + 1 : y, m === 12 ? 1 : m + 1, 1) - daysFromCivil(y, m, 1);
}

function subtractMonths(t: number, months: number): number {
  const days = floorDiv(t, DAY);
  const msOfDay = t - days * DAY;
  const { y, m, d } = civilFromDays(days);
  const total = y * 12 + (m - 1) - months;
  const ny = floorDiv(total, 12);
  const nm = total - ny * 12 + 1;
  return daysFromCivil(ny, nm, Math.min(d, daysInMonth(ny, nm))) * DAY + msOfDay;
}

/** `t` minus the span: milliseconds for d/w, calendar months (day clamped) for m/y. */
export function subtractSpan(t: number, s: Span): number {
  switch (s.unit) {
    case 'd': return t - s.count * DAY;
    case 'w': return t - s.count * 7 * DAY;
    case 'm': return subtractMonths(t, s.count);
    case 'y': return subtractMonths(t, s.count * 12);
  }
}

const pad = (n: number, w: number) => (n < 0 ? '-' + String(-n).padStart(w, '0') : String(n).padStart(w, '0'));

interface PeriodInfo { start: number; end: number; label: string }

/** The absolute UTC period of kind `per` that contains t. */
function periodOf(t: number, per: RetentionPeriod): PeriodInfo {
  const days = floorDiv(t, DAY);
  if (per === 'day') {
    const { y, m, d } = civilFromDays(days);
    return { start: days * DAY, end: (days + 1) * DAY, label: `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}` };
  }
  if (per === 'week') {
    const monday = days - (((days + 3) % 7) + 7) % 7; // 1970-01-01 was a Thursday
    const thursday = monday + 3; // the ISO week belongs to the year of its Thursday
    const isoYear = civilFromDays(thursday).y;
    const week = floorDiv(thursday - daysFromCivil(isoYear, 1, 1), 7) + 1;
    return { start: monday * DAY, end: (monday + 7) * DAY, label: `${pad(isoYear, 4)}-W${pad(week, 2)}` };
  }
  const { y, m } = civilFromDays(days);
  const start = daysFromCivil(y, m, 1);
  return { start: start * DAY, end: (start + daysInMonth(y, m)) * DAY, label: `${pad(y, 4)}-${pad(m, 2)}` };
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/** Index of the first element of `s` (sorted by time) with time > t. */
function firstAfter(s: readonly Snapshot[], t: number): number {
  let lo = 0, hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s[mid]!.time > t) hi = mid; else lo = mid + 1;
  }
  return lo;
}

const byTimeThenId = (a: Snapshot, b: Snapshot) => (a.time - b.time) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export function evaluateRetention(policy: RetentionPolicy | null, snapshots: readonly Snapshot[], now: number): RetentionResult {
  if (!Number.isFinite(now)) throw new TypeError(`evaluateRetention: now must be a finite number of milliseconds, got ${now}`);
  const seen = new Set<string>();
  for (const s of snapshots) {
    if (typeof s.id !== 'string') throw new TypeError('evaluateRetention: snapshot id must be a string');
    if (!Number.isFinite(s.time)) throw new TypeError(`evaluateRetention: snapshot ${s.id} has a non-finite time`);
    if (seen.has(s.id)) throw new TypeError(`evaluateRetention: duplicate snapshot id ${s.id}`);
    seen.add(s.id);
  }
  const sorted = [...snapshots].sort(byTimeThenId);
  const n = sorted.length;
  const keep = new Map<string, string>();
  if (!policy) {
    for (const s of sorted) keep.set(s.id, 'no policy');
    return { keep, expire: [] };
  }
  const reason: (string | undefined)[] = new Array(n);
  const mark = (i: number, r: string) => { if (reason[i] === undefined) reason[i] = r; };
  // indices [lo, hi) hold the snapshots with from < time <= to
  const range = (from: number, to: number): [number, number] => [firstAfter(sorted, from), firstAfter(sorted, to)];

  // 1. future
  for (let i = firstAfter(sorted, now); i < n; i++) mark(i, 'future');

  // 2. tiers
  let upper = now;
  policy.tiers.forEach((tier, k) => {
    const lower = subtractSpan(upper, tier.span);
    const [lo, hi] = range(lower, upper);
    const name = `tier ${k + 1}`;
    if (tier.keep === 'all') {
      const r = `${name}: all within ${formatSpan(tier.span)}`;
      for (let i = lo; i < hi; i++) mark(i, r);
    } else {
      // newest first: the first snapshot met in a (period, slice) is its newest inside the window
      const perSlices = tier.keep;
      let p: PeriodInfo | null = null;
      let lastSlice = -1;
      for (let i = hi - 1; i >= lo; i--) {
        const t = sorted[i]!.time;
        if (!p || t < p.start) { p = periodOf(t, tier.per); lastSlice = -1; }
        const slice = Math.min(perSlices - 1, Math.floor(((t - p.start) * perSlices) / (p.end - p.start)));
        if (slice !== lastSlice) {
          lastSlice = slice;
          mark(i, `${name}: newest of ${p.label}${perSlices > 1 ? ` slice ${slice + 1}/${perSlices}` : ''}`);
        }
      }
    }
    upper = lower;
  });

  // 3. keepWithin
  if (policy.keepWithin) {
    const [lo, hi] = range(subtractSpan(now, policy.keepWithin), now);
    const r = `keepWithin ${formatSpan(policy.keepWithin)}`;
    for (let i = lo; i < hi; i++) mark(i, r);
  }

  // 4. floor, on UTC calendar dates: sliding 24-hour windows would hand the "newest of day i" role
  // to a new snapshot at every evaluation and expire the previous one, so that a policy evaluated
  // every minute would keep almost nothing older than a day
  const today = periodOf(now, 'day').start;
  for (let day = 0; day < FLOOR_DAYS; day++) {
    const date = periodOf(today - day * DAY, 'day');
    const [lo, hi] = range(date.start - 1, Math.min(date.end - 1, now));
    if (hi > lo) mark(hi - 1, `floor: newest of ${date.label}`);
  }

  const expire: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = reason[i];
    if (r === undefined) expire.push(sorted[i]!.id); else keep.set(sorted[i]!.id, r);
  }
  return { keep, expire };
}
