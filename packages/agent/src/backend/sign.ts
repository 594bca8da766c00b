// SigV4 (AWS4-HMAC-SHA256) signing of the requests the agent sends without the S3 client: its
// GETs, PUTs and listings (s3.ts sign, sent by signedhttp.ts) and shelterd's deletion requests
// (forget.ts). Written here rather than loaded from @smithy/signature-v4, the SDK's own signer,
// because that module alone took ~40 ms of every command's start; the test
// packages/agent/test/sign.test.ts checks that both sign every kind of request the agent sends alike.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
import { createHash, createHmac } from 'node:crypto';

const ALGORITHM = 'AWS4-HMAC-SHA256';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** headers a proxy or the HTTP layer may change or add: never signed (as the SDK's signer does) */
const UNSIGNED = new Set(['authorization', 'connection', 'expect', 'keep-alive', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'x-amzn-trace-id']);

/** a query name or value as SigV4 and S3 encode it (RFC 3986: every byte but A-Z a-z 0-9 - _ . ~ as %XX; encodeURIComponent leaves !'()* alone) */
const rfc3986 = (v: string) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export interface RequestToSign {
  method: string;
  /** the path as sent: each segment escaped once by the caller (S3 signs it as is, no double encoding) */
  path: string;
  /** names and values unencoded (they are encoded here, for the signature and for the URL) */
  query?: Record<string, string>;
  /** must hold `host`; `x-amz-content-sha256` the payload's hash, else `body`'s is computed (none: the empty payload's) */
  headers: Record<string, string>;
  body?: string | Buffer;
}

export interface SignedS3Request {
  method: string;
  path: string;
  /** the query string for the URL, encoded and sorted as signed ('' if none) */
  search: string;
  /** the request's headers (lower-case names) with x-amz-date, x-amz-content-sha256 and authorization */
  headers: Record<string, string>;
}

export interface S3Signer {
  sign(req: RequestToSign, opts?: { signingDate?: Date }): SignedS3Request;
}

const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/** A signer for S3 requests with these credentials (service s3, region us-east-1 unless given). */
export function s3Signer(c: { accessKeyId: string; secretAccessKey: string; region?: string }): S3Signer {
  const region = c.region || 'us-east-1';
  // the signing key depends on the day only: derived once a day (four HMACs)
  let keyDay = '';
  let dayKey: Buffer = Buffer.alloc(0);
  const signingKey = (day: string) => {
    if (day !== keyDay) { dayKey = hmac(hmac(hmac(hmac(`AWS4${c.secretAccessKey}`, day), region), 's3'), 'aws4_request'); keyDay = day; }
    return dayKey;
  };
  return {
    sign(req, opts = {}) {
      // 20261128T215000Z
      const amzDate = (opts.signingDate ?? new Date()).toISOString().replace(/[-:]|\.\d{3}/g, '');
      const day = amzDate.slice(0, 8);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
      if (headers.host === undefined) throw new Error('a request to sign needs its host header');
      headers['x-amz-date'] = amzDate;
      headers['x-amz-content-sha256'] ??= req.body === undefined ? EMPTY_SHA256 : createHash('sha256').update(req.body).digest('hex');
      const names = Object.keys(headers).filter((n) => !UNSIGNED.has(n)).sort();
      const signedHeaders = names.join(';');
      let canonicalHeaders = '';
      for (const n of names) canonicalHeaders += `${n}:${headers[n]!.trim().replace(/\s+/g, ' ')}\n`;
      const search = Object.entries(req.query ?? {}).map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
        .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
      const canonicalRequest = `${req.method}\n${req.path}\n${search}\n${canonicalHeaders}\n${signedHeaders}\n${headers['x-amz-content-sha256']}`;
      const scope = `${day}/${region}/s3/aws4_request`;
      const toSign = `${ALGORITHM}\n${amzDate}\n${scope}\n${createHash('sha256').update(canonicalRequest, 'utf8').digest('hex')}`;
      const signature = createHmac('sha256', signingKey(day)).update(toSign, 'utf8').digest('hex');
      headers.authorization = `${ALGORITHM} Credential=${c.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
      return { method: req.method, path: req.path, search, headers };
    },
  };
}
