// A bucket in memory, with the Backend contract (no overwrite, keys listed in order), for tests
// of the repository layer without a gateway.
import type { Backend, StreamBody } from '../../src/backend/types.ts';

export function memoryBackend(): Backend & { objects: Map<string, Buffer> } {
  const objects = new Map<string, Buffer>();
  return {
    objects,
    location: 'memory',
    async get(key, range) { const b = objects.get(key); return b && range ? b.subarray(range.start, range.end + 1) : b; },
    async head(key) { return objects.get(key)?.length; },
    async putNew(key, body) {
      if (objects.has(key)) return 'exists';
      let bytes: Buffer;
      if (Buffer.isBuffer(body)) bytes = body;
      else if (Array.isArray(body)) bytes = Buffer.concat(body);
      else {
        const parts: Buffer[] = [];
        for await (const c of (body as StreamBody).chunks()) parts.push(c);
        bytes = Buffer.concat(parts);
        if (bytes.length !== (body as StreamBody).length) throw new Error(`body of ${bytes.length} bytes, announced ${(body as StreamBody).length}`);
      }
      objects.set(key, bytes);
      return 'created';
    },
    async *list(prefix) { for (const k of [...objects.keys()].filter((k) => k.startsWith(prefix)).sort()) yield { key: k, size: objects.get(k)!.length }; },
  };
}
