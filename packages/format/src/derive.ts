// From the master key to the working keys of one repository. Everything secret the format uses
// is derived here, so a reader needs exactly two inputs: the 32-byte master key and the
// repository id from the plaintext `config`.
import { createHmac, hkdfSync } from 'node:crypto';
import { FormatError } from './errors.ts';
import { checkLength, label, secretKeyOf, toHex } from './common.ts';

export const MASTER_KEY_BYTES = 32;
export const REPOSITORY_ID_BYTES = 16;
export const BLOB_ID_BYTES = 32;
export const FINGERPRINT_BYTES = 16;

export interface RepoKeys {
  readonly repositoryId: Buffer;
  /** AES-256-GCM key of every envelope (blobs, pack headers, index, snapshots). */
  readonly data: Buffer;
  /** HMAC-SHA256 key of blob ids. */
  readonly id: Buffer;
  /** Seed of the chunker's gear table. */
  readonly chunker: Buffer;
  /** HMAC-SHA256 key of the `config` MAC. */
  readonly config: Buffer;
  /** HMAC-SHA256 key of the agent's local caches (never used for anything in the repository). */
  readonly cache: Buffer;
  /** Public: 32 hex digits identifying (master key, repository). */
  readonly fingerprint: string;
  readonly fingerprintBytes: Buffer;
}

export type KeyPurpose = 'data' | 'id' | 'chunker' | 'config' | 'fingerprint' | 'cache';

/** HKDF-SHA256(ikm = master, salt = repository id, info = "shelter/v1 " + purpose, L = 32). */
export function subkey(master: Uint8Array, repositoryId: Uint8Array, purpose: KeyPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', master, repositoryId, label(purpose), 32));
}

export function deriveKeys(master: Uint8Array, repositoryId: Uint8Array): RepoKeys {
  checkLength(master, MASTER_KEY_BYTES, 'master key');
  checkLength(repositoryId, REPOSITORY_ID_BYTES, 'repository id');
  const fpKey = subkey(master, repositoryId, 'fingerprint');
  // The fingerprint is a MAC of a constant under its own subkey: it identifies the key without
  // revealing anything about it (HMAC is a PRF; the other subkeys are independent HKDF outputs).
  const fingerprintBytes = createHmac('sha256', fpKey).update('shelter key fingerprint').digest().subarray(0, FINGERPRINT_BYTES);
  return {
    repositoryId: Buffer.from(repositoryId),
    data: subkey(master, repositoryId, 'data'),
    id: subkey(master, repositoryId, 'id'),
    chunker: subkey(master, repositoryId, 'chunker'),
    config: subkey(master, repositoryId, 'config'),
    cache: subkey(master, repositoryId, 'cache'),
    fingerprint: toHex(fingerprintBytes),
    fingerprintBytes: Buffer.from(fingerprintBytes),
  };
}

/** The fingerprint alone, e.g. to compare a key file with a repository before deriving anything else. */
export function keyFingerprint(master: Uint8Array, repositoryId: Uint8Array): string {
  return deriveKeys(master, repositoryId).fingerprint;
}

/** Blob id = HMAC-SHA256(id key, plaintext): equal plaintexts dedup, but nobody without the key can confirm a guess. */
export function blobId(keys: RepoKeys, plaintext: Uint8Array): Buffer {
  return createHmac('sha256', secretKeyOf(keys.id)).update(plaintext).digest();
}

/** Refuses to work with a key whose fingerprint is not the one the repository (or the local config) recorded. */
export function assertFingerprint(keys: RepoKeys, expected: string, where: string): void {
  if (keys.fingerprint !== expected) {
    throw new FormatError('WrongKey', `${where} belongs to key ${expected}, but the key given has fingerprint ${keys.fingerprint}: refusing to mix keys`);
  }
}

