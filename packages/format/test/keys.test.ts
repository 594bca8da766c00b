import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, MASTER, REPO_ID, detRng, throwsCode, flip } from './helpers.ts';
import { deriveKeys, keyFingerprint, blobId } from '../src/derive.ts';
import { createKeySlot, parseKeySlot, openKeySlot, encodeKeyFile, parseKeyFile, encodeKeySlot } from '../src/keys.ts';
import { formatRecoveryKit, parseRecoveryKit, base32Encode, base32Decode } from '../src/recovery.ts';
import { createRepository, openRepository, parseConfig } from '../src/config.ts';

const FAST = { N: 1024, r: 8, p: 1 };

test('subkeys are independent and bound to the repository id', () => {
  const subs = [KEYS.data, KEYS.id, KEYS.chunker, KEYS.config].map((b) => b.toString('hex'));
  assert.equal(new Set(subs).size, 4);
  const other = deriveKeys(MASTER, Buffer.alloc(16, 1));
  assert.notEqual(other.fingerprint, KEYS.fingerprint);
  assert.notEqual(other.data.toString('hex'), KEYS.data.toString('hex'));
  assert.equal(keyFingerprint(MASTER, REPO_ID), KEYS.fingerprint);
  assert.match(KEYS.fingerprint, /^[0-9a-f]{32}$/);
  // ids are keyed: another key gives another id for the same plaintext
  assert.notDeepEqual(blobId(KEYS, Buffer.from('x')), blobId(deriveKeys(Buffer.alloc(32, 9), REPO_ID), Buffer.from('x')));
  throwsCode(() => deriveKeys(Buffer.alloc(31), REPO_ID), 'Invalid');
});

test('passphrase slot: round trip, wrong passphrase, tampering, NFC', () => {
  const s = createKeySlot(MASTER, REPO_ID, { passphrase: 'caf\u00e9' }, { params: FAST, rng: detRng('slot') });
  const parsed = parseKeySlot(s.bytes);
  assert.ok(encodeKeySlot(parsed).equals(s.bytes));
  assert.ok(openKeySlot(parsed, { passphrase: 'caf\u00e9' }).equals(MASTER));
  assert.ok(openKeySlot(parsed, { passphrase: 'cafe\u0301' }).equals(MASTER), 'decomposed form of the same passphrase');
  throwsCode(() => openKeySlot(parsed, { passphrase: 'cafe' }), 'WrongPassphrase');
  throwsCode(() => openKeySlot(parsed, { wrappingKey: Buffer.alloc(32) }), 'Invalid');
  // change each hex field by one digit: never opens, never crashes
  const text = s.bytes.toString('utf8');
  for (const field of ['salt', 'nonce', 'wrapped', 'repository', 'fingerprint']) {
    const o = JSON.parse(text) as Record<string, string>;
    o[field] = (o[field]![0] === '0' ? '1' : '0') + o[field]!.slice(1);
    throwsCode(() => openKeySlot(parseKeySlot(Buffer.from(JSON.stringify(o))), { passphrase: 'caf\u00e9' }), ['WrongPassphrase', 'Corrupt'], field);
  }
  const o = JSON.parse(text) as { params: { N: number } };
  o.params.N = 1 << 30;
  throwsCode(() => parseKeySlot(Buffer.from(JSON.stringify(o))), 'Corrupt', 'absurd scrypt cost is refused before running it');
  throwsCode(() => parseKeySlot(Buffer.from(text.replace('"v":1', '"v":2'))), 'UnsupportedVersion');
  throwsCode(() => parseKeySlot(Buffer.from(text.replace('"kdf":"scrypt"', '"kdf":"argon2id"'))), 'UnsupportedVersion');
});

test('default scrypt parameters work (N = 2^15)', () => {
  const t0 = performance.now();
  const s = createKeySlot(MASTER, REPO_ID, { passphrase: 'pw' });
  assert.ok(openKeySlot(parseKeySlot(s.bytes), { passphrase: 'pw' }).equals(MASTER));
  assert.deepEqual(s.slot.params, { N: 32768, r: 8, p: 1 });
  console.log(`# scrypt N=2^15 r=8 p=1: ${((performance.now() - t0) / 2).toFixed(0)} ms per derivation`);
});

test('wrapping-key slot (key command / KMS)', () => {
  const wk = Buffer.alloc(32, 3);
  const s = createKeySlot(MASTER, REPO_ID, { wrappingKey: wk });
  assert.ok(openKeySlot(parseKeySlot(s.bytes), { wrappingKey: wk }).equals(MASTER));
  throwsCode(() => openKeySlot(parseKeySlot(s.bytes), { wrappingKey: Buffer.alloc(32, 4) }), 'WrongPassphrase');
  assert.equal(s.slot.params, undefined);
});

test('key files', () => {
  const text = encodeKeyFile(MASTER);
  assert.equal(text, MASTER.toString('hex') + '\n');
  assert.ok(parseKeyFile(text).equals(MASTER));
  assert.ok(parseKeyFile(`# my key\n  ${MASTER.toString('hex').toUpperCase()}  \r\n`).equals(MASTER));
  throwsCode(() => parseKeyFile('abc'), 'Corrupt');
  throwsCode(() => parseKeyFile(MASTER.toString('hex') + '\n' + MASTER.toString('hex')), 'Corrupt');
});

test('recovery kit: round trip, sloppy typing, typo detection', () => {
  const kit = formatRecoveryKit(MASTER, REPO_ID);
  const r = parseRecoveryKit(kit);
  assert.ok(r.master.equals(MASTER) && r.repositoryId.equals(REPO_ID));
  assert.equal(r.fingerprint, KEYS.fingerprint);
  // lower case, dashes, O typed as 0, CRLF
  const sloppy = kit.split('\n').map((l) => (/^(master key:| {6})/.test(l) ? l.toLowerCase().replace(/ (?=[a-z2-7]{4})/g, '-').replace(/o/g, '0') : l)).join('\r\n');
  assert.notEqual(sloppy, kit);
  assert.ok(parseRecoveryKit(sloppy).master.equals(MASTER));
  // key as hex works too
  assert.ok(parseRecoveryKit(`repository: ${REPO_ID.toString('hex')}\nfingerprint: ${KEYS.fingerprint}\nmaster key: ${MASTER.toString('hex')}\n`).master.equals(MASTER));
  // one wrong character of the key
  const keyLine = kit.split('\n').find((l) => l.startsWith('master key:'))!;
  const typo = kit.replace(keyLine, keyLine.replace(/[A-Z2-7](?=[A-Z2-7]{3} [A-Z2-7]{4}$)/, (c) => (c === 'A' ? 'B' : 'A')));
  assert.notEqual(typo, kit);
  throwsCode(() => parseRecoveryKit(typo), 'Corrupt');
  throwsCode(() => parseRecoveryKit(kit.replace('shelter/v1', 'shelter/v2')), 'UnsupportedVersion');
  throwsCode(() => parseRecoveryKit('hello'), 'Corrupt');
  for (let n = 0; n < 40; n++) {
    const b = detRng(`b32 ${n}`)(n);
    assert.ok(base32Decode(base32Encode(b), n).equals(b));
  }
});

test('config: fingerprint lock, MAC, strict parsing', () => {
  const repo = createRepository({ rng: detRng('repo'), created: '2025-01-01T00:00:00.000Z' });
  const { keys } = openRepository(repo.master, repo.configBytes);
  assert.equal(keys.fingerprint, repo.keys.fingerprint);
  throwsCode(() => openRepository(Buffer.alloc(32, 0xee), repo.configBytes), 'WrongKey');
  const text = repo.configBytes.toString('utf8');
  const cfg = JSON.parse(text) as { chunker: { min: number }; created: string };
  cfg.chunker.min = 32768;
  throwsCode(() => openRepository(repo.master, Buffer.from(JSON.stringify(cfg))), 'Authentication', 'changed chunker parameters');
  throwsCode(() => parseConfig(Buffer.from(text.replace('"v":1', '"v":7'))), 'UnsupportedVersion');
  throwsCode(() => parseConfig(Buffer.from(text.replace('{', '{"extra":1,'))), 'Corrupt');
  throwsCode(() => parseConfig(Buffer.from('not json')), 'Corrupt');
  throwsCode(() => parseConfig(flip(repo.configBytes, 0, 0x80)), 'Corrupt');
});
