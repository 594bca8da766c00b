// Run by repository.test.ts as a process of its own: opens a repository with its seal workers
// started while the bucket's listing fails. The process must end once the error is handled.
import { createRepository } from '@shelter/format';
import { initRepository, openRepo } from '../../src/repository.ts';
import { memoryBackend } from './memory-backend.ts';

const backend = memoryBackend();
const { master, configBytes } = createRepository();
await initRepository(backend, configBytes);
backend.list = async function* () { throw new Error('listing failed'); };
try {
  await openRepo(backend, master, { startWorkers: true });
  process.stdout.write('opened\n');
} catch (e) {
  process.stdout.write(`refused: ${(e as Error).message}\n`);
}
