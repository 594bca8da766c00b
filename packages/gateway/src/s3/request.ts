// What an S3 operation receives and returns.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { Context } from '../context.ts';
import type { Operation, Principal } from '../policy/policy.ts';
import { createBodyVerifier, type BodyResult, type PayloadSpec } from '../sigv4/index.ts';
import { S3Error } from './errors.ts';
import { parseXml } from './xml.ts';
import type { Limits } from './limits.ts';

export interface S3Request {
  requestId: string;
  op: Operation;
  method: string;
  bucket: string | null;
  key: string | null;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  req: IncomingMessage;
  principal: Principal;
  payload: PayloadSpec;
  limits: Limits;
  /** filled by the operation for the audit record */
  audit: { versionId?: string | null; bytes?: number; key?: string | null; detail?: Record<string, unknown> };
  /**
   * Runs `fn` (metadata writes) and appends this request's audit record in the same durable
   * transaction, so a committed change is never missing from the log. Resolves after the commit.
   */
  /** `status`: the response status to audit, or a function of fn's result when it decides it */
  commit<T>(fn: () => T, status?: number | ((v: T) => number)): Promise<T>;
  /** the source of this request as written in the audit log */
  source: string;
  remote: string | null;
}

export interface S3Response {
  status: number;
  headers?: Record<string, string | number>;
  body?: string | Buffer | Readable;
}

export type S3Operation = (ctx: Context, r: S3Request) => Promise<S3Response>;

export function header(r: S3Request, name: string): string | undefined {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** The verified, decoded body stream (signature, payload hash, checksums, size limit all enforced). */
export function verifiedBody(r: S3Request, maxBytes: number): Readable & { result(): BodyResult } {
  const v = createBodyVerifier(r.payload, r.headers, { maxBytes });
  r.req.on('error', (e) => v.destroy(e));
  // the body may fail verification before its consumer starts reading (a small body arrives whole
  // while storage opens its file): the error stays on the destroyed stream and reaches the consumer
  // when it reads; this listener only keeps it from being an unhandled 'error' event
  v.on('error', () => {});
  r.req.pipe(v);
  return v;
}

/** Reads a small body (XML documents) fully, bounded. */
export async function readSmallBody(r: S3Request, maxBytes = r.limits.maxXmlBytes): Promise<Buffer> {
  const v = verifiedBody(r, maxBytes);
  const chunks: Buffer[] = [];
  try {
    for await (const c of v) chunks.push(c as Buffer);
  } catch (e) {
    if ((e as { code?: string }).code === 'EntityTooLarge') throw new S3Error('MaxMessageLengthExceeded', 'Your request was too big.');
    throw e;
  }
  return Buffer.concat(chunks);
}

export async function readXml(r: S3Request, maxBytes?: number): Promise<Record<string, unknown>> {
  const body = await readSmallBody(r, maxBytes);
  if (body.length === 0) throw new S3Error('MissingRequestBodyError', 'Request Body is empty');
  return parseXml(body);
}

/** Drains and discards a request body that an operation does not use (keeps the connection reusable). */
export function discardBody(r: S3Request): void {
  r.req.resume();
}
