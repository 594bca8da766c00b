// Round trips of the `shelter` agent against a real shelterd over HTTPS (issue 3, "How we will
// know", first two bullets): a generated tree holding every special case (test/lib/agent.ts,
// makeSpecialTree: odd names incl. invalid UTF-8, symlinks, hard links, modes, odd mtimes,
// ownership, a fifo, empty dirs and files, a 20 MiB random file, and a sparse file of more than
// 4 GiB) is backed up, restored into an empty directory and compared byte for byte and by
// metadata; then changed and backed up again (incremental: unchanged files not read again),
// listed, diffed, filtered on backup and restore, restored over existing files; finally the
// gateway's audit log and version listing prove that the agent never deleted nor overwrote.
//
// SHELTER_TEST_SPARSE_SIZE=bytes changes the sparse file's size (0: none; default 4 GiB + 12345).
// SHELTER_TEST_KEEP=1 keeps the directories for a post-mortem.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { formatRun } from '../lib/clients.ts';
import { createServer, repoRoot, shelterd, type Gateway } from '../lib/gateway.ts';
import { startAgentFixture, type AgentFixture } from '../lib/fixture.ts';
import {
  GiB, MiB, assertExit, assertSameTrees, checkSparseFile, diffTrees, filterScan, keyOf, listObjects, listVersions, makeSpecialTree,
  scanTree, serverAudit, type Agent, type BackupSummary, type Entry, type SnapshotRow, type SpecialTree,
} from '../lib/agent.ts';

const sparseSize = process.env.SHELTER_TEST_SPARSE_SIZE !== undefined ? Number(process.env.SHELTER_TEST_SPARSE_SIZE) : 4 * GiB + 12345;

/** the path `ls` and `diff` print for an entry: the absolute path, each name decoded as UTF-8 */
const lsPath = (src: string, rel: Buffer) => {
  if (rel.length === 0) return src;
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i <= rel.length; i++) if (i === rel.length || rel[i] === 0x2f) { parts.push(rel.subarray(start, i).toString()); start = i + 1; }
  return `${src}/${parts.join('/')}`;
};
const baseName = (rel: Buffer) => rel.subarray(rel.lastIndexOf(0x2f) + 1);
const firstPart = (rel: Buffer) => rel.subarray(0, rel.indexOf(0x2f) < 0 ? rel.length : rel.indexOf(0x2f)).toString();
const under = (rel: Buffer, dir: string) => rel.toString('latin1') === dir || rel.toString('latin1').startsWith(`${dir}/`);
const endsWith = (rel: Buffer, suffix: string) => baseName(rel).toString('latin1').endsWith(suffix);

interface LsLine { path: string; type: string; size: number; mode: number; mtime: string }
const parseLs = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LsLine);

describe('shelter round trip against shelterd over HTTPS', () => {
  let gw: Gateway;
  let server: ReturnType<typeof createServer>;
  let s3: S3Client;
  let agent: Agent;
  let work: string;
  let src: string;
  let tree: SpecialTree;
  let scan1: Map<string, Entry>; // the tree as backed up first
  let scan2: Map<string, Entry>; // after the changes
  let backup1: BackupSummary;
  let backup2: BackupSummary;
  const timings: Record<string, number> = {};
  const sparseKey = () => keyOf(Buffer.from('sparse/disk.img'));

  let fx: AgentFixture | undefined;

  before(async () => {
    fx = await startAgentFixture('roundtrip');
    ({ gw, server, s3, work, agent } = fx);
    src = join(work, 'src');
    const t0 = Date.now();
    tree = makeSpecialTree(src, sparseSize ? { sparseSize } : {});
    timings.makeTreeMs = Date.now() - t0;
    scan1 = scanTree(src, { noHash: tree.noHash });
  });

  after(async () => {
    await fx?.stop();
    process.stderr.write(`# agent round trip timings: ${JSON.stringify(timings)}\n`);
  });

  it('init wrote a 0600 configuration and a 0600 key file', () => {
    assert.equal(statSync(join(agent.configDir, 'config.yaml')).mode & 0o777, 0o600);
    assert.equal(statSync(agent.keyFile).mode & 0o777, 0o600);
    const hex = readFileSync(agent.keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(hex.length, 1);
    assert.match(hex[0]!.trim(), /^[0-9a-fA-F]{64}$/);
  });

  it('shelter --version and shelterd --version print their packages\' versions', async () => {
    const version = (pkg: string) => (JSON.parse(readFileSync(join(repoRoot, 'packages', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal((await agent.ok(['--version'])).stdout.trim(), version('agent'));
    assert.equal((await agent.ok(['-V'])).stdout.trim(), version('agent'));
    const d = shelterd(['--version']);
    assert.equal(d.status, 0, d.stderr);
    assert.equal(d.stdout.trim(), version('gateway'));
    // run as a command, as npm links it (node_modules/.bin/shelter, its #! line through /bin/sh),
    // Node 24 first on PATH as npm puts it: Node is started once, with the agent's V8 flag
    const bin = join(repoRoot, 'node_modules/.bin/shelter');
    const env = { ...agent.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    assert.equal(execFileSync(bin, ['--version'], { env, encoding: 'utf8' }).trim(), version('agent'));
    // (and with glibc's malloc told to keep what it frees, unless the user said otherwise)
    const printing = { ...Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('MALLOC_'))), NODE_OPTIONS: '--require ./test/lib/print-execargv.cjs' };
    const mallocWith = (own: Record<string, string> = {}) => JSON.stringify({ MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '1073741824', ...own });
    const malloc = mallocWith();
    const argv = execFileSync(bin, ['backup', '--help'], { env: printing, cwd: repoRoot, encoding: 'utf8' });
    assert.ok(argv.split('\n').includes(`execArgv ["--max-semi-space-size=8"] ${malloc}`), `started with the flag and the malloc settings, not re-executed for them: ${argv}`);
    assert.equal(argv.match(/^execArgv /gm)?.length, 1, 'one Node process');
    // started as `node bin/shelter.js`: replaced once by a process that has both
    const direct = execFileSync(process.execPath, [join(repoRoot, 'packages/agent/bin/shelter.js'), 'backup', '--help'], { env: printing, cwd: repoRoot, encoding: 'utf8' });
    assert.deepEqual(direct.match(/^execArgv .*$/gm), ['execArgv [] {}', `execArgv ["--max-semi-space-size=8"] ${malloc}`], direct);
    // the user's own setting wins
    const own = execFileSync(bin, ['backup', '--help'], { env: { ...printing, MALLOC_TRIM_THRESHOLD_: '4096' }, cwd: repoRoot, encoding: 'utf8' });
    assert.ok(own.split('\n').includes(`execArgv ["--max-semi-space-size=8"] ${mallocWith({ MALLOC_TRIM_THRESHOLD_: '4096' })}`), own);
  });

  it('first backup: exit 0, a JSON summary with the snapshot id and counts', async (t) => {
    const t0 = Date.now();
    const r = await agent.run(['backup', 'files', src, '--name', 'files', '--json'], {}, { timeoutMs: 300_000 });
    timings.backup1Ms = Date.now() - t0;
    t.diagnostic(`first backup (sparse file of ${sparseSize} bytes): ${timings.backup1Ms} ms`);
    assertExit(r, 0, 'first backup');
    backup1 = JSON.parse(r.stdout) as BackupSummary;
    assert.match(backup1.snapshotId, /^[0-9a-f]{64}$/);
    const files = [...scan1.values()].filter((e) => e.type === 'file');
    const dirs = [...scan1.values()].filter((e) => e.type === 'dir');
    assert.equal(backup1.parent, null);
    assert.equal(backup1.warnings, 0);
    assert.equal(backup1.files, files.length, 'files (each hard link name counts)');
    assert.equal(backup1.newFiles, files.length);
    assert.equal(backup1.unchangedFiles, 0);
    assert.equal(backup1.changedFiles, 0);
    assert.equal(backup1.dirs, dirs.length);
    assert.equal(backup1.bytes, files.reduce((s, e) => s + Number(e.size), 0));
    // a log file per run, under XDG_STATE_HOME
    const logFile = backup1.logFile as string | undefined;
    assert.ok(logFile && logFile.startsWith(agent.env.XDG_STATE_HOME!) && existsSync(logFile), `the run's log file (${logFile}) is under XDG_STATE_HOME`);
  });

  it('the repository holds the data compressed and deduplicated', async () => {
    // incompressible content: the 20 MiB random file, the 100 KiB hard-linked pair, the sparse file's
    // 450 KiB of data; everything else (6 MiB of text, 3 MiB and gigabytes of zeros) nearly vanishes
    const packs = await listObjects(s3, server.bucket, 'data/');
    const stored = packs.reduce((s, p) => s + p.size, 0);
    assert.ok(stored < 22 * MiB, `the packs hold ${stored} bytes for ${backup1.bytes} bytes backed up (expected < 22 MiB)`);
    assert.ok(stored > 20 * MiB, `the packs hold ${stored} bytes: less than the random data itself?`);
  });

  it('restore into an empty directory: identical bytes and metadata (the sparse file\'s bytes: next test)', async (t) => {
    const target = join(work, 'restore-1');
    const t0 = Date.now();
    const r = await agent.run(['restore', 'latest', '--name', 'files', '--target', target], {}, { timeoutMs: 300_000 });
    timings.restore1Ms = Date.now() - t0;
    t.diagnostic(`restore (sparse file of ${sparseSize} bytes): ${timings.restore1Ms} ms`);
    const restored = join(target, src);
    const problems = existsSync(restored) ? diffTrees(scan1, scanTree(restored, { noHash: tree.noHash })) : [`${restored} was not created`];
    if (r.status !== 0) problems.unshift(`restore exited ${r.status}:\n${formatRun(r)}`);
    assert.deepEqual(problems, [], `restore differs from the source:\n  ${problems.join('\n  ')}`);
    // the directories above the backed-up path are recreated too
    assert.ok(statSync(join(target, src.split('/')[1]!)).isDirectory());
  });

  it('the sparse file (> 4 GiB apparent size) comes back sparse, its data and holes intact', (t) => {
    if (!tree.sparse) { t.skip('SHELTER_TEST_SPARSE_SIZE=0'); return; }
    const restored = join(work, 'restore-1', src, tree.sparse.rel);
    const original = statSync(join(src, tree.sparse.rel));
    assert.ok(existsSync(restored), 'restored sparse file exists');
    const t0 = Date.now();
    // data: 450 KiB in 3 regions; allow 1 MiB chunks around each + file system slack
    const problems = checkSparseFile(restored, tree.sparse.spec, Math.max(16 * MiB, original.blocks * 512 * 4));
    t.diagnostic(`sparse file verified in ${Date.now() - t0} ms; allocated: original ${original.blocks * 512} bytes, restored ${statSync(restored).blocks * 512} bytes`);
    assert.deepEqual(problems, [], `restored sparse file: ${problems.join('; ')}`);
  });

  it('second backup after changes: incremental (unchanged files not read again), exact counts', async (t) => {
    // changed: same size and mtime but new content (only ctime tells), appended, chmod, 1 byte prepended
    const readme = join(src, 'docs/readme.txt');
    const st = statSync(readme, { bigint: true });
    writeFileSync(readme, readFileSync(readme, 'utf8').toUpperCase());
    utimesSync(readme, 1234567890.123456, 1234567890.123456); // what makeSpecialTree set
    const st2 = statSync(readme, { bigint: true });
    assert.equal(st2.mtimeNs, st.mtimeNs, 'test setup: readme.txt keeps its mtime');
    assert.equal(st2.size, st.size, 'test setup: readme.txt keeps its size');
    writeFileSync(join(src, 'docs/notes.md'), 'appended line\n', { flag: 'a' });
    chmodSync(join(src, 'modes/private'), 0o640);
    const random = join(src, 'big/random.bin');
    writeFileSync(random, Buffer.concat([Buffer.from('!'), readFileSync(random)]));
    // removed, added
    rmSync(join(src, 'names/tab\there'));
    writeFileSync(join(src, 'docs/added.txt'), 'added between the backups\n');
    mkdirSync(join(src, 'added/dir'), { recursive: true });
    writeFileSync(join(src, 'added/dir/new.txt'), 'new\n');
    scan2 = scanTree(src, { noHash: tree.noHash });
    utimesSync(readme, 1234567890.123456, 1234567890.123456); // again: the scan's reads moved its atime
    const atimeBefore = statSync(readme, { bigint: true }).atimeNs;

    const t0 = Date.now();
    const r = await agent.run(['backup', 'files', src, '--name', 'files', '--json']);
    timings.backup2Ms = Date.now() - t0;
    t.diagnostic(`second backup: ${timings.backup2Ms} ms (first: ${timings.backup1Ms} ms)`);
    assertExit(r, 0, 'second backup');
    backup2 = JSON.parse(r.stdout) as BackupSummary;
    // readme.txt was read again (its ctime changed), without touching its access time: it is still
    // the value set above (equal to mtime, which relatime would have replaced on a plain read)
    assert.equal(statSync(readme, { bigint: true }).atimeNs, atimeBefore, 'a backup does not change the access time of what it reads (O_NOATIME)');
    const files = [...scan2.values()].filter((e) => e.type === 'file').length;
    assert.equal(backup2.parent, backup1.snapshotId);
    assert.equal(backup2.warnings, 0);
    assert.equal(backup2.files, files);
    assert.equal(backup2.newFiles, 2, 'docs/added.txt, added/dir/new.txt');
    assert.equal(backup2.changedFiles, 4, 'readme.txt (ctime only), notes.md, modes/private (chmod), big/random.bin');
    assert.equal(backup2.unchangedFiles, files - 6, 'every other file is not read again');
    if (sparseSize >= GiB) { // reading it takes seconds: a second backup that re-read it would show
      assert.ok(backup2.durationMs < backup1.durationMs / 2,
        `the second backup (${backup2.durationMs} ms) must not re-read the ${sparseSize}-byte sparse file (first: ${backup1.durationMs} ms)`);
    }
  });

  it('content-defined chunking: one byte inserted at the start of the 20 MiB file stores little new data', () => {
    // the other changes add a few hundred bytes; the 20 MiB file must dedup all but its first chunks
    assert.ok(backup2.newBytes < 4 * MiB, `second backup stored ${backup2.newBytes} new bytes (newBlobs ${backup2.newBlobs}) for a 1-byte insertion into a 20 MiB file`);
  });

  it('snapshots --json lists both snapshots, the second with the first as parent', async () => {
    const rows = await agent.json<SnapshotRow[]>(['snapshots', '--json']);
    assert.deepEqual(rows.map((r) => r.id), [backup1.snapshotId, backup2.snapshotId]);
    assert.ok(rows.every((r) => r.name === 'files'));
    assert.equal(rows[1]!.parent, backup1.snapshotId);
    assert.deepEqual(rows[0]!.paths, [src]);
    const byName = await agent.json<SnapshotRow[]>(['snapshots', '--name', 'nothing-of-that-name', '--json']);
    assert.deepEqual(byName, []);
  });

  it('diff shows exactly the changes', async () => {
    const r = await agent.ok(['diff', backup1.snapshotId, backup2.snapshotId]);
    const lines = r.stdout.split('\n').filter(Boolean).sort();
    const expected = [
      `+ ${src}/docs/added.txt`, `+ ${src}/added`, `+ ${src}/added/dir`, `+ ${src}/added/dir/new.txt`,
      `- ${src}/names/tab\there`,
      `M ${src}/docs/readme.txt`, `M ${src}/docs/notes.md`, `M ${src}/modes/private`, `M ${src}/big/random.bin`,
    ].sort();
    assert.deepEqual(lines, expected);
  });

  it('ls lists every path with its type, size and mode; ls PATH only that subtree', async () => {
    const r = await agent.ok(['ls', backup1.snapshotId, '--json']);
    const lines = parseLs(r.stdout);
    const mine = lines.filter((l) => l.path === src || l.path.startsWith(`${src}/`));
    const expected = [...scan1.values()].map((e) => ({ path: lsPath(src, e.rel), type: e.type, size: e.type === 'file' ? Number(e.size) : 0, mode: e.mode }));
    const got = mine.map((l) => ({ path: l.path, type: l.type, size: l.size, mode: l.mode }));
    const sort = (a: Array<{ path: string }>) => [...a].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    assert.deepEqual(sort(got), sort(expected));
    // the parents of the backed-up path are listed too (the tree mirrors absolute paths)
    const top = `/${src.split('/')[1]}`;
    assert.ok(lines.some((l) => l.path === top && l.type === 'dir'), `ls lists ${top}`);
    // a subtree of the second snapshot
    const sub = parseLs((await agent.ok(['ls', backup2.snapshotId, join(src, 'docs'), '--json'])).stdout).map((l) => l.path).sort();
    const subExpected = [...scan2.values()].filter((e) => under(e.rel, 'docs')).map((e) => lsPath(src, e.rel)).sort();
    assert.deepEqual(sub, subExpected);
  });

  it('restore of the second snapshot (by id, --exclude of the sparse file) is identical to the changed tree', async () => {
    const target = join(work, 'restore-2');
    const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--exclude', 'disk.img']);
    assertExit(r, 0, 'restore of the second snapshot');
    const expected = filterScan(scan2, (e) => keyOf(e.rel) !== sparseKey());
    assertSameTrees(expected, scanTree(join(target, src), { noHash: tree.noHash }), 'restore of the second snapshot');
  });

  it('a file the restore cannot create is reported (exit 3, its path named) and every other file is restored', async () => {
    const target = join(work, 'restore-blocked');
    // a small file (written whole by a restore worker thread), its path taken by a directory
    const victim = [...scan2.values()].find((e) => e.type === 'file' && e.size > 0n && e.size < 65536n && e.nlink === 1
      && Buffer.from(e.rel.toString()).equals(e.rel) && !/[\n*?[]/.test(e.rel.toString()))!;
    const rel = victim.rel.toString();
    mkdirSync(join(target, src, rel), { recursive: true });
    const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--exclude', 'disk.img']);
    assertExit(r, 3, 'restore with a blocked file');
    const line = r.stderr.split('\n').find((l) => l.includes(rel));
    assert.ok(line && /cannot write: .*EISDIR/.test(line), `a warning names ${rel}: ${r.stderr}`);
    const other = (e: Entry) => !e.rel.equals(victim.rel);
    const expected = filterScan(scan2, (e) => keyOf(e.rel) !== sparseKey() && other(e));
    assertSameTrees(expected, filterScan(scanTree(join(target, src), { noHash: tree.noHash }), other), 'restore beside a blocked file');
  });

  it('backup --exclude leaves out what matches (names, a directory, a path glob)', async () => {
    const r = await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'filtered-out', '--json',
      '--exclude', '*.log', '--exclude', 'big', '--exclude', '**/docs/nested/deep', '--exclude', 'sparse']);
    assert.equal(r.warnings, 0);
    const got = parseLs((await agent.ok(['ls', r.snapshotId, src, '--json'])).stdout).map((l) => l.path).sort();
    const expected = [...scan2.values()].filter((e) => !endsWith(e.rel, '.log') && firstPart(e.rel) !== 'big' && firstPart(e.rel) !== 'sparse'
      && !under(e.rel, 'docs/nested/deep')).map((e) => lsPath(src, e.rel)).sort();
    assert.deepEqual(got, expected);
  });

  it('backup --include keeps only the matching files (all directories stay)', async () => {
    const r = await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'filtered-in', '--json', '--include', '*.txt']);
    assert.equal(r.warnings, 0);
    const lines = parseLs((await agent.ok(['ls', r.snapshotId, src, '--json'])).stdout);
    const got = lines.filter((l) => l.type !== 'dir').map((l) => l.path).sort();
    const expected = [...scan2.values()].filter((e) => e.type !== 'dir' && endsWith(e.rel, '.txt')).map((e) => lsPath(src, e.rel)).sort();
    assert.deepEqual(got, expected);
    assert.equal(r.files, expected.length);
  });

  it('restore --include restores only the matching files, identical', async () => {
    const target = join(work, 'restore-include');
    const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--include', '*.txt']);
    assertExit(r, 0, 'restore --include');
    const nonDir = (m: Map<string, Entry>) => filterScan(m, (e) => e.type !== 'dir');
    const expected = filterScan(scan2, (e) => e.type !== 'dir' && endsWith(e.rel, '.txt'));
    assertSameTrees(expected, nonDir(scanTree(join(target, src))), 'restore --include *.txt');
  });

  it('restore --exclude skips what matches, the rest identical', async () => {
    const target = join(work, 'restore-exclude');
    const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--exclude', '*.bin', '--exclude', 'sparse', '--exclude', 'links']);
    assertExit(r, 0, 'restore --exclude');
    const expected = filterScan(scan2, (e) => !(e.type !== 'dir' && endsWith(e.rel, '.bin')) && firstPart(e.rel) !== 'sparse' && firstPart(e.rel) !== 'links');
    assertSameTrees(expected, scanTree(join(target, src)), 'restore --exclude');
  });

  it('restore --ignore-existing leaves existing files untouched and restores the rest', async () => {
    const target = join(work, 'restore-existing');
    const dst = join(target, src);
    mkdirSync(join(dst, 'docs'), { recursive: true });
    mkdirSync(join(dst, 'modes'), { recursive: true });
    writeFileSync(join(dst, 'docs/readme.txt'), 'LOCAL VERSION, KEEP ME\n', { mode: 0o600 });
    utimesSync(join(dst, 'docs/readme.txt'), 1_000_000, 1_000_000);
    writeFileSync(join(dst, 'modes/script.sh'), 'local script\n', { mode: 0o700 });
    const localA = scanTree(join(dst, 'docs'));
    const localB = scanTree(join(dst, 'modes'));
    const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--ignore-existing', '--exclude', 'disk.img']);
    assertExit(r, 0, 'restore --ignore-existing');
    const after = scanTree(dst, { noHash: tree.noHash });
    const keepA = localA.get(keyOf(Buffer.from('readme.txt')))!;
    const keepB = localB.get(keyOf(Buffer.from('script.sh')))!;
    for (const [rel, local] of [['docs/readme.txt', keepA], ['modes/script.sh', keepB]] as const) {
      const now = after.get(keyOf(Buffer.from(rel)))!;
      assert.equal(now.sha256, local.sha256, `${rel}: content must stay the local one`);
      assert.equal(now.mode, local.mode, `${rel}: mode must stay the local one`);
      assert.equal(now.mtimeNs, local.mtimeNs, `${rel}: mtime must stay the local one`);
    }
    const skip = new Set([sparseKey(), keyOf(Buffer.from('docs/readme.txt')), keyOf(Buffer.from('modes/script.sh'))]);
    assertSameTrees(filterScan(scan2, (e) => !skip.has(keyOf(e.rel))), filterScan(after, (e) => !skip.has(keyOf(e.rel))), 'restore --ignore-existing (other files)');
  });

  it('restored files get their recorded owners in setgid directories of another group too (the target, a directory already there)', async (t) => {
    // (a file the restore creates takes a setgid directory's group: its chown is skipped only where
    // it cannot be, see restorer.ts targetPlain)
    if (process.getuid?.() !== 0) { t.diagnostic('not root: owners are restored only as root'); return; }
    const setgid = (dir: string) => { mkdirSync(dir, { recursive: true }); chownSync(dir, 0, 4444); chmodSync(dir, 0o2775); };
    const cases: Array<[string, (target: string, dst: string) => void]> = [
      ['restore-setgid-target', (target) => setgid(target)],
      ['restore-setgid-inside', (_target, dst) => setgid(join(dst, 'docs'))],
    ];
    for (const [name, prepare] of cases) {
      const target = join(work, name);
      const dst = join(target, src);
      prepare(target, dst);
      const r = await agent.run(['restore', backup2.snapshotId, '--target', target, '--exclude', 'disk.img']);
      assertExit(r, 0, `restore into ${name}`);
      const notSparse = (e: Entry) => keyOf(e.rel) !== sparseKey();
      assertSameTrees(filterScan(scan2, notSparse), filterScan(scanTree(dst, { noHash: tree.noHash }), notSparse), `restore into ${name}`);
    }
  });

  it('backup --follow-symlinks stores what the links point to', async () => {
    const base = join(work, 'follow');
    mkdirSync(join(base, 'real/dir'), { recursive: true });
    writeFileSync(join(base, 'real/file.txt'), 'followed file\n');
    writeFileSync(join(base, 'real/dir/inner.txt'), 'inside a followed dir\n');
    mkdirSync(join(base, 'links'));
    symlinkSync('../real/file.txt', join(base, 'links/to-file'));
    symlinkSync('../real/dir', join(base, 'links/to-dir'));
    const b = await agent.json<BackupSummary>(['backup', 'files', join(base, 'links'), '--name', 'follow', '--follow-symlinks', '--json']);
    assert.equal(b.warnings, 0);
    const target = join(work, 'restore-follow');
    await agent.ok(['restore', b.snapshotId, '--target', target]);
    const out = join(target, base, 'links');
    assert.equal(readFileSync(join(out, 'to-file'), 'utf8'), 'followed file\n');
    assert.ok(statSync(join(out, 'to-dir')).isDirectory());
    assert.equal(readFileSync(join(out, 'to-dir/inner.txt'), 'utf8'), 'inside a followed dir\n');
    const l = scanTree(out);
    assert.equal(l.get('to-file')!.type, 'file', 'a followed link is stored as a file');
    assert.equal(l.get('to-dir')!.type, 'dir', 'a followed link to a directory is stored as a directory');
  });

  it('backup --one-file-system does not descend into another file system', async (t: TestContext) => {
    const base = join(work, 'fs');
    const mnt = join(base, 'mnt');
    mkdirSync(mnt, { recursive: true });
    writeFileSync(join(base, 'here.txt'), 'on the root file system\n');
    try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'shelter-test', mnt], { stdio: 'pipe' }); }
    catch (e) { t.skip(`cannot mount a tmpfs here: ${(e as Error).message.split('\n')[0]}`); return; }
    try {
      writeFileSync(join(mnt, 'elsewhere.txt'), 'on a tmpfs\n');
      const one = await agent.json<BackupSummary>(['backup', 'files', base, '--name', 'onefs', '--one-file-system', '--json']);
      const paths = parseLs((await agent.ok(['ls', one.snapshotId, base, '--json'])).stdout).map((l) => l.path).sort();
      assert.deepEqual(paths, [base, `${base}/here.txt`, `${base}/mnt`], 'the mount point is kept (empty), nothing below it');
      const all = await agent.json<BackupSummary>(['backup', 'files', base, '--name', 'allfs', '--json']);
      const paths2 = parseLs((await agent.ok(['ls', all.snapshotId, base, '--json'])).stdout).map((l) => l.path).sort();
      assert.deepEqual(paths2, [base, `${base}/here.txt`, `${base}/mnt`, `${base}/mnt/elsewhere.txt`]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('every kind of command reuses the code the commands before it compiled (same V8 flags)', async () => {
    // launch's compile cache keeps V8's compiled code, which V8 accepts only from a process with the
    // same flags: a flag left set at run time (--expose-gc, when collect.ts first collected) made
    // every module compiled after it in one command be compiled again by the next, and cached again
    // for the one after. Every command before this one ran with bin/shelter.js's flag: nothing rejected
    const dir = join(work, 'code-cache-src');
    mkdirSync(dir);
    const file = join(dir, 'data.bin');
    writeFileSync(file, randomBytes(40 * MiB));
    const target = join(work, 'code-cache-restore');
    const steps: Array<[string[], () => void]> = [
      [['backup', 'files', dir, '--name', 'code-cache', '--json'], () => appendFileSync(file, randomBytes(16 * MiB))],
      [['restore', 'latest', '--name', 'code-cache', '--target', target], () => {}],
      [['snapshots', '--json'], () => {}],
      [['backup', 'files', dir, '--name', 'code-cache', '--json'], () => {}],
      [['snapshots', '--json'], () => {}],
    ];
    try {
      for (const [args, then] of steps) {
        const r = await agent.run(args, { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' });
        assertExit(r, 0, `shelter ${args.join(' ')}`);
        assert.ok(r.stderr.includes('was accepted'), `${args[0]}: the compile cache is in use\n${r.stderr.slice(0, 2000)}`);
        const rejected = r.stderr.split('\n').filter((l) => l.includes('was rejected'));
        assert.deepEqual(rejected, [], `shelter ${args[0]}: cached code rejected`);
        then();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(target, { recursive: true, force: true });
    }
  });

  it('the agent issued no DELETE and no overwrite (audit log, version listing)', async () => {
    const records = serverAudit(gw.dataDir, server.id);
    assert.ok(records.length > 0, 'the audit log holds the agent\'s requests');
    const allowed = new Set(['PutObject', 'GetObject', 'HeadObject', 'ListObjectsV2', 'ListObjects', 'HeadBucket', 'GetBucketLocation',
      'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'ListParts']);
    const ops = new Map<string, number>();
    for (const r of records) ops.set(r.operation, (ops.get(r.operation) ?? 0) + 1);
    const forbidden = [...ops.keys()].filter((op) => !allowed.has(op));
    assert.deepEqual(forbidden, [], `operations other than PUT/GET/HEAD/LIST: ${JSON.stringify(Object.fromEntries(ops))}`);
    assert.ok(!records.some((r) => /^(Delete|Abort)/.test(r.operation)), 'no DeleteObject/DeleteObjects/AbortMultipartUpload');
    // no overwrite: at most one successful write per key...
    const writes = new Map<string, number>();
    for (const r of records) {
      if ((r.operation === 'PutObject' || r.operation === 'CompleteMultipartUpload') && r.status >= 200 && r.status < 300) writes.set(r.key!, (writes.get(r.key!) ?? 0) + 1);
    }
    const twice = [...writes].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], 'keys written more than once');
    // ...and the bucket holds exactly one version of each key and no delete marker
    const v = await listVersions(s3, server.bucket);
    assert.deepEqual(v.deleteMarkers, []);
    const perKey = new Map<string, number>();
    for (const x of v.versions) perKey.set(x.key, (perKey.get(x.key) ?? 0) + 1);
    assert.deepEqual([...perKey].filter(([, n]) => n > 1), [], 'keys with more than one version');
    assert.equal(perKey.size, writes.size, 'every stored version was written by the agent (audit and listing agree)');
    assert.ok(v.versions.some((x) => x.key === 'config') && v.versions.some((x) => x.key.startsWith('manifests/')));
  });

  it('check --read-data passes on the repository after all of the above', async () => {
    const r = await agent.run(['check', '--read-data']);
    assertExit(r, 0, 'check --read-data');
  });
});
