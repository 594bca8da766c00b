#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 24 strips types; npm scripts and npx put the
// Node 24 from the `node` package first on PATH). Version check, V8 flags and compile cache:
// packages/launch.
import { launch } from '@shelter/launch';
// file writes and fsyncs run on libuv's thread pool: 4 threads (the default) serialise concurrent
// uploads behind each other's fsyncs. Must be set before the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= '16';
// The gateway's garbage-collector settings (serve only; CLI commands start as they are). Every
// request body arrives as 64 KiB buffers whose memory lives outside the JS heap, and by default
// V8 answers each 64 MiB of such memory with a full mark-compact of the heap: about ten per second
// at 400 MiB/s of uploads, a quarter of the gateway's CPU (main thread plus V8's helper threads).
// Counting that memory in the global heap limit, over a larger initial heap, leaves it to the
// cheap young-generation collections that free it anyway: measured 4.4 -> 3.5 ms of CPU per MiB
// uploaded (16 MiB PUTs, 8 clients), peak RSS 300 -> 410 MiB.
// glibc's malloc keeps what the server frees (serve only; the user's own MALLOC_* settings win): a
// GET's body is read from disk 1 MiB at a time, each piece a new buffer, and glibc gave the freed
// megabytes back to the kernel, so that the next pieces faulted their pages in again (perf: page
// faults under pread, a tenth of the gateway's CPU in a restore; on a VM a fresh page is dear).
// Buffers of up to 32 MiB now come from its heap, which it trims only past 256 MiB free.
// Linux-tree restores, two fresh gateways, 8 alternated runs: gateway CPU median 1.47 -> 1.03 s
// (0.86-2.21 -> 0.85-1.53), peak RSS 338 vs 342 MiB.
const serving = process.argv[2] === 'serve';
launch({
  name: 'shelterd',
  v8Flags: serving ? ['--external-memory-accounted-in-global-limit', '--initial-heap-size=128'] : [],
  env: serving ? { MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '268435456' } : {},
});
await import('../src/cli.ts');
