// Sequential GETs through a proxy with a keep-alive Node agent.
// usage: node agent.js http|socks|plain PROXY_URL TARGET_URL COUNT CA_PEM_FILE
//   http:  https-proxy-agent (CONNECT tunnels) to an https:// target
//   socks: socks-proxy-agent to an https:// target
//   plain: http-proxy-agent (absolute-form requests) to an http:// target
// Prints {"ok":N,"sockets":S} where S is how many distinct sockets carried the requests.
'use strict';
const https = require('https');
const http = require('http');
const fs = require('fs');
const { HttpProxyAgent } = require('http-proxy-agent');
const { HttpsProxyAgent } = require('https-proxy-agent');
const { SocksProxyAgent } = require('socks-proxy-agent');

const [kind, proxy, target, countArg, caFile] = process.argv.slice(2);
const count = Number(countArg);
const ca = fs.readFileSync(caFile);
const opts = { keepAlive: true, maxSockets: 1, ca };
const agents = { socks: SocksProxyAgent, http: HttpsProxyAgent, plain: HttpProxyAgent };
const agent = new agents[kind](proxy, opts);
const client = kind === 'plain' ? http : https;

function get() {
  return new Promise((resolve, reject) => {
    const req = client.get(target, { agent, ca }, (res) => {
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
