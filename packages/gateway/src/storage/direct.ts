// Direct I/O (O_DIRECT) for large blob writes.
//
// Why: on the virtual disks this gateway runs on, buffered writes cost the kernel far more CPU
// than the bytes themselves (page-cache management and writeback: measured ~1.3 cores for
// 1 GB/s of fsync'd 16 MiB files on a 2-core Firecracker VM, against ~0.35 core with O_DIRECT
// for the same throughput). That CPU is what the gateway needs for TLS, MD5 and checksums.
// Durability is unchanged: the caller still fsyncs the file (device cache flush, size and
// block allocation) and the directory before acknowledging.
//
// O_DIRECT needs the memory address, the file offset and the length aligned to the device's
// block size. Node gives no way to read a Buffer's address, so an aligned window inside each
// slab is found once by trying direct writes at 16-byte steps into a probe file: the kernel
// answers EINVAL until the address is aligned. Backing stores of ArrayBuffers never move, so
// the window stays aligned for the life of the slab.
import { closeSync, constants, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const DIRECT_ALIGN = 4096;
/** one staging buffer: the size of one direct write */
export const DIRECT_SLOT = 1024 * 1024;
/** staging buffers per slab (one allocation, probed once) */
const SLOTS_PER_SLAB = 8;

export interface DirectPool {
  /** two aligned staging buffers (one fills while the other is written), or null when the pool is exhausted */
  acquirePair(): [Buffer, Buffer] | null;
  release(pair: [Buffer, Buffer]): void;
}

/**
 * A pool of aligned staging buffers for direct writes into `dir`. acquirePair() answers null when
 * the filesystem does not support O_DIRECT (tmpfs, some overlay setups): callers then write
 * through the page cache.
 * `maxSlots` bounds the memory (maxSlots MiB); when it is used up, writes fall back to buffered I/O.
 */
export function openDirectPool(dir: string, maxSlots: number): DirectPool {
  const O_DIRECT = constants.O_DIRECT;
  const probePath = join(dir, '.direct-probe');
  const free: Buffer[] = [];
  let allocated = 0;
  /** undefined until the first large write asks (CLI commands never pay for the slab) */
  let supported: boolean | undefined;

  /** SLOTS_PER_SLAB aligned slots inside a fresh allocation; false if the filesystem refuses direct I/O */
  const newSlab = (): boolean => {
    let fd: number;
    try {
      fd = openSync(probePath, constants.O_WRONLY | constants.O_CREAT | O_DIRECT, 0o600);
    } catch {
      return false; // tmpfs and some overlay filesystems: no O_DIRECT
    }
    const raw = Buffer.allocUnsafeSlow(SLOTS_PER_SLAB * DIRECT_SLOT + DIRECT_ALIGN);
    raw.fill(0, 0, DIRECT_ALIGN * 2); // the probe writes these bytes; keep them deterministic
    try {
      for (let off = 0; off < DIRECT_ALIGN; off += 16) {
        try {
          writeSync(fd, raw, off, DIRECT_ALIGN, 0);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EINVAL') continue;
          return false;
        }
        for (let i = 0; i < SLOTS_PER_SLAB; i++) free.push(raw.subarray(off + i * DIRECT_SLOT, off + (i + 1) * DIRECT_SLOT));
        allocated += SLOTS_PER_SLAB;
        return true;
      }
      return false;
    } finally {
      closeSync(fd);
      rmSync(probePath, { force: true });
    }
  };

  return {
    acquirePair() {
      if (supported === undefined) supported = !!O_DIRECT && newSlab();
      if (!supported) return null;
      if (free.length < 2 && allocated + SLOTS_PER_SLAB <= maxSlots) newSlab();
      if (free.length < 2) return null;
      return [free.pop()!, free.pop()!];
    },
    release(pair) {
      free.push(pair[0], pair[1]);
    },
  };
}
