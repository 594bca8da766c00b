// The export's tar headers where ustar falls short, read back by GNU tar: a size above 8 GiB, a
// sub-second mtime past 2038, ids above ustar's 7 octal digits, a user name longer than its 32-byte
// field, a unicode name. Only the headers are made (the 9 GiB of content are never written): GNU tar
// lists an entry as soon as it has read its headers.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { pack as tarPack } from 'tar-stream';
import type { TreeNode } from '@shelter/format';
import { paxTime, tarHeader } from '../src/exporter.ts';

test('paxTime: decimal seconds, nanoseconds without trailing zeros, negative times', () => {
  assert.equal(paxTime(0n), '0');
  assert.equal(paxTime(1_234_567_890_123_456_789n), '1234567890.123456789');
  assert.equal(paxTime(1_500_000_000n), '1.5');
  assert.equal(paxTime(-1_500_000_000n), '-1.5'); // 1969-12-31T23:59:58.5Z, as GNU tar --format=pax writes it
  assert.equal(paxTime(-1n), '-0.000000001');
});

/** the bytes a pack produces for one entry's headers (its content is never written) */
async function headerBytes(h: ReturnType<typeof tarHeader>): Promise<Buffer> {
  const pack = tarPack();
  const sink = pack.entry(h);
  sink.on('error', () => {});
  pack.on('error', () => {});
  const chunks: Buffer[] = [];
  for await (const c of pack) {
    chunks.push(Buffer.from(c as Uint8Array));
    // the pax header block, its records, the ustar block: all there once the entry is open
    if (Buffer.concat(chunks).length >= 1536) break;
  }
  pack.destroy();
  return Buffer.concat(chunks);
}

test('GNU tar reads what ustar cannot hold from the pax header', async (t) => {
  if (spawnSync('tar', ['--version']).status !== 0) { t.skip('no tar here'); return; }
  const size = 9 * 1024 * 1024 * 1024 + 7;
  const node: TreeNode = {
    name: Buffer.from('big'), type: 'file', mode: 0o640, uid: 3_000_000, gid: 4_000_000, user: 'a-user-name-longer-than-thirty-two-bytes',
    group: 'g', size, mtime: 4_102_444_800_250_000_000n, atime: 0n, ctime: 0n, content: [],
  };
  const h = tarHeader({ name: 'dir/ünïcode big file', node }, undefined);
  assert.deepEqual(h.pax, { mtime: '4102444800.25', size: String(size), uid: '3000000', gid: '4000000', uname: 'a-user-name-longer-than-thirty-two-bytes' });
  const bytes = await headerBytes(h);
  const list = (args: string[]) => spawnSync('tar', ['-tv', '--full-time', '--utc', ...args, '-f', '-'], { input: bytes, encoding: 'utf8' });
  const numeric = list(['--numeric-owner']);
  assert.match(numeric.stdout, new RegExp(`^-rw-r----- 3000000/4000000 +${size} 2100-01-01 00:00:00\\.25 dir/ünïcode big file$`, 'm'), numeric.stdout + numeric.stderr);
  const named = list([]);
  assert.match(named.stdout, /^-rw-r----- a-user-name-longer-than-thirty-two-bytes\/g /m, named.stdout + named.stderr);
});

test('a mode of 0 stays 0, devices carry major and minor, hard links name the first path', () => {
  const base = { uid: 0, gid: 0, mtime: 0n, atime: 0n, ctime: 0n };
  const none = tarHeader({ name: 'f', node: { ...base, name: Buffer.from('f'), type: 'file', mode: 0, size: 0, content: [] } }, undefined);
  assert.equal(none.mode & 0o7777, 0);
  assert.equal(none.pax, null, 'nothing beyond ustar: no pax header');
  const dev = tarHeader({ name: 'sda', node: { ...base, name: Buffer.from('sda'), type: 'blockdev', mode: 0o660, rdev: (8n << 8n) | 1n } }, undefined);
  assert.equal(dev.type, 'block-device');
  assert.deepEqual([dev.devmajor, dev.devminor], [8, 1]);
  const link = tarHeader({ name: 'b', node: { ...base, name: Buffer.from('b'), type: 'file', mode: 0o644, size: 10, content: [] }, linkTo: 'a' }, undefined);
  assert.deepEqual([link.type, link.linkname, link.size], ['link', 'a', 0]);
});
