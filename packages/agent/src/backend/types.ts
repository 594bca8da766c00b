// What the agent asks of storage. There is deliberately no delete and no overwrite: every object
// the agent writes is named after its content (or written once, like `config`), so the agent
// works unchanged on immutable storage and a stolen agent configuration cannot destroy anything
// through this code.
export interface ObjectInfo { key: string; size: number }

/** A body read from elsewhere (a pack spooled to a file): each call of `chunks` starts again at its first byte (a retry). */
export interface StreamBody {
  length: number;
  chunks(): AsyncIterable<Buffer>;
  /**
   * The same bytes read into `piece` a part at a time, each yielded part valid until the next is
   * asked for (a sender that writes each part before asking for the next needs no other buffer).
   */
  chunksInto?(piece: Buffer): AsyncIterable<Buffer>;
}

/**
 * A request signed by a backend for signedhttp.ts to send as it is (on this thread, or on a
 * restore's worker fetching its own range): its URL, its headers (SigV4 included; valid for 15
 * minutes) and the CA file to trust beside the system's.
 */
export interface SignedRequest { url: string; headers: Record<string, string>; caFile?: string }

export interface Backend {
  /** the whole object, or a byte range [start, end] inclusive; undefined when absent */
  get(key: string, range?: { start: number; end: number }): Promise<Buffer | undefined>;
  /** the size of an object, or undefined when absent */
  head(key: string): Promise<number | undefined>;
  /**
   * Writes an object that must not exist yet. Returns 'created', or 'exists' when the store
   * already holds that name (content-addressed names make that harmless). A body given as parts
   * is stored as their concatenation and sent as a stream (a pack never needs a second copy).
   * `sha256`: the SHA-256 the bytes must have (an object named by it): the store checks it and
   * refuses anything else (BackendError 'Integrity'), so bytes damaged after they were hashed (a
   * pack's spool file, memory) are never stored under that name.
   */
  putNew(key: string, body: Buffer | readonly Buffer[] | StreamBody, sha256?: Uint8Array): Promise<'created' | 'exists'>;
  /**
   * The GET of bytes [start, end] of `key`, signed for another thread to send once: no retries
   * there (on any failure it falls back to get()). Absent when this backend cannot sign one.
   */
  signGet?(key: string, range?: { start: number; end: number }): SignedRequest;
  /** every object under a prefix, in key order */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * GETs, PUTs and listing pages so far: sent by signedhttp.ts, or by the S3 client (those it did not do, or
   * failed: a run's log says so, and many SDK requests against a store mean it is not read well)
   */
  readonly requests?: Readonly<{ signedGets: number; sdkGets: number; signedPuts: number; sdkPuts: number; signedLists: number; sdkLists: number }>;
  /** a description for messages (endpoint and bucket; never a secret) */
  readonly location: string;
}

export class BackendError extends Error {
  readonly code: 'AccessDenied' | 'NoSuchBucket' | 'Network' | 'Tls' | 'Server' | 'Config' | 'Integrity';
  constructor(code: BackendError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
