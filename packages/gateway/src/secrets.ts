// Where secrets live. SigV4 needs the plain secret of every access key to check signatures, so
// secrets are stored sealed (AES-256-GCM) under the gateway master key, never in clear. The master
// key is DATA/master.key (0600) unless --master-key-file or SHELTERD_MASTER_KEY (64 hex) points
// elsewhere: keep it off the data disk to protect against someone who can read the storage.
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFileDurable } from './storage/durable.ts';

export type MasterKey = Buffer & { readonly __brand: 'MasterKey' };

export function loadMasterKey(path: string, fromEnv = process.env.SHELTERD_MASTER_KEY): MasterKey {
  if (fromEnv) {
    if (!/^[0-9a-fA-F]{64}$/.test(fromEnv)) throw new Error('SHELTERD_MASTER_KEY must be 64 hex characters (32 bytes)');
    return Buffer.from(fromEnv, 'hex') as MasterKey;
  }
  if (!existsSync(path)) writeFileDurable(path, randomBytes(32).toString('hex') + '\n', 0o600);
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`${path} is not a 32-byte hex master key`);
  return Buffer.from(text, 'hex') as MasterKey;
}

/** nonce(12) | tag(16) | ciphertext; the AAD binds the sealed value to its owner (the key id) */
export function seal(master: MasterKey, plaintext: string, aad: string): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', master, nonce);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  return Buffer.concat([nonce, c.getAuthTag(), ct]);
}

export function unseal(master: MasterKey, sealed: Uint8Array, aad: string): string {
  const b = Buffer.from(sealed);
  const d = createDecipheriv('aes-256-gcm', master, b.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(b.subarray(12, 28));
  return Buffer.concat([d.update(b.subarray(28)), d.final()]).toString('utf8');
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function randomString(len: number, alphabet: string): string {
  const out: string[] = [];
  while (out.length < len) {
    for (const byte of randomBytes(len * 2)) {
      // rejection sampling keeps the distribution uniform
      if (byte < 256 - (256 % alphabet.length) && out.length < len) out.push(alphabet[byte % alphabet.length]!);
    }
  }
  return out.join('');
}

/** AWS-shaped credentials: 20-char key id with a recognisable prefix, 40-char secret (240 bits). */
export function newAccessKey(role: 'server' | 'operator'): { accessKeyId: string; secretAccessKey: string } {
  const prefix = role === 'server' ? 'SHS' : 'SHO';
  return {
    accessKeyId: prefix + randomString(17, ALNUM),
    secretAccessKey: randomString(40, ALNUM + 'abcdefghijklmnopqrstuvwxyz+/'),
  };
}

export function newToken(): string {
  return 'sht_' + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function randomId(bytes = 16): string {
  return randomBytes(bytes).toString('hex');
}
