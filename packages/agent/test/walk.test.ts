// The backup's file-system walk on its own thread (walk.ts): groups come in the order the archiver
// consumes them (a root alone, then depth first every directory walked into), the walker decides
// exclusion, loops and file systems, and it never runs further ahead than allowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kind, prestartWalkers, startWalker, type Group, type Walker, type WalkOptions } from '../src/walk.ts';

/** every group of one root, consumed as the archiver does (descending into Descend entries) */
async function consume(root: string, opts: WalkOptions & { threads?: number; maxAhead?: number }, end?: (w: Walker) => Promise<void>): Promise<Group[]> {
  const w = startWalker(opts);
  const seen: Group[] = [];
  try {
    w.walk(Buffer.from(root));
    if (end) await end(w);
    const visit = async (expected: Buffer): Promise<void> => {
      const g = await w.next();
      assert.equal(g.dir.toString(), expected.toString(), 'groups come in the order consumed');
      seen.push(g);
      for (const e of g.entries) if (e.kind === Kind.Descend) await visit(Buffer.from(join(expected.toString(), e.name.toString())));
    };
    const top = await w.next();
    seen.push(top);
    if (top.entries[0]!.kind === Kind.Descend) await visit(Buffer.from(root));
  } finally {
    await w.close();
  }
  return seen;
}

test('walk: depth-first groups, stats, symlink targets, exclusion; backpressure with a tiny window', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(root, `d${d}`, 'inner'), { recursive: true });
    for (let f = 0; f < 10; f++) writeFileSync(join(root, `d${d}`, `f${f}.txt`), 'x'.repeat(f));
    writeFileSync(join(root, `d${d}`, 'inner', 'skip.log'), 'log');
  }
  symlinkSync('d0/f3.txt', join(root, 'link'));
  for (const maxAhead of [undefined, 5]) {
    const groups = await consume(root, { exclude: ['*.log'], maxAhead });
    assert.equal(groups.length, 1 + 1 + 20 * 2, `root, its listing, every d and d/inner (maxAhead ${maxAhead})`);
    const d3 = groups.find((g) => g.dir.toString() === join(root, 'd3'))!;
    const f7 = d3.entries.find((e) => e.name.toString() === 'f7.txt')!;
    assert.equal(f7.kind, Kind.Ok);
    const st = lstatSync(join(root, 'd3', 'f7.txt'), { bigint: true });
    assert.deepEqual([f7.st!.type, f7.st!.size, f7.st!.mtimeNs, f7.st!.ino, f7.st!.dev, f7.st!.mode], ['file', 7, st.mtimeNs, st.ino, st.dev, Number(st.mode & 0o7777n)]);
    const inner = groups.find((g) => g.dir.toString() === join(root, 'd3', 'inner'))!;
    assert.equal(inner.entries[0]!.kind, Kind.Excluded, 'the walker applies --exclude');
    const link = groups[1]!.entries.find((e) => e.name.toString() === 'link')!;
    assert.equal(link.st!.type, 'symlink');
    assert.equal(link.target!.toString(), 'd0/f3.txt');
  }
});

test('walk: walker threads started before their options are known walk with the options given later', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (let d = 0; d < 6; d++) {
    mkdirSync(join(root, `d${d}`));
    writeFileSync(join(root, `d${d}`, 'keep.txt'), 'k');
    writeFileSync(join(root, `d${d}`, 'skip.log'), 'l');
  }
  for (const threads of [1, 2]) {
    prestartWalkers(threads);
    // booted (or booting) with no work: the options reach them in their first message
    await new Promise((r) => setTimeout(r, 50));
    const groups = await consume(root, { exclude: ['*.log'], threads });
    assert.equal(groups.length, 1 + 1 + 6, `root, its listing, every d (${threads} threads)`);
    for (const g of groups.slice(2)) {
      assert.deepEqual(g.entries.map((e) => [e.name.toString(), e.kind]), [['keep.txt', Kind.Ok], ['skip.log', Kind.Excluded]], 'the exclusion given after the start applies');
    }
  }
});

test('walk: with --follow-symlinks a loop is named, not followed; a missing root is a stat failure', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  symlinkSync('../..', join(root, 'a', 'b', 'up'));
  const groups = await consume(root, { followSymlinks: true });
  const b = groups.find((g) => g.dir.toString() === join(root, 'a', 'b'))!;
  assert.equal(b.entries.find((e) => e.name.toString() === 'up')!.kind, Kind.Loop);
  assert.equal(groups.length, 4, 'root alone, root, a, a/b');
  const missing = await consume(join(root, 'nothing-here'), {});
  assert.equal(missing.length, 1);
  assert.equal(missing[0]!.entries[0]!.kind, Kind.StatFailed);
  assert.match(missing[0]!.entries[0]!.error!, /cannot stat: .*ENOENT/);
});

test('walk: a listing digest is the same for the same listing wherever its batch cut, and changes with any entry\'s stat', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (let d = 0; d < 30; d++) {
    mkdirSync(join(root, `d${d}`));
    for (let f = 0; f < 5; f++) writeFileSync(join(root, `d${d}`, `f${f}`), 'x'.repeat(f));
  }
  const digests = async (maxAhead?: number) => new Map((await consume(root, { maxAhead })).map((g) => [g.dir.toString(), g.digest.toString('hex')]));
  await digests(); // (the first listing of each new directory sets its atime: relatime)
  const before = await digests();
  assert.deepEqual(await digests(3), before, 'batches cut elsewhere, the same digests');
  assert.equal(new Set(before.values()).size, before.size, 'different listings, different digests');
  // one file's mtime: its directory's digest only
  const t0 = new Date('2020-01-01T00:00:00Z');
  utimesSync(join(root, 'd7', 'f2'), t0, t0);
  const after = await digests();
  for (const [dir, digest] of before) {
    if (dir === join(root, 'd7')) assert.notEqual(after.get(dir), digest, 'the touched file\'s directory changed');
    else assert.equal(after.get(dir), digest, `${dir} unchanged`);
  }
});

test('walk: two walker threads (subdirectories of each root claimed by either) give the groups of one, in the same order', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const roots = [join(base, 'r1'), join(base, 'r2'), join(base, 'r3')];
  for (const r of roots.slice(0, 2)) {
    for (let d = 0; d < 12; d++) {
      mkdirSync(join(r, `d${d}`, 'x', 'y'), { recursive: true });
      for (let f = 0; f < (d % 3) * 7; f++) writeFileSync(join(r, `d${d}`, 'x', `f${f}`), 'z');
      writeFileSync(join(r, `d${d}`, 'x', 'y', 'leaf'), 'l');
    }
  }
  writeFileSync(roots[2]!, 'a file as a root');
  const walkAll = async (threads: number, maxAhead?: number) => {
    const w = startWalker({ threads, maxAhead });
    const seen: string[] = [];
    try {
      for (const r of roots) w.walk(Buffer.from(r));
      const visit = async (dir: string): Promise<void> => {
        const g = await w.next();
        assert.equal(g.dir.toString(), dir);
        seen.push(`${g.dir} ${g.entries.map((e) => e.name.toString()).join(',')} ${g.digest.toString('hex').slice(0, 8)}`);
        for (const e of g.entries) if (e.kind === Kind.Descend) await visit(join(dir, e.name.toString()));
      };
      for (const r of roots) {
        const top = await w.next();
        assert.equal(top.dir.toString(), r);
        if (top.entries[0]!.kind === Kind.Descend) await visit(r);
      }
    } finally {
      await w.close();
    }
    return seen;
  };
  await walkAll(1); // (the first listing of each new directory sets its atime)
  const one = await walkAll(1);
  assert.equal(one.length, 2 * (1 + 12 * 3));
  assert.deepEqual(await walkAll(2), one);
  assert.deepEqual(await walkAll(2, 4), one, 'with a tiny window too');
});

test('walk: after end(), a lone walker thread ends once it has sent everything, and no group is lost', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (let d = 0; d < 30; d++) {
    mkdirSync(join(root, `d${d}`, 'a', 'b'), { recursive: true });
    for (let f = 0; f < 20; f++) writeFileSync(join(root, `d${d}`, 'a', `f${f}`), 'x');
  }
  const all = await consume(root, {});
  const names = (gs: Group[]) => gs.map((g) => `${g.dir}:${g.entries.map((e) => e.name).join(',')}`);
  // a window far smaller than the tree: the walker waits for the archiver; it must not end early
  const throttled = await consume(root, { threads: 1, maxAhead: 4 }, async (w) => { w.end(); });
  assert.deepEqual(names(throttled), names(all));
  // the default window holds this whole tree: the thread ends before anything is consumed, and
  // every group is still there
  const early = await consume(root, { threads: 1 }, async (w) => {
    assert.equal(w.running(), 1);
    w.end();
    const until = Date.now() + 10_000;
    while (w.running() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    assert.equal(w.running(), 0, 'the walker thread ended');
  });
  assert.deepEqual(names(early), names(all));
});

test('walk: a listing digest leaves out atimes: an entry that was only read, or a directory only listed, leaves its directory unchanged', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'shelter-walk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'sub'));
  writeFileSync(join(root, 'sub', 'f'), 'some bytes');
  writeFileSync(join(root, 'g'), 'more bytes');
  // atimes older than the ctimes utimes gives them: the next listing or read updates them (relatime)
  const old = new Date('2020-01-01T00:00:00Z');
  for (const p of ['sub', 'sub/f', 'g']) utimesSync(join(root, p), old, lstatSync(join(root, p)).mtime);
  const digests = async () => new Map((await consume(root, {})).map((g) => [g.dir.toString(), g.digest.toString('hex')]));
  const first = await digests(); // lists sub: its atime changes
  readFileSync(join(root, 'g')); // a reader of g (not the backup, which opens files with O_NOATIME)
  for (const p of ['sub', 'g']) assert.ok(lstatSync(join(root, p)).atimeMs > old.getTime(), `${p}'s atime changed (a file system mounted with relatime or strictatime)`);
  assert.deepEqual(await digests(), first, 'the same digests');
  // the atime is still reported, for the tree nodes written
  const sub = (await consume(root, {})).flatMap((g) => g.entries).find((e) => e.name.toString() === 'sub');
  assert.equal(sub?.st?.atimeNs, lstatSync(join(root, 'sub'), { bigint: true }).atimeNs);
});
