// The seed's own client (ws-stream-tunnel 0.4.29) against `tunnelkit ws-server --compat ws-stream-tunnel`
// whose --compat-target is a TCP echo server. Used by tests/tunnel_compat.rs.
// usage: node echo.js URL MODE STREAMS BYTES [TOKEN]
//   Opens STREAMS streams at once (MODE "stream": one), writes BYTES random bytes on each in 32 KiB
//   writes, waits for the whole echo, compares SHA-256, then ends the stream.
//   Prints {"ok":N,"failed":[...],"keepBrokenTunnel":...} and exits 0 iff every stream echoed;
//   prints {"connectError":"..."} and exits 2 if the WebSocket could not be opened.
'use strict';
const crypto = require('crypto');
const { client: TunnelClient } = require('ws-stream-tunnel');

const [url, mode, streamsArg, bytesArg, token] = process.argv.slice(2);
const streams = Number(streamsArg);
const bytes = Number(bytesArg);
const ws = token ? { headers: { Authorization: `Bearer ${token}` } } : {};
const client = new TunnelClient({ addr: url, mode, ws });
const done = require('./report')(60000, () => ({ error: 'timed out' }));

client.connectionMng.on('_wserror', (_ws, e) => done(2, { connectError: String(e && e.message) }));

function echoOne(tunnel, index) {
  return new Promise((resolve) => {
    const payload = crypto.randomBytes(bytes);
    const want = crypto.createHash('sha256').update(payload).digest('hex');
    const got = crypto.createHash('sha256');
    let received = 0;
    let finished = false;
    const finish = (err) => {
      if (finished) return;
      finished = true;
      resolve(err ? `stream ${index}: ${err}` : null);
    };
    const stream = tunnel.createStream();
    stream.on('data', (chunk) => {
      got.update(chunk);
      received += chunk.length;
      if (received > bytes) finish(`received ${received} > ${bytes}`);
      else if (received === bytes) {
        const hex = got.digest('hex');
        stream.end();
        finish(hex === want ? null : 'echo differs');
      }
    });
    stream.on('error', (e) => finish(`error: ${e && e.message}`));
    for (let off = 0; off < bytes; off += 32768) stream.write(payload.slice(off, off + 32768));
  });
}

client.on('tunnel_open', async (tunnel) => {
  const results = await Promise.all(Array.from({ length: streams }, (_, i) => echoOne(tunnel, i)));
  const failed = results.filter((r) => r);
  done(failed.length ? 1 : 0, { ok: streams - failed.length, failed, keepBrokenTunnel: tunnel.keepBrokenTunnel });
});
client.connect();
