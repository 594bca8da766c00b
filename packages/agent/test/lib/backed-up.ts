// A repository in a memory bucket holding one backup of a directory: the set-up of tests of what
// reads a snapshot back (restore, export, tree loading). The repository is closed after the test.
import type { TestContext } from 'node:test';
import { createRepository } from '@shelter/format';
import { backupFiles } from '../../src/archiver.ts';
import { initRepository, openRepo, type OpenRepoOptions, type Repository, type SnapshotEntry } from '../../src/repository.ts';
import { memoryBackend } from './memory-backend.ts';

export async function backedUp(t: TestContext, src: string, opts: OpenRepoOptions = {}):
  Promise<{ repo: Repository; snap: SnapshotEntry; backend: ReturnType<typeof memoryBackend>; master: Buffer }> {
  const backend = memoryBackend();
  const { master, configBytes } = createRepository();
  await initRepository(backend, configBytes);
  const repo = await openRepo(backend, master, { sealWorkers: 1, ...opts });
  t.after(() => repo.close());
  await backupFiles(repo, { name: 'x', paths: [src] });
  return { repo, snap: (await repo.listSnapshots()).pop()!, backend, master: Buffer.from(master) };
}
