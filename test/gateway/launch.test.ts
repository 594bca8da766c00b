// How `shelterd` starts Node: `serve` with the gateway's V8 flags and glibc malloc settings
// (packages/gateway/bin/shelterd.js, through packages/launch), its other commands as they are;
// a malloc setting of the user's own is kept.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { nodeBin, repoRoot, shelterdBin, tempDir, removeDir } from '../lib/gateway.ts';

const printing = (own: Record<string, string> = {}) => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_'))),
  NODE_OPTIONS: `--require ${join(repoRoot, 'test/lib/print-execargv.cjs')}`,
  ...own,
});
const SERVE_FLAGS = '["--external-memory-accounted-in-global-limit","--initial-heap-size=128"]';

/** the execArgv lines printed by every Node process `shelterd serve` ran, until it listened */
async function serveStartLines(env: Record<string, string>): Promise<string[]> {
  const dir = tempDir();
  const proc = spawn(nodeBin, [shelterdBin, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`shelterd did not start in 20 s: ${lines.join('\n')}`)), 20_000);
      proc.once('exit', (code) => { clearTimeout(timer); rej(new Error(`shelterd exited ${code}: ${lines.join('\n')}`)); });
      createInterface({ input: proc.stdout! }).on('line', (l) => {
        lines.push(l);
        if (l.includes('"msg":"listening"')) { clearTimeout(timer); res(); }
      });
    });
  } finally {
    proc.kill('SIGKILL');
    removeDir(dir);
  }
  return lines.filter((l) => l.startsWith('execArgv '));
}

describe('shelterd start-up', () => {
  it('serve runs with its V8 flags and malloc settings; the user\'s own malloc setting wins; other commands start plain', async () => {
    const serve = await serveStartLines(printing());
    assert.deepEqual(serve, ['execArgv [] {}', `execArgv ${SERVE_FLAGS} {"MALLOC_MMAP_THRESHOLD_":"33554432","MALLOC_TRIM_THRESHOLD_":"268435456"}`], 'replaced once by a process that has both');
    const own = await serveStartLines(printing({ MALLOC_TRIM_THRESHOLD_: '4096' }));
    assert.equal(own.at(-1), `execArgv ${SERVE_FLAGS} {"MALLOC_MMAP_THRESHOLD_":"33554432","MALLOC_TRIM_THRESHOLD_":"4096"}`);
    const version = execFileSync(nodeBin, [shelterdBin, '--version'], { env: printing(), encoding: 'utf8' });
    assert.deepEqual(version.match(/^execArgv .*$/gm), ['execArgv [] {}'], version);
  });
});
