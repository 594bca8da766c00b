// Worker thread: one of the backup's file-system walkers (walk.ts). It may start before its work
// is known (prestartWalkers): its first message says what it is. The leader is then asked for
// roots and publishes each root's subdirectories to the others through its ports; every walker
// claims and walks them.
import { parentPort } from 'node:worker_threads';
import { runWalker, type TaskList, type WalkerSetup } from './walk.ts';

let walkRoot: ((root: Buffer) => void) | undefined;
let lone = false;
parentPort!.on('message', (m: WalkerSetup | Uint8Array | 'end') => {
  if (!walkRoot && typeof m === 'object' && !(m instanceof Uint8Array)) {
    const { opts, control, claim, leader, ports } = m;
    const walker = runWalker(opts, { control, claim },
      (b) => parentPort!.postMessage(b, [b.bytes.buffer, b.nums.buffer, b.refs.buffer, b.bigs.buffer, b.atimes.buffer, b.groups.buffer]),
      (t) => { for (const p of ports) p.postMessage(t); });
    if (leader) { walkRoot = walker.walkRoot; lone = ports.length === 0; }
    else ports[0]!.on('message', (t: TaskList) => walker.takeTasks(t));
    return;
  }
  // 'end' comes after the last root, so every root is walked (and its groups sent) by now. A lone
  // walker says so, and the main thread ends this thread: its heap is not kept for the rest of
  // the backup. (With others, some may still be walking tasks this one published.)
  if (m === 'end') { if (lone) parentPort!.postMessage('done'); return; }
  if (m instanceof Uint8Array) walkRoot!(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
});
