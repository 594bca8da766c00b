// Incremental backup of changed large files (issue 3): the leading chunks a changed file still
// holds are verified by hashing instead of being chunked again (archiver.ts, unchangedPrefix).
// What must hold: the chunks stored are exactly those a backup without parent would cut (a
// second name's backup of the same tree adds no blob), little new data is stored for an append,
// a change in the middle or a truncation, and the restore is byte-identical. New files of an
// incremental backup go through the seal workers' streams: only their new chunks are stored.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentFixture, type AgentFixture } from '../lib/fixture.ts';
import { MiB, assertExit, type BackupSummary } from '../lib/agent.ts';

describe('incremental backup of changed large files (shelterd over HTTPS)', () => {
  let fx: AgentFixture;
  let src: string;
  const backup = async (name: string) => {
    const r = await fx.agent.run(['backup', 'files', src, '--name', name, '--json']);
    assertExit(r, 0, `backup ${name}`);
    return JSON.parse(r.stdout) as BackupSummary;
  };

  before(async () => {
    fx = await startAgentFixture('incremental');
    src = join(fx.work, 'src');
    mkdirSync(src);
    // 24 MiB each: ~96 chunks, several of the workers' 8 MiB verification parts
    for (const f of ['appended.bin', 'middle.bin', 'truncated.bin', 'same-size.bin']) writeFileSync(join(src, f), randomBytes(24 * MiB));
  });
  after(async () => { await fx?.stop(); });

  it('after an append, a byte changed mid-file, a truncation and a rewrite of the same size: little new data, the same chunks as a full re-read, identical restore', async () => {
    const first = await backup('files');
    assert.equal(first.newFiles, 4);

    writeFileSync(join(src, 'appended.bin'), randomBytes(1000), { flag: 'a' });
    const middle = readFileSync(join(src, 'middle.bin'));
    middle[12 * MiB]! ^= 0xff;
    writeFileSync(join(src, 'middle.bin'), middle);
    truncateSync(join(src, 'truncated.bin'), 10 * MiB + 777);
    // same size, new mtime: every chunk is still the same (only the last is chunked again)
    writeFileSync(join(src, 'same-size.bin'), readFileSync(join(src, 'same-size.bin')));

    const second = await backup('files');
    assert.equal(second.parent, first.snapshotId);
    assert.equal(second.changedFiles, 4);
    assert.equal(second.warnings, 0);
    // an append and a truncation: about the last chunk each; the mid-file change: one or two
    // chunks (average 256 KiB, at most 1 MiB each); the rewrite: none
    assert.ok(second.newBytes < 6 * MiB, `the second backup stored ${second.newBytes} new bytes`);
    assert.ok(second.newBlobs >= 3, `the append, the change and the truncation each make new chunks (${second.newBlobs})`);

    // a backup under another name has no parent: it chunks every byte; had the verified prefixes
    // cut differently, it would store new chunks. (New data bytes, not new blobs: the trees of
    // the source's ancestors hold /tmp's times, which any other process creating a file there
    // changes, and then the full backup's root trees are new: 1 new blob in a CI run.)
    const full = await backup('files-full');
    assert.equal(full.parent, null);
    assert.equal(full.newBytes, 0, 'every chunk a full read cuts was already stored by the incremental backup');

    const target = join(fx.work, 'restore');
    assertExit(await fx.agent.run(['restore', 'latest', '--name', 'files', '--target', target]), 0, 'restore');
    for (const f of ['appended.bin', 'middle.bin', 'truncated.bin', 'same-size.bin']) {
      assert.ok(readFileSync(join(target, src, f)).equals(readFileSync(join(src, f))), `${f} restored byte for byte`);
    }
    assertExit(await fx.agent.run(['check', '--read-data']), 0, 'check --read-data');
  });

  it('new files in an incremental backup (streamed through the seal workers): new chunks stored, a copy of stored bytes deduplicated, identical restore', async () => {
    const before = await backup('files');
    // 1.5 MiB of new bytes, and the first 3 MiB of a file already stored under a new name: its
    // chunks are the stored file's but for the last (cut at the copy's end)
    writeFileSync(join(src, 'new-medium.bin'), randomBytes(1.5 * MiB));
    writeFileSync(join(src, 'copy.bin'), readFileSync(join(src, 'appended.bin')).subarray(0, 3 * MiB));
    const after = await backup('files');
    assert.equal(after.parent, before.snapshotId);
    assert.equal(after.newFiles, 2);
    assert.equal(after.warnings, 0);
    assert.ok(after.newBytes >= 1.5 * MiB, `the new file's bytes are stored (${after.newBytes})`);
    assert.ok(after.newBytes < 2.6 * MiB, `only the new file and the copy's last chunk are new (${after.newBytes} bytes)`);
    // the chunks are the ones another name's backup cuts (its new trees aside: this test's reads
    // changed appended.bin's atime)
    const full = await backup('files-full');
    assert.equal(full.newBytes, 0, 'every data chunk of the tree is stored already');
    const target = join(fx.work, 'restore-new');
    assertExit(await fx.agent.run(['restore', 'latest', '--name', 'files', '--target', target]), 0, 'restore');
    for (const f of ['new-medium.bin', 'copy.bin']) {
      assert.ok(readFileSync(join(target, src, f)).equals(readFileSync(join(src, f))), `${f} restored byte for byte`);
    }
  });

  it('the local directory cache: written per snapshot, used by the next backup, --no-cache does without it, a damaged one is ignored', async () => {
    const tree = join(fx.work, 'cached');
    for (const d of ['a/b', 'c']) mkdirSync(join(tree, d), { recursive: true });
    for (const f of ['a/b/x', 'a/y', 'c/z', 'top']) writeFileSync(join(tree, f), randomBytes(5000));
    const run = async (...extra: string[]) => {
      const r = await fx.agent.run(['backup', 'files', tree, '--name', 'cached', '--json', ...extra]);
      assertExit(r, 0, `backup ${extra.join(' ')}`);
      return JSON.parse(r.stdout) as BackupSummary & { cachedDirs: number };
    };
    const cacheDir = join(fx.agent.home, '.cache', 'shelter');
    const cacheFiles = () => readdirSync(cacheDir, { recursive: true }).map(String);
    /** the directory cache files of a snapshot (its object copies are under objects/snapshots/) */
    const cachesOf = (id: string) => cacheFiles().filter((f) => f.endsWith(`dirs/${id}`));
    const copiesOf = (id: string) => cacheFiles().filter((f) => f.endsWith(`objects/snapshots/${id}`));
    // (the first backup's listings set the new directories' atimes, relatime: the second records a steady state)
    await run();
    await run();
    const second = await run();
    assert.equal(second.cachedDirs, second.dirs, 'nothing changed: every directory from the cache');
    assert.equal(cachesOf(second.snapshotId).length, 1, `the cache of ${second.snapshotId} is under ${cacheDir}`);
    assert.equal(copiesOf(second.snapshotId).length, 1, 'and a copy of its snapshot object');
    writeFileSync(join(tree, 'a/b/x'), randomBytes(5000));
    const third = await run('--no-cache');
    assert.equal(third.cachedDirs, 0, '--no-cache compares against the parent\'s trees');
    assert.equal(third.changedFiles, 1);
    assert.equal(cachesOf(third.snapshotId).length, 0, '--no-cache writes none either');
    assert.equal(copiesOf(third.snapshotId).length, 0, 'nor a copy of its snapshot object');
    const fourth = await run(); // no cache for its parent: compares, and writes one
    assert.equal(fourth.cachedDirs, 0);
    const [file] = cachesOf(fourth.snapshotId);
    const bytes = readFileSync(join(cacheDir, file!));
    bytes[bytes.length - 40]! ^= 1;
    writeFileSync(join(cacheDir, file!), bytes);
    writeFileSync(join(tree, 'c/z'), randomBytes(10));
    const fifth = await run();
    assert.equal(fifth.cachedDirs, 0, 'a damaged cache is not used');
    assert.equal(fifth.changedFiles, 1);
    assert.equal(fifth.warnings, 0);
    const logs = readdirSync(join(fx.agent.home, 'state', 'shelter', 'logs')).sort();
    assert.match(readFileSync(join(fx.agent.home, 'state', 'shelter', 'logs', logs[logs.length - 1]!), 'utf8'), /directory cache ignored.*authentication failed/);
    const target = join(fx.work, 'restore-cached');
    assertExit(await fx.agent.run(['restore', 'latest', '--name', 'cached', '--target', target]), 0, 'restore');
    for (const f of ['a/b/x', 'a/y', 'c/z', 'top']) assert.ok(readFileSync(join(target, tree, f)).equals(readFileSync(join(tree, f))), `${f} restored`);
  });
});
