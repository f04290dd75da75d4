// Sequential HTTPS GETs through a proxy with a keep-alive Node agent.
// usage: node agent.js http|socks PROXY_URL TARGET_URL COUNT CA_PEM_FILE
// Prints {"ok":N,"sockets":S} where S is how many distinct sockets carried the requests.
'use strict';
const https = require('https');
const fs = require('fs');
const { HttpsProxyAgent } = require('https-proxy-agent');
const { SocksProxyAgent } = require('socks-proxy-agent');

const [kind, proxy, target, countArg, caFile] = process.argv.slice(2);
const count = Number(countArg);
const ca = fs.readFileSync(caFile);
const opts = { keepAlive: true, maxSockets: 1, ca };
const agent = kind === 'socks' ? new SocksProxyAgent(proxy, opts) : new HttpsProxyAgent(proxy, opts);

function get() {
  return new Promise((resolve, reject) => {
    const req = https.get(target, { agent, ca }, (res) => {
      let n = 0;
      res.on('data', (d) => { n += d.length; });
      res.on('end', () => resolve({ status: res.statusCode, bytes: n, socket: req.socket }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  });
}

(async () => {
  const sockets = new Set();
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const r = await get();
    if (r.status === 200 && r.bytes === 1024) ok++;
    sockets.add(r.socket);
  }
  console.log(JSON.stringify({ ok, sockets: sockets.size }));
  agent.destroy();
})().catch((e) => { console.error(String(e)); process.exit(1); });
