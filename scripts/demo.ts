// `npm run demo`: starts shelterd on the embedded defaults (files + SQLite under ./shelter-data,
// HTTPS on 127.0.0.1:8443 with its own CA), registers a demo server, uploads a first object with
// the AWS SDK exactly as an agent would, reads it back, and keeps the gateway running.
// (Once the `shelter` agent lands, the upload becomes a real first backup.)
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { GetObjectCommand, ListObjectVersionsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';

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

const ca = readFileSync(join(data, 'tls', 'ca.pem'));
const s3 = new S3Client({
  endpoint: url, region: 'us-east-1', forcePathStyle: true,
  credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey },
  requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca }) }),
});
const body = readFileSync(join(root, 'README.md'));
const put = await s3.send(new PutObjectCommand({ Bucket: creds.bucket, Key: 'demo/README.md', Body: body }));
const got = await (await s3.send(new GetObjectCommand({ Bucket: creds.bucket, Key: 'demo/README.md' }))).Body!.transformToByteArray();
const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: creds.bucket, Prefix: 'demo/' }));
console.log(`
Shelter gateway running at ${url} (data in ${data}; CA certificate ${join(data, 'tls', 'ca.pem')})
demo server bucket: ${creds.bucket}
  AWS_ACCESS_KEY_ID=${creds.accessKeyId}
  AWS_SECRET_ACCESS_KEY=${creds.secretAccessKey}
uploaded demo/README.md (${body.length} bytes, version ${put.VersionId}), read back ${Buffer.from(got).equals(body) ? 'identical' : 'DIFFERENT'};
${versions.Versions?.length ?? 0} version(s) kept under demo/ (every upload adds one; nothing is ever overwritten).
Try: aws --endpoint-url ${url} --ca-bundle ${join(data, 'tls', 'ca.pem')} s3 ls s3://${creds.bucket}/demo/
Audit log: npx shelterd audit export --data ${data}     Stop with Ctrl-C.`);
