// `shelter forget`: asks the gateway to delete a snapshot. The agent itself never deletes
// (immutable storage): it files a deletion request with the server's own SigV4 credentials
// (shelterd's extension `POST /BUCKET?deletion-request`), which executes after the gateway's
// deletion delay (14 days or more) unless someone cancels it; until then the snapshot stays listed
// and restorable. Only shelterd offers this; another S3 store answers with an error, said clearly.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AgentConfig } from './config.ts';
import { BackendError } from './backend/types.ts';
import { caBundle, checkEndpoint, tlsFailure } from './backend/endpoint.ts';
import { s3Signer } from './backend/sign.ts';

export interface DeletionRequestInfo {
  id: string; status: string; kind: string; target: string | null; reason: string;
  requestedBy: string; createdAt: string; dueAt: string; statusReason: string | null;
}

async function signedCall(cfg: AgentConfig, method: 'GET' | 'POST', query: string, body?: string): Promise<{ status: number; text: string }> {
  const url = checkEndpoint(cfg.endpoint, cfg.insecureHttp);
  const signer = s3Signer(cfg);
  const headers: Record<string, string> = { host: url.host };
  if (body !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = String(Buffer.byteLength(body)); }
  const signed = signer.sign({ method, path: `${url.pathname.replace(/\/$/, '')}/${encodeURIComponent(cfg.bucket)}`, query: { [query]: '' }, headers, body });
  const ca = caBundle(cfg.caCert);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send({ method, host: url.hostname, port: url.port || undefined, path: `${signed.path}?${signed.search}`, headers: signed.headers, ...(ca ? { ca } : {}), timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      reject(tlsFailure(e, url.origin, cfg.caCert) ?? new BackendError('Network', `${url.origin}: ${e.message}`, { cause: e }));
    });
    req.end(body);
  });
}

function failure(status: number, text: string, what: string): BackendError {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? `HTTP ${status}`;
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? text.slice(0, 200);
  if (status === 403) return new BackendError('AccessDenied', `${what}: access denied (${code}: ${message})`);
  if (status === 404 || status === 405 || status === 501 || code === 'NotImplemented' || code === 'MethodNotAllowed') {
    return new BackendError('Server', `${what}: ${code}: ${message} (deletion requests need a Shelter gateway; other S3 stores delete with their own tools)`);
  }
  return new BackendError('Server', `${what}: ${code}: ${message}`);
}

export async function fileDeletionRequest(cfg: AgentConfig, snapshot: string, reason?: string): Promise<{ request: DeletionRequestInfo; created: boolean }> {
  const { status, text } = await signedCall(cfg, 'POST', 'deletion-request', JSON.stringify({ snapshot, ...(reason ? { reason } : {}) }));
  if (status !== 200 && status !== 201) throw failure(status, text, `filing a deletion request for snapshot ${snapshot}`);
  return { request: JSON.parse(text) as DeletionRequestInfo, created: status === 201 };
}

export async function listDeletionRequests(cfg: AgentConfig): Promise<DeletionRequestInfo[]> {
  const { status, text } = await signedCall(cfg, 'GET', 'deletion-requests');
  if (status !== 200) throw failure(status, text, 'listing deletion requests');
  return JSON.parse(text) as DeletionRequestInfo[];
}
