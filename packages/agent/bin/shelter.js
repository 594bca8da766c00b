#!/bin/sh
':' //; export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"; exec node --max-semi-space-size=8 "$0" "$@"
// Run as a command (`shelter`, `npx shelter`), the line above is shell: it starts Node on this
// file with the V8 flag below, so that Node starts once (`#!/usr/bin/env -S node FLAG` would do
// the same, but BusyBox's env has no -S); for Node it is a string and a comment. Run as `node
// bin/shelter.js`, packages/launch re-executes Node with the flag (~30 ms).
// Runs the TypeScript sources directly (Node >= 24 strips types; npm scripts and npx put the
// Node 24 from the `node` package first on PATH). Version check, V8 flags and compile cache:
// packages/launch.
import { launch } from '@shelter/launch';
// A small young generation (V8's semi-space): the agent makes a steady stream of short-lived
// buffers whose memory lives outside the JS heap, and the default 16 MiB semi-space let hundreds
// of MiB of them wait for a scavenge (peak RSS of a backup of the linux tree: 1 GB). 2 MiB held
// it to ~540 MB but cost ~12% of the backup's CPU in scavenges; since packs are streamed and
// the seal workers collect their own garbage, 8 MiB gives ~600 MB at nearly the speed of 16.
// Only the commands that move data need it (the re-exec, when the #! line was not used, costs ~30 ms).
// glibc's malloc, tuned by MALLOC_* (read as the process starts: set by the line above, or by
// the re-exec). It keeps what it frees: buffers of up to 32 MiB come from its heap, not each from
// a mapping of its own, and freed memory stays in the process. The agent's buffers come and go by
// the MiB; on a VM that hands freed memory back to its host, a fresh page costs a fault there on
// first touch (2 MiB buffers filled at ~1-4 GB/s fresh against ~39 GB/s reused). Linux initial
// backup 11.96 -> 11.17 s, 19.3 -> 18.1 CPU s (5 alternated runs; restores unchanged); peak RSS
// +10-20 MiB. And at most two arenas: otherwise each thread (main, walker, seal workers, libuv's
// and V8's helpers) has its own, a buffer freed by another thread goes back to the arena it came
// from, and each arena keeps its own high-water mark. Peak RSS of a linux-tree backup 453 -> 409
// MiB, restore 451 -> 430 (alternated runs, same times); one arena made restores ~12% slower.
// The user's own settings win. The #! line repeats these values (it cannot import them):
// test/agent/roundtrip.test.ts checks both ways of starting.
const dataCommand = ['backup', 'restore', 'check'].includes(process.argv[2] ?? '');
launch({
  name: 'shelter',
  v8Flags: dataCommand ? ['--max-semi-space-size=8'] : [],
  env: dataCommand ? { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '1073741824' } : {},
});
// Small Buffers (Buffer.from of an id, a path, a digest) are slices of a shared pool slab; one that
// lives long keeps its whole slab alive. Node 24's slabs are 64 KiB: the directory cache's records
// and a tree pack's entry ids, kept for the whole backup, held ~30 MB of slabs for ~2 MB of bytes
// on the linux tree. 8 KiB slabs (Node's size before 24) waste an eighth of that. Set here, before
// the agent's modules are loaded (only Node's own first slab is 64 KiB).
Buffer.poolSize = 8 * 1024;
// A backup's walker threads boot while the rest of the agent loads (see prestartWalkers)
if (process.argv[2] === 'backup' && process.argv[3] === 'files') (await import('../src/walk.ts')).prestartWalkers();
await import('../src/cli.ts');
