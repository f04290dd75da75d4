// Holds Socket.IO sessions open for tests/sticky.rs, driven by commands on stdin.
// usage: node hold.js URL TRANSPORTS [v2]
//   TRANSPORTS: "polling", "polling,websocket" (waits until each session has upgraded) or "websocket".
// Commands (one per line), each answered by one JSON line on stdout:
//   open N         opens N sessions one after another   -> {"opened":["A","B",...]} (the backend of each)
//   close BACKEND  closes the sessions served by BACKEND -> {"closed":K}
//   exit           closes every session and exits
'use strict';
const readline = require('readline');
const [url, transports, version] = process.argv.slice(2);
const io = version === 'v2' ? require('sio-client-v2') : require('socket.io-client').io;
const upgrade = transports.split(',').length > 1;
const sessions = [];
const fail = (msg) => { console.error(msg); process.exit(1); };

function openOne() {
  return new Promise((resolve) => {
    const socket = io(url, { transports: transports.split(','), reconnection: false, timeout: 10000, forceNew: true });
    const timer = setTimeout(() => fail('session did not open'), 15000);
    socket.on('connect_error', (e) => fail(`connect_error: ${e && e.message}`));
    socket.on('connect', () => {
      const engine = socket.io.engine;
      const ready = () => socket.emit('echo', 0, (reply) => {
        clearTimeout(timer);
        sessions.push({ socket, backend: reply.backend });
        resolve(reply.backend);
      });
      if (upgrade && engine.transport.name !== 'websocket') engine.once('upgrade', ready);
      else ready();
    });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'open') {
    const opened = [];
    for (let i = 0; i < Number(arg); i++) opened.push(await openOne());
    console.log(JSON.stringify({ opened }));
  } else if (cmd === 'close') {
    const doomed = sessions.filter((s) => s.backend === arg);
    for (const s of doomed) { s.socket.close(); sessions.splice(sessions.indexOf(s), 1); }
    console.log(JSON.stringify({ closed: doomed.length }));
  } else if (cmd === 'exit') {
    for (const s of sessions) s.socket.close();
    setTimeout(() => process.exit(0), 200);
  }
});
rl.on('close', () => process.exit(0));
