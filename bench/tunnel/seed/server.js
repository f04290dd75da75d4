// The seed's tunnel server as the far end of a port forward, for bench/tunnel/run.sh.
// Usage: node server.js WS_PORT TARGET_HOST:TARGET_PORT
// Every stream a client opens (subStream mode) is connected to the target and piped both ways.
'use strict';
const net = require('net');
const { server: TunnelServer } = require('ws-stream-tunnel');

const [wsPort, target] = process.argv.slice(2);
const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];

const tServer = new TunnelServer({ host: '127.0.0.1', port: Number(wsPort), perMessageDeflate: false });
tServer.on('listening', () => console.log(`listening on 127.0.0.1:${wsPort}`));
tServer.on('tunnel_open', (tunnel) => {
  tunnel.on('stream_open', (stream) => {
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    join(stream, sock);
  });
  // A stream error is one stream's end (a peer went away), not the server's.
  tunnel.on('stream_error', () => {});
});

/**
 * Pipes a tunnel stream and a socket both ways. A clean end on one side ends the other after the data
 * in flight (the seed has no half-close, so either end closes the stream); a failure on one side is
 * passed on as a failure, so the peer gets the seed's error frame instead of waiting for data.
 */
function join(stream, sock) {
  sock.on('error', (e) => stream.destroy(e)).on('close', () => stream.end());
  stream.on('error', () => sock.destroy()).on('close', () => sock.end());
  sock.pipe(stream);
  stream.pipe(sock);
}
