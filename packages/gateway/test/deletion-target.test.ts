// requestTarget: the one parser of "what to delete" behind the CLI flags and the admin API fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeletionError, requestTarget } from '../src/deletion/requests.ts';

const refused = (o: Record<string, unknown>) => assert.throws(() => requestTarget(o), (e: unknown) => e instanceof DeletionError && e.code === 'Invalid', JSON.stringify(o));

test('exactly one of snapshot, backup, allData', () => {
  assert.deepEqual(requestTarget({ snapshot: 'ab'.repeat(32) }), { kind: 'snapshot', target: 'ab'.repeat(32) });
  assert.deepEqual(requestTarget({ backup: 'etc' }), { kind: 'name', target: 'etc' });
  assert.deepEqual(requestTarget({ allData: true }), { kind: 'server', target: null });
  assert.deepEqual(requestTarget({ backup: 'etc', allData: false }), { kind: 'name', target: 'etc' });
  refused({});
  refused({ allData: false });
  refused({ snapshot: 'ab'.repeat(32), backup: 'etc' }); // the admin API used to take the first silently
  refused({ backup: 'etc', allData: true });
  refused({ snapshot: 42 });
  refused({ backup: ['etc'] });
  refused({ allData: 'yes' });
});
