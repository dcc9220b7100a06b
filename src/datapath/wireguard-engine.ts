// The WireGuard shell of the datapath: batches from the TUN device are routed by the allowed-ips
// trie, framed and sealed natively, and sent; batches from the UDP socket are opened natively,
// replay-checked, source-checked and written to the TUN device. Handshakes, timers and every
// other protocol decision belong to the sans-I/O core (src/wireguard/); this file only does I/O
// and bookkeeping for it, without allocating per packet on the data path.
import { appendFileSync } from 'node:fs';
import { AllowedIps } from '../net/allowed-ips.js';
import { formatIp, parseIp, type IpFamily } from '../net/cidr.js';
import { Device } from '../wireguard/device.js';
import type { Peer } from '../wireguard/peer.js';
import type { Keypair } from '../wireguard/keypair.js';
import type { Action } from '../wireguard/actions.js';
import type { Endpoint } from '../wireguard/endpoint.js';
import { innerPacketLength, paddedLength } from '../wireguard/transport.js';
import { MESSAGE_TRANSPORT_TYPE } from '../wireguard/constants.js';
import { AeadBatch, AeadKey } from './aead-batch.js';
import { PacketBatch } from './packet-batch.js';
import { SinglePacketWriter } from './single-packet-writer.js';
import type { TunDevice } from './tun-device.js';
import { UDP_GRO_SLOT, type UdpSocket } from './udp-socket.js';
import type { DatapathEngine } from './engine.js';
import type { AnyReplyOf, RequestOf, WireguardEngineCounters, WireguardEngineInit, WireguardEngineStatus, WireguardPeerSpec, WireguardPeerStatus, WireguardProtocol } from './messages.js';
import { VeilError } from '../util/errors.js';

/** Bytes before a TUN packet: the 12-byte nonce at the slot start, then the 16-byte header. */
const TX_HEADROOM = 32;
/** Bytes after: padding (< 16) and the tag (16). */
const TX_TAILROOM = 32;
const RX_HEADROOM = 16;
const HEADER = 16;
const TAG = 16;
const BATCH = 128;
const SLOT = 2048;
/** Receive slots with UDP GRO (each up to 64 KiB). */
const GRO_SLOTS = 8;

interface KeyHandles {
  send: AeadKey;
  receive: AeadKey;
}

function handles(kp: Keypair): KeyHandles {
  let h = kp.nativeHandle as KeyHandles | null;
  if (!h) {
    h = { send: AeadKey.create('chacha20-poly1305', kp.sendKey), receive: AeadKey.create('chacha20-poly1305', kp.receiveKey) };
    kp.nativeHandle = h;
    kp.onZero = (dead) => {
      const x = dead.nativeHandle as KeyHandles | null;
      x?.send.free();
      x?.receive.free();
      dead.nativeHandle = null;
    };
  }
  return h;
}

/** Writes counter (< 2^53) as 8 little-endian bytes. */
function writeCounter(buf: Uint8Array, off: number, counter: number): void {
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x1_0000_0000);
  buf[off] = lo & 0xff; buf[off + 1] = (lo >>> 8) & 0xff; buf[off + 2] = (lo >>> 16) & 0xff; buf[off + 3] = lo >>> 24;
  buf[off + 4] = hi & 0xff; buf[off + 5] = (hi >>> 8) & 0xff; buf[off + 6] = (hi >>> 16) & 0xff; buf[off + 7] = hi >>> 24;
}

function readU32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
}

export class WireguardEngine implements DatapathEngine<WireguardProtocol> {
  readonly device: Device;
  private readonly allowed = new AllowedIps<Peer>();
  private readonly names = new Map<Peer, string>();
  private readonly tx = new PacketBatch({ capacity: BATCH, slotSize: SLOT, headroom: TX_HEADROOM, tailroom: TX_TAILROOM });
  private readonly rx: PacketBatch;
  private readonly aead = new AeadBatch(BATCH);
  private readonly single: SinglePacketWriter;
  /** Per rx AEAD op: the packet index and keypair/counter it belongs to. */
  private readonly rxIndex = new Int32Array(BATCH);
  private readonly rxKeypair: (Keypair | null)[] = new Array(BATCH).fill(null);
  private readonly rxCounter = new Float64Array(BATCH);
  private readonly sentBytes = new Map<Peer, number>();
  private readonly sentPackets = new Map<Peer, number>();
  /** Transport packets each way per peer (keepalives included), for status and metrics. */
  private readonly peerPackets = new WeakMap<Peer, { tx: number; rx: number }>();
  private readonly received = new Map<Keypair, { bytes: number; packets: number; source: Endpoint }>();
  private readonly endpointCache = new Map<string, Endpoint>();
  private readonly destCache = new WeakMap<Endpoint, { bytes: Uint8Array; family: 4 | 6 }>();
  readonly counters: WireguardEngineCounters = {
    txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, noRoute: 0, sourceNotAllowed: 0, replay: 0,
    authFailed: 0, unknownIndex: 0, malformed: 0, tooBig: 0, sendFailed: 0, staged: 0,
  };

  constructor(private readonly init: WireguardEngineInit, private readonly tun: TunDevice, private readonly udp: UdpSocket) {
    this.single = new SinglePacketWriter(tun, init.mtu);
    // With UDP GRO a slot takes a coalesced super-datagram (up to 64 KiB) split into many packets.
    this.rx = udp.gro
      ? new PacketBatch({ capacity: BATCH, slotSize: RX_HEADROOM + UDP_GRO_SLOT, slots: GRO_SLOTS, headroom: RX_HEADROOM })
      : new PacketBatch({ capacity: BATCH, slotSize: SLOT, headroom: RX_HEADROOM });
    this.device = new Device({ privateKey: init.privateKey, mtu: init.mtu, wallClockOffsetMs: init.wallClockOffsetMs, keylog: !!init.keylogFile });
  }

  // ---- TUN -> network -------------------------------------------------------------------------

  fromTunnel(now: number): number {
    const b = this.tx;
    const n = this.tun.readBatch(b);
    if (n === 0) return 0;
    const buf = b.buf, aead = this.aead, mtu = this.init.mtu;
    aead.clear();
    this.sentBytes.clear();
    this.sentPackets.clear();
    let out = 0;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      const v = buf[off]! >> 4;
      const family: IpFamily = v === 6 ? 6 : 4;
      if ((v !== 4 && v !== 6) || len < (v === 4 ? 20 : 40)) { this.counters.malformed++; continue; }
      const peer = this.allowed.lookup(buf, off + (family === 4 ? 16 : 24), family);
      if (!peer) { this.counters.noRoute++; continue; }
      if (len > mtu) { this.answerTooBig(off, len); continue; }
      const kp = peer.staged.length === 0 ? peer.currentSendKeypair(now) : null;
      const counter = kp ? kp.reserveSendCounters(1) : -1;
      if (!kp || counter < 0) {
        // No session yet (or out of counters): the core stages a copy and starts a handshake.
        this.counters.staged++;
        this.perform(this.device.encapsulate(peer, buf.subarray(off, off + len), now));
        continue;
      }
      const padded = paddedLength(len, mtu);
      buf.fill(0, off + len, off + padded);
      const h = off - HEADER;
      buf[h] = MESSAGE_TRANSPORT_TYPE; buf[h + 1] = 0; buf[h + 2] = 0; buf[h + 3] = 0;
      const ri = kp.remoteIndex;
      buf[h + 4] = ri & 0xff; buf[h + 5] = (ri >>> 8) & 0xff; buf[h + 6] = (ri >>> 16) & 0xff; buf[h + 7] = ri >>> 24;
      writeCounter(buf, h + 8, counter);
      const nonce = off - TX_HEADROOM;
      buf[nonce] = 0; buf[nonce + 1] = 0; buf[nonce + 2] = 0; buf[nonce + 3] = 0;
      writeCounter(buf, nonce + 4, counter);
      aead.add(handles(kp).send, off, padded, nonce);
      const dest = this.destination(peer.endpoint!);
      b.setPeer(out, dest.bytes, dest.family, peer.endpoint!.port);
      b.offs[out] = h;
      b.lens[out] = HEADER + padded + TAG;
      out++;
      this.sentBytes.set(peer, (this.sentBytes.get(peer) ?? 0) + HEADER + padded + TAG);
      this.sentPackets.set(peer, (this.sentPackets.get(peer) ?? 0) + 1);
      this.counters.txBytes += len;
    }
    if (out > 0) {
      aead.seal(buf);
      for (let j = 0; j < out; j++) if (!aead.ok[j]) b.lens[j] = -1;
      const sent = this.udp.sendBatch(b, out);
      if (sent < out) this.counters.sendFailed += out - sent;
      this.counters.txPackets += sent;
      for (const [peer, packets] of this.sentPackets) this.packetsOf(peer).tx += packets;
      for (const [peer, bytes] of this.sentBytes) this.perform(peer.onDataSent(now, bytes));
    }
    return n;
  }

  private answerTooBig(off: number, len: number): void {
    this.counters.tooBig++;
    this.single.answerTooBig(this.tx.buf, off, len);
  }

  // ---- network -> TUN -------------------------------------------------------------------------

  fromNetwork(now: number): number {
    const b = this.rx;
    const n = this.udp.recvBatch(b);
    if (n === 0) return 0;
    const buf = b.buf, aead = this.aead;
    aead.clear();
    let ops = 0;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      if (len < 4) { this.counters.malformed++; continue; }
      const type = buf[off]!;
      if (type !== MESSAGE_TRANSPORT_TYPE) { this.handshakeMessage(i, now); continue; }
      if (len < HEADER + TAG || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) { this.counters.malformed++; continue; }
      const kp = this.device.keypairByReceiverIndex(readU32(buf, off + 4));
      if (!kp || !kp.canReceive(now)) { this.counters.unknownIndex++; continue; }
      const counter = readU32(buf, off + 8) + readU32(buf, off + 12) * 0x1_0000_0000;
      if (!kp.replay.wouldAccept(counter)) { this.counters.replay++; continue; }
      // The nonce (0^4 || counter LE) is built in place over the receiver index, already read:
      // GRO segments sit back to back, so the bytes before a datagram belong to the previous one.
      const nonce = off + 4;
      buf[nonce] = 0; buf[nonce + 1] = 0; buf[nonce + 2] = 0; buf[nonce + 3] = 0;
      aead.add(handles(kp).receive, off + HEADER, len - HEADER - TAG, nonce);
      this.rxIndex[ops] = i;
      this.rxKeypair[ops] = kp;
      this.rxCounter[ops] = counter;
      ops++;
    }
    if (ops === 0) return n;
    aead.open(buf);
    this.received.clear();
    let out = 0;
    for (let j = 0; j < ops; j++) {
      const kp = this.rxKeypair[j]!;
      this.rxKeypair[j] = null;
      if (!aead.ok[j]) { this.counters.authFailed++; continue; }
      const i = this.rxIndex[j]!;
      if (!kp.replay.check(this.rxCounter[j]!)) { this.counters.replay++; continue; }
      const off = b.offs[i]! + HEADER, plain = b.lens[i]! - HEADER - TAG;
      let r = this.received.get(kp);
      if (!r) { r = { bytes: 0, packets: 0, source: this.sourceEndpoint(i) }; this.received.set(kp, r); }
      r.bytes += plain;
      r.packets++;
      if (plain === 0) continue; // keepalive
      const inner = innerPacketLength(buf, off, plain);
      if (inner < 0) { this.counters.malformed++; continue; }
      const family: IpFamily = buf[off]! >> 4 === 6 ? 6 : 4;
      if (this.allowed.lookup(buf, off + (family === 4 ? 12 : 8), family) !== kp.peer) { this.counters.sourceNotAllowed++; continue; }
      b.offs[out] = off;
      b.lens[out] = inner;
      out++;
      this.counters.rxPackets++;
      this.counters.rxBytes += inner;
    }
    if (out > 0) this.tun.writeBatch(b, out, { checksumsTrusted: true, coalesce: true }); // AEAD-authenticated: merge TCP runs (GRO-like)
    for (const [kp, r] of this.received) {
      this.packetsOf(kp.peer).rx += r.packets;
      this.perform(kp.peer.onAuthenticatedDataReceived(kp, now, r.source, r.bytes, r.packets));
    }
    return n;
  }

  /** Load detection and flood limits are the core's (src/wireguard/handshake-limiter.ts). */
  private handshakeMessage(i: number, now: number): void {
    const b = this.rx;
    const datagram = Uint8Array.prototype.slice.call(b.buf, b.offs[i]!, b.offs[i]! + b.lens[i]!);
    this.perform(this.device.decapsulate(datagram, this.sourceEndpoint(i), now));
  }

  /** The sender of rx packet i as an Endpoint, cached so that roaming checks compare cheaply. */
  private sourceEndpoint(i: number): Endpoint {
    const b = this.rx;
    const fam = b.families[i] === 6 ? 6 : 4;
    const a = b.addrs.subarray(16 * i, 16 * i + (fam === 4 ? 4 : 16));
    const key = `${fam === 4 ? `${a[0]}.${a[1]}.${a[2]}.${a[3]}` : Buffer.from(a).toString('hex')}|${b.ports[i]}`;
    let e = this.endpointCache.get(key);
    if (!e) {
      if (this.endpointCache.size > 4096) this.endpointCache.clear();
      const address = fam === 4 ? key.slice(0, key.indexOf('|')) : formatIp(a, 6);
      e = { address, port: b.ports[i]! };
      this.endpointCache.set(key, e);
      this.destCache.set(e, { bytes: Uint8Array.from(a), family: fam });
    }
    return e;
  }

  private destination(e: Endpoint): { bytes: Uint8Array; family: 4 | 6 } {
    let d = this.destCache.get(e);
    if (!d) {
      const ip = parseIp(e.address);
      d = { bytes: ip.bytes, family: ip.family };
      this.destCache.set(e, d);
    }
    return d;
  }

  // ---- actions, timers --------------------------------------------------------------------------

  private perform(actions: readonly Action[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'network': {
          const d = this.destination(a.endpoint);
          if (!this.udp.sendTo(a.datagram, d.bytes, a.endpoint.port)) this.counters.sendFailed++;
          else if (a.datagram[0] === MESSAGE_TRANSPORT_TYPE) {
            this.counters.txPackets++;
            if (a.peer) this.packetsOf(a.peer).tx++;
          }
          break;
        }
        case 'tunnel': {
          const inner = innerPacketLength(a.packet, 0, a.packet.length);
          if (inner < 0) { this.counters.malformed++; break; }
          const fam: IpFamily = a.packet[0]! >> 4 === 6 ? 6 : 4;
          if (this.allowed.lookup(a.packet, fam === 4 ? 12 : 8, fam) !== a.peer) { this.counters.sourceNotAllowed++; break; }
          this.single.write(a.packet.subarray(0, inner));
          this.counters.rxPackets++;
          this.counters.rxBytes += inner;
          break;
        }
        case 'keylog':
          if (this.init.keylogFile) {
            try { appendFileSync(this.init.keylogFile, a.text.endsWith('\n') ? a.text : a.text + '\n', { mode: 0o600 }); } catch { /* best effort */ }
          }
          break;
        default:
          break;
      }
    }
  }


  tick(now: number): void {
    this.perform(this.device.tick(now));
  }

  nextDeadline(): number {
    return this.device.nextDeadline() ?? Infinity;
  }

  // ---- control ---------------------------------------------------------------------------------

  control(req: RequestOf<WireguardProtocol>): AnyReplyOf<WireguardProtocol> {
    switch (req.type) {
      case 'setPeers': return this.setPeers(req.peers);
      case 'status': return this.status();
      default: throw new VeilError('BAD_REQUEST', `unknown datapath request '${(req as { type: string }).type}'`);
    }
  }

  /** Makes the device's peers and allowed IPs exactly `specs` (a key change rebuilds the peer). */
  private setPeers(specs: WireguardPeerSpec[]): { peers: number } {
    const wanted = new Map(specs.map((s) => [s.publicKey, s]));
    for (const p of [...this.device.peers()]) {
      if (!wanted.has(p.publicKeyBase64)) {
        this.allowed.removeValue(p);
        this.names.delete(p);
        this.device.removePeer(p.publicKey);
      }
    }
    for (const s of specs) {
      const key = Buffer.from(s.publicKey, 'base64');
      const peer = this.device.addPeer({ publicKey: key, endpoint: s.endpoint, persistentKeepalive: s.persistentKeepalive });
      if (s.name) this.names.set(peer, s.name);
      const have = new Set(this.allowed.prefixesOf(peer));
      const want = new Set(s.allowedIPs);
      // Add first, then remove: a prefix is never without an owner while it moves.
      for (const pfx of want) if (!have.has(pfx)) this.allowed.insert(pfx, peer);
      for (const pfx of have) if (!want.has(pfx)) this.allowed.remove(pfx);
    }
    return { peers: this.device.peerCount };
  }

  private packetsOf(peer: Peer): { tx: number; rx: number } {
    let c = this.peerPackets.get(peer);
    if (!c) { c = { tx: 0, rx: 0 }; this.peerPackets.set(peer, c); }
    return c;
  }

  private status(): WireguardEngineStatus {
    const peers = [...this.device.peers()].map((p): WireguardPeerStatus => ({
      name: this.names.get(p) ?? null,
      publicKey: p.publicKeyBase64,
      endpoint: p.endpoint ? (p.endpoint.address.includes(':') ? `[${p.endpoint.address}]:${p.endpoint.port}` : `${p.endpoint.address}:${p.endpoint.port}`) : null,
      allowedIPs: this.allowed.prefixesOf(p),
      lastHandshakeUnixMs: p.stats.lastHandshakeUnixMs,
      rxBytes: p.stats.rxBytes,
      txBytes: p.stats.txBytes,
      rxPackets: this.packetsOf(p).rx,
      txPackets: this.packetsOf(p).tx,
      keypairs: [p.current, p.previous, p.next].filter((k) => k && k.isAlive).length,
      persistentKeepalive: p.persistentKeepalive,
    }));
    return {
      publicKey: this.device.publicKeyBase64, listenPort: this.udp.port, peers,
      counters: { ...this.counters }, drops: { ...this.device.stats.drops }, tun: this.tun.counters(), udp: this.udp.counters(),
    };
  }

  close(): void {
    for (const p of [...this.device.peers()]) this.device.removePeer(p.publicKey);
  }
}
