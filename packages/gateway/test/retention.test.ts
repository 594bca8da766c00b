import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeRetentionPolicy, evaluateRetention, parseRetentionPolicy, RetentionPolicyError,
  type RetentionPolicy, type Snapshot,
} from '../src/deletion/retention.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const at = (iso: string) => { const t = Date.parse(iso); assert.ok(Number.isFinite(t), iso); return t; };
const isoDate = (t: number) => new Date(t).toISOString().slice(0, 10);

const DEGRESSIVE = {
  tiers: [
    { span: '7d', keep: 'all' },
    { span: '3w', keep: 3, per: 'week' },
    { span: '8w', keep: 1, per: 'week' },
    { span: '12m', keep: 1, per: 'month' },
  ],
};

const keptIds = (r: { keep: Map<string, string> }) => [...r.keep.keys()].sort();
const countByPrefix = (r: { keep: Map<string, string> }, prefix: string) => [...r.keep.values()].filter((v) => v.startsWith(prefix)).length;

test('table: 400 daily snapshots under the degressive policy keep exactly the expected dates', () => {
  // now = Friday 2026-11-27 04:00 UTC; one snapshot per day at 03:00 UTC, the newest at now - 1 h,
  // the oldest 399 days earlier (2025-10-24). Ids are the snapshot dates.
  const now = at('2026-11-27T04:00:00Z');
  const snapshots: Snapshot[] = [];
  for (let k = 0; k < 400; k++) {
    const time = at('2026-11-27T03:00:00Z') - k * DAY;
    snapshots.push({ id: isoDate(time), time });
  }
  assert.equal(snapshots.at(-1)!.id, '2025-10-24');
  const r = evaluateRetention(parseRetentionPolicy(DEGRESSIVE), snapshots, now);

  // Tier 1, (Nov 20 04:00, Nov 27 04:00]: every snapshot, Sat Nov 21 .. Fri Nov 27.
  const tier1 = ['2026-11-21', '2026-11-22', '2026-11-23', '2026-11-24', '2026-11-25', '2026-11-26', '2026-11-27'];
  // Tier 2, (Oct 30 04:00, Nov 20 04:00] = snapshots Sat Oct 31 .. Fri Nov 20, 3 per ISO week.
  // A week's slices are 56 h: [Mon 00:00, Wed 08:00), [Wed 08:00, Fri 16:00), [Fri 16:00, Mon 00:00),
  // so the newest 03:00 snapshot of each slice is Wednesday, Friday, Sunday.
  //   W44 (Mon Oct 26): only Sat Oct 31 and Sun Nov 1 are in the window -> slice 3: Nov 1.
  //   W45 (Mon Nov 2): Wed Nov 4, Fri Nov 6, Sun Nov 8.   W46 (Mon Nov 9): Nov 11, 13, 15.
  //   W47 (Mon Nov 16): window ends Fri Nov 20 04:00 -> Wed Nov 18 and Fri Nov 20 (its Sat/Sun are tier 1).
  const tier2 = ['2026-11-01', '2026-11-04', '2026-11-06', '2026-11-08', '2026-11-11', '2026-11-13', '2026-11-15', '2026-11-18', '2026-11-20'];
  // Tier 3, (Sep 4 04:00, Oct 30 04:00] = snapshots Sat Sep 5 .. Fri Oct 30, newest per ISO week:
  //   partial week of Mon Aug 31 (Sep 5, 6) -> Sun Sep 6; full weeks -> their Sundays Sep 13 .. Oct 25;
  //   partial week of Mon Oct 26 (Oct 26..30) -> Fri Oct 30. 9 weeks touched by an 8-week window.
  const tier3 = ['2026-09-06', '2026-09-13', '2026-09-20', '2026-09-27', '2026-10-04', '2026-10-11', '2026-10-18', '2026-10-25', '2026-10-30'];
  // Tier 4, (2025-09-04 04:00, 2026-09-04 04:00] (12 calendar months before Sep 4 04:00): newest per month.
  //   Snapshots only start 2025-10-24, so Oct 2025 -> Oct 31; then each month's last day; Feb 2026 has 28 days;
  //   Sep 2026 only has Sep 1..4 inside the window (Sep 5 on is tier 3) -> Sep 4.
  const tier4 = ['2025-10-31', '2025-11-30', '2025-12-31', '2026-01-31', '2026-02-28', '2026-03-31', '2026-04-30',
    '2026-05-31', '2026-06-30', '2026-07-31', '2026-08-31', '2026-09-04'];
  // The 7-day floor (newest of each of the UTC dates Nov 21 .. Nov 27) picks snapshots already in tier 1.

  const expected = [...tier1, ...tier2, ...tier3, ...tier4].sort();
  assert.deepEqual(keptIds(r), expected);
  assert.equal(r.expire.length, 400 - expected.length);
  assert.equal(r.expire[0], '2025-10-24'); // oldest first
  assert.equal(r.expire.at(-1), '2026-11-19');
  assert.deepEqual([...r.expire].sort(), r.expire);
  for (const [prefix, list] of [['tier 1:', tier1], ['tier 2:', tier2], ['tier 3:', tier3], ['tier 4:', tier4]] as const) {
    assert.equal(countByPrefix(r, prefix), list.length, prefix);
    for (const id of list) assert.ok(r.keep.get(id)!.startsWith(prefix), `${id}: ${r.keep.get(id)}`);
  }
  // a few exact reasons (2026-01-01 is a Thursday, so ISO week 1 of 2026 starts Mon 2025-12-29)
  assert.equal(r.keep.get('2026-11-27'), 'tier 1: all within 7d');
  assert.equal(r.keep.get('2026-11-01'), 'tier 2: newest of 2026-W44 slice 3/3');
  assert.equal(r.keep.get('2026-11-04'), 'tier 2: newest of 2026-W45 slice 1/3');
  assert.equal(r.keep.get('2026-11-20'), 'tier 2: newest of 2026-W47 slice 2/3');
  assert.equal(r.keep.get('2026-10-25'), 'tier 3: newest of 2026-W43');
  assert.equal(r.keep.get('2026-09-04'), 'tier 4: newest of 2026-09');
  assert.equal(r.keep.get('2025-10-31'), 'tier 4: newest of 2025-10');
});

test('the 7-day floor holds when the policy keeps less', () => {
  // now Tue 2026-03-10 10:00; snapshots every 6 h at 00/06/12/18 UTC for 30 days, newest Mar 10 06:00.
  const now = at('2026-03-10T10:00:00Z');
  const snapshots: Snapshot[] = [];
  for (let k = 0; k < 120; k++) {
    const time = at('2026-03-10T06:00:00Z') - k * 6 * HOUR;
    snapshots.push({ id: new Date(time).toISOString(), time });
  }
  // floor: the newest of each UTC date Mar 10 .. Mar 4 (not after now): Mar 10 06:00, then 18:00 of Mar 9 .. Mar 4;
  // Mar 10 06:00 and Mar 9 18:00 are kept by the policy itself in both cases below
  const floorDays2to7 = ['2026-03-08', '2026-03-07', '2026-03-06', '2026-03-05', '2026-03-04'].map((d) => `${d}T18:00:00.000Z`);

  const within = evaluateRetention(parseRetentionPolicy({ keepWithin: '1d' }), snapshots, now);
  // keepWithin 1d = (Mar 9 10:00, Mar 10 10:00]: Mar 9 12:00 and 18:00, Mar 10 00:00 and 06:00
  const withinKept = ['2026-03-09T12:00:00.000Z', '2026-03-09T18:00:00.000Z', '2026-03-10T00:00:00.000Z', '2026-03-10T06:00:00.000Z'];
  assert.deepEqual(keptIds(within), [...withinKept, ...floorDays2to7].sort());
  assert.equal(within.keep.get('2026-03-10T06:00:00.000Z'), 'keepWithin 1d');
  assert.equal(within.keep.get('2026-03-08T18:00:00.000Z'), 'floor: newest of 2026-03-08');
  assert.equal(within.keep.get('2026-03-04T18:00:00.000Z'), 'floor: newest of 2026-03-04');
  assert.ok(!within.keep.has('2026-03-03T18:00:00.000Z'), 'nothing older than the 7 dates');

  const tiers = evaluateRetention(parseRetentionPolicy({ tiers: [{ span: '1d', keep: 1, per: 'day' }] }), snapshots, now);
  // the tier window (Mar 9 10:00, Mar 10 10:00] touches UTC days Mar 9 (newest inside: 18:00) and Mar 10 (06:00)
  assert.deepEqual(keptIds(tiers), ['2026-03-09T18:00:00.000Z', '2026-03-10T06:00:00.000Z', ...floorDays2to7].sort());
  assert.equal(tiers.keep.get('2026-03-09T18:00:00.000Z'), 'tier 1: newest of 2026-03-09');

  for (const r of [within, tiers]) {
    // generic form of the guarantee: exactly one per UTC date for the 5 dates before yesterday
    // (each date's newest), nothing from before the 7 dates
    for (let i = 2; i <= 6; i++) {
      const date = new Date(now - i * DAY).toISOString().slice(0, 10);
      const inDay = snapshots.filter((s) => new Date(s.time).toISOString().slice(0, 10) === date);
      const kept = inDay.filter((s) => r.keep.has(s.id));
      assert.equal(kept.length, 1, `date ${date}`);
      assert.equal(kept[0]!.time, Math.max(...inDay.map((s) => s.time)));
    }
    const firstDate = Math.floor(now / DAY) * DAY - 6 * DAY;
    assert.ok(snapshots.every((s) => s.time >= firstDate || !r.keep.has(s.id)));
    assert.equal(r.keep.size + r.expire.length, snapshots.length);
  }
});

test('keepWithin alone, with calendar-month arithmetic and an exclusive older end', () => {
  const now = at('2026-03-31T12:00:00Z');
  const snapshots: Snapshot[] = [];
  for (let t = at('2026-02-20T12:00:00Z'); t <= now; t += DAY) snapshots.push({ id: isoDate(t), time: t });
  snapshots.push({ id: 'just-inside', time: at('2026-02-28T12:00:00.001Z') });
  const r = evaluateRetention(parseRetentionPolicy({ keepWithin: '1m' }), snapshots, now);
  // 2026-03-31 minus one month = 2026-02-31, clamped to 2026-02-28 12:00, which itself is outside
  assert.deepEqual(r.expire, ['2026-02-20', '2026-02-21', '2026-02-22', '2026-02-23', '2026-02-24', '2026-02-25', '2026-02-26', '2026-02-27', '2026-02-28']);
  assert.equal(r.keep.size, 31 + 1);
  assert.ok([...r.keep.values()].every((v) => v === 'keepWithin 1m'));

  // keepWithin 2w with daily snapshots: 14 days (newest at now itself, which is inside)
  const daily: Snapshot[] = [];
  for (let k = 0; k < 40; k++) daily.push({ id: `d${k}`, time: now - k * DAY });
  const w = evaluateRetention(parseRetentionPolicy({ keepWithin: '2w' }), daily, now);
  assert.deepEqual(keptIds(w), Array.from({ length: 14 }, (_, k) => `d${k}`).sort());

  // a year back from a leap day clamps to Feb 28
  const leap = at('2028-02-29T00:00:00Z');
  const y = evaluateRetention(parseRetentionPolicy({ keepWithin: '1y' }), [
    { id: 'boundary', time: at('2027-02-28T00:00:00Z') }, { id: 'inside', time: at('2027-02-28T00:00:00.001Z') },
  ], leap);
  assert.deepEqual(y.expire, ['boundary']);
  assert.deepEqual(keptIds(y), ['inside']);
});

test('month tier boundaries chain from the previous boundary (Mar 31 -> Feb 28 -> Jan 28)', () => {
  const now = at('2026-03-31T12:00:00Z');
  const policy = parseRetentionPolicy({ tiers: [{ span: '1m', keep: 'all' }, { span: '1m', keep: 'all' }] });
  const s = (id: string, iso: string) => ({ id, time: at(iso) });
  const r = evaluateRetention(policy, [
    s('t1', '2026-02-28T12:00:00.001Z'), s('t2-newest', '2026-02-28T12:00:00Z'), s('t2-oldest', '2026-01-28T12:00:00.001Z'),
    s('gone', '2026-01-28T12:00:00Z'),
  ], now);
  assert.equal(r.keep.get('t1'), 'tier 1: all within 1m');
  assert.equal(r.keep.get('t2-newest'), 'tier 2: all within 1m');
  assert.equal(r.keep.get('t2-oldest'), 'tier 2: all within 1m');
  assert.deepEqual(r.expire, ['gone']);
});

test('null policy keeps everything; the empty list gives an empty answer', () => {
  const now = at('2026-06-01T00:00:00Z');
  const snaps = [{ id: 'a', time: now - 1000 * DAY }, { id: 'b', time: now + DAY }, { id: 'c', time: now }];
  const r = evaluateRetention(null, snaps, now);
  assert.deepEqual(keptIds(r), ['a', 'b', 'c']);
  assert.ok([...r.keep.values()].every((v) => v === 'no policy'));
  assert.deepEqual(r.expire, []);
  for (const p of [null, parseRetentionPolicy(DEGRESSIVE)]) {
    const e = evaluateRetention(p, [], now);
    assert.equal(e.keep.size, 0);
    assert.deepEqual(e.expire, []);
  }
});

test('snapshots dated in the future are kept and do not take the floor', () => {
  const now = at('2026-06-01T00:00:00Z');
  const r = evaluateRetention(parseRetentionPolicy({ keepWithin: '1d' }), [
    { id: 'skewed', time: now + 5 * 60_000 }, { id: 'far', time: now + 400 * DAY },
    { id: 'recent', time: now - HOUR }, { id: 'yesterday', time: now - 30 * HOUR }, { id: 'old', time: now - 30 * DAY },
  ], now);
  assert.equal(r.keep.get('skewed'), 'future');
  assert.equal(r.keep.get('far'), 'future');
  assert.equal(r.keep.get('recent'), 'keepWithin 1d');
  assert.equal(r.keep.get('yesterday'), 'floor: newest of 2026-05-30');
  assert.deepEqual(r.expire, ['old']);
});

test('several snapshots in one slice: only the newest inside the window is kept; equal times go to the greater id', () => {
  const now = at('2026-11-27T04:00:00Z'); // Friday
  const policy = parseRetentionPolicy({ tiers: [{ span: '1d', keep: 'all' }, { span: '4w', keep: 2, per: 'week' }] });
  // 2 per week: slices [Mon 00:00, Thu 12:00) and [Thu 12:00, Mon 00:00)
  const s = (id: string, iso: string) => ({ id, time: at(iso) });
  const r = evaluateRetention(policy, [
    // ISO week 2026-W46, Mon Nov 9 .. Sun Nov 15, wholly inside tier 2
    s('mon', '2026-11-09T01:00:00Z'), s('tue', '2026-11-10T05:00:00Z'), s('thu-before-noon', '2026-11-12T11:59:59.999Z'),
    s('thu-noon', '2026-11-12T12:00:00Z'), s('sat', '2026-11-14T08:00:00Z'), s('sun-last-ms', '2026-11-15T23:59:59.999Z'),
    // W45: two snapshots at the same instant in slice 1
    s('a', '2026-11-03T10:00:00Z'), s('b', '2026-11-03T10:00:00Z'),
  ], now);
  assert.deepEqual(keptIds(r), ['b', 'sun-last-ms', 'thu-before-noon']);
  assert.equal(r.keep.get('thu-before-noon'), 'tier 2: newest of 2026-W46 slice 1/2');
  assert.equal(r.keep.get('sun-last-ms'), 'tier 2: newest of 2026-W46 slice 2/2');
  assert.equal(r.keep.get('b'), 'tier 2: newest of 2026-W45 slice 1/2');
  assert.deepEqual(r.expire, ['a', 'mon', 'tue', 'thu-noon', 'sat']);
});

test('a snapshot is identified once: duplicate ids and non-finite times are refused', () => {
  assert.throws(() => evaluateRetention(null, [{ id: 'x', time: 1 }, { id: 'x', time: 2 }], 10), /duplicate snapshot id x/);
  assert.throws(() => evaluateRetention(null, [{ id: 'x', time: NaN }], 10), /non-finite/);
  assert.throws(() => evaluateRetention(null, [], NaN), /now/);
});

// --- stability under daily evaluation with deletion --------------------------------------------

const mondayOf = (t: number) => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - ((d.getUTCDay() + 6) % 7)); };
const monthOf = (t: number) => { const d = new Date(t); return [Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)] as const; };
const dim = (y: number, m: number) => new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
/** Lower boundary of tier k (1-based) of DEGRESSIVE at `now`. */
function tierLower(k: number, now: number): number {
  if (k === 1) return now - 7 * DAY;
  if (k === 2) return now - 28 * DAY;
  if (k === 3) return now - 84 * DAY;
  const b = new Date(now - 84 * DAY);
  const y = b.getUTCFullYear() - 1, m = b.getUTCMonth();
  return Date.UTC(y, m, Math.min(b.getUTCDate(), dim(y, m)), b.getUTCHours(), b.getUTCMinutes());
}

test('stability: evaluated daily with deletion, representatives only move forward and no period is emptied', () => {
  const policy = parseRetentionPolicy(DEGRESSIVE);
  let store: Snapshot[] = [];
  let prevKeep = new Map<string, string>();
  let prevNow = 0;
  const byId = new Map<string, Snapshot>();
  const start = at('2025-01-01T04:00:00Z');
  const counts: number[] = [];
  for (let day = 0; day < 700; day++) {
    const now = start + day * DAY;
    const snap = { id: isoDate(now - HOUR), time: now - HOUR };
    store.push(snap);
    byId.set(snap.id, snap);
    const r = evaluateRetention(policy, store, now);
    const reps = [...r.keep].filter(([, reason]) => reason.includes(': newest of '));
    const holderOf = new Map(reps.map(([id, reason]) => [reason, id] as const));
    assert.equal(holderOf.size, reps.length, 'one representative per (tier, period, slice)');

    // (b) a representative is only replaced by a newer snapshot that has just entered the tier
    for (const [reason, id] of holderOf) {
      const m = /^tier (\d+): newest of /.exec(reason);
      const before = [...prevKeep].find(([, r2]) => r2 === reason)?.[0];
      if (!m || before === undefined || before === id) continue;
      const k = Number(m[1]);
      assert.ok(byId.get(id)!.time > byId.get(before)!.time, `day ${day}: ${reason} moved back from ${before} to ${id}`);
      const prevUpper = k === 1 ? prevNow : tierLower(k - 1, prevNow);
      assert.ok(byId.get(id)!.time > prevUpper, `day ${day}: ${reason} changed to ${id}, which was already in tier ${k}`);
    }
    // a kept snapshot only expires when superseded in its slice or moved into an older tier
    for (const id of r.expire) {
      const was = prevKeep.get(id);
      if (!was) continue;
      const k = Number(/^tier (\d+)/.exec(was)![1]);
      const superseded = holderOf.has(was) && byId.get(holderOf.get(was)!)!.time > byId.get(id)!.time;
      assert.ok(superseded || byId.get(id)!.time <= tierLower(k, now), `day ${day}: ${id} (${was}) expired without cause`);
    }

    // (c) periods wholly inside a tier keep exactly what they must
    const keptTimes = [...r.keep.keys()].map((id) => byId.get(id)!.time);
    const keptIn = (from: number, to: number) => keptTimes.filter((t) => t >= from && t < to).sort((a, b) => a - b);
    for (let mon = mondayOf(now); mon > tierLower(3, now); mon -= 7 * DAY) {
      const end = mon + 7 * DAY;
      if (end - 1 > tierLower(2, now) || mon <= tierLower(3, now)) continue;
      if (mon < start) continue;
      // tier 3: each whole week keeps its Sunday 03:00
      assert.deepEqual(keptIn(mon, end), [mon + 6 * DAY + 3 * HOUR], `day ${day}: week of ${isoDate(mon)}`);
    }
    for (let mon = mondayOf(now); mon > tierLower(2, now); mon -= 7 * DAY) {
      const end = mon + 7 * DAY;
      if (end - 1 > tierLower(1, now) || mon <= tierLower(2, now) || mon < start) continue;
      // tier 2: each whole week keeps Wednesday, Friday and Sunday 03:00
      assert.deepEqual(keptIn(mon, end), [2, 4, 6].map((d) => mon + d * DAY + 3 * HOUR), `day ${day}: week of ${isoDate(mon)}`);
    }
    for (let [from, to] = monthOf(tierLower(3, now)); from > tierLower(4, now); [from, to] = monthOf(from - 1)) {
      if (to - 1 > tierLower(3, now) || from < start) continue;
      // tier 4: each whole month keeps exactly one, from its last 7 days
      const kept = keptIn(from, to);
      assert.equal(kept.length, 1, `day ${day}: month ${isoDate(from)}`);
      assert.ok(kept[0]! >= to - 7 * DAY, `day ${day}: month ${isoDate(from)} kept ${isoDate(kept[0]!)}`);
    }

    // (a) bounded size: 7 + [8,10] slices of 56 h + [7,9] weeks + [11,13] months once every tier is populated
    counts.push(r.keep.size);
    assert.ok(r.keep.size <= 39, `day ${day}: ${r.keep.size} kept`);
    if (day >= 7 + 21 + 56 + 366) {
      const t = (k: number) => countByPrefix(r, `tier ${k}:`);
      assert.equal(t(1), 7);
      assert.ok(t(2) >= 8 && t(2) <= 10, `day ${day}: tier 2 keeps ${t(2)}`);
      assert.ok(t(3) >= 7 && t(3) <= 9, `day ${day}: tier 3 keeps ${t(3)}`);
      assert.ok(t(4) >= 11 && t(4) <= 13, `day ${day}: tier 4 keeps ${t(4)}`);
      assert.equal(r.keep.size, t(1) + t(2) + t(3) + t(4));
    }

    const expired = new Set(r.expire);
    store = store.filter((s) => !expired.has(s.id));
    prevKeep = r.keep;
    prevNow = now;
  }
  const steady = counts.slice(7 + 21 + 56 + 366);
  assert.ok(Math.min(...steady) >= 33 && Math.max(...steady) <= 39, `steady state ${Math.min(...steady)}..${Math.max(...steady)}`);
});

// --- differential check against a naive reference ----------------------------------------------

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The semantics written out directly, quadratically, with Date. */
function naive(policyJson: { keepWithin?: string; tiers?: { span: string; keep: number | 'all'; per?: string }[] }, snaps: Snapshot[], now: number) {
  const back = (t: number, span: string) => {
    const n = Number(span.slice(0, -1)), u = span.at(-1);
    if (u === 'd') return t - n * DAY;
    if (u === 'w') return t - n * 7 * DAY;
    const months = u === 'm' ? n : 12 * n;
    const d = new Date(t);
    const first = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - months, 1));
    const y = first.getUTCFullYear(), m = first.getUTCMonth();
    return Date.UTC(y, m, Math.min(d.getUTCDate(), dim(y, m)), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
  };
  const newer = (a: Snapshot, b: Snapshot) => a.time > b.time || (a.time === b.time && a.id > b.id);
  const period = (t: number, per: string): [number, number, string] => {
    const d = new Date(t);
    if (per === 'day') { const s = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()); return [s, s + DAY, isoDate(s)]; }
    if (per === 'month') { const [s, e] = monthOf(t); return [s, e, isoDate(s).slice(0, 7)]; }
    const s = mondayOf(t), thu = new Date(s + 3 * DAY), y = thu.getUTCFullYear();
    return [s, s + 7 * DAY, `${y}-W${String(Math.floor((thu.getTime() - Date.UTC(y, 0, 1)) / (7 * DAY)) + 1).padStart(2, '0')}`];
  };
  const keep = new Map<string, string>();
  for (const s of snaps) {
    let reason: string | undefined;
    if (s.time > now) reason = 'future';
    let hi = now;
    (policyJson.tiers ?? []).forEach((tier, i) => {
      const lo = back(hi, tier.span);
      if (reason === undefined && s.time > lo && s.time <= hi) {
        if (tier.keep === 'all') reason = `tier ${i + 1}: all within ${tier.span}`;
        else {
          const n = tier.keep;
          const [ps, pe, label] = period(s.time, tier.per!);
          const slice = (t: number) => Math.floor(((t - ps) * n) / (pe - ps));
          const rivals = snaps.filter((o) => o.time > lo && o.time <= hi && o.time >= ps && o.time < pe && slice(o.time) === slice(s.time));
          if (rivals.every((o) => o === s || newer(s, o))) reason = `tier ${i + 1}: newest of ${label}${n > 1 ? ` slice ${slice(s.time) + 1}/${n}` : ''}`;
        }
      }
      hi = lo;
    });
    if (reason === undefined && policyJson.keepWithin && s.time > back(now, policyJson.keepWithin) && s.time <= now) reason = `keepWithin ${policyJson.keepWithin}`;
    for (let i = 0; i < 7 && reason === undefined; i++) {
      const date = new Date(now - i * DAY).toISOString().slice(0, 10);
      const inDay = (o: Snapshot) => new Date(o.time).toISOString().slice(0, 10) === date && o.time <= now;
      if (inDay(s) && snaps.every((o) => o === s || !inDay(o) || newer(s, o))) reason = `floor: newest of ${date}`;
    }
    if (reason !== undefined) keep.set(s.id, reason);
  }
  const expire = snaps.filter((s) => !keep.has(s.id)).sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1)).map((s) => s.id);
  return { keep, expire };
}

test('agrees with a naive reference on random policies and snapshot sets', () => {
  const rnd = mulberry32(20261127);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  for (let round = 0; round < 150; round++) {
    const span = () => {
      const u = pick(['d', 'w', 'm', 'y'] as const);
      return `${1 + Math.floor(rnd() * (u === 'y' ? 2 : u === 'm' ? 8 : 15))}${u}`;
    };
    const json: { keepWithin?: string; tiers?: { span: string; keep: number | 'all'; per?: string }[] } = {};
    if (rnd() < 0.4) json.keepWithin = span();
    if (!json.keepWithin || rnd() < 0.7) {
      json.tiers = Array.from({ length: 1 + Math.floor(rnd() * 5) }, () =>
        rnd() < 0.25 ? { span: span(), keep: 'all' as const } : { span: span(), keep: 1 + Math.floor(rnd() * 5), per: pick(['day', 'week', 'month']) });
    }
    const now = at('2024-01-01T00:00:00Z') + Math.floor(rnd() * 4 * 365 * DAY);
    const snaps: Snapshot[] = [];
    const count = Math.floor(rnd() * 250);
    for (let i = 0; i < count; i++) {
      const time = i > 0 && rnd() < 0.05 ? snaps[i - 1]!.time : now - Math.floor(rnd() * 800 * DAY) + (rnd() < 0.03 ? 2 * DAY : 0);
      snaps.push({ id: `s${Math.floor(rnd() * 1e9).toString(36)}-${i}`, time });
    }
    const got = evaluateRetention(parseRetentionPolicy(json), snaps, now);
    const want = naive(json, snaps, now);
    assert.deepEqual([...got.keep].sort(), [...want.keep].sort(), JSON.stringify({ json, now }));
    assert.deepEqual(got.expire, want.expire);
  }
});

test('100,000 snapshots are evaluated quickly', () => {
  const now = at('2026-11-27T04:00:00Z');
  const rnd = mulberry32(7);
  const snaps: Snapshot[] = Array.from({ length: 100_000 }, (_, i) => ({ id: `s${i}`, time: now - Math.floor(rnd() * 3 * 365 * DAY) }));
  const policy = parseRetentionPolicy({ ...DEGRESSIVE, keepWithin: '3d' });
  const t0 = performance.now();
  const r = evaluateRetention(policy, snaps, now);
  const ms = performance.now() - t0;
  assert.equal(r.keep.size + r.expire.length, snaps.length);
  assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
});

// --- validation -------------------------------------------------------------------------------

test('the example policies parse and describe themselves in one line', () => {
  assert.deepEqual(parseRetentionPolicy({ keepWithin: '30d' }), { keepWithin: { count: 30, unit: 'd' }, tiers: [] });
  const p: RetentionPolicy = parseRetentionPolicy({ ...DEGRESSIVE, keepWithin: '30d' });
  assert.deepEqual(p.tiers[1], { span: { count: 3, unit: 'w' }, keep: 3, per: 'week' });
  assert.deepEqual(p.tiers[3], { span: { count: 12, unit: 'm' }, keep: 1, per: 'month' });
  const line = describeRetentionPolicy(p);
  assert.doesNotMatch(line, /\n/);
  for (const part of ['30d', 'all snapshots for the last 7d', '3 per week for 3w', '1 per week for 8w', '1 per month for 12m', '7 days']) {
    assert.ok(line.includes(part), `${part} in: ${line}`);
  }
  assert.match(describeRetentionPolicy(null), /every snapshot is kept/);
  // limits are inclusive
  parseRetentionPolicy({ keepWithin: '1000y', tiers: Array.from({ length: 20 }, () => ({ span: '1d', keep: 100, per: 'day' })) });
});

test('invalid policies are refused with an error naming the field', () => {
  const ok = { span: '7d', keep: 'all' };
  const cases: [unknown, string, RegExp][] = [
    [null, '', /must be a JSON object/],
    [[], '', /must be a JSON object.*array/],
    ['{"keepWithin":"30d"}', '', /must be a JSON object/],
    [42, '', /must be a JSON object/],
    [{}, '', /keepWithin.*tiers/],
    [{ keepWithin: '30d', retain: 3 }, 'retain', /unknown field/],
    [{ keepwithin: '30d' }, 'keepwithin', /unknown field.*keepWithin/],
    [{ keepWithin: '30x' }, 'keepWithin', /span.*"30x"/],
    [{ keepWithin: '0d' }, 'keepWithin', /1 to 1000/],
    [{ keepWithin: '1001d' }, 'keepWithin', /1 to 1000/],
    [{ keepWithin: '1.5d' }, 'keepWithin', /span/],
    [{ keepWithin: ' 7d' }, 'keepWithin', /span/],
    [{ keepWithin: '7D' }, 'keepWithin', /span/],
    [{ keepWithin: 30 }, 'keepWithin', /span.*number 30/],
    [{ tiers: [{ span: '7d', keep: 0, per: 'day' }] }, 'tiers[0].keep', /"all" or an integer from 1 to 100; got number 0/],
    [{ tiers: [{ span: '7d', keep: 101, per: 'day' }] }, 'tiers[0].keep', /1 to 100/],
    [{ tiers: [{ span: '7d', keep: 2.5, per: 'day' }] }, 'tiers[0].keep', /integer/],
    [{ tiers: [{ span: '7d', keep: '3', per: 'day' }] }, 'tiers[0].keep', /integer/],
    [{ tiers: [{ span: '7d', keep: 'all', per: 'day' }] }, 'tiers[0].per', /must not be given when keep is "all"/],
    [{ tiers: [{ span: '7d', keep: 3 }] }, 'tiers[0].per', /required/],
    [{ tiers: [{ span: '7d', keep: 3, per: 'year' }] }, 'tiers[0].per', /"day", "week" or "month"/],
    [{ tiers: [ok, { span: '3w', keep: 3, per: 'week', every: 1 }] }, 'tiers[1].every', /unknown field/],
    [{ tiers: [ok, { span: '3q', keep: 'all' }] }, 'tiers[1].span', /span/],
    [{ tiers: [{ keep: 'all' }] }, 'tiers[0].span', /required/],
    [{ tiers: [{ span: '7d' }] }, 'tiers[0].keep', /required/],
    [{ tiers: [null] }, 'tiers[0]', /must be an object/],
    [{ tiers: Array.from({ length: 21 }, () => ok) }, 'tiers', /at most 20/],
    [{ tiers: [] }, 'tiers', /at least one/],
    [{ tiers: ok }, 'tiers', /must be an array/],
  ];
  for (const [input, field, message] of cases) {
    assert.throws(() => parseRetentionPolicy(input), (e: unknown) => {
      assert.ok(e instanceof RetentionPolicyError, `${JSON.stringify(input)} threw ${String(e)}`);
      assert.equal(e.field, field, JSON.stringify(input));
      if (field) assert.ok(e.message.includes(`field ${field}:`), e.message);
      assert.match(e.message, message);
      return true;
    }, JSON.stringify(input));
  }
});
