// Storing the master key: key slots (the master key wrapped under a passphrase or under a key
// a command prints) and raw key files. The master key itself never leaves the server in clear
// except in a key file the user keeps, or the printed recovery kit (recovery.ts).
//
// Key slot, canonical JSON, stored as keys/<SHA-256 of the slot bytes> and/or locally:
//   {"v":1,"kdf":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<64 hex>","nonce":"<24 hex>",
//    "wrapped":"<96 hex>","repository":"<32 hex>","fingerprint":"<32 hex>","created":"<ISO>"}
// kdf "scrypt": KEK = scrypt(NFC UTF-8 passphrase, salt, N, r, p, 32 bytes).
// kdf "none":   KEK = HKDF-SHA256(ikm = 32-byte wrapping key, salt, info "shelter/v1 key slot", 32)
//               (for --key-command: a KMS or vault hands out the wrapping key); no "params".
// wrapped = AES-256-GCM(KEK, nonce, master key, AAD = "shelter/v1 key slot" || repository id
//           || fingerprint): ciphertext (32) || tag (16).
import { createCipheriv, createDecipheriv, hkdfSync, scryptSync } from 'node:crypto';
import { FormatError } from './errors.ts';
import { checkVersion, fromHex, isoTime, label, onlyKeys, parseJsonObject, sha256, str, systemRng, toHex, uint, FORMAT_VERSION, type Rng } from './common.ts';
import { deriveKeys, FINGERPRINT_BYTES, MASTER_KEY_BYTES, REPOSITORY_ID_BYTES } from './derive.ts';

export interface ScryptParams { N: number; r: number; p: number }
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 1 << 15, r: 8, p: 1 });

export interface KeySlot {
  kdf: 'scrypt' | 'none';
  params?: ScryptParams;
  salt: Buffer;
  nonce: Buffer;
  wrapped: Buffer;
  repository: Buffer;
  fingerprint: string;
  created: string;
}

export type SlotSecret = { passphrase: string | Uint8Array } | { wrappingKey: Uint8Array };

const SALT_BYTES = 32;
const MAX_SLOT_BYTES = 16 * 1024;

/**
 * Bounds on parameters read from a slot: a slot may come from the bucket, where an attacker with
 * the server's credentials can add one; it must not make the agent allocate gigabytes or spin
 * for minutes. 128 * N * r <= 1 GiB.
 */
export function validateScrypt(p: ScryptParams, code: 'Invalid' | 'Corrupt' = 'Invalid'): void {
  const pow2 = Number.isSafeInteger(p.N) && p.N >= 1 << 10 && p.N <= 1 << 22 && (p.N & (p.N - 1)) === 0;
  if (!pow2 || !Number.isSafeInteger(p.r) || p.r < 1 || p.r > 32 || !Number.isSafeInteger(p.p) || p.p < 1 || p.p > 16 || 128 * p.N * p.r > 1 << 30) {
    throw new FormatError(code, 'scrypt parameters out of bounds (N a power of two 2^10..2^22, r 1..32, p 1..16, 128*N*r <= 1 GiB)');
  }
}

function kek(slot: Pick<KeySlot, 'kdf' | 'params' | 'salt'>, secret: SlotSecret): Buffer {
  if (slot.kdf === 'scrypt') {
    if (!('passphrase' in secret)) throw new FormatError('Invalid', 'this key slot opens with a passphrase');
    const pw = typeof secret.passphrase === 'string' ? Buffer.from(secret.passphrase.normalize('NFC'), 'utf8') : Buffer.from(secret.passphrase);
    const p = slot.params!;
    return scryptSync(pw, slot.salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + (1 << 20) });
  }
  if (!('wrappingKey' in secret)) throw new FormatError('Invalid', 'this key slot opens with a wrapping key');
  if (secret.wrappingKey.length !== 32) throw new FormatError('Invalid', 'a wrapping key is 32 bytes');
  return Buffer.from(hkdfSync('sha256', secret.wrappingKey, slot.salt, label('key slot'), 32));
}

function slotAad(repository: Uint8Array, fingerprint: string): Buffer {
  return Buffer.concat([label('key slot'), repository, Buffer.from(fingerprint, 'hex')]);
}

export interface SealedSlot {
  slot: KeySlot;
  bytes: Buffer;
  /** SHA-256 of `bytes`: stored as keys/<id>. */
  id: Buffer;
}

/** Wraps the master key. `secret` chooses the kdf: passphrase -> scrypt, wrappingKey -> none. */
export function createKeySlot(master: Uint8Array, repositoryId: Uint8Array, secret: SlotSecret,
  opts: { params?: ScryptParams; created?: string; rng?: Rng } = {}): SealedSlot {
  const rng = opts.rng ?? systemRng;
  const keys = deriveKeys(master, repositoryId);
  const kdf: KeySlot['kdf'] = 'passphrase' in secret ? 'scrypt' : 'none';
  const params = kdf === 'scrypt' ? { ...(opts.params ?? DEFAULT_SCRYPT) } : undefined;
  if (params) validateScrypt(params);
  const salt = rng(SALT_BYTES);
  const nonce = rng(12);
  const k = kek({ kdf, params, salt }, secret);
  const c = createCipheriv('aes-256-gcm', k, nonce);
  c.setAAD(slotAad(repositoryId, keys.fingerprint));
  const wrapped = Buffer.concat([c.update(master), c.final(), c.getAuthTag()]);
  const slot: KeySlot = { kdf, salt, nonce, wrapped, repository: Buffer.from(repositoryId), fingerprint: keys.fingerprint, created: opts.created ?? new Date().toISOString() };
  if (params) slot.params = params;
  const bytes = encodeKeySlot(slot);
  return { slot, bytes, id: sha256(bytes) };
}

export function encodeKeySlot(s: KeySlot): Buffer {
  const o: Record<string, unknown> = { v: FORMAT_VERSION, kdf: s.kdf };
  if (s.kdf === 'scrypt') { validateScrypt(s.params!); o.params = { N: s.params!.N, r: s.params!.r, p: s.params!.p }; }
  o.salt = toHex(s.salt);
  o.nonce = toHex(s.nonce);
  o.wrapped = toHex(s.wrapped);
  o.repository = toHex(s.repository);
  o.fingerprint = s.fingerprint;
  o.created = s.created;
  return Buffer.from(JSON.stringify(o), 'utf8');
}

export function parseKeySlot(bytes: Uint8Array): KeySlot {
  const o = parseJsonObject(bytes, MAX_SLOT_BYTES, 'key slot');
  checkVersion(o.v, 'key slot');
  const kdf = str(o, 'kdf', 'key slot');
  if (kdf !== 'scrypt' && kdf !== 'none') throw new FormatError('UnsupportedVersion', `key slot uses kdf "${kdf}", which this program does not know`);
  onlyKeys(o, kdf === 'scrypt' ? ['v', 'kdf', 'params', 'salt', 'nonce', 'wrapped', 'repository', 'fingerprint', 'created']
    : ['v', 'kdf', 'salt', 'nonce', 'wrapped', 'repository', 'fingerprint', 'created'], 'key slot');
  const slot: KeySlot = {
    kdf,
    salt: fromHex(o.salt, SALT_BYTES, 'key slot salt'),
    nonce: fromHex(o.nonce, 12, 'key slot nonce'),
    wrapped: fromHex(o.wrapped, MASTER_KEY_BYTES + 16, 'key slot wrapped key'),
    repository: fromHex(o.repository, REPOSITORY_ID_BYTES, 'key slot repository'),
    fingerprint: fromHex(o.fingerprint, FINGERPRINT_BYTES, 'key slot fingerprint').toString('hex'),
    created: isoTime(o.created, 'key slot created'),
  };
  if (kdf === 'scrypt') {
    const p = o.params;
    if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new FormatError('Corrupt', 'key slot: params must be an object');
    const pr = p as Record<string, unknown>;
    onlyKeys(pr, ['N', 'r', 'p'], 'key slot params');
    slot.params = { N: uint(pr, 'N', 'key slot params'), r: uint(pr, 'r', 'key slot params'), p: uint(pr, 'p', 'key slot params') };
    validateScrypt(slot.params, 'Corrupt');
  }
  return slot;
}

/**
 * Unwraps the master key. A wrong passphrase and a damaged slot are indistinguishable (both fail
 * the GCM tag): WrongPassphrase. The unwrapped key is then checked against the slot's fingerprint.
 */
export function openKeySlot(slot: KeySlot, secret: SlotSecret): Buffer {
  const k = kek(slot, secret);
  let master: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', k, slot.nonce);
    d.setAAD(slotAad(slot.repository, slot.fingerprint));
    d.setAuthTag(slot.wrapped.subarray(MASTER_KEY_BYTES));
    master = Buffer.concat([d.update(slot.wrapped.subarray(0, MASTER_KEY_BYTES)), d.final()]);
  } catch {
    throw new FormatError('WrongPassphrase', slot.kdf === 'scrypt' ? 'wrong passphrase (or a damaged key slot)' : 'wrong wrapping key (or a damaged key slot)');
  }
  if (deriveKeys(master, slot.repository).fingerprint !== slot.fingerprint) throw new FormatError('Corrupt', 'key slot opened but the key does not match its fingerprint');
  return master;
}

// ---- key files ---------------------------------------------------------------------------

/** A key file is the master key as 64 hex digits and a newline (the same as `openssl rand -hex 32`). */
export function encodeKeyFile(master: Uint8Array): string {
  if (master.length !== MASTER_KEY_BYTES) throw new FormatError('Invalid', 'master key must be 32 bytes');
  return toHex(master) + '\n';
}

/** Accepts 64 hex digits (either case), surrounding whitespace, and lines starting with #. */
export function parseKeyFile(text: string | Uint8Array): Buffer {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8');
  const lines = s.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1 || !/^[0-9a-fA-F]{64}$/.test(lines[0]!)) throw new FormatError('Corrupt', 'a key file holds one line of 64 hex digits (the 32-byte master key)');
  return Buffer.from(lines[0]!, 'hex');
}
