// Trees, snapshots, manifests and object names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEYS, OTHER_KEYS, detRng, flip, throwsCode } from './helpers.ts';
import { encodeTree, decodeTree, sameNode, subtreeIds, type TreeNode } from '../src/tree.ts';
import { sealSnapshot, openSnapshot, encodeSnapshot, decodeSnapshot, type Snapshot } from '../src/snapshot.ts';
import { encodeManifest, parseManifest, manifestKeyFor, MAX_MANIFEST_BYTES, type Manifest } from '../src/manifest.ts';
import { parseObjectKey, packKey, indexKey, snapshotKey, manifestKey, keySlotKey, validateBackupName } from '../src/names.ts';

const id = (n: number) => Buffer.alloc(32, n);
const T = { mtime: 1700000000123456789n, atime: -5n, ctime: (1n << 62n) + 1n };
const file = (name: Buffer | string, extra: Partial<TreeNode> = {}): TreeNode =>
  ({ name: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, content: [id(1)], ...T, ...extra });

test('trees: canonical, sorted by name bytes, every name round-trips', () => {
  const names = ['b', 'a', 'Z', 'é', 'e\u0301', ' leading space', 'new\nline', 'tab\there', '\u{1f600}', 'quote"back\\slash', '-rf', '.hidden', '...'];
  const raw = [Buffer.from([0xff, 0xfe]), Buffer.from([0x61, 0x80]), Buffer.from([0xc3, 0x28])]; // not UTF-8
  const nodes = [...names.map((n) => file(n)), ...raw.map((r) => file(r)),
    { name: Buffer.from('dir'), type: 'dir', mode: 0o755, uid: 1, gid: 2, subtree: id(2), ...T } as TreeNode,
    { name: Buffer.from('ln'), type: 'symlink', mode: 0o777, uid: 1, gid: 2, target: Buffer.from([0x2e, 0x2e, 0x2f, 0xff]), ...T } as TreeNode,
    { name: Buffer.from('dev'), type: 'chardev', mode: 0o600, uid: 0, gid: 0, rdev: 259n, ...T } as TreeNode,
    file('big', { size: 2 ** 52, inode: (1n << 64n) - 1n, device: 0n, links: 3, user: 'ü', group: '', xattrs: [{ name: Buffer.from('user.b'), value: Buffer.from([0, 1]) }, { name: Buffer.from('user.a'), value: Buffer.alloc(0) }] }),
  ];
  const bytes = encodeTree(nodes);
  assert.ok(encodeTree([...nodes].reverse()).equals(bytes), 'input order does not matter');
  const back = decodeTree(bytes);
  assert.ok(encodeTree(back).equals(bytes), 'decode/encode is the identity');
  for (let i = 1; i < back.length; i++) assert.ok(Buffer.compare(back[i - 1]!.name, back[i]!.name) < 0);
  for (const n of nodes) {
    const b = back.find((x) => x.name.equals(n.name));
    assert.ok(b, `name ${n.name.toString('hex')} survived`);
  }
  const big = back.find((x) => x.name.toString() === 'big')!;
  assert.equal(big.inode, (1n << 64n) - 1n);
  assert.equal(big.ctime, (1n << 62n) + 1n);
  assert.deepEqual(big.xattrs!.map((x) => x.name.toString()), ['user.a', 'user.b']);
  assert.ok(back.find((x) => x.type === 'symlink')!.target!.equals(Buffer.from([0x2e, 0x2e, 0x2f, 0xff])));
  assert.deepEqual(decodeTree(encodeTree([])), []);
});

test('trees: sameNode holds exactly when two nodes encode to the same bytes', () => {
  const base = file('f', { inode: 7n, device: 1n, links: 1, user: 'u', group: 'g', content: [id(1), id(2)], xattrs: [{ name: Buffer.from('user.b'), value: Buffer.from([1]) }, { name: Buffer.from('user.a'), value: Buffer.from([2]) }] });
  const decoded = decodeTree(encodeTree([base]))[0]!;
  assert.ok(sameNode(base, decoded), 'a node and its decoded copy (xattrs sorted by the encoder)');
  const mutations: Array<Partial<TreeNode>> = [
    { name: Buffer.from('g') }, { mode: 0o600 }, { uid: 1 }, { gid: 1 }, { user: 'v' }, { user: undefined }, { group: 'h' }, { size: 2 },
    { mtime: T.mtime + 1n }, { atime: 0n }, { ctime: 1n }, { inode: 8n }, { inode: undefined }, { device: 2n }, { links: 2 },
    { content: [id(1)] }, { content: [id(1), id(3)] }, { xattrs: [] }, { xattrs: [{ name: Buffer.from('user.a'), value: Buffer.from([3]) }, { name: Buffer.from('user.b'), value: Buffer.from([1]) }] },
  ];
  for (const m of mutations) {
    const other = { ...base, ...m };
    assert.equal(sameNode(base, other), encodeTree([base]).equals(encodeTree([other])), `mutation ${Object.keys(m)[0]}`);
    assert.equal(sameNode(base, other), false, `mutation ${Object.keys(m)[0]} is a change`);
  }
  const link = { name: Buffer.from('l'), type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: Buffer.from('a'), ...T } as TreeNode;
  assert.ok(!sameNode(link, { ...link, target: Buffer.from('b') }));
  const dir = { name: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 0, gid: 0, subtree: id(4), ...T } as TreeNode;
  assert.ok(sameNode(dir, { ...dir, subtree: id(4) }));
  assert.ok(!sameNode(dir, { ...dir, subtree: id(5) }));
  assert.ok(!sameNode(dir, { ...dir, type: 'file' } as TreeNode));
});

test('trees: dangerous or malformed input is refused', () => {
  for (const bad of ['', '.', '..', 'a/b', 'a\0b', '/']) throwsCode(() => encodeTree([file(bad)]), 'Invalid', JSON.stringify(bad));
  throwsCode(() => encodeTree([file('x'), file('x')]), 'Invalid');
  throwsCode(() => encodeTree([{ ...file('d'), type: 'dir' }]), 'Invalid');
  const good = encodeTree([file('a'), file('b')]).toString();
  const variants: [string, string][] = [
    [good.replace('"name":"a"', '"name":"../../etc"'), 'path traversal'],
    [good.replace('"name":"a"', '"name":"c"'), 'unsorted'],
    [good.replace('"name":"b"', '"name":"a"'), 'duplicate'],
    [good.replace('"name":"a"', '"nameB64":"Li4="'), 'base64 ".."'],
    [good.replace('"mode":420', '"mode":-1'), 'negative mode'],
    [good.replace('"mtime":"1700000000123456789"', '"mtime":1700000000123456789'), 'time as a lossy number'],
    [good.replace('"mtime":"1700000000123456789"', '"mtime":"99999999999999999999"'), 'time out of range'],
    [good.replace('"type":"file"', '"type":"door"'), 'unknown type'],
    [good.replace('"v":1', '"v":2'), 'newer version'],
    [good.replace(/"content":\["[0-9a-f]+"\]/, '"content":["zz"]'), 'bad id'],
    [good.replace(',"content":["0101010101010101010101010101010101010101010101010101010101010101"]', ''), 'file without content'],
    ['[]', 'not an object'],
    ['{"v":1,"nodes":[1]}', 'node not an object'],
  ];
  for (const [text, what] of variants) {
    assert.notEqual(text, good, what);
    throwsCode(() => decodeTree(Buffer.from(text)), ['Corrupt', 'UnsupportedVersion'], what);
  }
});

const snap: Snapshot = {
  time: '2025-03-04T05:06:07.089Z', name: 'db-main', hostname: 'web-1', username: 'root', paths: ['/var/lib/postgresql', '/etc'],
  tags: ['nightly', 'db'], tree: id(7), parent: id(8), program: 'shelter 0.1.0', summary: { files: 10, bytes: 12345, newBlobs: 3, durationMs: 1200 },
};

test('trees: subtreeIds finds the directories\' subtree ids by scanning, in order, and nothing else', () => {
  const dir = (name: string, n: number): TreeNode => ({ name: Buffer.from(name), type: 'dir', mode: 0o755, uid: 0, gid: 0, subtree: id(n), ...T });
  // names and a symlink target that hold the key's text: escaped inside JSON strings, never a key
  const decoy = `"subtree":"${id(9).toString('hex')}`;
  const tree = encodeTree([dir('b', 3), file(decoy), dir('a', 2), { name: Buffer.from('ln'), type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: Buffer.from(decoy), ...T }, dir(`d${decoy}`, 4)]);
  assert.deepEqual(subtreeIds(tree), [id(2), id(3), id(4)], 'as decodeTree lists them');
  assert.deepEqual(subtreeIds(tree), decodeTree(tree).flatMap((n) => (n.subtree ? [n.subtree] : [])));
  assert.deepEqual(subtreeIds(encodeTree([file('x')])), []);
});

test('snapshots: round trip, named by SHA-256, wrong key, flipped bytes', () => {
  const s = sealSnapshot(KEYS, snap, { rng: detRng('snap') });
  const back = openSnapshot(KEYS, s.bytes, s.id);
  assert.deepEqual(back, { ...snap, tags: ['db', 'nightly'] });
  assert.ok(encodeSnapshot(back).equals(encodeSnapshot(snap)));
  throwsCode(() => openSnapshot(OTHER_KEYS, s.bytes), 'WrongKey');
  for (let at = 0; at < s.bytes.length; at += 3) throwsCode(() => openSnapshot(KEYS, flip(s.bytes, at)), ['Authentication', 'Corrupt', 'UnsupportedVersion'], `byte ${at}`);
  throwsCode(() => openSnapshot(KEYS, s.bytes, id(0)), 'Authentication');
  throwsCode(() => encodeSnapshot({ ...snap, name: 'has space' }), 'Invalid');
  throwsCode(() => encodeSnapshot({ ...snap, time: '2025-03-04 05:06:07' }), 'Invalid');
  throwsCode(() => decodeSnapshot(Buffer.from(encodeSnapshot(snap).toString().replace('"files":10', '"files":-1'))), 'Corrupt');
});

const P1 = packKey(id(0xab)), P2 = packKey(id(0x01)), I1 = indexKey(id(0x33));

function manifest(over: Partial<Manifest> = {}): Manifest {
  return { name: 'files', time: '2025-03-04T05:06:07.089Z', snapshot: snapshotKey(id(9)), packs: [P1, P2], indexes: [I1], ...over };
}

test('manifests: canonical bytes, sorted lists, strict parser', () => {
  const bytes = encodeManifest(manifest({ packs: [P1, P2, P1] }));
  const m = parseManifest(bytes, { key: manifestKey(id(9)) });
  assert.deepEqual(m.packs, [P2, P1], 'sorted and deduplicated');
  assert.equal(manifestKeyFor(m), manifestKey(id(9)));
  assert.equal(bytes.toString(), `{"v":1,"name":"files","time":"2025-03-04T05:06:07.089Z","snapshot":"${snapshotKey(id(9))}","packs":["${P2}","${P1}"],"indexes":["${I1}"]}`);
  throwsCode(() => parseManifest(bytes, { key: manifestKey(id(8)) }), 'Corrupt', 'stored under another snapshot');

  const text = bytes.toString();
  const bad: [string, string][] = [
    [text.replace('{', '{ '), 'whitespace (not canonical)'],
    [text.replace('"v":1,', '"v":1,"v":1,'), 'duplicate key'],
    [text.replace('"v":1', '"v":2'), 'newer version'],
    [text.replace('"name":"files"', '"name":"../x"'), 'bad name'],
    [text.replace('"name":"files"', '"name":"fil\\u0065s"'), 'escaped (not canonical)'],
    [text.replace('.089Z', 'Z'), 'time without ms'],
    [text.replace('2025-03-04', '2025-02-30'), 'impossible date'],
    [text.replace(`"${P2}","${P1}"`, `"${P1}","${P2}"`), 'unsorted packs'],
    [text.replace(`"${P2}","${P1}"`, `"${P1}","${P1}"`), 'duplicate packs'],
    [text.replace(P2, P2.replace('data/01/', 'data/02/')), 'wrong fan-out prefix'],
    [text.replace(P2, P2.toUpperCase()), 'upper-case key'],
    [text.replace(P2, 'data/01/../../config'), 'traversal'],
    [text.replace(`"indexes":["${I1}"]`, '"indexes":[]'), 'no index'],
    [text.replace(`"indexes":["${I1}"]`, `"indexes":["${P1}"]`), 'pack key in indexes'],
    [text.replace('}', ',"extra":true}'), 'unknown field'],
    [text.replace(`"snapshot":"${snapshotKey(id(9))}"`, `"snapshot":"${indexKey(id(9))}"`), 'snapshot key syntax'],
    ['[]', 'array'],
    ['', 'empty'],
    ['{"v":1', 'truncated'],
  ];
  for (const [t, what] of bad) {
    assert.notEqual(t, text, what);
    throwsCode(() => parseManifest(Buffer.from(t)), ['Corrupt', 'UnsupportedVersion'], what);
  }
  throwsCode(() => parseManifest(Buffer.from([0xff, 0xfe])), 'Corrupt', 'not UTF-8');
  throwsCode(() => parseManifest(bytes, { maxBytes: 100 }), 'TooLarge');
  throwsCode(() => parseManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20)), 'TooLarge');
  for (let at = 0; at < bytes.length; at++) {
    // any single flipped bit is either refused or (rarely) a still-valid manifest: never a crash
    try { parseManifest(flip(bytes, at)); } catch (e) { assert.equal((e as { name: string }).name, 'FormatError'); }
  }
});

test('object keys', () => {
  assert.deepEqual(parseObjectKey('config'), { type: 'config' });
  assert.deepEqual(parseObjectKey(P1), { type: 'pack', id: 'ab'.repeat(32) });
  assert.equal(P1, `data/ab/${'ab'.repeat(32)}`);
  assert.deepEqual(parseObjectKey(keySlotKey(id(1))), { type: 'key', id: '01'.repeat(32) });
  assert.deepEqual(parseObjectKey(manifestKey(id(2))), { type: 'manifest', id: '02'.repeat(32) });
  for (const k of ['data/ac/' + 'ab'.repeat(32), 'index/' + 'ab'.repeat(31), 'snapshots/' + 'AB'.repeat(32), 'config/', 'locks/x', 'keys/../config']) {
    assert.equal(parseObjectKey(k), null, k);
  }
  throwsCode(() => packKey('xyz'), 'Invalid');
  for (const n of ['files', 'db-main', 'host.example.com', 'a', 'x'.repeat(128), 'a:b@c+d=e_f']) validateBackupName(n);
  for (const n of ['', '-x', 'a b', 'a/b', 'x'.repeat(129), 'é', '.hidden']) throwsCode(() => validateBackupName(n), 'Invalid', n);
});
