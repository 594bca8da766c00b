// Helpers for the end-to-end tests of the `shelter` agent against a real `shelterd` (./gateway.ts):
// running the agent as a child process exactly as a user would (`node packages/agent/bin/shelter.js`
// with the project's Node 24), generating a file tree that holds every special case the agent
// must preserve, and comparing two trees byte for byte and by metadata.
//
// Names are handled as bytes everywhere (Buffer paths): a tree may hold names that are not UTF-8.
import { AssertionError } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, closeSync, existsSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, readlinkSync,
  readSync, symlinkSync, truncateSync, utimesSync, writeFileSync, writeSync, type BigIntStats,
} from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ListObjectVersionsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { cleanEnv, formatRun, pseudoRandomBytes, run, type RunResult } from './clients.ts';
import { auditRecords, nodeBin, repoRoot, tempDir, type AuditRecord, type Gateway, type S3Credentials } from './gateway.ts';

/**
 * The agent's entry point. SHELTER_TEST_AGENT_BIN points the tests at another copy (e.g. an
 * exported older commit) while the working tree's agent is being edited.
 */
export const shelterBin = process.env.SHELTER_TEST_AGENT_BIN || join(repoRoot, 'packages/agent/bin/shelter.js');
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

// ---------------------------------------------------------------------------------------------
// Running the agent
// ---------------------------------------------------------------------------------------------

/** exit codes documented by `shelter --help` */
export const EXIT = { ok: 0, failure: 1, usage: 2, warnings: 3, checkFailed: 4, wrongKey: 5, storage: 6 } as const;

/**
 * The environment of an agent run: nothing from the machine that could configure it (AWS_*,
 * SHELTER_*), a private config home and state home (per-run log files land in the latter), plus
 * `extra`.
 */
export function agentEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = cleanEnv();
  for (const k of Object.keys(env)) if (/^(SHELTER_|XDG_)/.test(k)) delete env[k];
  mkdirSync(join(home, 'state'), { recursive: true });
  return { ...env, HOME: home, XDG_CONFIG_HOME: join(home, 'xdg-config'), XDG_STATE_HOME: join(home, 'state'), ...extra };
}

/**
 * Runs `shelter ARGS` with the given environment; never throws on a non-zero exit. A run that
 * takes longer than timeoutMs (default 120 s: every run here handles a few MiB, except the
 * backup and restore of the sparse file, which pass more) is killed and shows as such.
 */
export function shelter(args: string[], env: NodeJS.ProcessEnv, opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return run(nodeBin, [shelterBin, ...args], { env, cwd: repoRoot, timeoutMs: opts.timeoutMs ?? 120_000, input: opts.input });
}

/** A stack trace in the output means an error escaped the agent's error handling. */
export function assertNoStackTrace(r: RunResult, what: string): void {
  const text = r.stdout + r.stderr;
  if (/\n\s+at (?:async )?\S.*[(\s]\S+:\d+:\d+\)?/.test(text) || /unexpected error/i.test(text)) {
    throw new AssertionError({ message: `${what}: the output holds a stack trace / unexpected error\n${formatRun(r)}` });
  }
}

export function assertExit(r: RunResult, code: number, what: string): void {
  if (r.status !== code) throw new AssertionError({ message: `${what}: expected exit status ${code}, got ${r.status}\n${formatRun(r)}` });
}

/** An agent configured by `shelter init` in its own config directory, with its own key file. */
export interface Agent {
  /** base directory: config/, key file, state/ (logs) */
  home: string;
  configDir: string;
  keyFile: string;
  /** the environment every run of this agent gets (SHELTER_CONFIG_DIR, XDG_STATE_HOME...) */
  env: NodeJS.ProcessEnv;
  /** `shelter ARGS`, whatever its exit status (killed after timeoutMs, default 120 s) */
  run(args: string[], extraEnv?: Record<string, string>, opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** `shelter ARGS`, which must exit 0 */
  ok(args: string[], what?: string): Promise<RunResult>;
  /** `shelter ARGS`, which must exit 0 and print one JSON document */
  json<T = unknown>(args: string[], what?: string): Promise<T>;
}

export function makeAgent(home: string, extraEnv: Record<string, string> = {}): Agent {
  const configDir = join(home, 'config');
  const keyFile = join(home, 'master.key');
  const env = agentEnv(home, { SHELTER_CONFIG_DIR: configDir, ...extraEnv });
  const agent: Agent = {
    home, configDir, keyFile, env,
    run: (args, more = {}, o = {}) => shelter(args, { ...env, ...more }, o),
    async ok(args, what = `shelter ${args.join(' ')}`) {
      const r = await agent.run(args);
      assertExit(r, 0, what);
      return r;
    },
    async json<T>(args: string[], what = `shelter ${args.join(' ')}`): Promise<T> {
      const r = await agent.ok(args, what);
      try { return JSON.parse(r.stdout) as T; }
      catch { throw new AssertionError({ message: `${what}: stdout is not one JSON document\n${formatRun(r)}` }); }
    },
  };
  return agent;
}

/** `shelter init` for a server of `gw` (non-interactive; the key file is created). */
export async function initAgent(gw: Gateway, server: S3Credentials, opts: { home?: string; keyFile?: string } = {}): Promise<Agent> {
  const agent = makeAgent(opts.home ?? tempDir('shelter-agent-'));
  const keyFile = opts.keyFile ?? agent.keyFile;
  await agent.ok(['init', '--endpoint', gw.url, '--bucket', server.bucket, '--access-key', server.accessKeyId,
    '--secret-key', server.secretAccessKey, '--ca-cert', gw.caFile, '--key-file', keyFile, '--json'], 'shelter init');
  return { ...agent, keyFile };
}

/** The JSON summary `backup files --json` prints (the fields the tests rely on). */
export interface BackupSummary {
  snapshotId: string; name: string; parent: string | null; warnings: number;
  files: number; dirs: number; bytes: number; newFiles: number; changedFiles: number; unchangedFiles: number;
  newBlobs: number; newBytes: number; storedBytes: number; durationMs: number;
  [k: string]: unknown;
}

export interface SnapshotRow { id: string; time: string; name: string; hostname: string; paths: string[]; parent: string | null; summary: Record<string, number> }

// ---------------------------------------------------------------------------------------------
// Reading a tree: every entry with its metadata, names as bytes
// ---------------------------------------------------------------------------------------------

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface Entry {
  /** path relative to the root, as bytes ('' = the root itself) */
  rel: Buffer;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  mtimeNs: bigint;
  ino: bigint;
  nlink: number;
  /** 512-byte blocks allocated */
  blocks: bigint;
  target?: Buffer;
  /** SHA-256 of the content (files not listed in `noHash`) */
  sha256?: string;
}

const typeOf = (st: BigIntStats): EntryType => st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink'
  : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'chardev' : 'blockdev';

const SLASH = Buffer.from('/');
const childPath = (dir: Buffer, name: Buffer) => Buffer.concat([dir, SLASH, name]);
/** a readable rendering of a byte path for messages (invalid UTF-8 shown as \xNN) */
export function showPath(rel: Buffer): string {
  const s = rel.toString('utf8');
  if (Buffer.from(s).equals(rel)) return JSON.stringify(s);
  let out = '';
  for (const b of rel) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${out}"`;
}
/** map key of a byte path (latin1 maps bytes 1:1 to a string) */
export const keyOf = (rel: Buffer) => rel.toString('latin1');

export function sha256FileSync(path: Buffer | string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 * MiB);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally { closeSync(fd); }
  return h.digest('hex');
}

/**
 * Every entry under `root` (root included, rel ''), keyed by `keyOf(rel)`. File contents are
 * hashed except for the paths in `noHash` (keys), e.g. a 4 GiB sparse file checked separately.
 */
export function scanTree(root: string, opts: { noHash?: Set<string> } = {}): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const rootB = Buffer.from(root);
  const visit = (abs: Buffer, rel: Buffer) => {
    const st = lstatSync(abs, { bigint: true });
    const type = typeOf(st);
    const e: Entry = {
      rel, type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: st.size, mtimeNs: st.mtimeNs,
      ino: st.ino, nlink: Number(st.nlink), blocks: st.blocks,
    };
    if (type === 'symlink') e.target = readlinkSync(abs, { encoding: 'buffer' });
    if (type === 'file' && !opts.noHash?.has(keyOf(rel))) e.sha256 = sha256FileSync(abs);
    out.set(keyOf(rel), e);
    if (type === 'dir') {
      for (const name of readdirSync(abs, { encoding: 'buffer' })) visit(childPath(abs, name), rel.length ? childPath(rel, name) : name);
    }
  };
  visit(rootB, Buffer.alloc(0));
  return out;
}

export interface CompareOptions {
  /** compare mtimes of directories too (default true) */
  dirTimes?: boolean;
  /** allowed difference of mtimes, in ns (default 250: a double's half step, around 2038, for a time in seconds; Node's utimes takes those) */
  mtimeSlackNs?: bigint;
  /** compare uid/gid (default true) */
  owners?: boolean;
}

/**
 * Differences between two scans (expected, actual): missing/extra entries, type, mode, owners,
 * size, mtime, symlink target, content, and hard links (names sharing an inode in `expected`
 * must share one in `actual`, and only those). Returns human-readable lines; empty = identical.
 */
export function diffTrees(expected: Map<string, Entry>, actual: Map<string, Entry>, opts: CompareOptions = {}): string[] {
  const problems: string[] = [];
  const slack = opts.mtimeSlackNs ?? 250n;
  for (const [k, e] of expected) {
    const a = actual.get(k);
    const p = showPath(e.rel) + (e.rel.length ? '' : ' (root)');
    if (!a) { problems.push(`${p}: missing (${e.type})`); continue; }
    if (a.type !== e.type) { problems.push(`${p}: type ${a.type}, expected ${e.type}`); continue; }
    if (e.type !== 'symlink' && a.mode !== e.mode) problems.push(`${p}: mode ${a.mode.toString(8)}, expected ${e.mode.toString(8)}`);
    if (opts.owners !== false && (a.uid !== e.uid || a.gid !== e.gid)) problems.push(`${p}: owner ${a.uid}:${a.gid}, expected ${e.uid}:${e.gid}`);
    if (e.type === 'file' && a.size !== e.size) problems.push(`${p}: size ${a.size}, expected ${e.size}`);
    if (e.type === 'file' && e.sha256 && a.sha256 !== e.sha256) problems.push(`${p}: content differs (sha256 ${a.sha256}, expected ${e.sha256})`);
    if (e.type === 'symlink' && !a.target!.equals(e.target!)) problems.push(`${p}: symlink target ${showPath(a.target!)}, expected ${showPath(e.target!)}`);
    const dt = a.mtimeNs - e.mtimeNs;
    if ((e.type !== 'dir' || opts.dirTimes !== false) && (dt > slack || dt < -slack)) {
      problems.push(`${p}: mtime ${a.mtimeNs} ns, expected ${e.mtimeNs} ns (off by ${dt} ns)`);
    }
  }
  for (const [k, a] of actual) if (!expected.has(k)) problems.push(`${showPath(a.rel)}: unexpected entry (${a.type})`);
  // hard links: partition files by inode on both sides, compare the partitions
  const groups = (m: Map<string, Entry>) => {
    const byIno = new Map<bigint, string[]>();
    for (const [k, e] of m) if (e.type === 'file') byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), k]);
    const of = new Map<string, string>();
    for (const names of byIno.values()) { const sorted = names.sort(); for (const n of sorted) of.set(n, sorted.join(' = ')); }
    return of;
  };
  const ge = groups(expected);
  const ga = groups(actual);
  for (const [k, g] of ge) {
    if (!actual.has(k) || actual.get(k)!.type !== 'file') continue;
    const gaK = ga.get(k)!;
    if (gaK !== g) problems.push(`${showPath(expected.get(k)!.rel)}: hard links differ: names sharing its inode are [${showKeys(gaK)}], expected [${showKeys(g)}]`);
  }
  return problems;
}
const showKeys = (g: string) => g.split(' = ').map((k) => showPath(Buffer.from(k, 'latin1'))).join(', ');

export function assertSameTrees(expected: Map<string, Entry>, actual: Map<string, Entry>, what: string, opts: CompareOptions = {}): void {
  const problems = diffTrees(expected, actual, opts);
  if (problems.length) {
    throw new AssertionError({ message: `${what}: ${problems.length} difference(s):\n  ${problems.slice(0, 60).join('\n  ')}${problems.length > 60 ? '\n  ...' : ''}` });
  }
}

/** a subset of a scan (e.g. what an include/exclude filter should keep) */
export function filterScan(scan: Map<string, Entry>, keep: (e: Entry) => boolean): Map<string, Entry> {
  return new Map([...scan].filter(([, e]) => keep(e)));
}

// ---------------------------------------------------------------------------------------------
// Sparse files
// ---------------------------------------------------------------------------------------------

export interface SparseSpec { size: number; regions: Array<{ offset: number; length: number; seed: string }> }

export function writeSparseFile(path: string, spec: SparseSpec): void {
  const fd = openSync(path, 'w', 0o644);
  try {
    for (const r of spec.regions) {
      const data = pseudoRandomBytes(r.seed, r.length);
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, r.offset + done);
    }
  } finally { closeSync(fd); }
  truncateSync(path, spec.size);
}

/**
 * The data extents of a file (SEEK_DATA / SEEK_HOLE): everything outside them is a hole, which
 * reads as zeros. Node has no lseek, so this asks python3; undefined when it is not available.
 */
export function dataExtents(path: string): Array<[number, number]> | undefined {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return undefined;
  const script = `import os,sys,json
fd=os.open(sys.argv[1],os.O_RDONLY); size=os.fstat(fd).st_size; out=[]; pos=0
while pos<size:
  try: start=os.lseek(fd,pos,os.SEEK_DATA)
  except OSError: break
  end=os.lseek(fd,start,os.SEEK_HOLE); out.append([start,end]); pos=end
print(json.dumps(out))`;
  const r = spawnSync(py, ['-c', script, path], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return JSON.parse(r.stdout) as Array<[number, number]>;
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** what the sparse file should hold in [offset, offset + length) */
function expectedBytes(spec: SparseSpec, offset: number, length: number): Buffer {
  const out = Buffer.alloc(Math.max(0, Math.min(length, spec.size - offset)));
  for (const r of spec.regions) {
    const from = Math.max(offset, r.offset);
    const to = Math.min(offset + out.length, r.offset + r.length);
    if (from >= to) continue;
    pseudoRandomBytes(r.seed, r.length).copy(out, from - offset, from - r.offset, to - r.offset);
  }
  return out;
}

/**
 * Checks a (restored) sparse file against its spec without reading gigabytes of holes: its size;
 * every data region byte for byte; every data extent the file system reports (read in full, so
 * nothing but the regions holds non-zero bytes, and the rest is a hole that reads as zeros); a
 * few samples inside the holes; and its allocation (at most `maxAllocated` bytes). Without
 * SEEK_DATA support the whole file is read instead (slow). Returns problems (empty = fine).
 */
export function checkSparseFile(path: string, spec: SparseSpec, maxAllocated: number): string[] {
  const problems: string[] = [];
  const st = lstatSync(path, { bigint: true });
  if (st.size !== BigInt(spec.size)) problems.push(`size ${st.size}, expected ${spec.size}`);
  const allocated = Number(st.blocks) * 512;
  if (allocated > maxAllocated) problems.push(`not sparse: ${allocated} bytes allocated for ${spec.size} bytes (limit ${maxAllocated})`);
  const fd = openSync(path, 'r');
  try {
    for (const r of spec.regions) {
      if (!readAt(fd, r.offset, r.length).equals(expectedBytes(spec, r.offset, r.length))) problems.push(`data region at ${r.offset} (+${r.length}) differs`);
    }
    const extents = dataExtents(path);
    if (extents) {
      const dataBytes = extents.reduce((s, [a, b]) => s + (b - a), 0);
      if (dataBytes > maxAllocated) problems.push(`data extents cover ${dataBytes} bytes (limit ${maxAllocated})`);
      else {
        for (const [a, b] of extents) {
          for (let o = a; o < b; o += 8 * MiB) {
            const len = Math.min(8 * MiB, b - o);
            if (!readAt(fd, o, len).equals(expectedBytes(spec, o, len))) { problems.push(`data extent [${a}, ${b}) holds bytes other than expected near ${o}`); break; }
          }
        }
      }
      // samples in the holes (reads of holes are zeros by definition; this proves the reading path)
      for (const frac of [0.1, 0.25, 0.4, 0.6, 0.75, 0.9]) {
        const o = Math.floor(spec.size * frac);
        if (!readAt(fd, o, 64 * KiB).equals(expectedBytes(spec, o, 64 * KiB))) problems.push(`bytes at ${o} differ from the expected zeros/data`);
      }
    } else {
      for (let o = 0; o < spec.size; o += 8 * MiB) {
        const len = Math.min(8 * MiB, spec.size - o);
        if (!readAt(fd, o, len).equals(expectedBytes(spec, o, len))) { problems.push(`content differs near offset ${o}`); break; }
      }
    }
  } finally { closeSync(fd); }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The special-case tree
// ---------------------------------------------------------------------------------------------

export interface SpecialTree {
  root: string;
  /** relative path (string) of the sparse file, and its spec (undefined when not made) */
  sparse?: { rel: string; spec: SparseSpec };
  /** the keys (keyOf) of files not to hash in scans */
  noHash: Set<string>;
}

/**
 * Writes the tree with every special case into `root` (which must not exist):
 * nested and empty dirs, an empty file, unicode names, names with spaces and a newline, a name
 * with invalid UTF-8 bytes, symlinks (relative, absolute, dangling, to a directory), hard links
 * (3 names for one inode, 2 for another), modes (0600, 0755, 0444, setuid, setgid dir, sticky
 * dir), odd mtimes (fractional, 1970, 2038+), a compressible file, a 20 MiB random file, a fifo,
 * files owned by other uids/gids (the tests run as root), and optionally a sparse file of
 * `sparseSize` bytes with data at its start, middle and end.
 */
export function makeSpecialTree(root: string, opts: { sparseSize?: number } = {}): SpecialTree {
  mkdirSync(root, { recursive: false });
  const p = (...parts: string[]) => join(root, ...parts);
  const file = (rel: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(p(rel), data, { mode });
    chmodSync(p(rel), mode);
  };
  // nested directories and plain text
  file('docs/readme.txt', 'Shelter test tree\n');
  file('docs/notes.md', '# notes\n\n' + 'line\n'.repeat(100));
  file('docs/nested/deep/deeper/deepest/leaf.txt', 'a leaf five levels down\n');
  file('docs/nested/sibling.log', 'log line\n'.repeat(50));
  // empty things
  mkdirSync(p('empty-dir'));
  mkdirSync(p('empty-parent/empty-child/empty-grandchild'), { recursive: true });
  file('empty-file', '');
  // names
  file('unicode/café-日本語-🐘.txt', 'unicode name\n');
  file('unicode/Ωmega dir/naïve file.txt', 'accents\n');
  file('names/name with spaces.txt', 'spaces\n');
  file('names/new\nline.txt', 'a newline in the name\n');
  file('names/ leading and trailing ', 'spaces around\n');
  file('names/quote"s and \\backslash', 'quotes\n');
  file('names/tab\there', 'tab\n');
  const badName = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x80, 0x2e, 0x62, 0x69, 0x6e]); // "bad\xff\xfe\x80.bin"
  const badDir = Buffer.from([0x64, 0x69, 0x72, 0xc3, 0x28]); // "dir\xc3(" (truncated UTF-8 sequence)
  const namesB = Buffer.from(p('names'));
  writeFileSync(childPath(namesB, badName), 'a name that is not UTF-8\n', { mode: 0o644 });
  mkdirSync(childPath(namesB, badDir));
  writeFileSync(childPath(childPath(namesB, badDir), Buffer.from('inside.txt')), 'inside a non-UTF-8 directory\n');
  // symlinks
  mkdirSync(p('links'));
  symlinkSync('../docs/readme.txt', p('links/relative'));
  symlinkSync('/etc/hostname', p('links/absolute'));
  symlinkSync('does/not/exist', p('links/dangling'));
  symlinkSync('../docs', p('links/to-dir'));
  symlinkSync('../unicode/café-日本語-🐘.txt', p('links/unicode-target'));
  symlinkSync(Buffer.concat([Buffer.from('../names/'), badName]), Buffer.from(p('links/bad-target')));
  // hard links: three names for one inode (across directories), two for another
  file('hard/one', 'hard linked content\n'.repeat(10));
  linkSync(p('hard/one'), p('hard/two'));
  mkdirSync(p('hard/sub'));
  linkSync(p('hard/one'), p('hard/sub/three'));
  file('hard/pair-a', pseudoRandomBytes('hard pair', 100 * KiB));
  linkSync(p('hard/pair-a'), p('hard/pair-b'));
  // modes
  file('modes/private', 'secret\n', 0o600);
  file('modes/script.sh', '#!/bin/sh\necho hi\n', 0o755);
  file('modes/readonly', 'read only\n', 0o444);
  file('modes/setuid', 'setuid\n', 0o4755);
  file('modes/nothing', 'no permission at all\n', 0o000);
  file('modes/world-writable', 'bits a umask of 022 would strip (the restore creates files with their mode)\n', 0o666);
  mkdirSync(p('modes/setgid-dir'));
  file('modes/setgid-dir/inside', 'in a setgid dir\n');
  mkdirSync(p('modes/sticky-dir'));
  file('modes/sticky-dir/inside', 'in a sticky dir\n');
  mkdirSync(p('modes/private-dir'));
  file('modes/private-dir/inside', 'in a 0700 dir\n');
  // contents
  const line = 'The quick brown fox jumps over the lazy dog; shelter compresses this line well. ';
  file('big/compressible.txt', line.repeat(Math.ceil(6 * MiB / line.length)));
  file('big/random.bin', pseudoRandomBytes('random 20 MiB', 20 * MiB));
  file('big/zeros.bin', Buffer.alloc(3 * MiB + 17)); // all zeros, not sparse
  // a fifo
  mkdirSync(p('special'));
  execFileSync('mkfifo', ['-m', '0640', p('special/fifo')]);
  // ownership (the tests run as root; as another user the files keep their owner): chown before
  // chmod (chown clears setuid/setgid)
  const chown = (path: string, uid: number, gid: number) => { if (process.getuid?.() === 0) lchownSync(path, uid, gid); };
  file('owners/user-1234', 'owned by 1234:5678\n');
  chown(p('owners/user-1234'), 1234, 5678);
  file('owners/nobody', 'owned by 65534\n', 0o640);
  chown(p('owners/nobody'), 65534, 65534);
  chmodSync(p('owners/nobody'), 0o640);
  mkdirSync(p('owners/dir-4321'));
  file('owners/dir-4321/file-root-group-99', 'root:99\n');
  chown(p('owners/dir-4321/file-root-group-99'), 0, 99);
  chown(p('owners/dir-4321'), 4321, 4321);
  symlinkSync('user-1234', p('owners/link-2222'));
  chown(p('owners/link-2222'), 2222, 3333);
  chown(p('modes/setgid-dir'), 0, 4444);
  chmodSync(p('modes/setgid-dir'), 0o2775);
  chmodSync(p('modes/sticky-dir'), 0o1777);
  chmodSync(p('modes/private-dir'), 0o700);
  chmodSync(p('modes/setuid'), 0o4755);
  // sparse
  let sparse: SpecialTree['sparse'];
  const noHash = new Set<string>();
  if (opts.sparseSize) {
    const size = opts.sparseSize;
    const spec: SparseSpec = {
      size,
      regions: [
        { offset: 0, length: 100 * KiB + 3, seed: 'sparse start' },
        { offset: Math.floor(size / 2) + 12345, length: 300 * KiB, seed: 'sparse middle' },
        { offset: size - 50 * KiB - 7, length: 50 * KiB + 7, seed: 'sparse end' },
      ],
    };
    mkdirSync(p('sparse'));
    writeSparseFile(p('sparse/disk.img'), spec);
    sparse = { rel: 'sparse/disk.img', spec };
    noHash.add(keyOf(Buffer.from('sparse/disk.img')));
  }
  // times, last (every write above changed directory mtimes): odd values on files and dirs
  const times: Array<[string, number]> = [
    ['docs/readme.txt', 1234567890.123456],            // fractional seconds (µs)
    ['empty-file', 1.5],                                // 1970
    ['modes/private', 0],                               // the epoch itself
    ['modes/script.sh', 2147483648.25],                 // 2038-01-19T03:14:08.25Z, past 32-bit time_t
    ['big/random.bin', 4102444800.000001],              // 2100-01-01
    ['hard/one', 1500000000.5],
    ['names/new\nline.txt', 86400 * 365 + 0.000001],   // 1971, one µs
    ['docs/nested/deep', 1111111111.111111],            // a directory
    ['empty-dir', 2500000000.75],                       // a directory, 2049
  ];
  for (const [rel, t] of times) utimesSync(p(rel), t, t);
  // before 1970 (Node's utimes reads a negative number as "now": the string is the time itself),
  // on a regular file and on a fifo (restored through two different calls)
  for (const rel of ['docs/notes.md', 'special/fifo']) utimesSync(p(rel), '-86400.5', '-86400.5');
  lutimesSync(p('links/relative'), 1000000000.5, 1000000000.5);
  lutimesSync(p('links/dangling'), 3000000000.123456, 3000000000.123456);
  // directories whose content changed after their odd time: set them again bottom-up
  utimesSync(p('docs/nested/deep'), 1111111111.111111, 1111111111.111111);
  utimesSync(p('docs/nested'), 999999999.000001, 999999999.000001);
  return { root, sparse, noHash };
}

// ---------------------------------------------------------------------------------------------
// The gateway side: objects, their files on disk, the audit log
// ---------------------------------------------------------------------------------------------

/** every object (current versions) under a prefix, through S3 with the server's credentials */
export async function listObjects(s3: S3Client, bucket: string, prefix = ''): Promise<Array<{ key: string; size: number }>> {
  const out: Array<{ key: string; size: number }> = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) out.push({ key: o.Key!, size: o.Size ?? 0 });
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** every version and delete marker of a bucket */
export async function listVersions(s3: S3Client, bucket: string): Promise<{ versions: Array<{ key: string; versionId: string }>; deleteMarkers: Array<{ key: string }> }> {
  const versions: Array<{ key: string; versionId: string }> = [];
  const deleteMarkers: Array<{ key: string }> = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const r = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    for (const v of r.Versions ?? []) versions.push({ key: v.Key!, versionId: v.VersionId! });
    for (const d of r.DeleteMarkers ?? []) deleteMarkers.push({ key: d.Key! });
    if (!r.IsTruncated) break;
    keyMarker = r.NextKeyMarker;
    versionMarker = r.NextVersionIdMarker;
  }
  return { versions, deleteMarkers };
}

/**
 * The files holding the current version of an object in an embedded gateway's data directory
 * (DATA/objects/ab/cd/<blob id>, from meta.db's `versions` table). Stop the gateway first.
 */
export function objectFiles(dataDir: string, bucket: string, key: string): Array<{ path: string; size: number }> {
  const db = new DatabaseSync(join(dataDir, 'meta.db'), { readOnly: true });
  try {
    const row = db.prepare('SELECT blobs FROM versions WHERE bucket = ? AND key = ? AND delete_marker = 0 ORDER BY seq DESC LIMIT 1').get(bucket, key) as { blobs: string } | undefined;
    if (!row) throw new Error(`no version of ${bucket}/${key} in ${dataDir}/meta.db`);
    return (JSON.parse(row.blobs) as Array<[string, number]>).map(([id, size]) => ({ path: join(dataDir, 'objects', id.slice(0, 2), id.slice(2, 4), id), size }));
  } finally { db.close(); }
}

/** audit records of one server's credentials (source `server:<id>`) */
export function serverAudit(dataDir: string, serverId: string): AuditRecord[] {
  return auditRecords(dataDir).filter((r) => r.source === `server:${serverId}`);
}

export { run, formatRun, type RunResult };
