// The seed's tunnel client as a local port forward (like `-L`), for bench/tunnel/run.sh.
// Usage: node client.js WS_URL LISTEN_PORT
// One subStream tunnel; every accepted socket becomes tunnel.createStream(), piped both ways.
'use strict';
const net = require('net');
const { client: TunnelClient } = require('ws-stream-tunnel');

const [url, listenPort] = process.argv.slice(2);
const tClient = new TunnelClient({ addr: url, mode: 'subStream', ws: { perMessageDeflate: false } });
let listener = null;
tClient.on('tunnel_open', (tunnel) => {
  tunnel.on('stream_error', () => {});
  if (listener) return;
  // Listen only once the tunnel exists, so an open port means a working path.
  listener = net.createServer((sock) => {
    sock.setNoDelay(true);
    const t = tClient.tunnel;
    if (!t) { sock.destroy(); return; }
    join(t.createStream(), sock);
  });
  listener.listen(Number(listenPort), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${listenPort}`));
});
tClient.on('close', () => { console.error('seed client: closed'); process.exit(1); });
// The client does not connect in its constructor.
tClient.connect();

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
