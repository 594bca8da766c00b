// Worker thread: the backup's file-system walk (walk.ts). Each message is a root to walk.
import { parentPort, workerData } from 'node:worker_threads';
import { runWalker, type WalkOptions } from './walk.ts';

const { opts, control } = workerData as { opts: WalkOptions; control: Int32Array };
const walk = runWalker(opts, control, (b) => parentPort!.postMessage(b, [b.bytes.buffer, b.nums.buffer, b.refs.buffer, b.bigs.buffer, b.groups.buffer]));
parentPort!.on('message', (root: Uint8Array) => walk(Buffer.from(root.buffer, root.byteOffset, root.byteLength)));
