// Garbage collection on demand, at the moments the heuristics serve badly. V8 sizes a heap by what
// was live at its last full collection and collects lazily while memory is cheap to grow: after a
// phase that dropped much (restore's plan: every tree node of the snapshot) the heap stays as large
// as that phase needed for the rest of the run, and a worker that handles hundreds of MiB outside
// its tiny heap rarely sees a reason to collect the buffers it dropped. One place for both.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (o: { type: 'major' | 'minor'; execution: 'sync' }) => void;
let gc: Gc | undefined;

/** a synchronous collection of this thread's heap: `minor` (the young generation, well under a ms on a small heap) or `major` */
export function collectGarbage(type: 'major' | 'minor'): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as Gc;
  }
  gc({ type, execution: 'sync' });
}
