// TLS material for the gateway. On first start shelterd makes its own private CA and a server
// certificate signed by it, so HTTPS works out of the box; clients trust DATA/tls/ca.pem.
// A user-provided certificate and key (--tls-cert/--tls-key) replace both.
// Certificates are made by the system's `openssl` binary (present on every Debian system): it is
// the reference implementation, and it spares us a dependency tree of ASN.1 packages.
import { randomBytes, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { writeFileDurable } from './storage/durable.ts';

export interface TlsMaterial { cert: string; key: string; caFile?: string }

const DAY = 86_400_000;
/** Names every certificate we generate covers, beside the listen host and --tls-name values. */
const DEFAULT_NAMES = ['localhost', 's3.localhost', '*.s3.localhost', '127.0.0.1', '::1'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function covers(certPem: string, names: string[]): boolean {
  const cert = new X509Certificate(certPem);
  if (new Date(cert.validTo).getTime() - Date.now() < 30 * DAY) return false;
  const san = (cert.subjectAltName ?? '').split(', ');
  return names.every((n) => san.includes(isIP(n) ? `IP Address:${n === '::1' ? '0:0:0:0:0:0:0:1' : n}` : `DNS:${n}`));
}

/**
 * Returns the server certificate and key in DATA/tls, creating the CA and the certificate when
 * absent, or re-issuing the certificate when it does not cover a name asked for now.
 */
export function ensureTls(dataDir: string, names: string[]): TlsMaterial {
  const dir = join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caCert = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const srvCert = join(dir, 'server.pem');
  const srvKey = join(dir, 'server.key');
  const wanted = [...new Set([...DEFAULT_NAMES, ...names])];

  if (existsSync(srvCert) && existsSync(srvKey) && existsSync(caCert) && covers(readFileSync(srvCert, 'utf8'), wanted)) {
    return { cert: readFileSync(srvCert, 'utf8'), key: readFileSync(srvKey, 'utf8'), caFile: caCert };
  }
  const work = join(dir, `.work-${process.pid}`);
  mkdirSync(work, { recursive: true, mode: 0o700 });
  try {
    if (!existsSync(caCert) || !existsSync(caKey)) {
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(work, 'ca.key')]);
      openssl(['req', '-x509', '-new', '-key', join(work, 'ca.key'), '-sha256', '-days', '3650',
        '-subj', `/CN=Shelter gateway CA ${randomBytes(4).toString('hex')}`,
        '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-out', join(work, 'ca.pem')]);
      writeFileDurable(caKey, readFileSync(join(work, 'ca.key')), 0o600);
      writeFileDurable(caCert, readFileSync(join(work, 'ca.pem')), 0o644);
    }
    const san = wanted.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(work, 'srv.key')]);
    openssl(['req', '-new', '-key', join(work, 'srv.key'), '-subj', '/CN=shelterd', '-out', join(work, 'srv.csr')]);
    const ext = join(work, 'ext.cnf');
    writeFileDurable(ext, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
    openssl(['x509', '-req', '-in', join(work, 'srv.csr'), '-CA', caCert, '-CAkey', caKey,
      '-set_serial', `0x${randomBytes(15).toString('hex')}`, '-days', '397', '-sha256', '-extfile', ext, '-out', join(work, 'srv.pem')]);
    writeFileDurable(srvKey, readFileSync(join(work, 'srv.key')), 0o600);
    writeFileDurable(srvCert, Buffer.concat([readFileSync(join(work, 'srv.pem')), readFileSync(caCert)]), 0o644);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { cert: readFileSync(srvCert, 'utf8'), key: readFileSync(srvKey, 'utf8'), caFile: caCert };
}
