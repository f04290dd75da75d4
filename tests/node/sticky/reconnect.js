// A long-lived Socket.IO client that reconnects, for tests/sticky.rs.
// usage: node reconnect.js URL TRANSPORTS
// Prints one JSON line per event: {"event":"connect","backend":"A"} once a (re)connected session has
// answered an ack, {"event":"disconnect","reason":"transport close"} when the session is lost.
'use strict';
const { io } = require('socket.io-client');
const [url, transports] = process.argv.slice(2);
const socket = io(url, {
  transports: transports.split(','), forceNew: true, timeout: 5000,
  reconnectionDelay: 100, reconnectionDelayMax: 500,
});
const say = (o) => console.log(JSON.stringify(o));
socket.on('connect', () => {
  const report = () => socket.emit('echo', 0, (reply) => say({ event: 'connect', backend: reply.backend }));
  const engine = socket.io.engine;
  if (transports.includes(',') && engine.transport.name !== 'websocket') engine.once('upgrade', report);
  else report();
});
socket.on('disconnect', (reason) => say({ event: 'disconnect', reason }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
