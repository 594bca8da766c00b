// The `shelterd` command line.
import { Command, Option } from 'commander';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { AccountError, createAdminToken, createOperatorKey, createServer, describeServer, findServer, resetCredentials, setServerDisabled, type Actor } from './accounts.ts';
import { readHead, verifyRecords, type AuditRecord } from './audit/log.ts';
import { openContext, type Context } from './context.ts';
import { fsck } from './fsck.ts';
import { runDeletionCycle, startDeletionService, retentionPolicies, setRetentionPolicy, DEFAULT_POLICY_NAME } from './deletion/scheduler.ts';
import { cancelDeletionRequest, deletionDelayDays, DeletionError, fileDeletionRequest, getDeletionRequest, listDeletionRequests,
  MIN_DELETION_DELAY_DAYS, requestTarget, setDeletionDelayDays, type DeletionRequest, type DeletionStatus } from './deletion/requests.ts';
import { storageUsage } from './deletion/usage.ts';
import { serve } from './server.ts';
import { randomId } from './secrets.ts';
import pkg from '../package.json' with { type: 'json' };

const defaultData = process.env.SHELTERD_DATA ?? join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'shelterd');
const dataOption = () => new Option('--data <dir>', 'data directory (objects, metadata, TLS, master key)').default(defaultData);
const cliActor = (): Actor => ({ source: `cli:${process.env.SUDO_USER ?? userInfo().username}`, requestId: randomId(8).toUpperCase() });

function log(ev: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...ev }) + '\n');
}

function withContext<T>(data: string, fn: (ctx: Context) => T): T {
  const ctx = openContext(data);
  try { return fn(ctx); } finally { ctx.close(); }
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

const program = new Command('shelterd')
  .version(pkg.version, '-V, --version', 'print the version')
  .description('Shelter gateway: S3 endpoint with per-server buckets, immutability and an audit log')
  .showHelpAfterError();

program.command('serve')
  .description('run the gateway (HTTPS S3 API and admin API)')
  .addOption(dataOption())
  .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8443')
  .option('--insecure-http', 'serve plain HTTP (testing only: credentials and data travel unencrypted)')
  .option('--tls-cert <file>', 'certificate chain (PEM) to use instead of the generated one')
  .option('--tls-key <file>', 'private key (PEM) of --tls-cert')
  .option('--name <dns...>', 'extra names for the generated certificate and for virtual-hosted-style buckets')
  .option('--region <region>', 'SigV4 region', process.env.SHELTERD_REGION ?? 'us-east-1')
  .option('--master-key-file <file>', 'master key sealing the access keys (default DATA/master.key)')
  .option('--idle-timeout <seconds>', 'close a connection that sends nothing for this long (slow bodies)', '60')
  .option('--max-connections <n>', 'concurrent connections', '1024')
  .action(async (o: { data: string; listen: string; insecureHttp?: boolean; tlsCert?: string; tlsKey?: string; name?: string[]; region: string; masterKeyFile?: string; idleTimeout: string; maxConnections: string }) => {
    const idle = Number(o.idleTimeout);
    const maxConn = Number(o.maxConnections);
    if (!(idle > 0) || !Number.isInteger(maxConn) || maxConn < 1) throw new Error('--idle-timeout and --max-connections take positive numbers');
    const m = /^(.*):(\d+)$/.exec(o.listen);
    if (!m) throw new Error('--listen takes HOST:PORT');
    if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
    const ctx = openContext(o.data, { region: o.region, masterKeyFile: o.masterKeyFile });
    const running = await serve(ctx, {
      host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]), insecureHttp: o.insecureHttp, tlsCert: o.tlsCert, tlsKey: o.tlsKey,
      names: o.name, log, limits: { idleTimeoutMs: idle * 1000, maxConnections: maxConn },
    });
    log({ level: 'info', msg: 'listening', url: running.url, data: ctx.dataDir, ca: o.insecureHttp || o.tlsCert ? undefined : join(ctx.dataDir, 'tls', 'ca.pem') });
    const deletions = startDeletionService(ctx, log);
    const stop = async (signal: string) => {
      log({ level: 'info', msg: 'stopping', signal });
      await deletions.stop();
      await running.close();
      await ctx.blobs.settle();
      ctx.close();
      process.exit(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });

const server = program.command('server').description('protected servers: each has its own bucket and access key');
server.command('create <name>')
  .description('create a server with its bucket and a new access key (the secret is shown once)')
  .addOption(dataOption())
  .option('--bucket <bucket>', 'bucket name (default srv-NAME)')
  .addOption(new Option('--retention-mode <mode>', 'default object lock retention of the bucket').choices(['GOVERNANCE', 'COMPLIANCE']))
  .option('--retention-days <n>', 'default retention in days (with --retention-mode)')
  .option('--json', 'JSON output')
  .action((name: string, o: { data: string; bucket?: string; retentionMode?: 'GOVERNANCE' | 'COMPLIANCE'; retentionDays?: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const lock = o.retentionMode ? { mode: o.retentionMode, days: Number(o.retentionDays ?? 1), years: null } : undefined;
    if (lock && !(Number.isInteger(lock.days) && lock.days > 0)) throw new AccountError('Invalid', '--retention-days takes a positive integer');
    const { server: s, credentials } = createServer(ctx, cliActor(), name, { bucket: o.bucket, lock });
    print(!!o.json, { id: s.id, name: s.name, bucket: s.bucket, ...credentials },
      () => `server ${s.name} (id ${s.id})\nbucket:            ${s.bucket}\naccess key id:     ${credentials.accessKeyId}\nsecret access key: ${credentials.secretAccessKey}\n(the secret is shown only now)`);
  }));
server.command('list').description('list servers').addOption(dataOption()).option('--json', 'JSON output')
  .action((o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const all = ctx.meta.servers().map((s) => describeServer(ctx, s));
    print(!!o.json, all, () => all.map((s) => `${s.name}\t${s.bucket}\t${s.disabled ? 'disabled' : 'active'}\t${s.usage.objects} objects\t${s.usage.bytes} bytes`).join('\n') || '(no servers)');
  }));
server.command('show <name>').description('show a server').addOption(dataOption()).option('--json', 'JSON output')
  .action((name: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const d = describeServer(ctx, findServer(ctx, name));
    print(!!o.json, d, () => JSON.stringify(d, null, 2));
  }));
server.command('reset-credentials <name>').description('issue a new access key; every previous key stops working at once').addOption(dataOption()).option('--json', 'JSON output')
  .action((name: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const c = resetCredentials(ctx, cliActor(), name);
    print(!!o.json, c, () => `access key id:     ${c.accessKeyId}\nsecret access key: ${c.secretAccessKey}\n(the secret is shown only now; the old key is revoked)`);
  }));
for (const [cmd, disabled] of [['disable', true], ['enable', false]] as const) {
  server.command(`${cmd} <name>`).description(`${cmd} a server's credentials`).addOption(dataOption()).option('--json', 'JSON output')
    .action((name: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
      const s = setServerDisabled(ctx, cliActor(), name, disabled);
      print(!!o.json, describeServer(ctx, s), () => `server ${s.name} ${disabled ? 'disabled' : 'enabled'}`);
    }));
}

program.command('key').description('operator access keys').command('create')
  .description('create an operator access key (may create buckets; bound by immutability)')
  .requiredOption('--operator', 'an operator key (the only kind created here)')
  .addOption(dataOption()).option('--json', 'JSON output')
  .action((o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const c = createOperatorKey(ctx, cliActor());
    print(!!o.json, c, () => `access key id:     ${c.accessKeyId}\nsecret access key: ${c.secretAccessKey}`);
  }));

program.command('admin').description('admin API access').command('token').command('create <name>')
  .description('create a bearer token for the admin API (shown once)')
  .addOption(dataOption()).option('--json', 'JSON output')
  .action((name: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const t = createAdminToken(ctx, cliActor(), name);
    print(!!o.json, t, () => t.token);
  }));

const audit = program.command('audit').description('the hash-chained audit log');
audit.command('export').description('print records as JSON lines').addOption(dataOption())
  .option('--since <iso-time>', 'only records at or after this time')
  .action((o: { data: string; since?: string }) => withContext(o.data, (ctx) => {
    if (o.since && !Number.isFinite(Date.parse(o.since))) throw new AccountError('Invalid', '--since takes an ISO 8601 time');
    const since = o.since ? new Date(o.since).toISOString() : undefined;
    for (const r of ctx.audit.iterate({ since })) process.stdout.write(JSON.stringify(r) + '\n');
  }));
audit.command('verify').description('check the chain: exit 0 when intact, 1 when a record was edited, removed or reordered')
  .addOption(dataOption())
  .option('--file <export.jsonl>', 'verify an export instead of the live log')
  .action((o: { data: string; file?: string }) => {
    const result = o.file
      ? verifyRecords(readFileSync(o.file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord))
      : withContext(o.data, (ctx) => verifyRecords(ctx.audit.iterate(), readHead(ctx.auditHeadFile)));
    if (result.ok) process.stdout.write(`audit log intact: ${result.records} records\n`);
    else { process.stderr.write(`audit log BROKEN (${result.records} records read):\n${result.problems.map((p) => '  ' + p).join('\n')}\n`); process.exitCode = 1; }
  });

// ------------------------------------------------------------------ deletion workflow (G8)
const DAY_MS = 24 * 60 * 60 * 1000;
const bucketOf = (ctx: Context, o: { server?: string; bucket?: string }): string => {
  if (o.server) return findServer(ctx, o.server).bucket;
  if (o.bucket) return o.bucket;
  throw new DeletionError('Invalid', '--server NAME (or --bucket BUCKET) is required');
};
const describeRequest = (r: DeletionRequest) => {
  const what = r.kind === 'snapshot' ? `snapshot ${r.target}` : r.kind === 'name' ? `every snapshot named ${r.target}` : r.kind === 'server' ? 'all data of the server' : `${r.objects?.length ?? 0} unreferenced object(s)`;
  const left = r.status === 'pending' ? ` (due in ${Math.max(0, Math.ceil((Date.parse(r.dueAt) - Date.now()) / DAY_MS))} days)` : '';
  return `${r.id}\t${r.status}${left}\t${r.server ?? r.bucket}\t${what}\tdue ${r.dueAt}\tby ${r.requestedBy}\t${r.reason}${r.statusReason ? `\t[${r.statusReason}]` : ''}`;
};
const deletion = program.command('deletion').description('delayed, cancellable deletions: the only way data is ever removed');
deletion.command('request')
  .description('file a deletion request; it executes no earlier than the deletion delay (14 days or more) and can be cancelled until then')
  .addOption(dataOption())
  .option('--server <name>', 'the server whose data to delete')
  .option('--bucket <bucket>', 'a bucket (instead of --server)')
  .option('--snapshot <id>', 'one snapshot (64 hex digits)')
  .option('--backup <name>', 'every snapshot of this backup name')
  .option('--all-data', "all of the server's data")
  .requiredOption('--reason <text>', 'why (recorded and audited)')
  .option('--delay-days <n>', 'more than the configured delay')
  .option('--json', 'JSON output')
  .action((o: { data: string; server?: string; bucket?: string; snapshot?: string; backup?: string; allData?: boolean; reason: string; delayDays?: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const r = fileDeletionRequest(ctx, cliActor(), { bucket: bucketOf(ctx, o), ...requestTarget(o), reason: o.reason,
      delayDays: o.delayDays === undefined ? undefined : Number(o.delayDays) });
    print(!!o.json, r, () => describeRequest(r));
  }));
deletion.command('list').description('list deletion requests').addOption(dataOption())
  .option('--server <name>', 'only this server').option('--bucket <bucket>', 'only this bucket')
  .addOption(new Option('--status <status>', 'only this status').choices(['pending', 'waiting', 'cancelled', 'done']))
  .option('--json', 'JSON output')
  .action((o: { data: string; server?: string; bucket?: string; status?: DeletionStatus; json?: boolean }) => withContext(o.data, (ctx) => {
    const all = listDeletionRequests(ctx, { bucket: o.server || o.bucket ? bucketOf(ctx, o) : undefined, status: o.status });
    print(!!o.json, all, () => all.map(describeRequest).join('\n') || '(no deletion requests)');
  }));
deletion.command('show <id>').description('show a deletion request').addOption(dataOption()).option('--json', 'JSON output')
  .action((id: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const r = getDeletionRequest(ctx, id);
    print(!!o.json, r, () => JSON.stringify(r, null, 2));
  }));
deletion.command('cancel <id>').description('cancel a pending or waiting deletion request').addOption(dataOption())
  .option('--reason <text>', 'why (recorded and audited)').option('--json', 'JSON output')
  .action((id: string, o: { data: string; reason?: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const r = cancelDeletionRequest(ctx, cliActor(), id, o.reason);
    print(!!o.json, r, () => `cancelled: ${describeRequest(r)}`);
  }));
deletion.command('run')
  .description('now: apply retention policies, file requests for unreferenced leftovers, execute every due request (the gateway also does this every minute)')
  .addOption(dataOption()).option('--json', 'JSON output')
  .action(async (o: { data: string; json?: boolean }) => {
    const ctx = openContext(o.data);
    try {
      // what the service would log goes to stderr; a failed step or request makes the exit code 1
      let errors = 0;
      const s = await runDeletionCycle(ctx, (ev) => { if (ev.level === 'error') errors++; process.stderr.write(`${JSON.stringify(ev)}\n`); });
      print(!!o.json, s, () => `filed by retention policies: ${s.filedByPolicy.length}\nfiled for unreferenced objects: ${s.filedForOrphans.length}\nexecuted: ${s.executed.join(' ') || 'none'}\nwaiting (object lock): ${s.waiting.join(' ') || 'none'}\nfailed: ${s.failed.join(' ') || 'none'}\nblobs removed: ${s.blobsRemoved}${s.trashFailed ? `\nblobs left in the trash (storage refused their removal; tried again next run): ${s.trashFailed}\n  ${s.trashFailures.join('\n  ')}` : ''}`);
      if (errors || s.failed.length || s.trashFailed) process.exitCode = 1;
    } finally { ctx.close(); }
  });
deletion.command('delay [days]').description(`show or raise the deletion delay (at least ${MIN_DELETION_DELAY_DAYS} days)`).addOption(dataOption())
  .action((days: string | undefined, o: { data: string }) => withContext(o.data, (ctx) => {
    const d = days === undefined ? deletionDelayDays(ctx) : setDeletionDelayDays(ctx, cliActor(), Number(days));
    process.stdout.write(`deletion delay: ${d} days\n`);
  }));

const retention = program.command('retention').description('retention policies per server and backup name (they only ever file deletion requests)');
retention.command('set <server>')
  .description('set the policy of a backup name (or the default of the server), e.g. --policy \'{"tiers":[{"span":"7d","keep":"all"},{"span":"8w","keep":1,"per":"week"}]}\'')
  .addOption(dataOption())
  .option('--backup <name>', 'backup name (default: every name without its own policy)', DEFAULT_POLICY_NAME)
  .requiredOption('--policy <json>', 'the policy as JSON: {"keepWithin":"30d"} or {"tiers":[...]}')
  .option('--json', 'JSON output')
  .action((name: string, o: { data: string; backup: string; policy: string; json?: boolean }) => withContext(o.data, (ctx) => {
    let parsed: unknown;
    try { parsed = JSON.parse(o.policy); } catch { throw new DeletionError('Invalid', '--policy is not valid JSON'); }
    const p = setRetentionPolicy(ctx, cliActor(), findServer(ctx, name).bucket, o.backup, parsed);
    print(!!o.json, p, () => `${name} ${o.backup === DEFAULT_POLICY_NAME ? '(default)' : o.backup}: ${p!.description}\n(at least one snapshot per day of the last 7 days is always kept)`);
  }));
retention.command('clear <server>').description('remove a policy (snapshots of that name are then kept forever)').addOption(dataOption())
  .option('--backup <name>', 'backup name', DEFAULT_POLICY_NAME)
  .action((name: string, o: { data: string; backup: string }) => withContext(o.data, (ctx) => {
    setRetentionPolicy(ctx, cliActor(), findServer(ctx, name).bucket, o.backup, null);
    process.stdout.write('policy removed\n');
  }));
retention.command('show <server>').description('show the policies of a server').addOption(dataOption()).option('--json', 'JSON output')
  .action((name: string, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const all = retentionPolicies(ctx, findServer(ctx, name).bucket);
    print(!!o.json, all, () => all.map((p) => `${p.name === DEFAULT_POLICY_NAME ? '(default)' : p.name}: ${p.description}`).join('\n') || '(no policy: everything is kept)');
  }));

program.command('usage [server]').description('storage use per server and backup name (bytes, objects, versions)').addOption(dataOption()).option('--json', 'JSON output')
  .action((name: string | undefined, o: { data: string; json?: boolean }) => withContext(o.data, (ctx) => {
    const servers = name ? [findServer(ctx, name)] : ctx.meta.servers();
    const all = servers.map((s) => storageUsage(ctx, s.bucket));
    print(!!o.json, all, () => all.map((u) => [`${u.server ?? u.bucket}: ${u.bytes} bytes, ${u.objects} objects, ${u.versions} versions`,
      ...u.names.map((n) => `  ${n.name}: ${n.snapshots} snapshots, ${n.objects} objects, ${n.bytes} bytes`)].join('\n')).join('\n') || '(no servers)');
  }));

program.command('fsck').description('check that storage and metadata agree (run with the gateway stopped)').addOption(dataOption()).option('--json', 'JSON output')
  .action(async (o: { data: string; json?: boolean }) => {
    const ctx = openContext(o.data);
    try {
      const r = await fsck(ctx);
      print(!!o.json, r, () => r.ok ? `consistent: ${r.versions} blob references, ${r.blobs} blobs` : `INCONSISTENT:\n${r.problems.map((p) => '  ' + p).join('\n')}`);
      if (!r.ok) process.exitCode = 1;
    } finally { ctx.close(); }
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`shelterd: ${msg}\n`);
  process.exitCode = (e instanceof AccountError || e instanceof DeletionError) && e.code === 'NotFound' ? 3 : 2;
});
