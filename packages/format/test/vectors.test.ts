// The test vectors are the format's ground truth for a second implementation: these tests
// decode the stored files with the reference code, and regenerate them byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildVectors, chunkerInput, PASSPHRASE, WRAPPING_KEY, vectorPlaintexts } from './vectors-build.ts';
import { MASTER, REPO_ID } from './helpers.ts';
import { openRepository } from '../src/config.ts';
import { readPackHeader, extractBlob, verifyPackId } from '../src/pack.ts';
import { openIndex } from '../src/indexfile.ts';
import { openSnapshot } from '../src/snapshot.ts';
import { parseManifest } from '../src/manifest.ts';
import { openKeySlot, parseKeySlot, parseKeyFile } from '../src/keys.ts';
import { parseRecoveryKit } from '../src/recovery.ts';
import { decodeTree, encodeTree } from '../src/tree.ts';
import { Chunker, chunkLengths, DEFAULT_CHUNKER } from '../src/chunker.ts';
import { sha256, toHex } from '../src/common.ts';
import { packKey } from '../src/names.ts';

const DIR = join(import.meta.dirname, 'vectors');
const read = (name: string) => readFileSync(join(DIR, name), 'utf8');
const bytesOf = (name: string) => Buffer.from(read(name).trim(), 'hex');
const textOf = (name: string) => Buffer.from(read(name).replace(/\n$/, ''), 'utf8');

if (process.env.SHELTER_UPDATE_VECTORS === '1') {
  mkdirSync(DIR, { recursive: true });
  for (const [name, content] of buildVectors().files) writeFileSync(join(DIR, name), content);
}

const summary = JSON.parse(read('vectors.json')) as {
  zstd: string; fingerprint: string; chunker: { lengths: number[] };
  blobs: { name: string; id: string; plaintextSha256: string }[];
  pack: { id: string; size: number }; index: { id: string }; snapshot: { id: string; manifestKey: string };
};

test('stored vectors decode with the fixed master key', () => {
  const { keys, config } = openRepository(MASTER, textOf('config.json'));
  assert.equal(keys.fingerprint, summary.fingerprint);
  assert.deepEqual(config.chunker, DEFAULT_CHUNKER);

  const pack = bytesOf('pack.hex');
  assert.ok(verifyPackId(pack, Buffer.from(summary.pack.id, 'hex')));
  const entries = readPackHeader(keys, pack, pack.length);
  const expected = new Map(vectorPlaintexts().map((p) => [p.name, p.plaintext]));
  expected.set('root-tree', textOf('tree.json'));
  assert.equal(entries.length, summary.blobs.length);
  for (const [k, e] of entries.entries()) {
    const meta = summary.blobs[k]!;
    assert.equal(toHex(e.id), meta.id);
    const plain = extractBlob(keys, pack, e);
    assert.equal(toHex(sha256(plain)), meta.plaintextSha256, meta.name);
    assert.ok(plain.equals(expected.get(meta.name)!), meta.name);
  }
  const tree = decodeTree(textOf('tree.json'));
  assert.ok(encodeTree(tree).equals(textOf('tree.json')), 'tree.json is canonical');

  const idx = openIndex(keys, bytesOf('index.hex'), Buffer.from(summary.index.id, 'hex'));
  assert.equal(idx.length, 1);
  assert.deepEqual(idx[0]!.entries, entries);
  assert.equal(idx[0]!.size, pack.length);

  const snap = openSnapshot(keys, bytesOf('snapshot.hex'), Buffer.from(summary.snapshot.id, 'hex'));
  assert.equal(toHex(snap.tree), summary.blobs.find((b) => b.name === 'root-tree')!.id);

  const m = parseManifest(textOf('manifest.json'), { key: summary.snapshot.manifestKey });
  assert.deepEqual(m.packs, [packKey(summary.pack.id)]);

  assert.ok(openKeySlot(parseKeySlot(textOf('keyslot-scrypt.json')), { passphrase: PASSPHRASE }).equals(MASTER));
  assert.ok(openKeySlot(parseKeySlot(textOf('keyslot-wrapped.json')), { wrappingKey: WRAPPING_KEY }).equals(MASTER));
  assert.ok(parseKeyFile(read('keyfile.txt')).equals(MASTER));
  const kit = parseRecoveryKit(read('recovery-kit.txt'));
  assert.ok(kit.master.equals(MASTER) && kit.repositoryId.equals(REPO_ID));
});

test('chunker cut points match the vectors', () => {
  const { keys } = openRepository(MASTER, textOf('config.json'));
  assert.deepEqual(chunkLengths(new Chunker(keys, DEFAULT_CHUNKER), chunkerInput()), summary.chunker.lengths);
});

test('regenerating the vectors gives the same bytes', (t) => {
  const built = buildVectors();
  for (const [name, content] of built.files) {
    const stored = read(name);
    if (stored === content) continue;
    // zstd's encoder output is not part of the format (any valid frame decodes); only a
    // different zstd version may change the compressed vectors.
    if (process.versions.zstd !== summary.zstd) {
      t.diagnostic(`${name} differs, but zstd is ${process.versions.zstd} (vectors made with ${summary.zstd}): decoding was verified above`);
      continue;
    }
    assert.equal(content, stored, `${name} differs from the stored vector (SHELTER_UPDATE_VECTORS=1 regenerates; review the diff)`);
  }
});
