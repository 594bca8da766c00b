// `npm run demo`: starts shelterd on the embedded defaults (files + SQLite under ./shelter-data,
// HTTPS on 127.0.0.1:8443 with its own CA), registers a demo server, makes a first backup of the
// project's docs/ with the `shelter` agent (configuration and key under DATA/demo-agent), and
// keeps the gateway running.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const root = resolve(import.meta.dirname, '..');
const data = resolve(process.env.SHELTERD_DATA ?? join(root, 'shelter-data'));
const listen = process.env.SHELTERD_LISTEN ?? '127.0.0.1:8443';
const bin = join(root, 'packages/gateway/bin/shelterd.js');

const gw = spawn(process.execPath, [bin, 'serve', '--data', data, '--listen', listen], { stdio: ['ignore', 'pipe', 'inherit'] });
process.on('SIGINT', () => gw.kill('SIGTERM'));
process.on('SIGTERM', () => gw.kill('SIGTERM'));
gw.on('exit', (code) => process.exit(code ?? 0));

const url = await new Promise<string>((res) => {
  createInterface({ input: gw.stdout! }).on('line', (line) => {
    process.stdout.write(line + '\n');
    try { const ev = JSON.parse(line); if (ev.msg === 'listening') res(ev.url); } catch { /* plain line */ }
  });
});

let creds: { bucket: string; accessKeyId: string; secretAccessKey: string };
const shown = spawnSync(process.execPath, [bin, 'server', 'show', 'demo', '--data', data, '--json'], { encoding: 'utf8' });
if (shown.status === 0) {
  // the secret was shown once, when the server was created: issue a fresh one for this demo run
  creds = { bucket: JSON.parse(shown.stdout).bucket, ...JSON.parse(spawnSync(process.execPath, [bin, 'server', 'reset-credentials', 'demo', '--data', data, '--json'], { encoding: 'utf8' }).stdout) };
} else {
  const made = spawnSync(process.execPath, [bin, 'server', 'create', 'demo', '--data', data, '--json'], { encoding: 'utf8' });
  if (made.status !== 0) { process.stderr.write(made.stderr); process.exit(1); }
  creds = JSON.parse(made.stdout);
}

// a first real backup with the agent: its configuration and key live under DATA/demo-agent
const agentBin = join(root, 'packages/agent/bin/shelter.js');
const agentDir = join(data, 'demo-agent');
mkdirSync(agentDir, { recursive: true, mode: 0o700 });
const keyFile = join(agentDir, 'master.key');
const agentEnv = { ...process.env, SHELTER_CONFIG_DIR: join(agentDir, 'config'), XDG_STATE_HOME: join(agentDir, 'state') };
const shelter = (args: string[]) => {
  const r = spawnSync(process.execPath, [agentBin, ...args], { env: agentEnv, encoding: 'utf8' });
  if (r.status !== 0) { process.stderr.write(`shelter ${args[0]} failed:\n${r.stdout}${r.stderr}`); gw.kill('SIGTERM'); process.exit(1); }
  return r.stdout;
};
// joins the repository again on later runs (same key file, the fresh credentials)
shelter(['init', '--endpoint', url, '--bucket', creds.bucket, '--access-key', creds.accessKeyId, '--secret-key', creds.secretAccessKey,
  '--ca-cert', join(data, 'tls', 'ca.pem'), '--key-file', keyFile, '--json']);
const source = join(root, 'docs');
const backup = JSON.parse(shelter(['backup', 'files', source, '--name', 'demo', '--json'])) as { snapshotId: string; files: number; bytes: number; newBytes: number };
const snapshots = JSON.parse(shelter(['snapshots', '--json'])) as unknown[];
const cfg = `SHELTER_CONFIG_DIR=${join(agentDir, 'config')}`;
console.log(`
Shelter gateway running at ${url} (data in ${data}; CA certificate ${join(data, 'tls', 'ca.pem')})
demo server bucket: ${creds.bucket}
first backup: ${source} -> snapshot ${backup.snapshotId.slice(0, 12)} (${backup.files} files, ${backup.bytes} bytes, ${backup.newBytes} new);
${snapshots.length} snapshot(s) in the repository (encrypted; the key is ${keyFile}: keep it elsewhere too, \`shelter key export\`)
Try: ${cfg} npx shelter snapshots
     ${cfg} npx shelter restore latest --name demo --target /tmp/demo-restore
     ${cfg} npx shelter backup files ${source} --name demo     (incremental)
Audit log: npx shelterd audit export --data ${data}     Stop with Ctrl-C.`);
