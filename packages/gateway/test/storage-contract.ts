// The behaviour every BlobStore must have (storage/types.ts). The embedded fs store runs it now;
// the upstream S3 store will run the same function.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore } from '../src/storage/types.ts';

async function bytesOf(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export function blobStoreContract(name: string, open: () => Promise<{ store: BlobStore; reopen: () => BlobStore; cleanup: () => Promise<void> }>): void {
  test(`${name}: write, read ranges, stat, list, remove`, async () => {
    const { store, cleanup } = await open();
    try {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const w = await store.write(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      assert.equal(w.bytes, data.length);
      await store.commit([w.id]);
      assert.deepEqual(await bytesOf(await store.read(w.id, 0, data.length - 1)), data);
      assert.deepEqual(await bytesOf(await store.read(w.id, 5, 5)), data.subarray(5, 6));
      assert.deepEqual(await bytesOf(await store.read(w.id, 1_000_000, data.length - 1)), data.subarray(1_000_000));
      assert.equal(await store.stat(w.id), data.length);
      const listed: string[] = [];
      for await (const b of store.list()) listed.push(b.id);
      assert.ok(listed.includes(w.id));
      await store.remove(w.id);
      assert.equal(await store.stat(w.id), undefined);
      await assert.rejects(store.read(w.id, 0, 0));
    } finally { await cleanup(); }
  });

  test(`${name}: pending blobs are readable before commit; recovery keeps referenced ones and removes the rest`, async () => {
    const { store, reopen, cleanup } = await open();
    try {
      const a = await store.write(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
      const b = await store.write(Readable.from([Buffer.from('orphan')]));
      assert.equal((await bytesOf(await store.read(a.id, 6, 10))).toString(), 'world');
      // a "crash" here: neither committed, metadata references only a
      const after = reopen();
      assert.deepEqual(await after.recover((id) => id === a.id), { committed: 1, removed: 1 });
      assert.equal(await after.stat(b.id), undefined);
      assert.equal(await after.stat(a.id), 11);
      const listed = [];
      for await (const x of after.list()) listed.push(x);
      assert.deepEqual(listed, [{ id: a.id, bytes: 11 }]);
    } finally { await cleanup(); }
  });

  test(`${name}: a failed body leaves nothing behind`, async () => {
    const { store, reopen, cleanup } = await open();
    try {
      const failing = new Readable({ read() { this.push(Buffer.alloc(1000)); this.destroy(new Error('client went away')); } });
      await assert.rejects(store.write(failing), /client went away/);
      assert.deepEqual(await reopen().recover(() => true), { committed: 0, removed: 0 });
    } finally { await cleanup(); }
  });
}
