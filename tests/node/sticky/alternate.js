// One real Socket.IO session whose every HTTP request and WebSocket goes to the next balancer in
// turn, for tests/sticky_tag.rs (stateless tag routing: no balancer shares anything with another).
// usage: node alternate.js TRANSPORTS [v2]     (TRANSPORTS as in client.js)
// The balancers are swapped per request by rewriting the host:port of every URL the engine.io client
// builds (Transport#createUri in engine.io-client 6, Polling/WS#uri in 3.x), so the client itself is
// unmodified. Commands (one per line), each answered by one JSON line on stdout:
//   hosts H:P,H:P   balancers to alternate between from now on     -> {"hosts":N}
//   open            opens the session (and waits for the upgrade)    -> {"id":"...","transport":"...","hits":{...}}
//   echo N          N acknowledged 'echo' events, one after another  -> {"acks":N,"backends":[...],
//                   "hits":{"H:P":requests,...},"transport":"...","id":"...","disconnects":D}
//   exit
'use strict';
const path = require('path');
const readline = require('readline');
const [transports, version] = process.argv.slice(2);
const fail = (msg) => { console.error(msg); process.exit(1); };

let hosts = [];
let turn = 0;
let hits = {};
const rehost = (uri) => {
  const u = new URL(uri);
  u.host = hosts[turn++ % hosts.length];
  hits[u.host] = (hits[u.host] || 0) + 1;
  return u.toString();
};

let io;
if (version === 'v2') {
  for (const m of ['polling', 'websocket']) {
    const T = require(`engine.io-client/lib/transports/${m}`);
    const uri = T.prototype.uri;
    T.prototype.uri = function () { return rehost(uri.call(this)); };
  }
  io = require('sio-client-v2');
} else {
  const own = require.resolve('engine.io-client', { paths: [path.dirname(require.resolve('socket.io-client'))] });
  const { Transport } = require(own);
  const createUri = Transport.prototype.createUri;
  Transport.prototype.createUri = function (schema, query) { return rehost(createUri.call(this, schema, query)); };
  io = require('socket.io-client').io;
}

let socket;
let disconnects = 0;
const upgrade = transports.split(',').length > 1;
const engine = () => socket.io.engine;

function open() {
  return new Promise((resolve) => {
    socket = io(`http://${hosts[0]}`, { transports: transports.split(','), reconnection: false, timeout: 10000, forceNew: true });
    const timer = setTimeout(() => fail('session did not open'), 15000);
    socket.on('connect_error', (e) => fail(`connect_error: ${e && e.message}`));
    socket.on('disconnect', () => { disconnects++; });
    socket.on('connect', () => {
      const done = () => { clearTimeout(timer); resolve({ id: engine().id, transport: engine().transport.name, hits }); };
      if (upgrade && engine().transport.name !== 'websocket') engine().once('upgrade', done);
      else done();
    });
  });
}

async function echo(count) {
  hits = {};
  const backends = new Set();
  let acks = 0;
  for (let i = 0; i < count; i++) {
    const reply = await new Promise((resolve) => {
      const timer = setTimeout(() => fail(`echo ${i} not acknowledged (disconnects: ${disconnects})`), 10000);
      socket.emit('echo', i, (r) => { clearTimeout(timer); resolve(r); });
    });
    if (reply && reply.n === i) acks++;
    backends.add(reply && reply.backend);
  }
  return { acks, backends: [...backends], hits, transport: engine().transport.name, id: engine().id, disconnects };
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'hosts') {
    hosts = arg.split(',');
    console.log(JSON.stringify({ hosts: hosts.length }));
  } else if (cmd === 'open') {
    console.log(JSON.stringify(await open()));
  } else if (cmd === 'echo') {
    console.log(JSON.stringify(await echo(Number(arg))));
  } else if (cmd === 'exit') {
    if (socket) socket.close();
    setTimeout(() => process.exit(0), 100);
  }
});
rl.on('close', () => process.exit(0));
