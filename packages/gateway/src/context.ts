// Opens everything one gateway data directory holds: metadata, audit log, blob storage, master key.
// Both `shelterd serve` and the CLI commands go through here, so they see the same state.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openAuditLog, type AuditLog } from './audit/log.ts';
import { systemClock, type Clock } from './clock.ts';
import { openDb, type Db } from './meta/db.ts';
import { metaStore, type MetaStore } from './meta/store.ts';
import { loadMasterKey, type MasterKey } from './secrets.ts';
import { openFsStore } from './storage/fs.ts';
import type { BlobStore } from './storage/types.ts';

export interface Context {
  dataDir: string;
  db: Db;
  meta: MetaStore;
  audit: AuditLog;
  blobs: BlobStore;
  master: MasterKey;
  now: Clock;
  region: string;
  auditHeadFile: string;
  close(): void;
}

export interface ContextOptions { masterKeyFile?: string; region?: string; clock?: Clock }

export function openContext(dataDirArg: string, opts: ContextOptions = {}): Context {
  const dataDir = resolve(dataDirArg);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = openDb(join(dataDir, 'meta.db'));
  const now = opts.clock ?? systemClock();
  const auditHeadFile = join(dataDir, 'audit.head');
  const audit = openAuditLog(db, auditHeadFile, now);
  return {
    dataDir,
    db,
    meta: metaStore(db),
    audit,
    blobs: openFsStore(join(dataDir, 'objects')),
    master: loadMasterKey(opts.masterKeyFile ?? join(dataDir, 'master.key')),
    now,
    region: opts.region ?? process.env.SHELTERD_REGION ?? 'us-east-1',
    auditHeadFile,
    close: () => { db.flushWrites(); audit.flush(); db.close(); },
  };
}
