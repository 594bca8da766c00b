import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFsStore } from '../src/storage/fs.ts';
import { blobStoreContract } from './storage-contract.ts';

const contractIn = (name: string, root: string) => blobStoreContract(name, async () => {
  const dir = mkdtempSync(join(root, 'blobs-'));
  return { store: openFsStore(dir), reopen: () => openFsStore(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

// large bodies written with direct I/O (ext4 here)
contractIn('fs store', tmpdir());
// and on tmpfs, which takes O_DIRECT since Linux 6.6 and refused it before (bodies then go through
// the page cache: storage-direct.test.ts)
if (existsSync('/dev/shm')) contractIn('fs store on tmpfs', '/dev/shm');
