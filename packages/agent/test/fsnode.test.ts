// Opening a file for backup: a path that became a fifo since the walk must not block the backup;
// one that became a symlink is not followed (unless the backup follows symlinks). Paths joined as
// bytes (names need not be UTF-8).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, readSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinPath, openForBackup } from '../src/fsnode.ts';

test('openForBackup: a regular file reads as usual; a fifo without writer opens at once and reads nothing (no hang)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-open-'));
  try {
    writeFileSync(join(dir, 'file'), 'content');
    const buf = Buffer.alloc(16);
    let fd = openForBackup(Buffer.from(join(dir, 'file')));
    try { assert.equal(buf.subarray(0, readSync(fd, buf, 0, 16, 0)).toString(), 'content'); } finally { closeSync(fd); }
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    // in a child with a time limit: without O_NONBLOCK the open blocks forever
    const probe = `import { openForBackup } from ${JSON.stringify(new URL('../src/fsnode.ts', import.meta.url).href)};
      import { readSync, closeSync } from 'node:fs';
      const fd = openForBackup(Buffer.from(${JSON.stringify(join(dir, 'fifo'))}));
      process.stdout.write(String(readSync(fd, Buffer.alloc(16), 0, 16, null))); closeSync(fd);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { timeout: 10_000, encoding: 'utf8' });
    assert.equal(out, '0', 'a fifo without writer reads as empty');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('openForBackup: a file replaced by a symlink is not opened through it (ELOOP, a clear message); with follow it is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shelter-open-'));
  try {
    writeFileSync(join(dir, 'secret'), 'not yours');
    symlinkSync(join(dir, 'secret'), join(dir, 'was-a-file'));
    assert.throws(() => openForBackup(Buffer.from(join(dir, 'was-a-file'))), (e: NodeJS.ErrnoException) => e.code === 'ELOOP' && /symlink now/.test(e.message));
    const fd = openForBackup(Buffer.from(join(dir, 'was-a-file')), true);
    try {
      const buf = Buffer.alloc(16);
      assert.equal(buf.subarray(0, readSync(fd, buf, 0, 16, 0)).toString(), 'not yours');
    } finally { closeSync(fd); }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('joinPath: one slash between directory and name (none added after the root), every byte kept', () => {
  const odd = Buffer.from([0x66, 0xff, 0x0a, 0x20, 0x2f - 1]); // not UTF-8, a newline, a space
  assert.deepEqual(joinPath(Buffer.from('/'), Buffer.from('etc')), Buffer.from('/etc'));
  assert.deepEqual(joinPath(Buffer.from('/srv/www'), Buffer.from('index.html')), Buffer.from('/srv/www/index.html'));
  assert.deepEqual(joinPath(Buffer.from('/tmp'), odd), Buffer.concat([Buffer.from('/tmp/'), odd]));
  assert.deepEqual(joinPath(Buffer.from('relative'), Buffer.from('x')), Buffer.from('relative/x'));
});
