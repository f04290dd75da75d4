// A real Socket.IO client for tests/sticky.rs.
// usage: node client.js URL TRANSPORTS COUNT [v2]
//   TRANSPORTS: "polling", "polling,websocket" (upgrade) or "websocket".
// Emits COUNT 'echo' events ('ping' is reserved in the 2.x client) with acks; prints {"acks":N,"backends":[...],"transport":"..."}.
'use strict';
const [url, transports, countArg, version] = process.argv.slice(2);
const count = Number(countArg);
const opts = { transports: transports.split(','), reconnection: false, timeout: 10000, forceNew: true };
const io = version === 'v2' ? require('sio-client-v2') : require('socket.io-client').io;
const socket = io(url, opts);
const fail = (msg) => { console.error(msg); process.exit(1); };
const timer = setTimeout(() => fail('timed out'), 30000);

socket.on('connect_error', (e) => fail(`connect_error: ${e && e.message}`));
socket.on('connect', async () => {
  const backends = new Set();
  let acks = 0;
  const engine = version === 'v2' ? socket.io.engine : socket.io.engine;
  for (let i = 0; i < count; i++) {
    if (i === Math.floor(count / 2) && opts.transports.length > 1) {
      // Give the upgrade a chance to complete mid-run, so acks cross both transports.
      await new Promise((r) => setTimeout(r, 300));
    }
    const reply = await new Promise((resolve) => socket.emit('echo', i, resolve));
    if (reply && reply.n === i) acks++;
    backends.add(reply && reply.backend);
  }
  clearTimeout(timer);
  console.log(JSON.stringify({ acks, backends: [...backends], transport: engine.transport.name }));
  socket.close();
  process.exit(0);
});
