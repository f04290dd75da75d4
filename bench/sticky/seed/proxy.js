// The seed balancer, socket.io-proxy2, rebuilt for bench/sticky/run.sh from what its README says it does
// (the package is no longer on npm): node's http-proxy in front of the backends; a request without a sid goes
// to a random backend and the sid found in its answer is bound to that backend in Redis
// (`socket.io#<sid>`, 60 s expiry); a request or WebSocket upgrade with a sid is sent where Redis says, and
// the binding's expiry is pushed back. Not a test and not shipped: a peer to measure against.
//
// Usage: node proxy.js PORT REDIS_PORT BACKEND_PORT...
'use strict';
const http = require('http');
const httpProxy = require('http-proxy');
const { createClient } = require('redis');

const [port, redisPort, ...backends] = process.argv.slice(2);
const PREFIX = 'socket.io#';
const EXPIRY = 60;
const SID = /"sid":"([\w-]+)"/;

const redis = createClient({ url: `redis://127.0.0.1:${redisPort}` });
const proxy = httpProxy.createProxyServer({ changeOrigin: true, ws: true });

// Where a request goes: a random backend without a sid (remembered on the request, so that its answer's sid
// is bound to it), else the one bound to its sid.
async function target(req) {
  const sid = new URL(req.url, 'http://x').searchParams.get('sid');
  if (sid === null) {
    req.bindTo = backends[Math.floor(Math.random() * backends.length)];
    return req.bindTo;
  }
  req.sid = sid;
  const host = await redis.get(PREFIX + sid);
  if (!host) throw new Error('unknown binding');
  redis.expire(PREFIX + sid, EXPIRY).catch(() => {});
  return host;
}

proxy.on('proxyRes', (res, req) => {
  if (!req.bindTo) return;
  let body = '';
  res.on('data', (c) => { body += c; });
  res.on('end', () => {
    const m = SID.exec(body);
    if (m) redis.set(PREFIX + m[1], req.bindTo, { EX: EXPIRY }).catch(() => {});
  });
});
proxy.on('error', (err, req, res) => {
  if (req.sid) redis.del(PREFIX + req.sid).catch(() => {});
  if (res && res.writeHead && !res.headersSent) { res.writeHead(502); res.end(); } else if (res && res.destroy) res.destroy();
});

const refuse = (socket) => socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
const server = http.createServer((req, res) => {
  if (!req.url.startsWith('/socket.io/')) { res.writeHead(400); res.end(); return; }
  target(req).then((host) => proxy.web(req, res, { target: `http://127.0.0.1:${host}` }),
    () => { res.writeHead(400); res.end(); });
});
server.on('upgrade', (req, socket, head) => {
  if (!req.url.startsWith('/socket.io/')) { refuse(socket); return; }
  target(req).then((host) => proxy.ws(req, socket, head, { target: `ws://127.0.0.1:${host}` }), () => refuse(socket));
});

redis.connect().then(() => server.listen(Number(port), '127.0.0.1'));
