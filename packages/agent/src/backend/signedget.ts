// A GET that another thread signed (s3.ts signGet), sent once from a restore's worker thread so
// that the range's bytes arrive where they are decrypted and written, never crossing the main
// thread. One attempt, no retries: whatever goes wrong is reported as a message and the main
// thread fetches the range again through the backend (retries, backoff, S3 error codes).
import type { Agent, IncomingMessage } from 'node:http';
import { keepAliveAgents } from './endpoint.ts';
import type { SignedGet } from './types.ts';

// node:http and node:https through getBuiltinModule (see endpoint.ts): an ESM import loads undici
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

/** no byte for this long: the request is given up (the SDK's requestTimeout) */
const IDLE_TIMEOUT = 120_000;

/** this thread's keep-alive connections, by CA file (one in practice) */
const agents = new Map<string, ReturnType<typeof keepAliveAgents>>();
function agentFor(url: URL, caFile: string | undefined): Agent {
  let a = agents.get(caFile ?? '');
  if (!a) agents.set(caFile ?? '', (a = keepAliveAgents(caFile, 8)));
  return url.protocol === 'https:' ? a.https : a.http;
}

/**
 * Bytes [start, end] of the object, as `request` asks for them: a buffer of exactly that length
 * (`into`'s, or one that owns its memory), or an Error saying what went wrong (any status but 206
 * with the range asked for, a body shorter or longer than announced, the connection, a timeout).
 */
export function sendSignedGet(request: SignedGet, start: number, end: number, into?: (length: number) => Buffer): Promise<Buffer> {
  const length = end - start + 1;
  const url = new URL(request.url);
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => { req.destroy(); reject(e); };
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'GET', headers: request.headers, agent: agentFor(url, request.caFile), timeout: IDLE_TIMEOUT }, (res: IncomingMessage) => {
      const range = /^bytes (\d+)-(\d+)\//.exec(String(res.headers['content-range'] ?? ''));
      if (res.statusCode !== 206 || !range || Number(range[1]) !== start || Number(range[2]) !== end) {
        res.resume();
        fail(new Error(`HTTP ${res.statusCode}${range ? ` for bytes ${range[1]}-${range[2]}` : ''} (bytes ${start}-${end} asked for)`));
        return;
      }
      const out = into ? into(length) : Buffer.allocUnsafeSlow(length);
      let at = 0;
      res.on('data', (piece: Buffer) => {
        if (at + piece.length > length) { fail(new Error(`long body: more than the ${length} bytes asked for`)); return; }
        piece.copy(out, at);
        at += piece.length;
      });
      res.on('end', () => (at === length ? resolve(out) : reject(new Error(`short body: ${at} of ${length} bytes`))));
      const cut = (why: string) => reject(new Error(`the body broke off after ${at} of ${length} bytes (${why})`));
      res.on('error', (e) => cut(e.message));
      res.on('close', () => { if (!res.complete) cut('connection closed'); });
    });
    req.on('timeout', () => fail(new Error(`no byte for ${IDLE_TIMEOUT / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}
