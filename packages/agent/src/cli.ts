// The `shelter` command line. Exit codes (also in `shelter --help`):
//   0 success   1 failure   2 usage or configuration error   3 backup finished with warnings
//   4 check found problems   5 wrong key or passphrase (fingerprint lock)   6 storage unreachable or access denied
import { Command } from 'commander';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { FormatError, createRepository, formatRecoveryKit, decodeTree, toHex, type SlotSecret, type TreeNode } from '@shelter/format';
import { backupFiles, beginWalk } from './archiver.ts';
import { dirCacheWriter, loadDirCache, walkKey } from './dircache.ts';
import { cacheRoot } from './localcache.ts';
import { readAccounts } from './fsnode.ts';
import { BackendError } from './backend/types.ts';
import { ConfigError, configPath, loadConfig, requireConfig, saveConfig, type AgentConfig } from './config.ts';
import { KeyError, addKeySlot, loadMasterKey, readBucketSlots, runKeyCommand, slotKind, wrappingKeyFile, writeKeyFile, type LoadedKey } from './keys.ts';
import { initRepository, openRepo, RepositoryError, type Repository, type SnapshotEntry } from './repository.ts';
import { loadAllTrees } from './trees.ts';
import { parseKeyFile } from '@shelter/format';
import { readFileSync } from 'node:fs';
import { VERSION } from './version.ts';

const EXIT = { ok: 0, failure: 1, usage: 2, warnings: 3, checkFailed: 4, wrongKey: 5, storage: 6 } as const;

// ---- output: JSON for scripts, a progress line on a terminal, a log file per run
const logDir = join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'shelter', 'logs');
let logFile: string | undefined;
function log(ev: Record<string, unknown>): void {
  try {
    if (!logFile) {
      mkdirSync(logDir, { recursive: true, mode: 0o700 });
      logFile = join(logDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.argv[2] ?? 'shelter'}.log`);
    }
    appendFileSync(logFile, JSON.stringify({ time: new Date().toISOString(), ...ev }) + '\n', { mode: 0o600 });
  } catch { /* logging must never break a backup */ }
}
const tty = process.stderr.isTTY === true;
let lastDraw = 0;
/** `line` is made only when a line is drawn (at most every 100 ms): a backup reports every file */
function drawProgress(line: () => string, force = false): void {
  if (!tty) return;
  const now = Date.now();
  if (!force && now - lastDraw < 100) return;
  lastDraw = now;
  process.stderr.write(`\r\x1b[K${line().slice(0, (process.stderr.columns ?? 100) - 1)}`);
}
const clearProgress = () => { if (tty) process.stderr.write('\r\x1b[K'); };
/** a file that could not be saved or restored: on stderr (above the progress line) and in the run's log */
const warnFile = (path: string, message: string) => { clearProgress(); process.stderr.write(`warning: ${path}: ${message}\n`); log({ level: 'warn', path, message }); };
/** something the user should know that changes nothing saved (stderr and the run's log) */
const notice = (message: string) => { clearProgress(); process.stderr.write(`note: ${message}\n`); log({ level: 'notice', message }); };
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

// ---- opening the repository from the configuration
// (the AWS SDK is loaded when a command first needs storage: ~80 ms a backup's walk need not wait for)
async function backendOf(cfg: AgentConfig) {
  const { openS3Backend } = await import('./backend/s3.ts');
  return openS3Backend({
    endpoint: cfg.endpoint, bucket: cfg.bucket, region: cfg.region, accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey,
    caFile: cfg.caCert, insecureHttp: cfg.insecureHttp, legacyChecksums: cfg.legacyChecksums,
  });
}
/** an incremental backup of a parent this large starts its seal workers at once (see backup) */
const EAGER_WORKERS_BYTES = 64 * 1024 * 1024;
const opened: Repository[] = [];
/** the key that opened the repository, and where it came from (key list / add / export) */
let loadedKey: LoadedKey | undefined;
/**
 * `workers`: the command will seal or open blobs (backup, restore, check): start the seal workers at once.
 * `cache`: index and snapshot objects from local copies when there are (objectcache.ts); never for check.
 */
async function open(opts: { workers?: boolean; cache?: boolean; followSymlinks?: boolean } = {}): Promise<Repository> {
  const cfg = requireConfig(loadConfig());
  const backend = await backendOf(cfg);
  loadedKey = await loadMasterKey(cfg.key, backend);
  const repo = await openRepo(backend, loadedKey.master, {
    startWorkers: opts.workers, onNotice: notice, followSymlinks: opts.followSymlinks,
    cacheDir: opts.cache ? cacheRoot() : undefined, onCacheProblem: (why) => log({ msg: 'object cache not used', why }),
  });
  opened.push(repo);
  if (cfg.repository && cfg.repository.fingerprint !== repo.config.fingerprint) {
    throw new RepositoryError('WrongKey', `the bucket holds repository ${toHex(repo.config.id)}, this configuration was made for ${cfg.repository.id}: refusing to mix them`);
  }
  return repo;
}

async function pickSnapshot(repo: Repository, ref: string, name?: string): Promise<SnapshotEntry> {
  if (ref === 'latest') {
    const all = (await repo.listSnapshots()).filter((s) => !name || s.snapshot.name === name);
    const last = all[all.length - 1];
    if (!last) throw new RepositoryError('Missing', name ? `no snapshot named ${name}` : 'the repository has no snapshot yet');
    return last;
  }
  return repo.loadSnapshot(ref);
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

// The modules of one command are loaded by that command (a backup needs no restorer, exporter,
// checker or passphrase prompt: ~15 ms of every backup's start, which a no-change backup is mostly).
let exporter: typeof import('./exporter.ts') | undefined;
const loadExporter = async () => (exporter ??= await import('./exporter.ts'));
/** an ExportError can only exist once the exporter is loaded */
const isExportError = (e: unknown): e is Error => exporter !== undefined && e instanceof exporter.ExportError;

const program = new Command('shelter')
  .version(VERSION, '-V, --version', 'print the version')
  .description('Shelter backup agent: encrypted, deduplicated, compressed backups to any S3 endpoint')
  .addHelpText('after', `
Configuration: ${configPath()} (SHELTER_CONFIG_DIR overrides the directory), or the environment alone:
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SHELTER_ENDPOINT, SHELTER_BUCKET, SHELTER_REGION, SHELTER_CA_CERT,
  SHELTER_KEY (64 hex master key) | SHELTER_KEY_FILE | SHELTER_KEY_SLOT (a slot file, or a slot id from
  \`shelter key list\`) + SHELTER_PASSPHRASE or SHELTER_KEY_COMMAND | SHELTER_PASSPHRASE alone (tries the
  bucket's passphrase slots)
Exit codes: 0 ok, 1 failure, 2 usage/configuration, 3 backup/restore with warnings, 4 check found problems,
  5 wrong key or passphrase (fingerprint lock), 6 storage unreachable or access denied`)
  .showHelpAfterError();

program.command('init')
  .description('configure this server and create the repository (or join an existing one with its key)')
  .option('--endpoint <url>', 'S3 endpoint (https://...)')
  .option('--bucket <name>', 'bucket')
  .option('--region <region>', 'SigV4 region', 'us-east-1')
  .option('--access-key <id>', 'access key id')
  .option('--secret-key <secret>', 'secret access key (or AWS_SECRET_ACCESS_KEY)')
  .option('--ca-cert <file>', 'trust only the CA certificate(s) of this PEM file, not the system\'s (e.g. the gateway\'s ca.pem)')
  .option('--insecure-http', 'allow an http:// endpoint (unencrypted: testing only)')
  .option('--key-file <file>', 'key file holding the master key (created when it does not exist)')
  .option('--json', 'JSON output')
  .action(async (o: { endpoint?: string; bucket?: string; region: string; accessKey?: string; secretKey?: string; caCert?: string; insecureHttp?: boolean; keyFile?: string; json?: boolean }) => {
    const env = loadConfig();
    const cfg: AgentConfig = {
      endpoint: o.endpoint ?? env.endpoint, bucket: o.bucket ?? env.bucket, region: o.region ?? env.region,
      accessKeyId: o.accessKey ?? env.accessKeyId, secretAccessKey: o.secretKey ?? env.secretAccessKey,
      caCert: o.caCert ? resolve(o.caCert) : env.caCert, insecureHttp: o.insecureHttp ?? env.insecureHttp,
      key: o.keyFile ? { file: resolve(o.keyFile) } : env.key,
    };
    requireConfig(cfg);
    if (!cfg.key.file && !process.env.SHELTER_KEY) throw new ConfigError('init needs --key-file FILE (created if absent) or SHELTER_KEY');
    const backend = await backendOf(cfg);
    const existing = await backend.head('config');
    let master: Buffer | undefined;
    if (process.env.SHELTER_KEY) master = parseKeyFile(process.env.SHELTER_KEY);
    else if (cfg.key.file && existsSync(cfg.key.file)) master = parseKeyFile(readFileSync(cfg.key.file));
    let created = false;
    if (existing === undefined) {
      const made = createRepository(master ? { master } : {});
      // the key is safe on disk before the repository exists: never a repository without its key
      if (!master && cfg.key.file) {
        mkdirSync(dirname(cfg.key.file), { recursive: true, mode: 0o700 });
        writeKeyFile(cfg.key.file, made.master);
      }
      await initRepository(backend, made.configBytes);
      master = made.master;
      created = true;
    } else if (!master) {
      throw new ConfigError(`${backend.location} already holds a repository: give its key (--key-file of an existing key file, or SHELTER_KEY)`);
    }
    const repo = await openRepo(backend, master!); // proves the key opens it (fingerprint lock)
    cfg.repository = { id: toHex(repo.config.id), fingerprint: repo.config.fingerprint };
    const path = saveConfig(cfg);
    log({ msg: 'init', created, repository: cfg.repository.id, location: backend.location });
    const kit = formatRecoveryKit(master!, repo.config.id);
    print(!!o.json, { config: path, created, repository: cfg.repository.id, fingerprint: cfg.repository.fingerprint, keyFile: cfg.key.file },
      () => `${created ? 'created' : 'joined'} repository ${cfg.repository!.id} at ${backend.location}\nconfiguration: ${path}\n` +
        (created ? `\n${kit}\nStore this recovery kit offline (\`shelter key export\` prints it again).` : ''));
  });

const backup = program.command('backup').description('make a snapshot');
backup.command('files <paths...>')
  .description('back up files and directories (incremental against the last snapshot of the same name)')
  .requiredOption('--name <name>', 'backup name (snapshots of one name form a series; retention applies per name)')
  .option('--include <glob>', 'only files matching (repeatable)', collect)
  .option('--exclude <glob>', 'skip paths matching (repeatable)', collect)
  .option('--follow-symlinks', 'back up what symlinks point to')
  .option('--one-file-system', 'do not cross file system boundaries')
  .option('--tag <tag>', 'tag the snapshot (repeatable)', collect)
  .option('--no-cache', 'neither use nor write the local caches (every directory of the parent snapshot is loaded and compared; index and snapshot objects are fetched)')
  .option('--json', 'JSON summary on stdout')
  .action(async (paths: string[], o: { name: string; include?: string[]; exclude?: string[]; followSymlinks?: boolean; oneFileSystem?: boolean; tag?: string[]; cache: boolean; json?: boolean }) => {
    for (const p of paths) if (!existsSync(p)) throw new ConfigError(`${p} does not exist`);
    // the file-system walk runs on its own thread from now on, while the repository opens (unref'd: a
    // failure before backupFiles does not wait for it)
    const walk = beginWalk({ paths, include: o.include, exclude: o.exclude, followSymlinks: o.followSymlinks, oneFileSystem: o.oneFileSystem });
    const repo = await open({ cache: o.cache, followSymlinks: o.followSymlinks });
    const snapshots = await repo.listSnapshots();
    const parent = snapshots.filter((s) => s.snapshot.name === o.name).pop();
    // the local directory cache: the parent's, if this machine made it with the same options
    const accounts = readAccounts();
    const cacheKey = walkKey(o, accounts);
    const dirCache = parent && o.cache ? loadDirCache(repo, parent.id, cacheKey, undefined, (why) => log({ msg: 'directory cache ignored', why })) : undefined;
    // every seal worker starts now, while the parent's trees load, unless the parent is small or
    // cached: such an incremental backup may need none, or one (its few trees open on this thread;
    // the archiver starts the first when it meets a change, sealpool.ts the others if work grows)
    if (!parent || (!dirCache && !((parent.snapshot.summary?.bytes ?? Infinity) < EAGER_WORKERS_BYTES))) repo.sealPool(true);
    const recordDirs = o.cache ? dirCacheWriter(repo, cacheKey) : undefined;
    const t0 = Date.now();
    log({ msg: 'backup started', name: o.name, paths, parent: parent?.id });
    const result = await backupFiles(repo, {
      name: o.name, paths, include: o.include, exclude: o.exclude, followSymlinks: o.followSymlinks, oneFileSystem: o.oneFileSystem,
      tags: o.tag, parent, walk, dirCache, recordDirs, accounts,
      onProgress: (p) => drawProgress(() => {
        const secs = (Date.now() - t0) / 1000;
        return `${p.files} files, ${mib(p.bytesRead)} read, ${mib(p.newBytes)} new, ${(p.bytesRead / 1048576 / Math.max(secs, 0.001)).toFixed(0)} MiB/s  ${p.currentPath}`;
      }),
      onWarning: warnFile,
    });
    clearProgress();
    // a cache that cannot be written costs the next backup time, not this one its snapshot
    // (the caches kept: this one, and the latest of every other name)
    const latestOfOthers = new Map(snapshots.filter((s) => s.snapshot.name !== o.name).map((s) => [s.snapshot.name, s.id]));
    try { recordDirs?.write(result.snapshotId, new Set(latestOfOthers.values())); }
    catch (e) { log({ msg: 'directory cache not written', error: (e as Error).message }); }
    log({ msg: 'backup done', snapshot: result.snapshotId, ...result.summary, warnings: result.warnings, requests: repo.backend.requests });
    const s = result.summary;
    print(!!o.json, { snapshotId: result.snapshotId, name: o.name, parent: parent?.id ?? null, warnings: result.warnings, ...s, logFile },
      () => `snapshot ${result.snapshotId.slice(0, 12)} saved (${o.name})\n` +
        `files: ${s.files} (${s.newFiles} new, ${s.changedFiles} changed, ${s.unchangedFiles} unchanged), dirs: ${s.dirs}${s.cachedDirs ? ` (${s.cachedDirs} found unchanged by the local directory cache)` : ''}\n` +
        `data: ${mib(s.bytes!)} scanned, ${mib(s.newBytes!)} new, ${mib(s.storedBytes!)} stored after compression and dedup, in ${(s.durationMs! / 1000).toFixed(1)} s` +
        (result.warnings ? `\n${result.warnings} warning(s): some files were not saved (see above)` : ''));
    if (result.warnings) process.exitCode = EXIT.warnings;
  });

program.command('snapshots')
  .description('list snapshots')
  .option('--name <name>', 'only this backup name')
  .option('--json', 'JSON output')
  .action(async (o: { name?: string; json?: boolean }) => {
    const repo = await open({ cache: true });
    const all = (await repo.listSnapshots()).filter((s) => !o.name || s.snapshot.name === o.name);
    const rows = all.map((s) => ({ id: s.id, time: s.snapshot.time, name: s.snapshot.name, hostname: s.snapshot.hostname, paths: s.snapshot.paths,
      tags: s.snapshot.tags, parent: s.snapshot.parent ? toHex(s.snapshot.parent) : null, summary: s.snapshot.summary }));
    print(!!o.json, rows, () => rows.length === 0 ? '(no snapshots)' :
      ['ID            TIME                      NAME                 HOST         SIZE', ...rows.map((r) =>
        `${r.id.slice(0, 12)}  ${r.time}  ${r.name.padEnd(20)} ${r.hostname.padEnd(12)} ${mib(r.summary.bytes ?? 0)}`)].join('\n'));
  });

/** every node under `tree`, depth first, with its path (`trees`: loaded with loadAllTrees) */
function listTree(trees: Map<string, TreeNode[]>, tree: Buffer, out: (path: string, n: TreeNode) => void): void {
  const walk = (id: Buffer, prefix: string) => {
    for (const n of trees.get(toHex(id)) ?? []) {
      const path = `${prefix}/${n.name.toString()}`;
      out(path, n);
      if (n.type === 'dir' && n.subtree) walk(n.subtree, path);
    }
  };
  walk(tree, '');
}

program.command('ls <snapshot> [path]')
  .description('list the files of a snapshot (optionally under a path)')
  .option('--name <name>', 'with "latest": the latest snapshot of this name')
  .option('--json', 'JSON lines')
  .action(async (ref: string, under: string | undefined, o: { name?: string; json?: boolean }) => {
    const repo = await open({ cache: true });
    const snap = await pickSnapshot(repo, ref, o.name);
    const base = under ? resolve('/', under) : '';
    listTree(await loadAllTrees(repo, snap.snapshot.tree), snap.snapshot.tree, (path, n) => {
      if (base && path !== base && !path.startsWith(base + '/')) return;
      process.stdout.write(o.json ? JSON.stringify({ path, type: n.type, size: n.size ?? 0, mode: n.mode, mtime: new Date(Number(n.mtime / 1_000_000n)).toISOString() }) + '\n'
        : `${n.type === 'dir' ? 'd' : n.type === 'symlink' ? 'l' : '-'}${(n.mode & 0o777).toString(8).padStart(4, '0')} ${String(n.size ?? 0).padStart(12)} ${path}\n`);
    });
  });

program.command('diff <a> <b>')
  .description('what changed between two snapshots (+ added, - removed, M modified)')
  .action(async (a: string, b: string) => {
    const repo = await open({ cache: true });
    const [sa, sb] = [await repo.loadSnapshot(a), await repo.loadSnapshot(b)];
    const trees = await loadAllTrees(repo, [sa.snapshot.tree, sb.snapshot.tree]); // both hierarchies, each pack read once
    const collectAll = (s: SnapshotEntry) => {
      const m = new Map<string, string>();
      listTree(trees, s.snapshot.tree, (p, n) => m.set(p, `${n.type}:${n.mode}:${n.content?.map(toHex).join(',') ?? n.target?.toString() ?? ''}`));
      return m;
    };
    const [x, y] = [collectAll(sa), collectAll(sb)];
    for (const [p, v] of y) if (!x.has(p)) process.stdout.write(`+ ${p}\n`); else if (x.get(p) !== v && !v.startsWith('dir')) process.stdout.write(`M ${p}\n`);
    for (const p of x.keys()) if (!y.has(p)) process.stdout.write(`- ${p}\n`);
  });

program.command('restore <snapshot>')
  .description('restore a snapshot (an id, an id prefix, or "latest") into a directory, or export it as a .tar.gz')
  .option('--name <name>', 'with "latest": the latest snapshot of this name')
  .option('--target <dir>', 'directory to restore into')
  .option('--export <file>', 'write a gzip-compressed POSIX tar instead ("-": standard output)')
  .option('--include <glob>', 'only paths matching (repeatable)', collect)
  .option('--exclude <glob>', 'skip paths matching (repeatable)', collect)
  .option('--ignore-existing', 'with --target: leave files that already exist in the target untouched')
  .option('--json', 'JSON summary (on standard error with --export -)')
  .addHelpText('after', `
Exactly one of --target and --export. A glob matches the path inside the snapshot (the absolute path
that was backed up; the leading / is optional) or the base name. With --include, --target creates
every directory and --export writes only the directories that match or hold something that does.

--export FILE.tar.gz streams a POSIX (pax) tar through gzip: directories, files, symlinks, hard links
(the later names of an inode as hard-link entries), fifos and devices, with modes, owners (ids, and
names when known) and mtimes to the nanosecond; pax headers for long or non-ASCII names and sizes
from 8 GiB. It is written as FILE.partial-PID (mode 0600: the archive holds the backup in clear),
renamed to FILE when complete and removed on failure; an existing FILE is not replaced.
Sparse files are written in full (their holes as zeros). Left out: sockets, extended attributes,
atime/ctime. A name that is not UTF-8 is written with U+FFFD for its invalid bytes (with a warning).`)
  .action(async (ref: string, o: { name?: string; target?: string; export?: string; include?: string[]; exclude?: string[]; ignoreExisting?: boolean; json?: boolean }) => {
    if ((o.target === undefined) === (o.export === undefined)) throw new ConfigError('restore needs exactly one of --target DIR and --export FILE.tar.gz');
    if (o.export !== undefined && o.ignoreExisting) throw new ConfigError('--ignore-existing applies to --target only');
    const repo = await open({ workers: true, cache: true });
    const snap = await pickSnapshot(repo, ref, o.name);
    const onProgress = (p: { files: number; bytes: number; currentPath: string }) => drawProgress(() => `${p.files} files, ${mib(p.bytes)}  ${p.currentPath}`);
    const onWarning = warnFile;
    if (o.export !== undefined) {
      const { exportToFile } = await loadExporter();
      const x = await exportToFile(repo, snap, o.export, { include: o.include, exclude: o.exclude, onProgress, onWarning });
      clearProgress();
      const archive = o.export === '-' ? '-' : resolve(o.export);
      log({ msg: 'export done', snapshot: snap.id, archive, ...x });
      // with the archive on standard output, the summary goes to standard error
      (archive === '-' ? process.stderr : process.stdout).write(o.json ? JSON.stringify({ snapshotId: snap.id, archive, ...x }, null, 2) + '\n'
        : `exported snapshot ${snap.id.slice(0, 12)} to ${archive === '-' ? 'standard output' : archive}: ${x.files} files, ${x.hardlinks} hard links, ` +
          `${x.symlinks} symlinks, ${x.dirs} dirs, ${mib(x.bytes)}${x.warnings ? `, ${x.warnings} warning(s)` : ''}\n`);
      if (x.warnings) process.exitCode = EXIT.warnings;
      return;
    }
    const { restoreSnapshot } = await import('./restorer.ts');
    const r = await restoreSnapshot(repo, snap, { target: o.target!, include: o.include, exclude: o.exclude, ignoreExisting: o.ignoreExisting, onProgress, onWarning });
    clearProgress();
    log({ msg: 'restore done', snapshot: snap.id, ...r, requests: repo.backend.requests });
    print(!!o.json, { snapshotId: snap.id, ...r }, () => `restored snapshot ${snap.id.slice(0, 12)}: ${r.files} files, ${r.dirs} dirs, ${mib(r.bytes)}${r.warnings ? `, ${r.warnings} warning(s)` : ''}`);
    if (r.warnings) process.exitCode = EXIT.warnings;
  });

program.command('check')
  .description('prove the repository is complete (and with --read-data that every blob decrypts)')
  .option('--read-data', 'download and verify every pack')
  .option('--json', 'JSON output')
  .action(async (o: { readData?: boolean; json?: boolean }) => {
    const repo = await open({ workers: true });
    const { checkRepository } = await import('./checker.ts');
    const r = await checkRepository(repo, { readData: o.readData, onProgress: (m) => drawProgress(() => m) });
    clearProgress();
    log({ msg: 'check done', ...r, problems: r.problems.length });
    print(!!o.json, r, () => r.ok
      ? `no problems found: ${r.snapshots} snapshots, ${r.blobs} blob references, ${r.packs} packs${o.readData ? `, ${r.packsRead} read and verified` : ''}`
      : `${r.problems.length} problem(s):\n${r.problems.map((p) => `  ${p}`).join('\n')}`);
    if (!r.ok) process.exitCode = EXIT.checkFailed;
  });

program.command('forget <snapshot>')
  .description('ask the gateway to delete a snapshot (id, unique prefix, or latest with --name): it files a deletion request that executes after the gateway\'s delay (14 days or more) unless cancelled; until then the snapshot stays listed and restorable. The agent itself never deletes.')
  .option('--name <name>', 'with latest: the latest snapshot of this backup name')
  .option('--reason <text>', 'why (recorded in the request and the audit log)')
  .option('--json', 'JSON output')
  .action(async (ref: string, o: { name?: string; reason?: string; json?: boolean }) => {
    const cfg = requireConfig(loadConfig());
    const repo = await open({ cache: true });
    const snap = await pickSnapshot(repo, ref, o.name);
    const { fileDeletionRequest } = await import('./forget.ts');
    const { request, created } = await fileDeletionRequest(cfg, snap.id, o.reason);
    print(!!o.json, { ...request, created }, () => `${created ? 'deletion requested' : 'already requested'}: snapshot ${snap.id.slice(0, 12)} (${snap.snapshot.name}, ${snap.snapshot.time})\nrequest ${request.id}, due ${request.dueAt}; it can be cancelled until then on the gateway`);
  });
program.command('deletions').description('list the deletion requests of this server\'s bucket (shelterd only)').option('--json', 'JSON output')
  .action(async (o: { json?: boolean }) => {
    const { listDeletionRequests } = await import('./forget.ts');
    const all = await listDeletionRequests(requireConfig(loadConfig()));
    print(!!o.json, all, () => all.map((r) => `${r.id}\t${r.status}\t${r.kind} ${r.target ?? ''}\tdue ${r.dueAt}\t${r.reason}`).join('\n') || '(no deletion requests)');
  });

const key = program.command('key').description('the master key and its key slots');
key.command('export').description('print the recovery kit (the master key in printable form)')
  .action(async () => {
    const repo = await open();
    process.stdout.write(formatRecoveryKit(loadedKey!.master, repo.config.id));
  });
key.command('list').description('the key in use (fingerprint, never the key) and the key slots in the bucket (* = the one in use)')
  .option('--json', 'JSON output')
  .action(async (o: { json?: boolean }) => {
    const repo = await open();
    const mine = (s: { repository: Buffer; fingerprint: string }) => s.repository.equals(repo.config.id) && s.fingerprint === repo.config.fingerprint;
    const slots = (await readBucketSlots(repo.backend)).map((s) => ({
      id: s.id, kind: s.slot ? slotKind(s.slot) : 'damaged', kdf: s.slot?.kdf ?? null, created: s.slot?.created ?? null,
      current: s.id === loadedKey!.slotId,
      // a slot made for another key or repository is listed (someone wrote it) but never opens this one
      ...(s.problem ? { problem: s.problem } : s.slot && !mine(s.slot) ? { problem: 'made for another key or repository' } : {}),
    })).sort((a, b) => (a.created ?? '').localeCompare(b.created ?? ''));
    print(!!o.json, { repository: toHex(repo.config.id), fingerprint: repo.config.fingerprint, source: loadedKey!.source, slots },
      () => [`repository  ${toHex(repo.config.id)}`, `fingerprint ${repo.config.fingerprint}`, `in use      ${loadedKey!.source}`, '',
        ...(slots.length === 0 ? ['(no key slots in the bucket: `shelter key add` makes one)'] : [
          '  SLOT ID           KIND          CREATED',
          ...slots.map((s) => `${s.current ? '*' : ' '} ${s.id.slice(0, 16)}  ${s.kind.padEnd(12)}  ${s.created ?? '-'}${s.problem ? `  (${s.problem})` : ''}`),
          '', 'SHELTER_KEY_SLOT (or key.slot) takes a slot id or a prefix of 8 digits or more.'])].join('\n'));
  });
key.command('add')
  .description('add a key slot: the master key wrapped again under a passphrase (scrypt) or a wrapping key, stored as a new keys/<id> object')
  .option('--passphrase-stdin', 'read the passphrase from standard input (one line); without an option: asked twice on the terminal')
  .option('--key-file <file>', 'wrap under the 32-byte key in FILE (64 hex digits; created with a new random key when absent)')
  .option('--key-command <cmd>', 'wrap under the 32-byte key this command prints (64 hex digits): a KMS or vault client')
  .option('--json', 'JSON output')
  .addHelpText('after', `
The repository is opened with the key configured now; the new slot wraps that same master key, so
every other slot, key file and the recovery kit keep working. Nothing in the bucket is replaced.
Opening with the new slot: SHELTER_KEY_SLOT=<slot id> (or key.slot) with SHELTER_PASSPHRASE, or
SHELTER_PASSPHRASE alone (every passphrase slot is tried); for a wrapping key, SHELTER_KEY_COMMAND
(key.command): with --key-file, \`cat FILE\`.`)
  .action(async (o: { passphraseStdin?: boolean; keyFile?: string; keyCommand?: string; json?: boolean }) => {
    if ([o.passphraseStdin, o.keyFile, o.keyCommand].filter((v) => v !== undefined).length > 1) {
      throw new ConfigError('key add takes one of --passphrase-stdin, --key-file and --key-command');
    }
    const repo = await open(); // the key in use must open the repository before anything is asked or written
    let secret: SlotSecret;
    let keyFile: { path: string; created: boolean } | undefined;
    if (o.keyFile !== undefined) {
      const path = resolve(o.keyFile);
      const w = wrappingKeyFile(path, true);
      secret = { wrappingKey: w.key };
      keyFile = { path, created: w.created };
    } else if (o.keyCommand !== undefined) secret = { wrappingKey: runKeyCommand(o.keyCommand) };
    else {
      const { passphraseFromStdin, promptNewPassphrase } = await import('./passphrase.ts');
      secret = { passphrase: o.passphraseStdin ? passphraseFromStdin() : await promptNewPassphrase() };
    }
    const added = await addKeySlot(repo.backend, loadedKey!.master, repo.config.id, secret);
    const id = toHex(added.id);
    const kind = slotKind(added.slot);
    log({ msg: 'key slot added', slot: id, kind });
    const how = kind === 'passphrase' ? `SHELTER_KEY_SLOT=${id.slice(0, 16)} and SHELTER_PASSPHRASE`
      : `SHELTER_KEY_SLOT=${id.slice(0, 16)} and SHELTER_KEY_COMMAND=${keyFile ? `'cat ${keyFile.path}'` : 'the same command'}`;
    print(!!o.json, { id, key: `keys/${id}`, kind, kdf: added.slot.kdf, created: added.slot.created, ...(keyFile ? { keyFile: keyFile.path, keyFileCreated: keyFile.created } : {}) },
      () => `added key slot ${id} (${kind}), created ${added.slot.created}\n` +
        (keyFile?.created ? `${keyFile.path}: a new random wrapping key (0600); keep a copy apart from this server's backups\n` : '') +
        `open the repository with it: ${how}`);
  });

program.command('config').description('configuration').command('validate').description('check the configuration and that the repository opens with this key')
  .action(async () => {
    const repo = await open();
    process.stdout.write(`configuration valid: ${repo.backend.location}, repository ${toHex(repo.config.id)}, key fingerprint ${repo.config.fingerprint}\n`);
  });

function exitCodeOf(e: unknown): number {
  if (isExportError(e)) return exitCodeOf(e.cause);
  if (e instanceof KeyError) return e.wrongKey ? EXIT.wrongKey : EXIT.usage;
  if (e instanceof ConfigError) return EXIT.usage;
  if (e instanceof RepositoryError) return e.code === 'WrongKey' ? EXIT.wrongKey : EXIT.failure;
  if (e instanceof BackendError) return e.code === 'Config' ? EXIT.usage : e.code === 'Integrity' ? EXIT.failure : EXIT.storage;
  if (e instanceof FormatError && e.code === 'WrongKey') return EXIT.wrongKey;
  return EXIT.failure;
}

program.parseAsync(process.argv).catch((e: unknown) => {
  clearProgress();
  const known = e instanceof ConfigError || e instanceof KeyError || e instanceof RepositoryError || e instanceof BackendError || e instanceof FormatError || isExportError(e);
  process.stderr.write(`shelter: ${known ? (e as Error).message : `unexpected error: ${(e as Error)?.stack ?? String(e)}`}\n`);
  log({ level: 'error', error: String((e as Error)?.message ?? e) });
  process.exitCode = exitCodeOf(e);
}).finally(() => Promise.all(opened.map((r) => r.close())));
