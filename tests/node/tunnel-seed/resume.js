// The seed client's resume (`use`) against `tunnelkit ws-server --compat ws-stream-tunnel` (echo target).
// usage: node resume.js URL KEEP_BROKEN_MS
//   Opens one stream and echoes "A"s; then drops the WebSocket's TCP connection while idle, writes "B"s
//   while the tunnel is broken, and "C"s once it has resumed. Per the seed's semantics (nothing was
//   in flight when the connection dropped), all of it must come back.
//   Prints {"echo":"A..B..C..","resumed":true,"keepBrokenTunnel":N,"tunnelIdChanged":false}.
'use strict';
const { client: TunnelClient } = require('ws-stream-tunnel');

const [url, keepArg] = process.argv.slice(2);
const client = new TunnelClient({ addr: url, mode: 'subStream', keepBrokenTunnel: Number(keepArg) });
let echo = '';
const done = require('./report')(60000, () => ({ error: 'timed out', echo }));
const A = 'A'.repeat(1000), B = 'B'.repeat(1000), C = 'C'.repeat(1000);

client.once('tunnel_open', (tunnel) => {
  const firstId = client.tunnelID;
  let resumed = false;
  const stream = tunnel.createStream();
  stream.on('error', (e) => done(1, { error: `stream error: ${e && e.message}`, echo }));
  tunnel.once('close', (reason) => done(1, { error: `tunnel closed: ${reason}`, echo }));
  stream.on('data', (chunk) => {
    echo += chunk.toString();
    if (echo === A) {
      // Idle now: cut the TCP connection under the WebSocket (no close frame: the tunnel breaks).
      client.connectionMng.once('_wsclose', () => {
        stream.write(B); // queued while broken, sent after the resume
        tunnel.once('_resume', () => {
          resumed = true;
          stream.write(C);
        });
      });
      client.connectionMng.ws._socket.destroy();
    } else if (echo.length === 3000) {
      stream.end();
      done(echo === A + B + C ? 0 : 1, {
        echo: echo.length === 3000 ? 'A..B..C..' : echo,
        ok: echo === A + B + C,
        resumed,
        keepBrokenTunnel: tunnel.keepBrokenTunnel,
        tunnelIdChanged: client.tunnelID !== firstId,
      });
    }
  });
  stream.write(A);
});
client.connect();
