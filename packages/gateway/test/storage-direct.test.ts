// The direct-I/O staging pool (storage/direct.ts): on a filesystem that takes O_DIRECT it hands out
// pairs of 1 MiB buffers a direct write accepts (their bytes land on disk as given); where no file
// can be opened for direct writes (tmpfs before Linux 6.6, some overlay filesystems) it answers
// null, and the store writes through the page cache instead. Whether the buffers start on a page
// (the speed of those writes) is a benchmark figure (bench/README.md), not a test: Node shows no
// address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIRECT_SLOT, openDirectPool } from '../src/storage/direct.ts';

/** whether `dir` takes an O_DIRECT open at all */
function takesDirect(dir: string): boolean {
  try { closeSync(openSync(join(dir, 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600)); return true; }
  catch { return false; }
  finally { rmSync(join(dir, 'probe'), { force: true }); }
}

const roots = [tmpdir(), ...(existsSync('/dev/shm') ? ['/dev/shm'] : [])];

test('direct pool: buffers a direct write accepts where the filesystem takes O_DIRECT, none where it does not', (t) => {
  for (const root of roots) {
    const dir = mkdtempSync(join(root, 'direct-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const direct = takesDirect(dir);
    const pool = openDirectPool(dir, 16);
    const pair = pool.acquirePair();
    if (!direct) { assert.ok(pair === null, `${dir} refuses O_DIRECT: no buffers`); continue; }
    assert.ok(pair, `${dir} takes O_DIRECT: buffers`);
    assert.deepEqual(pair.map((b) => b.length), [DIRECT_SLOT, DIRECT_SLOT]);
    // both buffers written directly, end to end, read back as written
    const data = randomBytes(2 * DIRECT_SLOT);
    data.copy(pair[0], 0, 0, DIRECT_SLOT);
    data.copy(pair[1], 0, DIRECT_SLOT);
    const fd = openSync(join(dir, 'blob'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600);
    try {
      assert.equal(writeSync(fd, pair[0], 0, DIRECT_SLOT, 0), DIRECT_SLOT);
      assert.equal(writeSync(fd, pair[1], 0, DIRECT_SLOT, DIRECT_SLOT), DIRECT_SLOT);
    } finally { closeSync(fd); }
    assert.ok(readFileSync(join(dir, 'blob')).equals(data));
    // the pool grows to its bound (16 slots: 8 pairs), then answers null; a released pair comes back
    const held = [pair];
    for (let p = pool.acquirePair(); p; p = pool.acquirePair()) held.push(p);
    assert.equal(held.length, 8);
    pool.release(held.pop()!);
    assert.ok(pool.acquirePair() !== null);
  }
});

test('direct pool: where no file can be opened for direct writes, no buffers (the store writes through the page cache)', () => {
  const missing = join(tmpdir(), `no-such-dir-${process.pid}`, 'pending');
  assert.equal(takesDirect(missing), false);
  const pool = openDirectPool(missing, 16);
  // (compared here, not by assert.equal: a failure would carry the WebAssembly-backed buffers to the runner)
  assert.ok(pool.acquirePair() === null, 'no buffers');
  assert.ok(pool.acquirePair() === null, 'asked again: still none (the answer is kept)');
});
