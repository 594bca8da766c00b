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
      assert.deepEqual(await after.recover((ids) => new Set(ids.filter((id) => id === a.id))), { committed: 1, removed: 1 });
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
      assert.deepEqual(await reopen().recover((ids) => new Set(ids)), { committed: 0, removed: 0 });
    } finally { await cleanup(); }
  });

  test(`${name}: sizes around block and buffer boundaries, odd chunking, many at once, all byte-identical`, async () => {
    const { store, cleanup } = await open();
    try {
      const MiB = 1024 * 1024;
      const sizes = [0, 1, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, 2 * MiB, 2 * MiB + 511, 5 * MiB + 4096 + 3];
      // more concurrent large writes than any staging pool holds (the fs store falls back, never waits)
      for (let i = 0; i < 40; i++) sizes.push(MiB + 1 + i * 7919);
      const written = await Promise.all(sizes.map(async (size) => {
        const data = randomBytes(size);
        const pieces: Buffer[] = [];
        for (let p = 0, step = 1; p < size; p += step, step = (step * 7 + 4093) % 200_000 + 1) pieces.push(data.subarray(p, p + step));
        const w = await store.write(Readable.from(pieces));
        return { w, data };
      }));
      await store.commit(written.map((x) => x.w.id));
      for (const { w, data } of written) {
        assert.equal(w.bytes, data.length);
        assert.equal(await store.stat(w.id), data.length);
        if (data.length) assert.ok((await bytesOf(await store.read(w.id, 0, data.length - 1))).equals(data), `blob of ${data.length} bytes differs`);
      }
    } finally { await cleanup(); }
  });

  test(`${name}: a large body failing after several MiB leaves nothing behind, and the store keeps working`, async () => {
    const { store, reopen, cleanup } = await open();
    try {
      for (let i = 0; i < 80; i++) {
        let sent = 0;
        const failing = new Readable({
          read() {
            if (sent >= 3 * 1024 * 1024 + 100) { this.destroy(new Error('client went away')); return; }
            sent += 65536;
            this.push(randomBytes(65536));
          },
        });
        await assert.rejects(store.write(failing), /client went away/);
      }
      const data = randomBytes(3 * 1024 * 1024 + 5);
      const ok = await store.write(Readable.from([data]));
      assert.ok((await bytesOf(await store.read(ok.id, 0, data.length - 1))).equals(data));
      assert.deepEqual(await reopen().recover((ids) => new Set(ids.filter((id) => id === ok.id))), { committed: 1, removed: 0 });
    } finally { await cleanup(); }
  });
}
