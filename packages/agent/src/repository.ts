// The repository layer: blobs in, blobs out, on top of a Backend. It owns the in-memory index,
// the pack being filled, uploads (bounded concurrency), index objects, snapshots and manifests.
// Everything it writes is new and named after its content: no delete, no overwrite.
import {
  BlobIndex, CONFIG_KEY, INDEX_TARGET_BLOBS, blobId, FormatError, PackWriter, encodeManifest, extractBlob, encodeEntries, indexKey, manifestKey, onlyTreeEntries, openIndex, openIndexCompact,
  openRepository, openSnapshot, packKey, parseObjectKey, readPackHeader, seal, sealIndex, sealSnapshot, snapshotKey, toHex,
  type BlobType, type EncodedIndexedPack, type FinishedPackParts, type IndexedPack, type PackEntry, type ParsedConfig, type RepoKeys, type Snapshot,
} from '@shelter/format';
import { tmpdir } from 'node:os';
import type { Backend } from './backend/types.ts';
import { mapLimit } from './limit.ts';
import { openPackSpool, type PackSpool } from './packspool.ts';
import { objectCache, readObject, type ObjectCache } from './objectcache.ts';
import { readIndexCache, writeIndexCache, type IndexState } from './indexcache.ts';
import { ownDir } from './localcache.ts';
import { createSealPool, SEAL_LEVEL, type SealPool, type StreamWindow } from './sealpool.ts';

/** a tree this small is sealed on the main thread unless a batch for the workers is pending anyway (saveBlob) */
const SEAL_HERE_BYTES = 64 * 1024;

export class RepositoryError extends Error {
  readonly code: 'NotInitialised' | 'WrongKey' | 'Corrupt' | 'Missing' | 'Exists';
  constructor(code: RepositoryError['code'], message: string, options?: { cause?: unknown }) { super(message, options); this.code = code; }
}

/** Bytes of chunks queued for sealing or waiting in packs before the reader pauses (48 MiB cost
 * 250 MB of peak RSS on the linux tree for no speed: the main thread, not sealing, is the limit). */
const MAX_SEALING_BYTES = 16 * 1024 * 1024;
/** room() when there is room */
const ROOM: Promise<void> = Promise.resolve();

/**
 * How long close() lets uploads already under way finish after a failure: long enough for a pack
 * on a slow link, short enough that a failed command exits soon after saying why (an upload to a
 * store that hangs could otherwise retry for minutes).
 */
const CLOSE_GRACE_MS = 30_000;

/** Write a new index object after this many packs (or INDEX_TARGET_BLOBS blobs), so an interrupted backup loses little. */
const PACKS_PER_INDEX = 32;

export interface SnapshotEntry { id: string; snapshot: Snapshot }

export interface Repository {
  backend: Backend;
  keys: RepoKeys;
  config: ParsedConfig;
  index: BlobIndex;
  /** the index object key that lists pack number n (for manifests) */
  indexKeyOfPack(n: number): string | undefined;
  /** pack n holds tree blobs only (small: worth reading whole when trees are loaded) */
  isTreePack(n: number): boolean;
  /** for a blob in no usable index entry: the pack an index lists it in, when that pack is missing from the bucket */
  lostPackOf(id: Buffer): string | undefined;
  /**
   * Stores a blob unless the repository already has it. Resolves as soon as the id is known and the
   * blob is queued for sealing (flush() makes it durable); `added` says whether it was new.
   */
  saveBlob(type: BlobType, plaintext: Buffer): Promise<{ id: Buffer; added: boolean }>;
  /**
   * Stores a blob whose id is not computed here: a seal worker hashes it, then seals it; a
   * duplicate is dropped once its id is known. `queued` resolves when there is room for more (the
   * plaintext is copied by then), `result` once the id is known. Used by a backup without parent,
   * where nearly every chunk is new, so that the main thread does not hash.
   */
  saveBlobUnhashed(type: BlobType, plaintext: Buffer): { queued: Promise<void>; result: Promise<{ id: Buffer; added: boolean }> };
  /**
   * Like saveBlobUnhashed for a whole file smaller than one chunk (`size` at stat), which a seal
   * worker reads itself: `result` says what it held (one blob, nothing), or that it has grown to a
   * chunk or more (`large`: not read, the caller reads and chunks it), or why it cannot be read.
   */
  saveSmallFileUnhashed(path: Buffer, size: number): { queued: Promise<void>; result: Promise<SmallFileSaved> };
  /**
   * A backup without parent: a large file read, chunked and hashed by a seal worker, a window at
   * a time, each asked for once there is room (bounded memory); its new chunks are sealed by any
   * worker. Resolves with its chunks in order (`added`: new to the repository) and the bytes read
   * once every chunk is queued (flush() waits for the sealing); duplicates are never sealed.
   * `size`: the file's size as listed (how much work it is: sealpool.ts GROW_BYTES).
   */
  saveFileStream(path: Buffer, size?: number): Promise<{ chunks: Array<{ id: Buffer; added: boolean; raw: number }>; bytes: number }>;
  hasBlob(id: Buffer): boolean;
  loadBlob(id: Buffer): Promise<Buffer>;
  /** uploads the pack being filled and the index of every new pack; after it, every saved blob is durable */
  flush(): Promise<void>;
  saveSnapshot(s: Snapshot, referencedPacks: Set<number>): Promise<string>;
  listSnapshots(): Promise<SnapshotEntry[]>;
  loadSnapshot(idOrPrefix: string): Promise<SnapshotEntry>;
  stats: { packsUploaded: number; bytesUploaded: number; blobsAdded: number; sealedBytes: number };
  /**
   * The worker threads that seal and open blobs, started on first use (close() stops them): one
   * at first, the others when work piles up (sealpool.ts GROW_BYTES); `all`: every one now (a
   * command that will keep them busy: an initial backup, a restore)
   */
  sealPool(all?: boolean): SealPool;
  /** whether the seal workers run already (a few trees are opened here rather than start them) */
  sealPoolStarted(): boolean;
  /** stops the seal workers */
  close(): Promise<void>;
}

/**
 * Writes the `config` of a new repository. Idempotent: if an earlier attempt stored it but its
 * answer was lost (a 500 after the write, a reset), the retry finds these very bytes and succeeds.
 * The caller keeps the master key safe BEFORE calling this: once config is on immutable storage a
 * lost key cannot be replaced.
 */
export async function initRepository(backend: Backend, configBytes: Buffer): Promise<void> {
  const r = await backend.putNew(CONFIG_KEY, configBytes);
  if (r === 'created') return;
  const stored = await backend.get(CONFIG_KEY);
  if (stored && stored.equals(configBytes)) return;
  throw new RepositoryError('Exists', `${backend.location} already holds a repository (config exists)`);
}


/** `startWorkers`: start the seal workers now (a command that will need them: they boot while the index loads) */
export type SmallFileSaved = { id: Buffer; added: boolean; length: number } | { length: 0 } | { large: true } | { error: string };

/**
 * Index object `key`, opened by `open` (its name, the key, its structure checked); with a cache,
 * from a good local copy if there is one (objectcache.ts readObject).
 */
async function readIndexWith<T>(backend: Backend, keys: RepoKeys, key: string, open: (keys: RepoKeys, bytes: Uint8Array, id: Uint8Array) => T, cache?: ObjectCache): Promise<T> {
  const id = Buffer.from(parseObjectKey(key)!.id!, 'hex');
  const packs = await readObject(backend, key, (bytes) => {
    try { return open(keys, bytes, id); }
    catch (e) { throw new RepositoryError('Corrupt', `index object ${key} does not decrypt: ${(e as Error).message}`, { cause: e }); }
  }, cache);
  if (!packs) throw new RepositoryError('Missing', `index object ${key} is missing`);
  return packs;
}

/** Index object `key` with every entry decoded (`check`). */
export const readIndexObject = (backend: Backend, keys: RepoKeys, key: string, cache?: ObjectCache): Promise<IndexedPack[]> =>
  readIndexWith(backend, keys, key, openIndex, cache);

/** the bucket's index objects and the size of every pack it holds: the two listings run at once */
async function listIndexesAndPacks(backend: Backend, abandoned: () => boolean) {
  const indexKeys: string[] = [];
  const packSizes = new Map<string, number>();
  await Promise.all([
    (async () => { for await (const o of backend.list('index/')) { if (abandoned()) return; if (parseObjectKey(o.key)?.type === 'index') indexKeys.push(o.key); } })(),
    (async () => { for await (const o of backend.list('data/')) { if (abandoned()) return; const p = parseObjectKey(o.key); if (p?.type === 'pack') packSizes.set(p.id!, o.size); } })(),
  ]);
  return { indexKeys, packSizes };
}

/** the snapshot object of every manifest in the bucket (a snapshot is listed once both exist) */
async function listManifests(backend: Backend, abandoned = () => false): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of backend.list('manifests/')) {
    if (abandoned()) break;
    const p = parseObjectKey(o.key);
    if (p?.type === 'manifest') keys.push(snapshotKey(p.id!));
  }
  return keys;
}

/** every index object's packs, compact (from the local object cache when it has a copy) */
async function readIndexes(backend: Backend, keys: RepoKeys, objects: ObjectCache | undefined, indexKeys: readonly string[]) {
  const lists = await mapLimit(indexKeys, 8, async (key) => ({ key, packs: await readIndexWith(backend, keys, key, openIndexCompact, objects) }));
  return lists;
}

export interface OpenRepoOptions {
  uploads?: number;
  sealWorkers?: number;
  startWorkers?: boolean;
  /** where packs wait for their upload (packspool.ts): default the system's temporary directory (TMPDIR); false: in memory */
  spoolDir?: string | false;
  /** told when packs are kept in memory because no spool file could be created */
  onNotice?: (message: string) => void;
  /**
   * The agent's cache directory (localcache.ts): index and snapshot objects are read from local
   * copies when they are there (objectcache.ts). Not for `check`, which must read the bucket.
   */
  cacheDir?: string;
  /** told (once) when the object cache cannot be used */
  onCacheProblem?: (message: string) => void;
  /** a backup that follows symlinks: its files may be opened through them (sealpool.ts) */
  followSymlinks?: boolean;
}

export async function openRepo(backend: Backend, master: Buffer, opts: OpenRepoOptions = {}): Promise<Repository> {
  // the listings the index needs go out with the config's request (each is a round trip); a
  // failure of theirs is reported after the config's own (a missing repository says so first)
  // (abandoned, they stop after the page in flight: a command that failed here ends at once)
  let abandoned = false;
  const listing = listIndexesAndPacks(backend, () => abandoned);
  listing.catch(() => { /* awaited by readIndexes, or not needed: the config failed first */ });
  // and so does the snapshots' listing, for the first listSnapshots() (most commands begin with
  // one); a later call, or one after this process wrote a snapshot, lists again
  let firstManifests: Promise<string[]> | undefined = listManifests(backend, () => abandoned);
  firstManifests.catch(() => { /* awaited by listSnapshots, if it is called */ });
  let keys: RepoKeys;
  let config: ParsedConfig;
  try {
    const configBytes = await backend.get(CONFIG_KEY);
    if (!configBytes) throw new RepositoryError('NotInitialised', `no repository at ${backend.location} (run \`shelter init\`)`);
    try {
      ({ keys, config } = openRepository(master, configBytes));
    } catch (e) {
      if (e instanceof FormatError && (e.code === 'WrongKey' || e.code === 'Authentication')) {
        throw new RepositoryError('WrongKey', `this key does not open the repository at ${backend.location} (fingerprint lock): ${e.message}`, { cause: e });
      }
      throw new RepositoryError('Corrupt', `the repository config at ${backend.location} is unreadable: ${(e as Error).message}`, { cause: e });
    }
  } catch (e) {
    abandoned = true;
    throw e;
  }
  // new blobs are sealed on worker threads; the main thread goes on chunking meanwhile
  let pool: SealPool | undefined;
  const sealPool = (all = false) => {
    pool ??= createSealPool(keys, { workers: opts.sealWorkers, initialWorkers: 1, smallFileMax: config.chunker.min, followSymlinks: opts.followSymlinks });
    if (all) pool.grow();
    return pool;
  };
  if (opts.startWorkers) sealPool(true);

  // ---- index: from the local index cache if it matches the bucket (indexcache.ts), else from every
  // index object; plus packs that no index lists yet (an interrupted backup's)
  const objects = opts.cacheDir ? objectCache(opts.cacheDir, toHex(config.id), opts.onCacheProblem) : undefined;
  const repoCacheDir = (create: boolean) => ownDir(opts.cacheDir!, [toHex(config.id)], create);
  let listed: Awaited<typeof listing>;
  let cached: IndexState | undefined;
  let lists: Awaited<ReturnType<typeof readIndexes>> | undefined;
  try {
    listed = await listing;
    objects?.keepOnly('index', new Set(listed.indexKeys));
    if (opts.cacheDir) {
      try { const dir = repoCacheDir(false); cached = dir ? readIndexCache(dir, keys, listed.indexKeys) : undefined; }
      catch (e) { opts.onCacheProblem?.(`index cache not used: ${(e as Error).message}`); }
    }
    // An index object may list packs the gateway has deleted since (a deleted snapshot's packs that
    // share an index object with a retained one): those blobs are gone, so dedup must not find them.
    // A cache holding such a pack is out of date; from the index objects, they are kept apart
    // (lostIndex below) only to name the missing pack in error messages.
    const present = (n: number) => listed.packSizes.has(toHex(cached!.index.packId(n)));
    if (cached && ![...cached.objects.values()].every((numbers) => numbers.every(present))) cached = undefined;
    if (!cached) lists = await readIndexes(backend, keys, objects, listed.indexKeys);
  } catch (e) {
    // the seal workers started above are not left running for a repository nobody will use
    await pool?.close();
    throw e;
  }
  const { packSizes } = listed;
  const treePacks = new Set<number>();
  /** pack n holds tree blobs only (its entries as stored): a tree pack, read whole when trees load */
  const noteTreePack = (n: number, encodedEntries: Buffer) => { if (onlyTreeEntries(encodedEntries)) treePacks.add(n); };
  /** the index object listing each pack */
  const packIndexKey = new Map<number, string>();
  let index: BlobIndex;
  let lostIndex: BlobIndex;
  /** the index as it is now, for the next command (only entries of packs that an index object lists) */
  const saveIndexCache = () => {
    try {
      const listing = new Map<string, number[]>();
      for (const [n, key] of packIndexKey) {
        let numbers = listing.get(key);
        if (!numbers) listing.set(key, (numbers = []));
        numbers.push(n);
      }
      writeIndexCache(repoCacheDir(true)!, keys, { index, objects: listing, treePacks });
    } catch (e) { opts.onCacheProblem?.(`index cache not written: ${(e as Error).message}`); }
  };
  if (cached) {
    index = cached.index;
    lostIndex = BlobIndex.fromEncoded([]);
    for (const [key, numbers] of cached.objects) for (const n of numbers) packIndexKey.set(n, key);
    for (const n of cached.treePacks) treePacks.add(n);
  } else {
    const lost = lists!.map((l) => l.packs.filter((p) => !packSizes.has(toHex(p.id))));
    for (const l of lists!) l.packs = l.packs.filter((p) => packSizes.has(toHex(p.id)));
    lostIndex = BlobIndex.fromEncoded(lost);
    index = BlobIndex.fromEncoded(lists!.map((l) => l.packs));
    for (const l of lists!) {
      for (const p of l.packs) {
        const n = index.addPack(p.id);
        packIndexKey.set(n, l.key);
        noteTreePack(n, p.encodedEntries);
      }
    }
  }
  /**
   * The cache must be (re)written: it was not used (none, out of date, damaged) and no pack is lost
   * (with one, it would be out of date at once), or this process wrote an index object. Written
   * once: after the snapshot is saved, or when the repository is closed, if every pack with
   * entries in the index is listed by an index object by then.
   */
  let cacheStale = !!opts.cacheDir && !cached && lostIndex.size === 0;

  // packs in flight: 2 keep the link busy against a gateway, 4 only held 32 MiB more in memory
  const uploads = opts.uploads ?? 2;
  const inFlight = new Set<Promise<void>>();
  // tree blobs get packs of their own: loading a snapshot's trees (incremental backups, restore,
  // check) then reads a few small tree packs instead of ranges of every data pack
  // Each writer's pack being filled goes to its spool file (a new one per pack); the first pack
  // decides: if no spool file can be created there, packs are kept in memory, with a notice.
  const spools: Partial<Record<BlobType, PackSpool>> = {};
  let writers: Record<BlobType, PackWriter> | undefined;
  const writerOf = (type: BlobType): PackWriter => {
    if (!writers) {
      let dir = opts.spoolDir === undefined ? tmpdir() : opts.spoolDir;
      if (dir !== false) {
        try { spools.data = openPackSpool(dir); }
        catch (e) {
          opts.onNotice?.(`${(e as Error).message}; packs wait for their upload in memory instead (set TMPDIR to a writable directory)`);
          dir = false;
        }
      }
      const at = dir;
      const spill = (t: BlobType) => at === false ? undefined : (bytes: Buffer) => (spools[t] ??= openPackSpool(at)).append(bytes);
      writers = { data: new PackWriter(keys, { spill: spill('data') }), tree: new PackWriter(keys, { spill: spill('tree') }) };
    }
    return writers[type];
  };
  // packs uploaded (or found) since the last index object, and their blob count
  let unindexed: EncodedIndexedPack[] = [];
  let unindexedBlobs = 0;
  const stats = { packsUploaded: 0, bytesUploaded: 0, blobsAdded: 0, sealedBytes: 0 };
  let failure: unknown;

  // packs present in the bucket but in no index: read their headers and index them (resume)
  const orphans = [...packSizes.entries()].filter(([id]) => !packIndexKey.has(index.addPack(Buffer.from(id, 'hex'))));
  for (const [id, size] of orphans) {
    try {
      const tailLen = Math.min(size, 64 * 1024);
      let tail = await backend.get(packKey(id), { start: size - tailLen, end: size - 1 });
      let entries: PackEntry[];
      try { entries = readPackHeader(keys, tail!, size); }
      catch (e) {
        if (!(e instanceof FormatError && e.code === 'NeedMoreBytes')) throw e;
        tail = await backend.get(packKey(id), { start: size - e.needed!, end: size - 1 });
        entries = readPackHeader(keys, tail!, size);
      }
      const ip: IndexedPack = { id: Buffer.from(id, 'hex'), size, entries };
      const encodedEntries = encodeEntries(entries);
      noteTreePack(index.addPack(ip.id), encodedEntries);
      index.addPackEntries(ip);
      unindexed.push({ id: ip.id, size, encodedEntries });
      unindexedBlobs += entries.length;
    } catch { /* unreadable leftover (e.g. another key's): ignored here, reported by check */ }
  }

  // blobs in the pack being filled or still uploading: known to this run, not yet indexed
  const pending = new Set<string>();

  const writeIndex = async () => {
    if (unindexed.length === 0) return;
    const packs = unindexed;
    unindexed = [];
    unindexedBlobs = 0;
    const sealed = sealIndex(keys, packs);
    const key = indexKey(sealed.id);
    await backend.putNew(key, sealed.bytes, sealed.id);
    objects?.put(key, sealed.bytes);
    for (const p of packs) packIndexKey.set(index.addPack(p.id), key);
    cacheStale = !!opts.cacheDir;
  };

  const uploadPack = async ({ pack, spool }: QueuedPack) => {
    const key = packKey(pack.id);
    try {
      // the pack's name is the SHA-256 of its bytes as they were made: the store checks the bytes it
      // receives (read back from the spool file) against it
      await backend.putNew(key, spool ? await spool.body(pack.spilled, pack.parts) : pack.parts, pack.id);
    } finally { spool?.close(); }
    stats.packsUploaded++;
    stats.bytesUploaded += pack.size;
    // only now is the blob durable: add it to the index (dedup of later blobs may rely on it)
    const ip: IndexedPack = { id: pack.id, size: pack.size, entries: pack.entries };
    noteTreePack(index.addPack(pack.id), pack.encodedEntries);
    index.addPackEntries(ip);
    for (const e of pack.entries) pending.delete(e.id.toString('hex'));
    // kept encoded until the index object is written (the entry objects are ~4x larger)
    unindexed.push({ id: pack.id, size: pack.size, encodedEntries: pack.encodedEntries });
    unindexedBlobs += pack.entries.length;
    if (unindexed.length >= PACKS_PER_INDEX || unindexedBlobs >= INDEX_TARGET_BLOBS) await writeIndex();
  };

  // Finished packs wait here for an upload slot. A full writer is finished at once (no copy: the
  // parts are streamed), and new blobs wait in saveBlob while a pack waits here, so memory stays
  // bounded when uploads are the bottleneck (before, the full writer went on growing meanwhile).
  type QueuedPack = { pack: FinishedPackParts; spool: PackSpool | undefined };
  const queued: QueuedPack[] = [];
  /** every upload started, ended (each records its own failure) */
  const uploadsEnded = async () => { while (inFlight.size) await Promise.all(inFlight); };
  const pump = () => {
    while (inFlight.size < uploads && queued.length) {
      const pack = queued.shift()!;
      const tracked: Promise<void> = uploadPack(pack).catch((e) => { failure ??= e; }).finally(() => { inFlight.delete(tracked); pump(); wake(); });
      inFlight.add(tracked);
    }
  };
  const takePack = (type: BlobType) => {
    const writer = writers?.[type];
    if (!writer || writer.count === 0) return;
    queued.push({ pack: writer.finishParts(), spool: spools[type] });
    spools[type] = undefined;
    pump();
  };

  const hasBlob = (id: Buffer) => index.has(id) || pending.has(id.toString('hex'));
  /** whether blob `id` is new (then counted and pending: a later copy of it is a duplicate) */
  const claim = (id: Buffer): boolean => {
    if (hasBlob(id)) return false;
    pending.add(id.toString('hex'));
    stats.blobsAdded++;
    return true;
  };

  const sealing = new Set<Promise<void>>();
  let sealingBytes = 0;
  // callers waiting for room (saveBlob may be called concurrently); each rechecks
  let spaceWaiters: Array<() => void> = [];
  const wake = () => { if (spaceWaiters.length) { const ws = spaceWaiters; spaceWaiters = []; for (const w of ws) w(); } };
  /** a sealed blob into its type's pack writer (a full pack goes to the upload queue) */
  const store = (type: BlobType, id: Buffer, sealed: Buffer, raw: number) => {
    const writer = writerOf(type);
    // a sealed blob is a slice of its batch's buffer: tree packs fill slowly (and so do their
    // spool files' write runs), so their blobs get buffers of their own rather than keep whole batches alive
    try { writer.add(type, id, type === 'tree' ? Buffer.from(sealed) : sealed, raw); }
    catch (e) {
      // a blob not stored (no spool file for a new pack: disk full, no descriptor left) fails the
      // backup whichever path stored it: it is pending already, later copies of it would be skipped
      failure ??= e;
      throw e;
    }
    stats.sealedBytes += sealed.length;
    if (writer.full) takePack(type);
  };
  /** counts `raw` bytes as being sealed until `work` settles; its failure becomes the repository's */
  const track = (raw: number, work: Promise<unknown>) => {
    sealingBytes += raw;
    // (one promise per job, not a then and a finally: a backup of the linux tree tracks ~80k)
    const settled = () => {
      sealingBytes -= raw;
      sealing.delete(job);
      if (sealingBytes <= MAX_SEALING_BYTES) wake();
    };
    const job: Promise<void> = work.then(settled, (e) => { failure ??= e; settled(); });
    sealing.add(job);
  };
  /**
   * Waits while too much is being sealed or a full pack waits for an upload slot (bounded memory).
   * The waiters are woken by the jobs and uploads themselves (a Promise.race over thousands of
   * pending jobs costs quadratic time).
   */
  const full = () => (sealingBytes > MAX_SEALING_BYTES && sealing.size > 0) || queued.length > 0;
  const waitForRoom = async () => {
    while (!failure && full()) await new Promise<void>((res) => { spaceWaiters.push(res); });
    if (failure) throw failure;
  };
  // nearly always there is room: a settled promise then, not an async call per blob or file
  const room = (): Promise<void> => (!failure && !full() ? ROOM : waitForRoom());

  const saveBlob = async (type: BlobType, plaintext: Buffer) => {
    if (failure) throw failure;
    const id = blobId(keys, plaintext);
    if (!claim(id)) return { id, added: false };
    // a tree while no worker runs (an incremental backup that changed little: a few directories'
    // trees, perhaps no data at all), or while no batch of chunks is on its way to one: sealed
    // here, rather than start the workers or wake one up for a few KiB (a message to a sleeping
    // worker costs the sender more than sealing a tree)
    if (type === 'tree' && (!pool || (plaintext.length <= SEAL_HERE_BYTES && !pool.batchPending()))) {
      store(type, id, seal(keys, plaintext, id, { level: SEAL_LEVEL }), plaintext.length);
      return { id, added: true };
    }
    track(plaintext.length, sealPool().submit(id, plaintext).then((sealed) => store(type, id, sealed, plaintext.length)));
    await room();
    return { id, added: true };
  };

  /** a blob sealed before its id was known here (a worker hashed it): stored unless a duplicate; whether it was new */
  const keepSealed = (type: BlobType, id: Buffer, sealed: Buffer, raw: number): boolean => {
    if (failure) throw failure;
    if (!claim(id)) return false;
    store(type, id, sealed, raw);
    return true;
  };
  /** a worker's job of about `raw` bytes, counted as being sealed until it settles: room for more, and its result */
  const queueJob = <T>(raw: number, job: () => Promise<T>) => {
    const result = failure ? Promise.reject(failure) : job();
    // (track() handles its rejection: recorded as the repository's failure, which flush() reports)
    track(raw, result);
    return { queued: room(), result };
  };

  const saveBlobUnhashed = (type: BlobType, plaintext: Buffer) => queueJob(plaintext.length, () => sealPool().submitUnhashed(plaintext)
    .then(({ id, sealed }) => ({ id, added: keepSealed(type, id, sealed, plaintext.length) })));

  const saveSmallFileUnhashed = (path: Buffer, size: number) => queueJob(size, () => sealPool().submitSmallFile(path, size)
    .then((r): SmallFileSaved => ('sealed' in r ? { id: r.id, added: keepSealed('data', r.id, r.sealed, r.length), length: r.length } : r)));

  /**
   * A file stream's window (read, cut and hashed by a worker): its chunks appended to `chunks`, the
   * new ones sealed by the least busy worker and stored, duplicates (in the index, pending, or
   * earlier in the window) dropped before anything is compressed.
   */
  const sealWindow = (w: StreamWindow, chunks: Array<{ id: Buffer; added: boolean; raw: number }>) => {
    if (failure) throw failure;
    let skip: Uint8Array | undefined;
    const fresh: number[] = [];
    let freshBytes = 0;
    const first = chunks.length;
    w.lengths.forEach((raw, i) => {
      const id = w.ids.subarray(32 * i, 32 * i + 32);
      const added = claim(id);
      if (added) { fresh.push(i); freshBytes += raw; } else (skip ??= new Uint8Array(w.lengths.length))[i] = 1;
      chunks.push({ id, added, raw });
    });
    if (!fresh.length) return;
    track(freshBytes, sealPool().sealWindow(w, skip).then((sealed) => {
      for (const i of fresh) store('data', chunks[first + i]!.id, sealed[i]!, w.lengths[i]!);
    }));
  };

  const saveFileStream = async (path: Buffer, size?: number) => {
    const stream = sealPool().streamFile(path, config.chunker, size);
    const chunks: Array<{ id: Buffer; added: boolean; raw: number }> = [];
    let bytes = 0;
    try {
      for (;;) {
        await room();
        const w = await stream.next();
        sealWindow(w, chunks);
        bytes += w.read;
        if (w.done) return { chunks, bytes };
      }
    } catch (e) {
      stream.close();
      // a dead worker is the backup's failure, not this file's (a read error only skips the file)
      if ((e as { workerDied?: boolean }).workerDied) failure ??= e;
      throw e;
    }
  };

  const repo: Repository = {
    backend, keys, config, index, stats,
    indexKeyOfPack: (n) => packIndexKey.get(n),
    isTreePack: (n) => treePacks.has(n),
    lostPackOf: (id) => { const loc = lostIndex.lookup(id); return loc ? toHex(lostIndex.packId(loc.pack)) : undefined; },
    hasBlob,
    saveBlob,
    saveBlobUnhashed,
    saveSmallFileUnhashed,
    saveFileStream,
    sealPool,
    sealPoolStarted: () => pool !== undefined,
    async loadBlob(id) {
      const loc = index.lookup(id);
      if (!loc) throw new RepositoryError('Missing', `blob ${toHex(id)} is in no index (incomplete repository)`);
      const key = packKey(index.packId(loc.pack));
      const bytes = await backend.get(key, { start: loc.offset, end: loc.offset + loc.length - 1 });
      if (!bytes) throw new RepositoryError('Missing', `pack ${key} is missing`);
      try {
        return extractBlob(keys, bytes, { type: 'data', id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength }, loc.offset);
      } catch (e) {
        throw new RepositoryError('Corrupt', `blob ${toHex(id)} in ${key} does not decrypt: ${(e as Error).message}`, { cause: e });
      }
    },
    async flush() {
      while (sealing.size) await Promise.all(sealing);
      if (failure) throw failure;
      takePack('data');
      takePack('tree');
      await uploadsEnded();
      if (failure) throw failure;
      await writeIndex();
      pending.clear();
    },
    async saveSnapshot(s, referencedPacks) {
      await repo.flush();
      const sealed = sealSnapshot(keys, s);
      const id = toHex(sealed.id);
      const packs: string[] = [];
      const indexes = new Set<string>();
      for (const n of referencedPacks) {
        packs.push(packKey(index.packId(n)));
        const ik = packIndexKey.get(n);
        if (!ik) throw new RepositoryError('Corrupt', `pack ${toHex(index.packId(n))} is listed in no index object`);
        indexes.add(ik);
      }
      // the manifest first, then the snapshot object, which commits the backup (a snapshot is listed
      // once both exist). In this order nobody can register a manifest for this snapshot before us:
      // its id is the hash of an encrypted object nobody has seen yet (docs/FORMAT.md, GC contract)
      const manifest = encodeManifest({ name: s.name, time: s.time, snapshot: snapshotKey(sealed.id), packs, indexes: [...indexes] });
      firstManifests = undefined; // listed before this snapshot: not for a later listSnapshots()
      await backend.putNew(manifestKey(sealed.id), manifest);
      await backend.putNew(snapshotKey(sealed.id), sealed.bytes, sealed.id);
      objects?.put(snapshotKey(sealed.id), sealed.bytes);
      if (cacheStale) { saveIndexCache(); cacheStale = false; }
      return id;
    },
    async close() {
      // spool files of packs never finished (a failed backup; a data writer that got no blob), and
      // of packs still waiting for an upload slot: those are not started now
      for (const t of ['data', 'tree'] as const) { spools[t]?.close(); spools[t] = undefined; }
      for (const q of queued.splice(0)) q.spool?.close();
      // uploads already under way end first, for up to CLOSE_GRACE_MS (their errors are the
      // repository's failure, reported by flush): no request of this repository outlives it in
      // practice, and a pack stored whole is one the next backup finds
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([uploadsEnded(), new Promise<void>((res) => { grace = setTimeout(res, CLOSE_GRACE_MS); })]);
      clearTimeout(grace);
      await pool?.close();
      // (packs uploaded but in no index object yet, an interrupted backup's or found at open: their
      // entries would make the cache unusable; the next command indexes them and writes it)
      if (cacheStale && unindexed.length === 0) { saveIndexCache(); cacheStale = false; }
    },
    async listSnapshots() {
      // a snapshot exists once its manifest and its snapshot object do (the snapshot object is
      // written last): a backup killed between the two left a manifest that is no snapshot
      const listed = firstManifests ?? listManifests(backend);
      firstManifests = undefined;
      const keysList = await listed;
      objects?.keepOnly('snapshots', new Set(keysList));
      const out = await mapLimit(keysList, 8, async (key) => {
        const id = parseObjectKey(key)!.id!;
        const snapshot = await readObject(backend, key, (bytes) => {
          try { return openSnapshot(keys, bytes, Buffer.from(id, 'hex')); }
          catch (e) { throw new RepositoryError('Corrupt', `snapshot ${id} does not decrypt: ${(e as Error).message}`, { cause: e }); }
        }, objects);
        return snapshot && { id, snapshot };
      });
      return out.filter((x): x is SnapshotEntry => !!x).sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time));
    },
    async loadSnapshot(ref) {
      const all = await repo.listSnapshots();
      const matches = all.filter((s) => s.id.startsWith(ref));
      if (matches.length === 0) throw new RepositoryError('Missing', `no snapshot ${ref}`);
      if (matches.length > 1) throw new RepositoryError('Missing', `snapshot prefix ${ref} is ambiguous (${matches.length} snapshots)`);
      return matches[0]!;
    },
  };
  return repo;
}
