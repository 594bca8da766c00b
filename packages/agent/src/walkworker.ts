// Worker thread: one of the backup's file-system walkers (walk.ts). The leader is asked for roots
// and publishes each root's subdirectories to the others through its ports; every walker claims
// and walks them.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { runWalker, type TaskList, type WalkOptions } from './walk.ts';

const { opts, control, claim, leader, ports } = workerData as { opts: WalkOptions; control: Int32Array; claim: Int32Array; leader: boolean; ports: MessagePort[] };
const walker = runWalker(opts, { control, claim },
  (b) => parentPort!.postMessage(b, [b.bytes.buffer, b.nums.buffer, b.refs.buffer, b.bigs.buffer, b.groups.buffer]),
  (t) => { for (const p of ports) p.postMessage(t); });
if (leader) {
  parentPort!.on('message', (root: Uint8Array | 'end') => {
    // 'end' comes after the last root, so every root is walked (and its groups sent) by now. A lone
    // walker says so, and the main thread ends this thread: its heap is not kept for the rest of
    // the backup. (With others, some may still be walking tasks this one published.)
    if (root === 'end') { if (ports.length === 0) parentPort!.postMessage('done'); return; }
    walker.walkRoot(Buffer.from(root.buffer, root.byteOffset, root.byteLength));
  });
}
else ports[0]!.on('message', (t: TaskList) => walker.takeTasks(t));
