// Handshake cost per role on one core: `node dist/bench/wireguard-handshake.js [N]`.
import { Device, type Action } from '../src/wireguard/index.js';
import { generatePrivateKey } from '../src/crypto/index.js';

const N = Number(process.argv[2] ?? 2000);
const responder = new Device({ privateKey: generatePrivateKey().raw });
const ep = { address: '192.0.2.2', port: 51871 };
const initiators = Array.from({ length: N }, () => new Device({ privateKey: generatePrivateKey().raw }));
for (const d of initiators) responder.addPeer({ publicKey: d.publicKey, endpoint: { address: '192.0.2.1', port: 51871 } });
const peers = initiators.map((d) => d.addPeer({ publicKey: responder.publicKey, endpoint: ep }));
const datagram = (acts: Action[]) => {
  const a = acts.find((x) => x.kind === 'network');
  if (!a || a.kind !== 'network') throw new Error('no datagram');
  return a.datagram;
};
let t = performance.now();
const inits = initiators.map((d, i) => datagram(d.initiateHandshake(peers[i]!, 1000)));
const tInit = performance.now() - t;
t = performance.now();
const resps = inits.map((d, i) => datagram(responder.decapsulate(d, { address: '192.0.2.1', port: i }, 1000)));
const tResp = performance.now() - t;
t = performance.now();
initiators.forEach((d, i) => d.decapsulate(resps[i]!, ep, 1000));
const tDone = performance.now() - t;
const us = (ms: number) => ((ms * 1000) / N).toFixed(0);
console.log(JSON.stringify({
  handshakes: N,
  createInitiationUs: Number(us(tInit)),
  responderUs: Number(us(tResp)),
  responderPerSecond: Math.round((N / tResp) * 1000),
  consumeResponseUs: Number(us(tDone)),
  completed: initiators.filter((d) => d.stats.handshakesCompleted === 1).length,
}));
