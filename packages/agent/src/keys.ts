// Where the agent gets the master key (G4: it never leaves the server unwrapped, except in the
// key file or recovery kit the user keeps). In order: SHELTER_KEY (hex); a key file; a key slot
// (key.slot: a slot file, or the id or an id prefix of a keys/<id> object in the bucket) opened by
// SHELTER_PASSPHRASE or by the wrapping key key.command prints; with no file and no slot
// configured, a passphrase (or key command) alone: the bucket's slots of that kind made for this
// repository are tried in turn.
//
// Slots read from the bucket are checked against their name (SHA-256) and their scrypt parameters
// are bounded by the format; a slot that opens yields a key whose fingerprint is the slot's, and
// openRepo then holds it against `config` (fingerprint lock), so a slot planted in the bucket can
// at worst fail to open.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import {
  CONFIG_KEY, FormatError, createKeySlot, encodeKeyFile, isFormatError, keySlotKey, openKeySlot, parseConfig, parseKeyFile, parseKeySlot,
  parseObjectKey, sha256, toHex, type KeySlot, type SealedSlot, type SlotSecret,
} from '@shelter/format';
import type { Backend } from './backend/types.ts';
import type { KeySource } from './config.ts';
import { RepositoryError } from './repository.ts';

export class KeyError extends Error {
  /** a passphrase or wrapping key that opens no slot: exit 5 like a wrong key, not a configuration error */
  readonly wrongKey: boolean;
  constructor(message: string, opts: { wrongKey?: boolean } = {}) { super(message); this.wrongKey = opts.wrongKey ?? false; }
}

export interface LoadedKey {
  master: Buffer;
  /** where the key came from (for messages and `key list`) */
  source: string;
  /** the id of the key slot that opened it */
  slotId?: string;
}

/** a keys/<id> object; `problem` when its bytes do not hash to its name or it is no valid slot */
export interface StoredSlot { id: string; bytes: Buffer; slot?: KeySlot; problem?: string }

export const slotKind = (slot: KeySlot) => (slot.kdf === 'scrypt' ? 'passphrase' : 'wrapping-key');

/** 64 hex digits (lines starting with # and blank lines allowed): what a key command prints, what a wrapping key file holds */
function parseWrappingKey(text: string | Buffer, what: string): Buffer {
  try { return parseKeyFile(text); } catch { throw new KeyError(`${what} must hold 64 hex digits (a 32-byte key)`); }
}

function runKeyCommand(command: string): Buffer {
  let out: string;
  try { out = execFileSync('/bin/sh', ['-c', command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 }); }
  catch (e) { throw new KeyError(`the key command failed: ${(e as Error).message}`); }
  return parseWrappingKey(out, 'the output of the key command');
}

/** The wrapping key in `path`; with `create`, a missing file is made with a new random key (0600). */
export function wrappingKeyFile(path: string, create: boolean): { key: Buffer; created: boolean } {
  if (existsSync(path)) return { key: parseWrappingKey(readFileSync(path), `key file ${path}`), created: false };
  if (!create) throw new KeyError(`key file ${path} does not exist`);
  const key = randomBytes(32);
  // bare hex, as `openssl rand -hex 32` prints it: `cat FILE` then serves as the key command
  writeFileSync(path, encodeKeyFile(key), { mode: 0o600, flag: 'wx' });
  return { key, created: true };
}

/** every keys/<id> object under `keys/<prefix>`, each checked against its name */
export async function readBucketSlots(backend: Backend, prefix = ''): Promise<StoredSlot[]> {
  const out: StoredSlot[] = [];
  for await (const o of backend.list(`keys/${prefix}`)) {
    const parsed = parseObjectKey(o.key);
    if (parsed?.type !== 'key') continue;
    const id = parsed.id!;
    const bytes = await backend.get(o.key);
    if (!bytes) continue; // gone between the listing and the read
    const s: StoredSlot = { id, bytes };
    if (toHex(sha256(bytes)) !== id) s.problem = 'its bytes do not match its name (SHA-256): altered or damaged';
    else {
      try { s.slot = parseKeySlot(bytes); } catch (e) { s.problem = `not a valid key slot: ${(e as Error).message}`; }
    }
    out.push(s);
  }
  return out;
}

function open(slot: KeySlot, id: string, secret: SlotSecret): Buffer {
  try { return openKeySlot(slot, secret); }
  catch (e) {
    if (isFormatError(e, 'WrongPassphrase')) {
      throw new KeyError(`${slot.kdf === 'scrypt' ? 'wrong passphrase' : 'wrong wrapping key'}: key slot ${id.slice(0, 12)} does not open with it (or the slot is damaged)`, { wrongKey: true });
    }
    throw e;
  }
}

/** the secret a slot of this kind opens with, from the environment or key.command */
function secretFor(kdf: KeySlot['kdf'], src: KeySource, env: NodeJS.ProcessEnv): SlotSecret {
  if (kdf === 'none') {
    if (!src.command) throw new KeyError('this key slot opens with a wrapping key: configure key.command (or SHELTER_KEY_COMMAND)');
    return { wrappingKey: runKeyCommand(src.command) };
  }
  if (!env.SHELTER_PASSPHRASE) throw new KeyError('this key slot opens with a passphrase: set SHELTER_PASSPHRASE');
  return { passphrase: env.SHELTER_PASSPHRASE };
}

/** key.slot: a slot file, or the id (or a prefix of at least 8 hex digits) of keys/<id> */
async function openConfiguredSlot(src: KeySource & { slot: string }, backend: Backend, env: NodeJS.ProcessEnv): Promise<LoadedKey> {
  let stored: StoredSlot;
  let source: string;
  if (existsSync(src.slot)) {
    const bytes = readFileSync(src.slot);
    stored = { id: toHex(sha256(bytes)), bytes, slot: parseKeySlot(bytes) };
    source = `key slot file ${src.slot}`;
  } else if (/^[0-9a-fA-F]{8,64}$/.test(src.slot)) {
    const found = await readBucketSlots(backend, src.slot.toLowerCase());
    if (found.length === 0) throw new KeyError(`key slot ${src.slot}: no such file, and no keys/${src.slot.toLowerCase()}… in ${backend.location} (see \`shelter key list\`)`);
    if (found.length > 1) throw new KeyError(`key slot ${src.slot}: the prefix names ${found.length} slots, give more digits`);
    stored = found[0]!;
    if (stored.problem) throw new KeyError(`key slot keys/${stored.id}: ${stored.problem}`);
    source = `key slot ${stored.id}`;
  } else {
    throw new KeyError(`key slot ${src.slot}: no such file, and not a slot id (8 to 64 hex digits)`);
  }
  const slot = stored.slot!;
  return { master: open(slot, stored.id, secretFor(slot.kdf, src, env)), source: `${source} (${slotKind(slot)})`, slotId: stored.id };
}

/** a passphrase (or key command) alone: try the bucket's slots of that kind made for this repository, newest first */
async function searchSlots(src: KeySource, backend: Backend, env: NodeJS.ProcessEnv): Promise<LoadedKey> {
  const configBytes = await backend.get(CONFIG_KEY);
  if (!configBytes) throw new RepositoryError('NotInitialised', `no repository at ${backend.location} (run \`shelter init\`)`);
  const config = parseConfig(configBytes);
  const kdf: KeySlot['kdf'] = env.SHELTER_PASSPHRASE ? 'scrypt' : 'none';
  const kind = kdf === 'scrypt' ? 'passphrase' : 'wrapping-key';
  const candidates = (await readBucketSlots(backend))
    .filter((s) => s.slot && s.slot.kdf === kdf && s.slot.repository.equals(config.id) && s.slot.fingerprint === config.fingerprint)
    .sort((a, b) => b.slot!.created.localeCompare(a.slot!.created));
  if (candidates.length === 0) {
    throw new KeyError(`${backend.location} holds no ${kind} key slot for this repository: add one with \`shelter key add\`, or configure a key file`);
  }
  const secret = secretFor(kdf, src, env);
  for (const c of candidates) {
    // a slot that does not open, or opens to a key that is not its own, is passed over: anyone
    // holding the bucket's credentials can add one, and it must not hide the real one
    try { return { master: openKeySlot(c.slot!, secret), source: `key slot ${c.id} (${kind})`, slotId: c.id }; }
    catch (e) { if (!(e instanceof FormatError)) throw e; }
  }
  throw new KeyError(`wrong ${kdf === 'scrypt' ? 'passphrase' : 'wrapping key'}: it opens none of the ${candidates.length} ${kind} key slot(s) of this repository`, { wrongKey: true });
}

export async function loadMasterKey(src: KeySource, backend: Backend, env = process.env): Promise<LoadedKey> {
  try {
    if (env.SHELTER_KEY) return { master: parseKeyFile(env.SHELTER_KEY), source: 'SHELTER_KEY' };
    if (src.file) {
      if (!existsSync(src.file)) throw new KeyError(`key file ${src.file} does not exist`);
      return { master: parseKeyFile(readFileSync(src.file)), source: `key file ${src.file}` };
    }
    if (src.slot) return await openConfiguredSlot({ ...src, slot: src.slot }, backend, env);
    if (env.SHELTER_PASSPHRASE || src.command) return await searchSlots(src, backend, env);
  } catch (e) {
    // storage errors keep their own exit code; what the format refuses is a key problem
    if (e instanceof FormatError) throw new KeyError(`cannot load the master key: ${e.message}`);
    throw e;
  }
  throw new KeyError('no key configured: set SHELTER_KEY, or key.file / key.slot in the configuration, or SHELTER_PASSPHRASE (see `shelter --help`)');
}

/**
 * Wraps the master key in a new slot stored as keys/<id>: a new object, nothing replaced (the
 * name is the SHA-256 of bytes holding a fresh random salt). The slot is read back and opened
 * before it counts as added.
 */
export async function addKeySlot(backend: Backend, master: Buffer, repositoryId: Buffer, secret: SlotSecret): Promise<SealedSlot> {
  const sealed = createKeySlot(master, repositoryId, secret);
  const key = keySlotKey(sealed.id);
  await backend.putNew(key, sealed.bytes, sealed.id); // 'exists' only when a retry follows a lost answer: the same bytes
  const back = await backend.get(key);
  if (!back || !back.equals(sealed.bytes)) throw new KeyError(`${key} does not read back as written`);
  if (!openKeySlot(parseKeySlot(back), secret).equals(master)) throw new KeyError(`${key} does not open to the master key`);
  return sealed;
}

/** Writes a new key file (0600), refusing to replace an existing one. */
export function writeKeyFile(path: string, master: Buffer): void {
  writeFileSync(path, '# shelter master key: keep it secret and keep a copy off this server\n' + encodeKeyFile(master), { mode: 0o600, flag: 'wx' });
}

export { runKeyCommand };
