// The repository layer's life cycle: a repository that cannot be opened leaves nothing running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('openRepo failing after its seal workers started stops them: the process ends', () => {
  // (the workers start while the index loads; an error there used to leave them, never given a
  // job, keeping the process alive: `shelter check` on a damaged index object said so, then hung)
  const r = spawnSync(process.execPath, [new URL('./lib/open-fails.ts', import.meta.url).pathname], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, `the process had to be killed: it did not end by itself\n${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'refused: listing failed');
});
