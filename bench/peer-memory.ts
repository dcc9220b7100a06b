// Agent memory per additional WireGuard peer: `node dist/bench/peer-memory.js [peers]`.
// Adds peers to a Device and their prefixes (a /24 pod CIDR and a /32 node IP, as the agent does)
// to an AllowedIps trie; prints the heap and RSS growth per peer after a full GC, in total and
// split into the two parts. Target: < 2 KB in total.
import { liveHeapBytes } from './live-heap.js';
import { Device, type Peer } from '../src/wireguard/index.js';
import { AllowedIps } from '../src/net/allowed-ips.js';
import { generatePrivateKey } from '../src/crypto/index.js';

const N = Number(process.argv[2] ?? 1000);
const WARM = 10;
const keys = Array.from({ length: N + WARM }, () => generatePrivateKey().publicKey);
const device = new Device({ privateKey: generatePrivateKey().raw });
const allowed = new AllowedIps<Peer>();

const peersAdded: Peer[] = [];
function addPeer(i: number): void {
  peersAdded[i] = device.addPeer({ publicKey: keys[i]!, endpoint: { address: `172.18.${i >> 8}.${i & 255}`, port: 51871 }, persistentKeepalive: 0 });
}
function addPrefixes(i: number): void {
  allowed.insert(`10.${(i >> 8) & 255}.${i & 255}.0/24`, peersAdded[i]!);
  allowed.insert(`172.18.${i >> 8}.${i & 255}/32`, peersAdded[i]!);
}

function sample(): { heap: number; rss: number } {
  const heap = liveHeapBytes();
  return { heap, rss: process.memoryUsage().rss };
}

for (let i = 0; i < WARM; i++) { addPeer(i); addPrefixes(i); } // first-use costs (code, hidden classes) are not per peer
const before = sample();
for (let i = WARM; i < WARM + N; i++) addPeer(i);
const mid = sample();
for (let i = WARM; i < WARM + N; i++) addPrefixes(i);
const after = sample();
console.log(JSON.stringify({
  peers: N,
  heapBytesPerPeer: Math.round((after.heap - before.heap) / N),
  rssBytesPerPeer: Math.round((after.rss - before.rss) / N),
  // the two parts: Device.addPeer (src/wireguard) and the two AllowedIps prefixes (src/net)
  devicePeerHeapBytes: Math.round((mid.heap - before.heap) / N),
  allowedIpsHeapBytes: Math.round((after.heap - mid.heap) / N),
  rssMB: Number((after.rss / (1 << 20)).toFixed(1)),
  devicePeers: device.peerCount,
}));
