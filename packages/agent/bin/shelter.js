#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 24 strips types; npm scripts and npx put the
// Node 24 from the `node` package first on PATH).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`shelter needs Node.js 24 or newer (this is ${process.version}); run it through npx or npm, which use the project's Node 24\n`);
  process.exit(2);
}
// A small young generation (V8's semi-space): the agent makes a steady stream of short-lived
// buffers whose memory lives outside the JS heap, and the default 16 MiB semi-space let hundreds
// of MiB of them wait for a scavenge (peak RSS of a backup of the linux tree: 1 GB). 2 MiB held
// it to ~540 MB but cost ~12% of the backup's CPU in scavenges; since packs are streamed and
// the seal workers collect their own garbage, 8 MiB gives ~600 MB at nearly the speed of 16.
// The flag must be given at start: the process replaces itself (same pid, same stdio, signals
// and exit status unchanged) with one that has it.
const SEMI_SPACE = '--max-semi-space-size=8';
if (!process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, SEMI_SPACE, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], process.env);
}
// Node's compile cache (V8 code and the stripped TypeScript), in the user's own cache directory:
// a command starts in ~0.2 s instead of ~0.4 s. Never a shared directory such as /tmp: another
// local user could plant code there for root's next run.
try {
  const { mkdirSync } = await import('node:fs');
  const { homedir } = await import('node:os');
  const { join } = await import('node:path');
  const { enableCompileCache } = await import('node:module');
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'shelter', 'compile-cache');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  enableCompileCache(dir);
} catch { /* no cache: slower start, nothing else */ }
await import('../src/cli.ts');
