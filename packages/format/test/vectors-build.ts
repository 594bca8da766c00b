// Builds the test vectors in test/vectors/ from fixed inputs. vectors.test.ts regenerates them
// and compares byte for byte; SHELTER_UPDATE_VECTORS=1 rewrites them (review the diff!).
import { detRng, MASTER, REPO_ID, KEYS, streamBytes } from './helpers.ts';
import { sha256, toHex } from '../src/common.ts';
import { subkey } from '../src/derive.ts';
import { sealBlob, type SealedBlob } from '../src/envelope.ts';
import { Chunker, chunkLengths, gearTable, DEFAULT_CHUNKER } from '../src/chunker.ts';
import { PackWriter, type BlobType } from '../src/pack.ts';
import { sealIndex } from '../src/indexfile.ts';
import { encodeTree, type TreeNode } from '../src/tree.ts';
import { sealSnapshot, type Snapshot } from '../src/snapshot.ts';
import { encodeManifest } from '../src/manifest.ts';
import { encodeConfig } from '../src/config.ts';
import { createKeySlot, encodeKeyFile } from '../src/keys.ts';
import { formatRecoveryKit } from '../src/recovery.ts';
import { indexKey, packKey, snapshotKey, manifestKey } from '../src/names.ts';

export const PASSPHRASE = 'correct horse battery staple';
export const WRAPPING_KEY = Buffer.alloc(32, 0x55);
export const CREATED = '2025-01-01T00:00:00.000Z';
export const VECTOR_SCRYPT = { N: 1024, r: 8, p: 1 };

/** Chunker input: 3 MiB keystream (key 0x42), 2 MiB of zeros, 100000 bytes keystream (key 0x43). */
export function chunkerInput(): Buffer {
  return Buffer.concat([streamBytes(3 << 20, 0x42), Buffer.alloc(2 << 20), streamBytes(100000, 0x43)]);
}

export interface BuiltBlob { name: string; type: BlobType; plaintext: Buffer; sealed: SealedBlob }

export function vectorPlaintexts(): { name: string; type: BlobType; plaintext: Buffer }[] {
  const text = Buffer.from('Shelter test vector: compressible text.\n'.repeat(200), 'utf8');
  const small = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const zeros = Buffer.alloc(65536);
  const emptyTree = encodeTree([]);
  return [
    { name: 'text', type: 'data', plaintext: text },
    { name: 'small', type: 'data', plaintext: small },
    { name: 'empty', type: 'data', plaintext: Buffer.alloc(0) },
    { name: 'zeros', type: 'data', plaintext: zeros },
    { name: 'empty-tree', type: 'tree', plaintext: emptyTree },
  ];
}

export function vectorTree(ids: Record<string, Buffer>): TreeNode[] {
  const t = (s: number) => BigInt(s) * 1_000_000_000n + 123456789n;
  const base = { mode: 0o644, uid: 1000, gid: 1000, user: 'alice', group: 'staff', mtime: t(1700000000), atime: t(1700000001), ctime: t(1700000002) };
  return [
    { ...base, name: Buffer.from('hello.txt'), type: 'file', size: 8000, inode: 11n, device: 2049n, links: 1, content: [ids.text!] },
    { ...base, name: Buffer.from('a'), type: 'file', size: 64, inode: 42n, device: 2049n, links: 2, content: [ids.small!] },
    { ...base, name: Buffer.from('b'), type: 'file', size: 64, inode: 42n, device: 2049n, links: 2, content: [ids.small!] },
    { ...base, name: Buffer.from('empty'), type: 'file', size: 0, inode: 12n, device: 2049n, links: 1, content: [] },
    { ...base, name: Buffer.from('sparse.img'), type: 'file', size: 131072, inode: 13n, device: 2049n, links: 1, content: [ids.zeros!, ids.zeros!] },
    { ...base, name: Buffer.from([0x66, 0xff, 0x6f]), type: 'file', size: 0, inode: 14n, device: 2049n, links: 1, content: [] },
    { ...base, name: Buffer.from('new\nline é "q".txt'), type: 'file', size: 0, inode: 15n, device: 2049n, links: 1, content: [],
      xattrs: [{ name: Buffer.from('user.comment'), value: Buffer.from('hi') }] },
    { ...base, name: Buffer.from('link'), type: 'symlink', mode: 0o777, target: Buffer.from('hello.txt'), inode: 16n, device: 2049n, links: 1 },
    { ...base, name: Buffer.from('sub'), type: 'dir', mode: 0o755, subtree: ids['empty-tree']!, inode: 17n, device: 2049n, links: 2 },
    { ...base, name: Buffer.from('fifo'), type: 'fifo', mode: 0o600, inode: 18n, device: 2049n, links: 1 },
    { ...base, name: Buffer.from('old'), type: 'file', size: 0, mtime: -1n, atime: 0n, ctime: 0n, content: [] },
  ];
}

export function vectorSnapshot(tree: Buffer): Snapshot {
  return {
    time: '2025-01-02T03:04:05.678Z', name: 'files', hostname: 'vector-host', username: 'root', paths: ['/srv/data'], tags: ['test'],
    tree, program: 'shelter 0.1.0', summary: { files: 9, dirs: 2, bytes: 139336, newBlobs: 6 },
  };
}

export interface Vectors { files: Map<string, string>; blobs: BuiltBlob[]; chunkLengths: number[] }

export function buildVectors(): Vectors {
  const rng = detRng('vectors');
  const keys = KEYS;
  const files = new Map<string, string>();
  const blobs: BuiltBlob[] = [];
  const ids: Record<string, Buffer> = {};
  for (const p of vectorPlaintexts()) {
    const sealed = sealBlob(keys, p.plaintext, { rng });
    blobs.push({ ...p, sealed });
    ids[p.name] = sealed.id;
  }
  const treeBytes = encodeTree(vectorTree(ids));
  const rootTree = sealBlob(keys, treeBytes, { rng });
  blobs.push({ name: 'root-tree', type: 'tree', plaintext: treeBytes, sealed: rootTree });

  const writer = new PackWriter(keys, { rng });
  for (const b of blobs) writer.add(b.type, b.sealed.id, b.sealed.sealed, b.sealed.rawLength);
  const pack = writer.finish();
  const index = sealIndex(keys, [{ id: pack.id, size: pack.bytes.length, entries: pack.entries }], { rng });
  const snap = sealSnapshot(keys, vectorSnapshot(rootTree.id), { rng });
  const manifest = encodeManifest({ name: 'files', time: '2025-01-02T03:04:05.678Z', snapshot: snapshotKey(snap.id), packs: [packKey(pack.id)], indexes: [indexKey(index.id)] });
  const config = encodeConfig(keys, { id: REPO_ID, chunker: { ...DEFAULT_CHUNKER }, fingerprint: keys.fingerprint, created: CREATED });
  const slotScrypt = createKeySlot(MASTER, REPO_ID, { passphrase: PASSPHRASE }, { params: VECTOR_SCRYPT, created: CREATED, rng });
  const slotNone = createKeySlot(MASTER, REPO_ID, { wrappingKey: WRAPPING_KEY }, { created: CREATED, rng });

  const chunker = new Chunker(keys, DEFAULT_CHUNKER);
  const lengths = chunkLengths(chunker, chunkerInput());
  const gear = gearTable(keys.chunker);

  const hexFile = (b: Buffer) => b.toString('hex') + '\n';
  files.set('config.json', config.toString('utf8') + '\n');
  files.set('tree.json', treeBytes.toString('utf8') + '\n');
  files.set('pack.hex', hexFile(pack.bytes));
  files.set('index.hex', hexFile(index.bytes));
  files.set('snapshot.hex', hexFile(snap.bytes));
  files.set('manifest.json', manifest.toString('utf8') + '\n');
  files.set('keyslot-scrypt.json', slotScrypt.bytes.toString('utf8') + '\n');
  files.set('keyslot-wrapped.json', slotNone.bytes.toString('utf8') + '\n');
  files.set('keyfile.txt', encodeKeyFile(MASTER));
  files.set('recovery-kit.txt', formatRecoveryKit(MASTER, REPO_ID));
  const summary = {
    about: 'Shelter repository format v1 test vectors (docs/FORMAT.md). Files ending in .hex hold bytes as one line of hex; .json/.txt files hold the exact bytes minus one trailing newline.',
    zstd: process.versions.zstd,
    nonces: 'nonces and salts come from a deterministic test RNG: block i = SHA-256("shelter test rng" || "vectors" || u32be(i)), consumed in order: blobs, root tree, pack header, index, snapshot, scrypt slot (salt, nonce), wrapped slot (salt, nonce)',
    masterKey: toHex(MASTER),
    repositoryId: toHex(REPO_ID),
    fingerprint: keys.fingerprint,
    subkeys: { data: toHex(keys.data), id: toHex(keys.id), chunker: toHex(keys.chunker), config: toHex(keys.config), fingerprint: toHex(subkey(MASTER, REPO_ID, 'fingerprint')) },
    gearTable: { first: Array.from(gear.subarray(0, 4), (x) => x >>> 0), sha256OfLittleEndianBytes: toHex(sha256(Buffer.from(gear.buffer))) },
    chunker: {
      params: DEFAULT_CHUNKER,
      input: '3 MiB of AES-256-CTR keystream (key = 32 bytes 0x42, iv = 0), 2 MiB of zeros, 100000 bytes of keystream (key = 32 bytes 0x43, iv = 0)',
      lengths,
    },
    blobs: blobs.map((b) => ({
      name: b.name, type: b.type, id: toHex(b.sealed.id), rawLength: b.sealed.rawLength,
      compressed: (b.sealed.sealed[0]! & 1) === 1, sealedLength: b.sealed.sealed.length,
      plaintextSha256: toHex(sha256(b.plaintext)),
    })),
    blobPlaintexts: 'text = "Shelter test vector: compressible text.\\n" x 200; small = bytes 0..63; empty = no bytes; zeros = 65536 zero bytes; empty-tree = {"v":1,"nodes":[]}; root-tree = tree.json',
    pack: { id: toHex(pack.id), key: packKey(pack.id), size: pack.bytes.length, entries: pack.entries.map((e) => ({ type: e.type, id: toHex(e.id), offset: e.offset, length: e.length, rawLength: e.rawLength })) },
    index: { id: toHex(index.id), key: indexKey(index.id) },
    snapshot: { id: toHex(snap.id), key: snapshotKey(snap.id), manifestKey: manifestKey(snap.id) },
    keySlots: { passphrase: PASSPHRASE, scryptSlotId: toHex(slotScrypt.id), wrappingKey: toHex(WRAPPING_KEY), wrappedSlotId: toHex(slotNone.id) },
  };
  files.set('vectors.json', JSON.stringify(summary, null, 2) + '\n');
  return { files, blobs, chunkLengths: lengths };
}
