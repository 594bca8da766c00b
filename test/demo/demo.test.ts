// The README's first command: `npm run demo` starts the platform on the embedded defaults and
// makes a first backup with the agent; run twice on the same data, the second backup is
// incremental and the repository holds both snapshots.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { nodeBin, removeDir, repoRoot, tempDir } from '../lib/gateway.ts';

function demo(data: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(nodeBin, [join(repoRoot, 'scripts/demo.ts')], { env: { ...process.env, SHELTERD_DATA: data, SHELTERD_LISTEN: '127.0.0.1:0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const timer = setTimeout(() => { p.kill('SIGTERM'); reject(new Error(`the demo did not finish its backup in 120 s:\n${lines.join('\n')}`)); }, 120_000);
    createInterface({ input: p.stderr! }).on('line', (l) => lines.push(l));
    createInterface({ input: p.stdout! }).on('line', (l) => {
      lines.push(l);
      if (l.startsWith('Audit log:')) { clearTimeout(timer); p.kill('SIGTERM'); }
    });
    p.once('exit', () => { clearTimeout(timer); resolve(lines); });
  });
}

test('npm run demo: the gateway starts and a first backup is made; a second run adds an incremental one', async () => {
  const data = tempDir('shelter-demo-');
  try {
    const first = (await demo(data)).join('\n');
    assert.match(first, /first backup: .*docs -> snapshot [0-9a-f]{12} \(\d+ files, \d+ bytes, [1-9]\d* new\)/, first);
    assert.match(first, /1 snapshot\(s\) in the repository/, first);
    const second = (await demo(data)).join('\n');
    assert.match(second, /\(\d+ files, \d+ bytes, 0 new\)/, second);
    assert.match(second, /2 snapshot\(s\) in the repository/, second);
  } finally { removeDir(data); }
});
