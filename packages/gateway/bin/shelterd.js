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
launch({ name: 'shelterd', v8Flags: process.argv[2] === 'serve' ? ['--external-memory-accounted-in-global-limit', '--initial-heap-size=128'] : [] });
await import('../src/cli.ts');
