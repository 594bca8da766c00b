// A restore range's work crosses to its worker as two flat arrays (writejob.ts): what goes in
// must come out, field for field, and a job whose counts do not add up is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodeWriteJob, encodeWriteJob, type RangeBlob, type FileWrite } from '../src/writejob.ts';

test('encodeWriteJob / decodeWriteJob: blobs and files come back as they went, paths and ids as views of one buffer', () => {
  const entries: RangeBlob[] = Array.from({ length: 5 }, (_, i) => ({ id: randomBytes(32), offset: i * 1_000_003, length: 100 + i, rawLength: 4 * 2 ** 30 + i }));
  const files: FileWrite[] = [
    { path: Buffer.from('/restore/a file with spaces'), whole: true, chunks: [{ entry: 0, offset: 0 }, { entry: 1, offset: 100 }], size: 5 * 2 ** 40, mode: 0o4755, uid: 4_000_000_000, gid: 0, chown: true, ownedIfNew: true, atime: 1764300000.123456, mtime: -1.5 },
    { path: Buffer.from('/restore/ünïcödé\nnewline'), whole: false, chunks: [], size: 0, mode: 0o600, uid: 1000, gid: 1000, chown: false, ownedIfNew: false, atime: 0, mtime: 0 },
    { path: Buffer.from([0x2f, 0xff, 0xfe]), whole: false, chunks: [{ entry: 4, offset: 2 ** 50 }], size: 2 ** 50 + 104, mode: 0, uid: 0, gid: 0, chown: true, ownedIfNew: false, atime: 1, mtime: 2 },
  ];
  const job = encodeWriteJob(entries, files);
  const back = decodeWriteJob(job);
  assert.deepEqual(back.entries.map((e) => ({ ...e, id: Buffer.from(e.id) })), entries);
  assert.deepEqual(back.files.map((f) => ({ ...f, path: Buffer.from(f.path) })), files);
  for (const f of back.files) assert.equal(f.path.buffer, job.bytes.buffer, 'a view, not a copy');
  const empty = decodeWriteJob(encodeWriteJob([], []));
  assert.deepEqual(empty, { entries: [], files: [] });
});

test('decodeWriteJob refuses a job whose counts do not match its arrays', () => {
  const job = encodeWriteJob([{ id: randomBytes(32), offset: 0, length: 1, rawLength: 1 }], [
    { path: Buffer.from('/x'), whole: true, chunks: [{ entry: 0, offset: 0 }], size: 1, mode: 0o644, uid: 0, gid: 0, chown: false, ownedIfNew: false, atime: 0, mtime: 0 },
  ]);
  const bad = (edit: (nums: Float64Array, bytes: Uint8Array) => { nums: Float64Array<ArrayBuffer>; bytes: Uint8Array<ArrayBuffer> }) =>
    assert.throws(() => decodeWriteJob(edit(Float64Array.from(job.nums), Uint8Array.from(job.bytes))), /malformed write job/);
  bad((nums, bytes) => { nums[2] = 2; return { nums, bytes } as never; }); // more chunks than it holds
  bad((nums, bytes) => { nums[3 + 3 + 9] = 0; return { nums, bytes } as never; }); // the file places none of its chunk
  bad((nums, bytes) => { nums[3 + 3 + 1] = 99; return { nums, bytes } as never; }); // a path past the end
  bad((nums, bytes) => ({ nums, bytes: bytes.subarray(0, 10) }) as never); // ids cut short
});
