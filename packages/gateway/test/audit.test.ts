import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../src/meta/db.ts';
import { openAuditLog, readHead, verifyRecords, type AuditRecord } from '../src/audit/log.ts';

function freshLog() {
  const dir = mkdtempSync(join(tmpdir(), 'audit-'));
  const db = openDb(join(dir, 'meta.db'));
  let t = Date.parse('2026-01-01T00:00:00Z');
  const log = openAuditLog(db, join(dir, 'audit.head'), () => new Date(t++));
  return { dir, db, log, cleanup: () => { log.flush(); db.close(); rmSync(dir, { recursive: true, force: true }); } };
}

test('an intact chain verifies; edits, removals, reorderings and truncation are each detected', async () => {
  const { dir, db, log, cleanup } = freshLog();
  try {
    for (let i = 0; i < 20; i++) await log.append({ requestId: `r${i}`, source: 'server:s1', operation: 'PutObject', bucket: 'b', key: `k${i}`, status: 200, bytes: i });
    log.flush(); // the head trails the log by up to 50 ms; make it current
    const records = [...log.iterate()];
    const head = readHead(join(dir, 'audit.head'));
    assert.equal(records.length, 20);
    assert.deepEqual(verifyRecords(records, head), { ok: true, records: 20, problems: [] });

    const edited = records.map((r) => (r.seq === 7 ? { ...r, key: 'other' } : r));
    assert.match(verifyRecords(edited, head).problems.join('\n'), /record 7: content does not match/);

    const removed = records.filter((r) => r.seq !== 9);
    assert.equal(verifyRecords(removed, head).ok, false);

    const swapped: AuditRecord[] = [...records];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    assert.equal(verifyRecords(swapped, head).ok, false);

    // rehashing an edited record is not enough: the next record's prev_hash still points at the original
    assert.equal(verifyRecords(records.slice(0, 18), head).ok, false, 'cutting records off the end is detected with the head');

    // the database path: an edit made with SQL is found too
    db.sql.exec("UPDATE audit SET status = 403 WHERE seq = 12");
    assert.equal(verifyRecords(log.iterate(), head).ok, false);
  } finally { cleanup(); }
});

test('group commits keep the chain ordered under concurrent appends', async () => {
  const { log, cleanup } = freshLog();
  try {
    await Promise.all(Array.from({ length: 200 }, (_, i) => log.append({ requestId: `r${i}`, source: 'system', operation: 'GetObject', status: 200 })));
    const result = verifyRecords(log.iterate());
    assert.equal(result.ok, true, result.problems.join('\n'));
    assert.equal(result.records, 200);
  } finally { cleanup(); }
});
