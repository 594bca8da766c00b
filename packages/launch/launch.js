// Start-up shared by the `shelter` and `shelterd` commands, before their TypeScript is loaded.
// Plain JavaScript on purpose: it must run (and refuse clearly) on a Node too old to strip types.
import { mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * 1. Refuses Node < 24 with a clear message (exit 2).
 * 2. V8 flags that must be given at start: unless every one of them is already on the command
 *    line, the process replaces itself (same pid, stdio, signals and exit status) with one that
 *    has them; flags the user gave come after ours and win.
 *    Environment variables read by the C library as the process starts (`env`: glibc's malloc
 *    tunables) work the same way: each one the user has not set is added, and the process
 *    replaces itself once to have them.
 * 3. Node's compile cache (V8 code and the stripped TypeScript) in the user's own cache
 *    directory, created 0700: a command starts in ~0.2 s instead of ~0.4 s. Never a shared
 *    directory such as /tmp: another local user could plant code there for root's next run.
 * @param {{ name: string, v8Flags?: string[], env?: Record<string, string> }} o
 */
export function launch(o) {
  const [major] = process.versions.node.split('.').map(Number);
  if (major < 24) {
    process.stderr.write(`${o.name} needs Node.js 24 or newer (this is ${process.version}); run it through npx or npm, which use the project's Node 24\n`);
    process.exit(2);
  }
  const flags = o.v8Flags ?? [];
  const given = (flag) => process.execArgv.some((a) => a.split('=')[0] === flag.split('=')[0]);
  const missingFlags = !flags.every(given);
  const missingEnv = Object.entries(o.env ?? {}).filter(([k]) => process.env[k] === undefined);
  if ((missingFlags || missingEnv.length) && typeof process.execve === 'function') {
    const argv = missingFlags ? [...flags, ...process.execArgv] : process.execArgv;
    process.execve(process.execPath, [process.execPath, ...argv, process.argv[1], ...process.argv.slice(2)], { ...process.env, ...Object.fromEntries(missingEnv) });
  }
  try {
    const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), o.name, 'compile-cache');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // an existing directory is trusted only if it is ours and nobody else can write to it (sudo
    // may keep a user's HOME or XDG_CACHE_HOME: root must not load that user's cache)
    const st = statSync(dir);
    if (st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) return;
    process.getBuiltinModule('node:module').enableCompileCache(dir);
    // worker threads are Node instances of their own: without this each one strips the TypeScript
    // again (loading the stripper costs a worker ~35 MiB and ~0.1 s of CPU)
    process.env.NODE_COMPILE_CACHE = dir;
  } catch { /* no cache: slower start, nothing else */ }
}
