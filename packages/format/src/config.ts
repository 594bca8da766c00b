// The repository's `config` object: plaintext JSON written once by `shelter init`.
//
//   {"v":1,"id":"<32 hex>","chunker":{"min":..,"avg":..,"max":..},"fingerprint":"<32 hex>",
//    "created":"<ISO ms UTC>","mac":"<64 hex>"}
//
// Plaintext because a reader needs the repository id before it can derive any key, and the
// gateway may show the fingerprint. `mac` = HMAC-SHA256(config subkey, the same JSON without
// the mac field): a storage-level attacker who replaces `config` (a new version on versioned
// storage) cannot change the chunker parameters unnoticed; the id and fingerprint are already
// bound to the key through the key derivation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { FormatError } from './errors.ts';
import { checkVersion, fromHex, isoTime, onlyKeys, parseJsonObject, systemRng, toHex, uint, FORMAT_VERSION, type Rng } from './common.ts';
import { assertFingerprint, deriveKeys, MASTER_KEY_BYTES, REPOSITORY_ID_BYTES, type RepoKeys } from './derive.ts';
import { DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from './chunker.ts';

export interface RepoConfig {
  id: Buffer;
  chunker: ChunkerParams;
  fingerprint: string;
  created: string;
}

const MAX_CONFIG_BYTES = 64 * 1024;

function body(c: RepoConfig): Record<string, unknown> {
  return { v: FORMAT_VERSION, id: toHex(c.id), chunker: { min: c.chunker.min, avg: c.chunker.avg, max: c.chunker.max }, fingerprint: c.fingerprint, created: c.created };
}

function mac(keys: RepoKeys, c: RepoConfig): Buffer {
  return createHmac('sha256', keys.config).update(JSON.stringify(body(c))).digest();
}

export function encodeConfig(keys: RepoKeys, c: RepoConfig): Buffer {
  validateChunkerParams(c.chunker);
  isoTime(c.created, 'config created', 'Invalid');
  if (!keys.repositoryId.equals(c.id)) throw new FormatError('Invalid', 'keys were derived for another repository id');
  assertFingerprint(keys, c.fingerprint, 'config');
  return Buffer.from(JSON.stringify({ ...body(c), mac: toHex(mac(keys, c)) }), 'utf8');
}

export interface ParsedConfig extends RepoConfig {
  mac: Buffer;
}

/** Parses `config` without any key (the gateway and `shelter init` against an existing bucket can). */
export function parseConfig(bytes: Uint8Array): ParsedConfig {
  const o = parseJsonObject(bytes, MAX_CONFIG_BYTES, 'config');
  checkVersion(o.v, 'config');
  onlyKeys(o, ['v', 'id', 'chunker', 'fingerprint', 'created', 'mac'], 'config');
  const ch = o.chunker;
  if (typeof ch !== 'object' || ch === null || Array.isArray(ch)) throw new FormatError('Corrupt', 'config: chunker must be an object');
  const cr = ch as Record<string, unknown>;
  onlyKeys(cr, ['min', 'avg', 'max'], 'config chunker');
  const chunker = { min: uint(cr, 'min', 'config chunker'), avg: uint(cr, 'avg', 'config chunker'), max: uint(cr, 'max', 'config chunker') };
  validateChunkerParams(chunker, 'Corrupt');
  return {
    id: fromHex(o.id, REPOSITORY_ID_BYTES, 'config id'),
    chunker,
    fingerprint: fromHex(o.fingerprint, 16, 'config fingerprint').toString('hex'),
    created: isoTime(o.created, 'config created'),
    mac: fromHex(o.mac, 32, 'config mac'),
  };
}

/**
 * The fingerprint lock: refuses a master key that is not this repository's (WrongKey), then
 * checks the MAC (Authentication).
 */
export function verifyConfig(keys: RepoKeys, c: ParsedConfig): void {
  if (!keys.repositoryId.equals(c.id)) throw new FormatError('Invalid', 'keys were derived for another repository id');
  assertFingerprint(keys, c.fingerprint, 'this repository');
  if (!timingSafeEqual(mac(keys, c), c.mac)) throw new FormatError('Authentication', 'config MAC does not verify: the config object was altered');
}

/** Opens a repository: parse config, derive keys from the master key, verify. */
export function openRepository(master: Uint8Array, configBytes: Uint8Array): { config: ParsedConfig; keys: RepoKeys } {
  const config = parseConfig(configBytes);
  const keys = deriveKeys(master, config.id);
  verifyConfig(keys, config);
  return { config, keys };
}

export interface NewRepository {
  master: Buffer;
  keys: RepoKeys;
  config: RepoConfig;
  configBytes: Buffer;
}

/** `shelter init`: a fresh master key (unless given) and repository id, and the config bytes. */
export function createRepository(opts: { master?: Uint8Array; chunker?: ChunkerParams; created?: string; rng?: Rng } = {}): NewRepository {
  const rng = opts.rng ?? systemRng;
  const master = opts.master ? Buffer.from(opts.master) : rng(MASTER_KEY_BYTES);
  const id = rng(REPOSITORY_ID_BYTES);
  const keys = deriveKeys(master, id);
  const config: RepoConfig = { id, chunker: { ...(opts.chunker ?? DEFAULT_CHUNKER) }, fingerprint: keys.fingerprint, created: opts.created ?? new Date().toISOString() };
  return { master, keys, config, configBytes: encodeConfig(keys, config) };
}
