// A real Socket.IO 4 backend for tests/sticky.rs (allowEIO3 so 2.x clients work too).
// usage: node backend.js NAME [PORT]   prints "listening on 127.0.0.1:PORT"
// Every 'echo' event is acknowledged with {backend: NAME, n}.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const name = process.argv[2] || 'backend';
const port = Number(process.argv[3] || 0);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`page from ${name}`);
});
const io = new Server(server, { allowEIO3: true, cors: { origin: '*' } });
// Name the backend on every Engine.IO answer, so tests can see who served a raw request.
io.engine.on('headers', (headers) => { headers['X-Backend'] = name; });
io.on('connection', (socket) => {
  socket.on('echo', (n, ack) => { if (typeof ack === 'function') ack({ backend: name, n }); });
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
