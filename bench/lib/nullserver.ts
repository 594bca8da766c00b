// A do-nothing HTTP "S3" server (no auth, no storage, no fsync), run as its own process by the
// optional `null-http` target: its figures are the ceiling of any Node HTTP server driven by this
// client on this machine (client + server network costs only).
// PUT: reads the body, answers 200 with an ETag. GET: answers a body of 16 MiB for keys containing
// "/big-" (the bench's 16 MiB seeds), else 4 KiB. Prints {"msg":"listening","url":...} like shelterd.
import http from 'node:http';

const big = Buffer.alloc(16 << 20, 7);
const small = Buffer.alloc(4096, 7);
const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method === 'PUT') {
    req.on('data', () => {});
    req.on('end', () => { res.writeHead(200, { etag: '"0"', 'content-length': '0' }); res.end(); });
    return;
  }
  const body = req.url?.includes('/big-') || req.url?.endsWith('/big') ? big : small;
  res.writeHead(200, { 'content-length': String(body.length), 'content-type': 'application/octet-stream' });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${a.port}` }));
});
process.on('SIGTERM', () => process.exit(0));
