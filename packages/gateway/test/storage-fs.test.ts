import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openFsStore } from '../src/storage/fs.ts';

async function text(s: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

test('blobs are pending until committed; recovery keeps referenced ones and removes the rest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blobs-'));
  try {
    const store = openFsStore(dir);
    const a = await store.write(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
    const b = await store.write(Readable.from([Buffer.from('orphan')]));
    assert.equal(a.bytes, 11);
    assert.equal(await text(await store.read(a.id, 0, 10)), 'hello world', 'a pending blob is readable (commit may lag the metadata)');
    assert.equal(await text(await store.read(a.id, 6, 10)), 'world');
    // a "crash" here: neither committed. Metadata references a only.
    const reopened = openFsStore(dir);
    assert.deepEqual(await reopened.recover((id) => id === a.id), { committed: 1, removed: 1 });
    assert.equal(await reopened.stat(b.id), undefined);
    assert.equal(await reopened.stat(a.id), 11);
    assert.deepEqual(readdirSync(join(dir, 'pending')), []);
    const listed = [];
    for await (const x of reopened.list()) listed.push(x);
    assert.deepEqual(listed, [{ id: a.id, bytes: 11 }]);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a failed body leaves nothing behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blobs-'));
  try {
    const store = openFsStore(dir);
    const failing = new Readable({ read() { this.push(Buffer.alloc(1000)); this.destroy(new Error('client went away')); } });
    await assert.rejects(store.write(failing), /client went away/);
    assert.deepEqual(readdirSync(join(dir, 'pending')), []);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
