// The seal pool: sealing (ids given or computed by the worker), opening, and what happens when a
// worker thread dies: its jobs fail, later jobs go to the live workers, and once none is left
// every job fails at once. Nothing may wait forever (a restore would hang).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GCProfiler } from 'node:v8';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobId, Chunker, chunkLengths, createRepository, encodeTree, openBlob, openRepository, sealBlob } from '@shelter/format';
import { createSealPool, type SealPool } from '../src/sealpool.ts';
import type { FileWrite } from '../src/writejob.ts';
import type { RepoKeys } from '@shelter/format';

/** a pool of two workers for a fresh repository's keys, closed after `fn` */
async function withPool(fn: (pool: SealPool, keys: RepoKeys) => Promise<void>): Promise<void> {
  const { master, configBytes } = createRepository();
  const { keys } = openRepository(master, configBytes);
  const pool = createSealPool(keys, { workers: 2 });
  try { await fn(pool, keys); } finally { await pool.close(); }
}

test('a dying seal worker fails its own job; the others go on; with none left, jobs fail at once', async () => {
  await withPool(async (pool) => {
    // a malformed job makes the worker throw outside any handler: the worker dies. (Made here by
    // a file whose chunk list says 1000 chunks when the job is sized, none when it is filled in.)
    const kill = () => {
      let reads = 0;
      const chunks = new Proxy([], { get: (t, k) => (k === 'length' ? (reads++ === 0 ? 1000 : 0) : Reflect.get(t, k)) });
      const file = { path: Buffer.from('/nonexistent-shelter-test-dir/x'), whole: true, chunks, size: 0, mode: 0o644, uid: 0, gid: 0, chown: false, ownedIfNew: false, atime: 0, mtime: 0 };
      return pool.writeRange(Buffer.alloc(16), 0, [], [file] as FileWrite[]);
    };
    await assert.rejects(kill());
    const sealed = await pool.submit(Buffer.alloc(32, 1), Buffer.from('still sealed by the live worker'));
    assert.ok(sealed.length > 32);
    await assert.rejects(kill());
    await assert.rejects(pool.submit(Buffer.alloc(32, 2), Buffer.from('no worker left')), /every seal worker has died/);
    await assert.rejects(pool.writeRange(Buffer.alloc(16), 0, [], []), /every seal worker has died/);
  });
});

test('openTrees: sealed trees come back as their plaintexts, in order, with the subtree ids each names; a damaged one is named', async () => {
  await withPool(async (pool, keys) => {
    // real tree encodings: tree i has i % 4 subdirectories (and a file whose name looks like the key)
    const subOf = (i: number, k: number) => blobId(keys, Buffer.from(`sub ${i} ${k}`));
    const node = (name: string) => ({ name: Buffer.from(name), mode: 0o755, uid: 0, gid: 0, mtime: 1n, atime: 1n, ctime: 1n });
    const plains = Array.from({ length: 50 }, (_, i) => encodeTree([
      ...Array.from({ length: i % 4 }, (_, k) => ({ ...node(`dir${k}`), type: 'dir' as const, subtree: subOf(i, k) })),
      { ...node(`"subtree":"${'a'.repeat(64)}`), type: 'file' as const, size: 0, content: [] },
    ]));
    const blobs = plains.map((p) => sealBlob(keys, p));
    const opened = await pool.openTrees(blobs.map((b) => ({ id: b.id, sealed: b.sealed, rawLength: b.rawLength })));
    assert.equal(opened.length, plains.length);
    opened.forEach((t, i) => {
      assert.ok(t.plain.equals(plains[i]!), `tree ${i}`);
      assert.deepEqual(t.subtrees.map((s) => s.toString('hex')), Array.from({ length: i % 4 }, (_, k) => subOf(i, k).toString('hex')), `subtrees of tree ${i}`);
    });
    const bad = Buffer.from(blobs[30]!.sealed);
    bad[bad.length - 5]! ^= 1;
    await assert.rejects(pool.openTrees(blobs.map((b, i) => ({ id: b.id, sealed: i === 30 ? bad : b.sealed, rawLength: b.rawLength }))),
      new RegExp(`blob ${blobs[30]!.id.toString('hex')} does not decrypt`));
  });
});

test('submitUnhashed: the worker computes the id (the same HMAC as blobId) and seals under it', async () => {
  await withPool(async (pool, keys) => {
    const plains = Array.from({ length: 40 }, (_, i) => Buffer.from(`chunk ${i} `.repeat(50 + i)));
    // mixed with chunks whose id the caller gives, in the same batches
    const given = plains.map((p, i) => (i % 3 === 0 ? pool.submit(blobId(keys, p), p).then((sealed) => ({ id: blobId(keys, p), sealed })) : pool.submitUnhashed(p)));
    const results = await Promise.all(given);
    results.forEach((r, i) => {
      assert.ok(r.id.equals(blobId(keys, plains[i]!)), `id of chunk ${i}`);
      assert.ok(openBlob(keys, r.id, r.sealed, 1 << 20).equals(plains[i]!), `chunk ${i} opens under its id`);
    });
  });
});

test('verifyChunks: counts the leading chunks a file still holds, across parts; stops at a changed byte or the end of file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-verify-'));
  try {
    await withPool(async (pool, keys) => {
      // 40 chunks of 0.5-1 MiB: several 8 MiB parts, verified by both workers
      const lengths = Array.from({ length: 40 }, (_, i) => 512 * 1024 + i * 13_001);
      const data = randomBytes(lengths.reduce((a, b) => a + b, 0));
      const ids: Buffer[] = [];
      for (let i = 0, at = 0; i < lengths.length; at += lengths[i++]!) ids.push(blobId(keys, data.subarray(at, at + lengths[i]!)));
      const file = join(dir, 'f.bin');
      const path = Buffer.from(file);
      writeFileSync(file, data);
      assert.equal(await pool.verifyChunks(path, lengths, ids), 40, 'an unchanged file holds every chunk');
      writeFileSync(file, Buffer.concat([data, Buffer.from('appended')]));
      assert.equal(await pool.verifyChunks(path, lengths, ids), 40, 'an append leaves the chunks before it');
      const offsetOf = (k: number) => lengths.slice(0, k).reduce((a, b) => a + b, 0);
      for (const k of [0, 7, 23, 39]) {
        const changed = Buffer.from(data);
        changed[offsetOf(k) + 100]! ^= 1;
        writeFileSync(file, changed);
        assert.equal(await pool.verifyChunks(path, lengths, ids), k, `a byte changed in chunk ${k}`);
      }
      writeFileSync(file, data.subarray(0, offsetOf(30) + 5));
      assert.equal(await pool.verifyChunks(path, lengths, ids), 30, 'a truncated file holds the whole chunks before its end');
      await assert.rejects(pool.verifyChunks(Buffer.from(join(dir, 'missing')), lengths, ids), /ENOENT/);
    });
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a pool started with one worker starts the others once 16 MiB of work are in flight, not for a little', async () => {
  const { master, configBytes } = createRepository();
  const { keys } = openRepository(master, configBytes);
  const pool = createSealPool(keys, { workers: 2, initialWorkers: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'shelter-grow-'));
  try {
    assert.equal(pool.started(), 1);
    // an incremental backup that changed little: a few small chunks at a time
    for (let i = 0; i < 8; i++) await Promise.all(Array.from({ length: 4 }, () => pool.submitUnhashed(randomBytes(64 * 1024))));
    assert.equal(pool.started(), 1, 'small jobs leave the second worker unstarted');
    // a large changed file: 24 MiB to verify (chunks a little over 1 MiB, as content-defined
    // chunks are: no two parts of whole chunks reach 16 MiB)
    const lengths = Array.from({ length: 24 }, () => 1024 * 1024 + 4097);
    const data = randomBytes(24 * (1024 * 1024 + 4097));
    const ids = lengths.map((n, i) => blobId(keys, data.subarray(i * n, (i + 1) * n)));
    const file = join(dir, 'large.bin');
    writeFileSync(file, data);
    assert.equal(await pool.verifyChunks(Buffer.from(file), lengths, ids), 24);
    assert.equal(pool.started(), 2, 'the second worker started for the large file');
    const sealed = await Promise.all(Array.from({ length: 4 }, () => pool.submitUnhashed(randomBytes(1024))));
    assert.equal(sealed.length, 4);
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a large new file streamed starts the other workers before its stream picks one (its windows are all read there)', async () => {
  const { master, configBytes } = createRepository();
  const { keys } = openRepository(master, configBytes);
  const pool = createSealPool(keys, { workers: 2, initialWorkers: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'shelter-grow-stream-'));
  const params = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
  /** every window of a stream of `file`, and the bytes it read */
  const readAll = async (file: string, size: number) => {
    const stream = pool.streamFile(Buffer.from(file), params, size);
    let read = 0;
    for (let w = await stream.next(); ; w = await stream.next()) { read += w.read; if (w.done) return read; }
  };
  try {
    const small = join(dir, 'small.bin');
    writeFileSync(small, randomBytes(1024 * 1024));
    // an incremental backup's few new files, four at a time (as the archiver streams them)
    for (let i = 0; i < 3; i++) assert.deepEqual(await Promise.all(Array.from({ length: 4 }, () => readAll(small, 1024 * 1024))), Array(4).fill(1024 * 1024));
    assert.equal(pool.started(), 1, 'a few small new files leave the second worker unstarted');
    const large = join(dir, 'large.bin');
    writeFileSync(large, randomBytes(20 * 1024 * 1024));
    const stream = pool.streamFile(Buffer.from(large), params, 20 * 1024 * 1024);
    assert.equal(pool.started(), 2, 'a 20 MiB new file starts the second worker at once');
    stream.close();
    assert.equal(await readAll(large, 20 * 1024 * 1024), 20 * 1024 * 1024);
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('submitSmallFile: the worker reads, hashes and seals a file below the limit; a larger, an empty or a missing one says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-small-'));
  try {
    const { master, configBytes } = createRepository();
    const { keys } = openRepository(master, configBytes);
    const pool = createSealPool(keys, { workers: 2, smallFileMax: 4096 });
    const body = randomBytes(4095);
    try {
      writeFileSync(join(dir, 'small'), body);
      writeFileSync(join(dir, 'limit'), randomBytes(4096));
      writeFileSync(join(dir, 'empty'), '');
      // in one batch with plain chunks, each answered in its place
      const [small, chunk, limit, empty, missing] = await Promise.all([
        pool.submitSmallFile(Buffer.from(join(dir, 'small')), 4095),
        pool.submitUnhashed(Buffer.from('a chunk between files')),
        pool.submitSmallFile(Buffer.from(join(dir, 'limit')), 10),
        pool.submitSmallFile(Buffer.from(join(dir, 'empty')), 1),
        pool.submitSmallFile(Buffer.from(join(dir, 'missing')), 1),
      ]);
      assert.ok('sealed' in small && small.length === 4095 && small.id.equals(blobId(keys, body)));
      assert.ok(openBlob(keys, small.id, small.sealed, 1 << 20).equals(body), 'sealed under its id');
      assert.ok(openBlob(keys, chunk.id, chunk.sealed, 1 << 20).equals(Buffer.from('a chunk between files')));
      assert.deepEqual(limit, { large: true }, 'a file of the limit or more is left to the caller');
      assert.deepEqual(empty, { length: 0 });
      assert.ok('error' in missing && /ENOENT/.test(missing.error));
    } finally { await pool.close(); }
    // a file that became a symlink since the walk: not read through it, unless the backup follows symlinks
    symlinkSync(join(dir, 'small'), join(dir, 'now-a-link'));
    for (const followSymlinks of [false, true]) {
      const p = createSealPool(keys, { workers: 1, smallFileMax: 4096, followSymlinks });
      try {
        const r = await p.submitSmallFile(Buffer.from(join(dir, 'now-a-link')), 4095);
        if (followSymlinks) assert.ok('sealed' in r && r.id.equals(blobId(keys, body)), 'read through the link');
        else assert.ok('error' in r && /symlink now/.test(r.error), JSON.stringify(r));
      } finally { await p.close(); }
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('streamFile: a worker reads, chunks and hashes a file window by window; the chunks are the chunker\'s, under their ids; sealWindow seals them on any worker, duplicates left out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-stream-'));
  try {
    await withPool(async (pool, keys) => {
      const params = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
      // 10 MiB and a bit: three 4 MiB windows, the last one short; text and random parts
      const data = Buffer.concat([randomBytes(3 << 20), Buffer.from('some text '.repeat(300_000)), randomBytes(4 << 20), Buffer.from('tail')]);
      const file = join(dir, 'big.bin');
      writeFileSync(file, data);
      const stream = pool.streamFile(Buffer.from(file), params);
      const chunks: Array<{ id: Buffer; plain: Buffer; sealed: Buffer; raw: number }> = [];
      let read = 0, windows = 0;
      for (let done = false; !done; windows++) {
        const w = await stream.next();
        let off = 0;
        const plains = w.lengths.map((n) => Buffer.from(w.data.subarray(off, (off += n))));
        const ids = w.lengths.map((_, i) => Buffer.from(w.ids.subarray(32 * i, 32 * i + 32)));
        // every third chunk a "duplicate": not sealed
        const skip = new Uint8Array(w.lengths.length).map((_, i) => (i % 3 === 1 ? 1 : 0));
        const sealed = await pool.sealWindow(w, skip);
        assert.equal(w.data.buffer.byteLength, 0, 'the window\'s bytes were handed over, not copied');
        assert.equal(sealed.length, w.lengths.length);
        w.lengths.forEach((n, i) => chunks.push({ id: ids[i]!, plain: plains[i]!, sealed: sealed[i]!, raw: n }));
        read += w.read;
        done = w.done;
      }
      assert.equal(read, data.length);
      assert.ok(windows >= 3, `${windows} windows`);
      const expected = chunkLengths(new Chunker(keys, params), data);
      assert.deepEqual(chunks.map((c) => c.raw), expected, 'the same cuts as the chunker over the whole file');
      let at = 0, skipped = 0;
      for (const c of chunks) {
        const plain = data.subarray(at, at + c.raw);
        assert.ok(c.plain.equals(plain));
        assert.ok(c.id.equals(blobId(keys, plain)));
        if (c.sealed.length === 0) skipped++;
        else assert.ok(openBlob(keys, c.id, c.sealed, params.max).equals(plain));
        at += c.raw;
      }
      assert.ok(skipped > 0 && skipped < chunks.length / 2, `${skipped} of ${chunks.length} left out`);
      await assert.rejects(pool.streamFile(Buffer.from(join(dir, 'missing')), params).next(), /ENOENT/);
      const given = pool.streamFile(Buffer.from(file), params);
      await given.next();
      given.close(); // given up before its end: the worker drops it
    });
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test("the workers' sealed buffers are collected here as they come, not when V8 gets round to it", async () => {
  // what a worker sends back is memory it allocated, freed only once this thread's heap is
  // collected; a backup of large files makes few objects here, and V8 collected rarely (up to
  // 60 MiB per worker waiting to be freed). The pool collects the young generation every 8 MiB.
  await withPool(async (pool) => {
    const chunk = randomBytes(256 * 1024);
    const profiler = new GCProfiler();
    profiler.start();
    for (let i = 0; i < 192; i++) await pool.submit(Buffer.alloc(32, i), chunk); // 48 MiB, incompressible
    const young = profiler.stop()!.statistics.filter((s) => s.gcType === 'Scavenge').length;
    assert.ok(young >= 5, `${young} young-generation collections while 48 MiB came back`);
  });
});

test('writeRange: blobs opened as files need them; a blob that does not decrypt fails only the files that need it', async () => {
  await withPool(async (pool, keys) => {
    const dir = mkdtempSync(join(tmpdir(), 'shelter-range-'));
    try {
      // four blobs laid end to end as in a pack; blob 1 damaged; blob 0 used twice by one file and once by another
      const plains = [Buffer.from('zero '.repeat(3000)), randomBytes(70_000), Buffer.from('two '.repeat(9000)), randomBytes(1 << 20)];
      const blobs = plains.map((p) => sealBlob(keys, p));
      const bytes = Buffer.concat(blobs.map((b) => b.sealed));
      let at = 0;
      const entries = blobs.map((b) => { const e = { type: 'data' as const, id: b.id, offset: at, length: b.sealed.length, rawLength: b.rawLength }; at += b.sealed.length; return e; });
      const damaged = Buffer.from(bytes); // (a range given to the pool is handed over: detached here)
      damaged[entries[1]!.offset + 100]! ^= 1;
      const file = (name: string, entryList: number[]): FileWrite => {
        let offset = 0;
        const chunks = entryList.map((entry) => { const c = { entry, offset }; offset += plains[entry]!.length; return c; });
        return { path: Buffer.from(join(dir, name)), whole: true, chunks, size: offset, mode: 0o640, uid: 0, gid: 0, chown: false, ownedIfNew: false, atime: 1_700_000_000, mtime: 1_700_000_000 };
      };
      const files = [file('a', [0, 0, 2]), file('b', [1]), file('c', [2, 3, 0]), file('d', [0, 1, 3])];
      const results = await pool.writeRange(damaged, 0, entries, files);
      assert.deepEqual(results[0], null);
      assert.deepEqual(results[2], null);
      assert.ok(readFileSync(join(dir, 'a')).equals(Buffer.concat([plains[0]!, plains[0]!, plains[2]!])), 'a: blob 0 twice, then blob 2');
      assert.ok(readFileSync(join(dir, 'c')).equals(Buffer.concat([plains[2]!, plains[3]!, plains[0]!])), 'c: written after b failed');
      for (const i of [1, 3]) {
        const r = results[i];
        assert.ok(r && 'error' in r && r.corrupt === true, `file ${i} fails`);
        assert.match((r as { error: string }).error, new RegExp(`not restored: blob ${blobs[1]!.id.toString('hex')} does not decrypt`));
      }
      // the same range again, undamaged: the buffers kept from the first are reused, every file right
      const again = await pool.writeRange(bytes, 0, entries, files);
      assert.deepEqual(again, [null, null, null, null]);
      assert.ok(readFileSync(join(dir, 'd')).equals(Buffer.concat([plains[0]!, plains[1]!, plains[3]!])));
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
