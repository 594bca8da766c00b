// `shelter restore --export FILE.tar.gz` against a real shelterd over HTTPS: a small generated tree
// (regular, empty and 3 MiB files, a symlink, a hard-link pair, an empty directory, a unicode name
// with spaces and a newline, a name longer than 100 bytes, odd modes and sub-second mtimes) is
// backed up, exported, extracted with the system's GNU tar and compared with the source: bytes,
// modes, owners, mtimes, symlink targets, hard-link identity. `--export -` gives the same archive on
// standard output; --include of one directory exports only it; a failed export leaves no file.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, createGunzip } from 'node:zlib';
import { formatRun, pseudoRandomBytes, run } from '../lib/clients.ts';
import { nodeBin, type Gateway } from '../lib/gateway.ts';
import { startAgentFixture, type AgentFixture } from '../lib/fixture.ts';
import {
  EXIT, MiB, assertExit, assertNoStackTrace, assertSameTrees, scanTree, shelterBin, type Agent, type BackupSummary, type Entry,
} from '../lib/agent.ts';

const LONG_NAME = `${'long-name-'.repeat(12)}end.txt`; // 127 bytes: more than ustar's 100
const UNICODE_NAME = 'unicodé 日本語 with spaces\nand a newline.txt';

/** the tree of the brief, small: about 3 MiB */
function makeExportTree(root: string): void {
  const file = (rel: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
    chmodSync(join(root, rel), mode);
  };
  file('docs/readme.txt', 'hello from the export test\n', 0o640);
  file('docs/script.sh', '#!/bin/sh\necho hi\n', 0o755);
  file('docs/nested/leaf.txt', 'a leaf\n');
  file('empty-file', '');
  file('big/three-mib.bin', pseudoRandomBytes('export 3 MiB', 3 * MiB), 0o600);
  // blobs fetched in ranges (exporter.ts blobReader): one chunk repeated (zeros), a file longer
  // than one request, and a copy whose chunks come again after others
  file('big/zeros.bin', Buffer.alloc(6 * MiB));
  file('big/twelve-mib.bin', pseudoRandomBytes('export 12 MiB', 12 * MiB));
  file('dup/copy-of-three.bin', pseudoRandomBytes('export 3 MiB', 3 * MiB));
  mkdirSync(join(root, 'links'));
  symlinkSync('../docs/readme.txt', join(root, 'links/to-readme'));
  file('hard/a', 'hard linked content\n'.repeat(20));
  linkSync(join(root, 'hard/a'), join(root, 'hard/b'));
  mkdirSync(join(root, 'empty-dir'), { mode: 0o700 });
  chmodSync(join(root, 'empty-dir'), 0o700);
  file(`names/${UNICODE_NAME}`, 'unicode, spaces, newline\n');
  file(`names/${LONG_NAME}`, 'a name longer than 100 bytes\n');
  // sub-second mtimes, files first, then the directories their creation touched
  const times: Array<[string, number]> = [
    ['docs/readme.txt', 1234567890.123456], ['empty-file', 1.5], ['big/three-mib.bin', 1700000000.999999], ['hard/a', 1500000000.25],
    [`names/${UNICODE_NAME}`, 1600000000.5], [`names/${LONG_NAME}`, 1650000000], ['docs/nested', 1111111111.111111], ['empty-dir', 1400000000.75],
  ];
  for (const [rel, t] of times) utimesSync(join(root, rel), t, t);
}

/** the entries of a scan under directory `dir`, keyed relative to it (as scanTree(dir) would) */
function subScan(m: Map<string, Entry>, dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const [k, e] of m) {
    if (k !== dir && !k.startsWith(`${dir}/`)) continue;
    const rel = k === dir ? '' : k.slice(dir.length + 1);
    out.set(rel, { ...e, rel: Buffer.from(rel, 'latin1') });
  }
  return out;
}

/** `tar -tzf`: the names in an archive */
const tarNames = (archive: string) => execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).split('\n').filter(Boolean);

/** runs the agent with its standard output piped through gunzip: the uncompressed archive, the exit status, stderr */
function exportToPipe(agent: Agent, args: string[]): Promise<{ status: number | null; tar: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeBin, [shelterBin, ...args], { env: agent.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const gunzip = createGunzip();
    const unzipped = new Promise<void>((res) => { gunzip.on('end', res); });
    child.stdout.pipe(gunzip).on('data', (d: Buffer) => out.push(d)).on('error', reject);
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (status) => {
      const result = () => resolve({ status, tar: Buffer.concat(out), stderr: Buffer.concat(err).toString() });
      // a failed run may leave no complete gzip stream: do not wait for one then
      if (status === 0) void unzipped.then(result); else result();
    });
  });
}

describe('shelter restore --export (tar.gz) against shelterd over HTTPS', () => {
  let gw: Gateway;
  let agent: Agent;
  let work: string;
  let src: string;
  let scan: Map<string, Entry>;
  let snapshotId: string;
  let archive: string;

  let fx: AgentFixture | undefined;

  before(async () => {
    fx = await startAgentFixture('export');
    ({ gw, work, agent } = fx);
    src = join(work, 'src');
    mkdirSync(src);
    makeExportTree(src);
    scan = scanTree(src);
    const b = await agent.json<BackupSummary>(['backup', 'files', src, '--name', 'export', '--json']);
    assert.equal(b.warnings, 0);
    snapshotId = b.snapshotId;
  });

  after(async () => { await fx?.stop(); });

  it('--export FILE: GNU tar extracts the same tree (bytes, modes, owners, mtimes, symlinks, hard links)', async () => {
    archive = join(work, 'snapshot.tar.gz');
    const r = await agent.run(['restore', snapshotId, '--export', archive, '--json']);
    assertExit(r, 0, 'restore --export');
    const summary = JSON.parse(r.stdout) as { archive: string; files: number; hardlinks: number; symlinks: number; dirs: number; warnings: number };
    assert.equal(summary.archive, archive);
    assert.equal(summary.warnings, 0);
    assert.equal(summary.hardlinks, 1, 'hard/b is a hard-link entry');
    assert.equal(summary.symlinks, 1);
    assert.equal(statSync(archive).mode & 0o777, 0o600, 'the archive holds the backup in clear: 0600');
    assert.deepEqual(readdirSync(work).filter((n) => n.includes('.partial-')), [], 'no partial file left');

    const out = join(work, 'extracted');
    mkdirSync(out);
    execFileSync('tar', ['-xzf', archive, '-C', out]);
    const got = scanTree(join(out, src));
    assertSameTrees(scan, got, 'the extracted archive');
    // spelled out, although assertSameTrees covers them
    assert.equal(got.get('hard/a')!.ino, got.get('hard/b')!.ino, 'hard/a and hard/b share an inode');
    assert.equal(got.get('links/to-readme')!.target!.toString(), '../docs/readme.txt');
    assert.equal(readFileSync(join(out, src, 'big/three-mib.bin')).equals(pseudoRandomBytes('export 3 MiB', 3 * MiB)), true);
    assert.equal(got.get('docs/readme.txt')!.mtimeNs, scan.get('docs/readme.txt')!.mtimeNs, 'sub-second mtime kept (pax)');
    assert.equal(got.get('empty-dir')!.mode, 0o700);
  });

  it('the archive is POSIX pax: hard-link entry for the second name, long and unicode names whole', () => {
    const verbose = execFileSync('tar', ['-tvzf', archive], { encoding: 'utf8' });
    const rel = src.slice(1);
    assert.match(verbose, new RegExp(`^h.* ${rel}/hard/b link to ${rel}/hard/a$`, 'm'), verbose);
    const names = tarNames(archive);
    assert.ok(names.includes(`${rel}/names/${LONG_NAME}`), 'the long name is whole');
    // GNU tar shows a newline in a name as \n
    assert.ok(names.includes(`${rel}/names/${UNICODE_NAME.replace('\n', '\\n')}`), `the unicode name is whole: ${names.filter((n) => n.includes('names/')).join(', ')}`);
    assert.ok(names.includes(`${rel}/empty-dir/`), 'the empty directory has an entry');
    const raw = gunzipSync(readFileSync(archive));
    assert.ok(raw.includes(Buffer.from(' mtime=1234567890.123456')), 'a pax mtime record with the fraction');
  });

  it('--export - writes the same archive to standard output', async () => {
    const piped = await exportToPipe(agent, ['restore', snapshotId, '--export', '-']);
    assert.equal(piped.status, 0, piped.stderr);
    assert.match(piped.stderr, /exported snapshot/, 'the summary goes to standard error');
    assert.ok(piped.tar.equals(gunzipSync(readFileSync(archive))), 'the same tar bytes as the file variant');
  });

  it('--include of one directory exports only it (and the directories above it)', async () => {
    const only = join(work, 'docs-only.tar.gz');
    await agent.ok(['restore', 'latest', '--name', 'export', '--export', only, '--include', `${src}/docs`]);
    const rel = src.slice(1);
    const parts = rel.split('/');
    const above = parts.map((_, i) => `${parts.slice(0, i + 1).join('/')}/`);
    const expected = [...above, `${rel}/docs/`, `${rel}/docs/nested/`, `${rel}/docs/nested/leaf.txt`, `${rel}/docs/readme.txt`, `${rel}/docs/script.sh`];
    assert.deepEqual(tarNames(only).sort(), expected.sort());
    const out = join(work, 'extracted-docs');
    mkdirSync(out);
    execFileSync('tar', ['-xzf', only, '-C', out]);
    assertSameTrees(subScan(scan, 'docs'), scanTree(join(out, src, 'docs')), 'the exported docs directory');
  });

  it('usage errors: neither or both of --target and --export, an existing file, --ignore-existing (exit 2, nothing written)', async () => {
    for (const args of [['restore', snapshotId], ['restore', snapshotId, '--target', join(work, 't'), '--export', join(work, 'x.tar.gz')],
      ['restore', snapshotId, '--export', archive], ['restore', snapshotId, '--export', join(work, 'y.tar.gz'), '--ignore-existing']]) {
      const r = await agent.run(args);
      assertNoStackTrace(r, args.join(' '));
      assertExit(r, EXIT.usage, args.join(' '));
    }
    assert.ok(!existsSync(join(work, 't')) && !existsSync(join(work, 'x.tar.gz')) && !existsSync(join(work, 'y.tar.gz')));
    const help = await agent.ok(['restore', '--help']);
    assert.match(help.stdout, /--export/);
    assert.match(help.stdout, /[Ss]parse files are written in full/);
  });

  it('a failed export (disk full) removes the partial archive and exits non-zero with a clear message', async (t: TestContext) => {
    const mnt = join(work, 'full');
    mkdirSync(mnt);
    try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'shelter-export-test', mnt], { stdio: 'pipe' }); }
    catch (e) { t.skip(`cannot mount a tmpfs here: ${(e as Error).message.split('\n')[0]}`); return; }
    try {
      const target = join(mnt, 'too-big.tar.gz');
      const r = await run(nodeBin, [shelterBin, 'restore', snapshotId, '--export', target], { env: agent.env });
      assert.notEqual(r.status, 0, formatRun(r));
      assertNoStackTrace(r, 'export onto a full file system');
      assert.match(r.stderr, /not written.*partial archive is removed.*(ENOSPC|no space)/i, formatRun(r));
      assert.deepEqual(readdirSync(mnt), [], 'neither the archive nor its partial file is left');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
