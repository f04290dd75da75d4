// Load generator for bench/sticky/run.sh (not a test).
// usage: node load.js BASE_URL MODE CONCURRENCY SECONDS
//   MODE handshake: sid-less polling handshakes per second
//   MODE poll:      POSTs of a Socket.IO event on established polling sessions per second
//   MODE ws:        Socket.IO acks per second over WebSocket-only sessions
// Prints {"rate":N,"errors":E}. Run from tests/node/sticky (it uses that folder's node_modules).
'use strict';
const http = require('http');
const path = require('path');
const { io } = require(path.join(process.cwd(), 'node_modules', 'socket.io-client'));

const [base, mode, concArg, secsArg] = process.argv.slice(2);
const conc = Number(concArg);
const deadline = Date.now() + Number(secsArg) * 1000;
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
const u = new URL(base);

function request(method, p, body) {
  return new Promise((resolve) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path: p, agent,
      headers: body ? { 'Content-Type': 'text/plain;charset=UTF-8', 'Content-Length': Buffer.byteLength(body) } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    if (body) req.write(body);
    req.end();
  });
}

async function handshake() {
  const r = await request('GET', '/socket.io/?EIO=4&transport=polling');
  if (r.status !== 200 || !r.body.startsWith('0{')) return null;
  return JSON.parse(r.body.split('\x1e')[0].slice(1)).sid;
}

async function main() {
  let ok = 0;
  let errors = 0;
  const start = Date.now();
  if (mode === 'handshake') {
    await Promise.all(Array.from({ length: conc }, async () => {
      while (Date.now() < deadline) { (await handshake()) ? ok++ : errors++; }
    }));
  } else if (mode === 'poll') {
    await Promise.all(Array.from({ length: conc }, async () => {
      let sid = null;
      while (Date.now() < deadline) {
        if (!sid) {
          sid = await handshake();
          if (!sid) { errors++; continue; }
          await request('POST', `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, '40');
        }
        const r = await request('POST', `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, '42["echo",1]');
        if (r.status === 200) ok++; else { errors++; sid = null; }
      }
    }));
  } else if (mode === 'ws') {
    await Promise.all(Array.from({ length: conc }, () => new Promise((resolve) => {
      const socket = io(base, { transports: ['websocket'], reconnection: false, forceNew: true });
      socket.on('connect_error', () => { errors++; resolve(); });
      socket.on('connect', async () => {
        let i = 0;
        while (Date.now() < deadline) {
          const reply = await new Promise((r) => socket.timeout(5000).emit('echo', i++, (err, v) => r(err ? null : v)));
          reply ? ok++ : errors++;
        }
        socket.close();
        resolve();
      });
    })));
  }
  const secs = (Date.now() - start) / 1000;
  console.log(JSON.stringify({ rate: Math.round(ok / secs), errors }));
  process.exit(0);
}
main();
