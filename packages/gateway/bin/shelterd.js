#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 24 strips types; npm scripts and npx put the
// Node 24 from the `node` package first on PATH).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`shelterd needs Node.js 24 or newer (this is ${process.version}); run it through npx or npm, which use the project's Node 24\n`);
  process.exit(2);
}
// file writes and fsyncs run on libuv's thread pool: 4 threads (the default) serialise concurrent
// uploads behind each other's fsyncs. Must be set before the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= '16';
// The gateway's garbage-collector settings (serve only; CLI commands start as they are). Every
// request body arrives as 64 KiB buffers whose memory lives outside the JS heap, and by default
// V8 answers each 64 MiB of such memory with a full mark-compact of the heap: about ten per second
// at 400 MiB/s of uploads, a quarter of the gateway's CPU (main thread plus V8's helper threads).
// Counting that memory in the global heap limit, over a larger initial heap, leaves it to the
// cheap young-generation collections that free it anyway: measured 4.4 -> 3.5 ms of CPU per MiB
// uploaded (16 MiB PUTs, 8 clients), peak RSS 300 -> 410 MiB. Given at start: the process
// replaces itself (same pid, stdio, signals and exit status) with one that has them.
const GC_FLAGS = ['--external-memory-accounted-in-global-limit', '--initial-heap-size=128'];
if (process.argv[2] === 'serve' && !process.execArgv.includes(GC_FLAGS[0]) && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, ...GC_FLAGS, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], process.env);
}
// Node's compile cache (V8 code and the stripped TypeScript), in the user's own cache directory:
// a command starts in ~0.2 s instead of ~0.4 s. Never a shared directory such as /tmp: another
// local user could plant code there for root's next run.
try {
  const { mkdirSync } = await import('node:fs');
  const { homedir } = await import('node:os');
  const { join } = await import('node:path');
  const { enableCompileCache } = await import('node:module');
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'shelterd', 'compile-cache');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  enableCompileCache(dir);
} catch { /* no cache: slower start, nothing else */ }
await import('../src/cli.ts');
