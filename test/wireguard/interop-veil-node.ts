// The veil end of the wireguard-go interop test: a tiny shell around the sans-I/O Device, run
// inside a network namespace by interop-wireguard-go.test.ts (only when VEIL_INTEROP_CHILD=1).
// stdin: JSON commands; stdout: JSON events.
//   {"cmd":"ping","seq":n}        ICMP echo request 10.98.0.1 -> 10.98.0.2 through the tunnel
//   {"cmd":"advance","ms":n}      move the core's clock forward (drives rekey timers)
// events: ready, echoReply {seq, receiver}, echoRequestAnswered {seq}, udp {port, sha256},
//         handshakeComplete, drop {reason}, sent {type}
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Device, transportReceiver, type Action } from '../../src/wireguard/index.js';

function checksum(b: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4 + ICMP echo (type 8 request / 0 reply) with correct checksums. */
export function icmpEcho(type: 0 | 8, src: number[], dst: number[], id: number, seq: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + 8 + payload.length);
  p[0] = 0x45;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[6] = 0x40; // DF
  p[8] = 64;
  p[9] = 1;
  p.set(src, 12);
  p.set(dst, 16);
  const ip = checksum(p, 0, 20);
  p[10] = ip >> 8;
  p[11] = ip & 0xff;
  p[20] = type;
  p[24] = id >> 8;
  p[25] = id & 0xff;
  p[26] = seq >> 8;
  p[27] = seq & 0xff;
  p.set(payload, 28);
  const ic = checksum(p, 20, p.length);
  p[22] = ic >> 8;
  p[23] = ic & 0xff;
  return p;
}

function main(): void {
  const [privB64, peerPubB64, peerHost, peerPort, bindHost, bindPort, keylogFile] = process.argv.slice(2);
  const emit = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  let offset = 0;
  const clock = () => Date.now() + offset;
  const dev = new Device({ privateKey: new Uint8Array(Buffer.from(privB64!, 'base64')), keylog: !!keylogFile });
  const peer = dev.addPeer({ publicKey: new Uint8Array(Buffer.from(peerPubB64!, 'base64')), endpoint: { address: peerHost!, port: Number(peerPort) } });
  const sock = dgram.createSocket('udp4');
  let lastReceiver = 0;
  const LOCAL = [10, 98, 0, 1];
  const REMOTE = [10, 98, 0, 2];

  const perform = (actions: readonly Action[]) => {
    for (const a of actions) {
      if (a.kind === 'network') {
        sock.send(a.datagram, a.endpoint.port, a.endpoint.address);
        emit({ event: 'sent', type: a.datagram[0] });
      } else if (a.kind === 'tunnel') inner(a.packet);
      else if (a.kind === 'keylog') appendFileSync(keylogFile!, a.text);
      else if (a.kind === 'handshakeComplete') emit({ event: 'handshakeComplete' });
      else if (a.kind === 'drop') emit({ event: 'drop', reason: a.reason });
    }
  };

  const inner = (p: Uint8Array) => {
    const ihl = (p[0]! & 0x0f) * 4;
    if (p[9] === 1) {
      const type = p[ihl]!;
      const id = (p[ihl + 4]! << 8) | p[ihl + 5]!;
      const seq = (p[ihl + 6]! << 8) | p[ihl + 7]!;
      const okSum = checksum(p, 0, ihl) === 0 && checksum(p, ihl, p.length) === 0;
      if (type === 0) emit({ event: 'echoReply', seq, receiver: lastReceiver, checksumOk: okSum });
      if (type === 8) {
        const reply = icmpEcho(0, LOCAL, Array.from(p.subarray(12, 16)), id, seq, p.subarray(ihl + 8));
        perform(dev.encapsulate(peer, reply, clock()));
        emit({ event: 'echoRequestAnswered', seq, checksumOk: okSum });
      }
    } else if (p[9] === 17) {
      const port = (p[ihl + 2]! << 8) | p[ihl + 3]!;
      const len = (p[ihl + 4]! << 8) | p[ihl + 5]!;
      const payload = p.subarray(ihl + 8, ihl + len);
      emit({ event: 'udp', port, sha256: createHash('sha256').update(payload).digest('hex'), length: payload.length });
    }
  };

  sock.on('message', (msg, rinfo) => {
    const d = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
    if (d[0] === 4 && d.length >= 16) lastReceiver = transportReceiver(d);
    perform(dev.decapsulate(d, { address: rinfo.address, port: rinfo.port }, clock()));
  });
  sock.bind(Number(bindPort), bindHost, () => emit({ event: 'ready', publicKey: dev.publicKeyBase64 }));
  const timer = setInterval(() => perform(dev.tick(clock())), 50);

  createInterface({ input: process.stdin }).on('line', (line) => {
    const c = JSON.parse(line) as { cmd: string; seq?: number; ms?: number };
    if (c.cmd === 'ping') {
      const payload = new Uint8Array(Buffer.from(`veil-interop-${c.seq}`.padEnd(56, '.')));
      perform(dev.encapsulate(peer, icmpEcho(8, LOCAL, REMOTE, 0x7e11, c.seq!, payload), clock()));
    } else if (c.cmd === 'advance') {
      offset += c.ms!;
      perform(dev.tick(clock()));
      emit({ event: 'advanced', offset });
    } else if (c.cmd === 'stats') {
      emit({ event: 'stats', drops: dev.stats.drops, handshakes: dev.stats.handshakesCompleted });
    }
  }).on('close', () => {
    clearInterval(timer);
    sock.close();
  });
}

if (process.env.VEIL_INTEROP_CHILD === '1') main();
