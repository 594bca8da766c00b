// The recovery kit: everything needed to read the repository again, on one printable page.
// The master key is in RFC 4648 base32 (A-Z, 2-7: no 0/O or 1/I/l confusion when typed back),
// 52 characters in groups of 4. There is no separate checksum: the fingerprint on the sheet is
// a 128-bit check of (key, repository) and the parser verifies it.
import { FormatError } from './errors.ts';
import { fromHex, toHex } from './common.ts';
import { deriveKeys, MASTER_KEY_BYTES, REPOSITORY_ID_BYTES } from './derive.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32Encode(b: Uint8Array): string {
  let out = '', bits = 0, acc = 0;
  for (const byte of b) {
    acc = (acc << 8) | byte; bits += 8;
    while (bits >= 5) { out += ALPHABET[(acc >>> (bits - 5)) & 31]; bits -= 5; }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/** Decodes unpadded base32; typos that are common when reading a sheet are mapped (0->O, 1->I, 8->B). */
export function base32Decode(s: string, bytes: number): Buffer {
  const clean = s.toUpperCase().replace(/[\s-]/g, '').replace(/0/g, 'O').replace(/1/g, 'I').replace(/8/g, 'B');
  if (clean.length !== Math.ceil(bytes * 8 / 5)) throw new FormatError('Corrupt', `expected ${Math.ceil(bytes * 8 / 5)} base32 characters, got ${clean.length}`);
  const out = Buffer.alloc(bytes);
  let acc = 0, bits = 0, o = 0;
  for (const ch of clean) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) throw new FormatError('Corrupt', `"${ch}" is not a base32 character`);
    acc = (acc << 5) | v; bits += 5;
    if (bits >= 8) { out[o++] = (acc >>> (bits - 8)) & 255; bits -= 8; acc &= (1 << bits) - 1; }
  }
  if (acc !== 0) throw new FormatError('Corrupt', 'base32: the last character has non-zero padding bits (a typo?)');
  return out;
}

export interface RecoveryKit {
  master: Buffer;
  repositoryId: Buffer;
  fingerprint: string;
}

export function formatRecoveryKit(master: Uint8Array, repositoryId: Uint8Array): string {
  const fp = deriveKeys(master, repositoryId).fingerprint;
  const groups = base32Encode(master).match(/.{1,4}/g)!;
  const pad = ' '.repeat('master key:  '.length);
  return [
    'Shelter recovery kit',
    '====================',
    'Keep this sheet offline and private. With it, anyone can read every backup of this',
    'repository; without it or another copy of the key, nobody can, including us.',
    '',
    'format:      shelter/v1',
    `repository:  ${toHex(repositoryId)}`,
    `fingerprint: ${fp}`,
    `master key:  ${groups.slice(0, 7).join(' ')}`,
    `${pad}${groups.slice(7).join(' ')}`,
    '',
    'With the bucket address and credentials, this sheet is all a restore needs.',
    '',
  ].join('\n');
}

/**
 * Reads a kit back (typed in, OCR'd, copied): labels are case-insensitive, the key may be split
 * over continuation lines, in base32 or 64 hex digits. Verifies the fingerprint.
 */
export function parseRecoveryKit(text: string): RecoveryKit {
  if (text.length > 65536) throw new FormatError('Corrupt', 'recovery kit: far too long');
  const fields = new Map<string, string>();
  let current: string | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*(format|repository|fingerprint|master key)\s*:(.*)$/i.exec(raw);
    if (m) { current = m[1]!.toLowerCase(); fields.set(current, m[2]!.trim()); continue; }
    // continuation of the key: an indented line of base32/hex groups
    if (current === 'master key' && /^\s+[A-Za-z0-9 -]+$/.test(raw) && /[A-Za-z0-9]/.test(raw)) { fields.set(current, fields.get(current)! + ' ' + raw.trim()); continue; }
    current = null;
  }
  const format = fields.get('format');
  if (format !== undefined && format !== 'shelter/v1') {
    if (/^shelter\/v\d+$/.test(format)) throw new FormatError('UnsupportedVersion', `recovery kit is for ${format}; this program reads shelter/v1`);
    throw new FormatError('Corrupt', 'recovery kit: unknown format line');
  }
  const repo = fields.get('repository');
  const fp = fields.get('fingerprint');
  const key = fields.get('master key');
  if (repo === undefined || fp === undefined || key === undefined) throw new FormatError('Corrupt', 'recovery kit needs repository, fingerprint and master key lines');
  const repositoryId = fromHex(repo.toLowerCase(), REPOSITORY_ID_BYTES, 'recovery kit repository');
  const fingerprint = fromHex(fp.toLowerCase(), 16, 'recovery kit fingerprint').toString('hex');
  const compact = key.replace(/[\s-]/g, '');
  const master = /^[0-9a-fA-F]{64}$/.test(compact) ? Buffer.from(compact, 'hex') : base32Decode(compact, MASTER_KEY_BYTES);
  if (deriveKeys(master, repositoryId).fingerprint !== fingerprint) {
    throw new FormatError('Corrupt', 'recovery kit: the master key does not match the fingerprint (check for a typo in the key or the repository id)');
  }
  return { master, repositoryId, fingerprint };
}
