// Imported first by bench/gateway.ts: libuv's thread pool is created lazily, on the first piece of
// work submitted to it, with UV_THREADPOOL_SIZE threads. The raw-fs target needs 32
// open/write/fsync/close sequences really in parallel (the default pool has 4 threads, which would
// cap the floor at 4 concurrent fsyncs and make it an unfair floor), so: set the variable, submit
// one piece of work (the pool is created synchronously at submission), and restore the variable
// at once, so that the servers the bench starts (shelterd picks its own pool size unless the
// variable is set) do not inherit it.
import { access } from 'node:fs';

const before = process.env.UV_THREADPOOL_SIZE;
process.env.UV_THREADPOOL_SIZE = before ?? '64';
access('/', () => {});
if (before === undefined) delete process.env.UV_THREADPOOL_SIZE;
export const benchThreadPoolSize = Number(before ?? '64');
