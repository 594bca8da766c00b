import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFsStore } from '../src/storage/fs.ts';
import { blobStoreContract } from './storage-contract.ts';

blobStoreContract('fs store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blobs-'));
  return { store: openFsStore(dir), reopen: () => openFsStore(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});
