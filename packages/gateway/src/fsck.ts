// `shelterd fsck`: storage and metadata agree. Every committed version's blobs exist with the
// recorded sizes; no blob is left that nothing references; no pending (unfinished) write remains.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from './context.ts';

export interface FsckResult { ok: boolean; versions: number; blobs: number; problems: string[] }

export async function fsck(ctx: Context): Promise<FsckResult> {
  const problems: string[] = [];
  const referenced = new Map<string, number>();
  let versions = 0;
  for (const ref of ctx.meta.allBlobRefs()) {
    versions++;
    referenced.set(ref.id, ref.size);
    const size = await ctx.blobs.stat(ref.id);
    if (size === undefined) problems.push(`${ref.where}: blob ${ref.id} is missing`);
    else if (size !== ref.size) problems.push(`${ref.where}: blob ${ref.id} holds ${size} bytes, metadata says ${ref.size}`);
  }
  // blobs of versions an executed deletion removed: storage removes them on the next deletion run
  const trash = new Set((ctx.db.stmt('SELECT blob_id FROM blob_trash').all() as Array<{ blob_id: string }>).map((r) => r.blob_id));
  let blobs = 0;
  for await (const b of ctx.blobs.list()) {
    blobs++;
    if (!referenced.has(b.id) && !trash.has(b.id)) problems.push(`blob ${b.id} (${b.bytes} bytes) is referenced by no version or part`);
  }
  const pending = readdirSync(join(ctx.dataDir, 'objects', 'pending'));
  if (pending.length) problems.push(`${pending.length} unfinished write(s) in objects/pending (the gateway removes them at start)`);
  return { ok: problems.length === 0, versions, blobs, problems };
}
