// A device's live sessions as plain data, for a datapath handover: an agent that stops hands its
// sessions to the next one (a restart, an upgrade), which goes on sending with the same keypairs
// and counters and accepting with the same replay windows, so no handshake and no packet is lost.
// Times travel as ages, since each process has its own monotonic clock. Handshakes in flight and
// staged packets do not travel: a peer without a session simply handshakes again. The previous
// datapath must have stopped before the export (it never sends under these counters again).
// Keypairs lingering after a crossing (lingering-keypairs.ts) travel with the time they have left,
// so a handover within LINGER_MS of a crossing still opens what the peer sends under them.
import { compactEndpoint, plainEndpoint, type Endpoint } from './endpoint.js';
import { Keypair } from './keypair.js';
import { LINGER_MS } from './lingering-keypairs.js';
import type { Peer } from './peer.js';
import { wholeMs } from './whole-ms.js';
import type { Device } from './device.js';
import type { ReplayWindowState } from './replay-window.js';

export interface KeypairState {
  /** base64 of the 32-byte keys. */
  sendKey: string;
  receiveKey: string;
  localIndex: number;
  remoteIndex: number;
  isInitiator: boolean;
  ageMs: number;
  sendCounter: number;
  replay: ReplayWindowState;
}

/** A keypair pushed out by a newer handshake and still receivable (receive-only). */
export interface LingeringKeypairState extends KeypairState {
  /** ms until it is erased. */
  leftMs: number;
}

/** Pending timers as the time left (ms), null when not armed. */
export interface TimersState {
  sendKeepalive: number | null;
  newHandshake: number | null;
  zeroKeyMaterial: number | null;
  persistentKeepalive: number | null;
  needAnotherKeepalive: boolean;
  sentLastMinuteHandshake: boolean;
}

export interface PeerSessionState {
  /** base64; the peer is matched by it in the next datapath. */
  publicKey: string;
  endpoint: Endpoint | null;
  current: KeypairState | null;
  previous: KeypairState | null;
  next: KeypairState | null;
  /**
   * Absent when none lingers. Optional, so snapshot version 2 stays readable both ways: a reader
   * without it drops these receive-only keys (packets lost, as before; no nonce used twice).
   */
  lingering?: LingeringKeypairState[];
  lastHandshakeAgeMs: number | null;
  lastHandshakeUnixMs: number | null;
  onCurrentKey: boolean;
  rxBytes: number;
  txBytes: number;
  timers: TimersState;
}

export interface WireGuardSessions {
  /** Our public key (base64) when exported: sessions belong to it and to each peer's key. */
  publicKey: string;
  peers: PeerSessionState[];
}

const b64 = (x: Uint8Array) => Buffer.from(x).toString('base64');

function keypairState(kp: Keypair | null, now: number): KeypairState | null {
  if (!kp || !kp.isAlive) return null;
  return {
    sendKey: b64(kp.sendKey), receiveKey: b64(kp.receiveKey), localIndex: kp.localIndex, remoteIndex: kp.remoteIndex,
    isInitiator: kp.isInitiator, ageMs: now - kp.createdAt, sendCounter: kp.sendCounter, replay: kp.replay.save(),
  };
}

const left = (deadline: number | null, now: number) => (deadline === null ? null : Math.max(0, deadline - now));

/** The device's lingering keypairs by peer, those with time left at `now` (usually none). */
function lingeringByPeer(device: Device, now: number): Map<Peer, LingeringKeypairState[]> {
  const byPeer = new Map<Peer, LingeringKeypairState[]>();
  for (const { keypair, until } of device.lingering.entries()) {
    const state = keypairState(keypair, now);
    if (!state || until <= now) continue;
    const list = byPeer.get(keypair.peer) ?? [];
    list.push({ ...state, leftMs: until - now });
    byPeer.set(keypair.peer, list);
  }
  return byPeer;
}

/** Every peer's sessions at `now` (device clock). */
export function exportSessions(device: Device, now: number): WireGuardSessions {
  const peers: PeerSessionState[] = [];
  const lingering = lingeringByPeer(device, now);
  for (const p of device.peers()) {
    const t = p.timers;
    const lingeringHere = lingering.get(p);
    peers.push({
      publicKey: p.publicKeyBase64, endpoint: p.endpoint ? plainEndpoint(p.endpoint) : null,
      current: keypairState(p.current, now), previous: keypairState(p.previous, now), next: keypairState(p.next, now),
      ...(lingeringHere ? { lingering: lingeringHere } : {}),
      lastHandshakeAgeMs: p.stats.lastHandshakeAt === null ? null : now - p.stats.lastHandshakeAt,
      lastHandshakeUnixMs: p.stats.lastHandshakeUnixMs, onCurrentKey: device.peerOnCurrentKey(p),
      rxBytes: p.stats.rxBytes, txBytes: p.stats.txBytes,
      timers: {
        sendKeepalive: left(t.sendKeepaliveAt, now), newHandshake: left(t.newHandshakeAt, now), zeroKeyMaterial: left(t.zeroKeyMaterialAt, now),
        persistentKeepalive: left(t.persistentKeepaliveAt, now), needAnotherKeepalive: t.needAnotherKeepalive, sentLastMinuteHandshake: t.sentLastMinuteHandshake,
      },
    });
  }
  return { publicKey: device.publicKeyBase64, peers };
}

function key32(s: string): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined; // a damaged snapshot
  const k = Buffer.from(s, 'base64');
  return k.length === 32 ? new Uint8Array(k) : undefined;
}

function restoreKeypair(device: Device, peer: Peer, s: KeypairState | null, now: number): Keypair | null {
  if (!s) return null;
  const sendKey = key32(s.sendKey), receiveKey = key32(s.receiveKey);
  if (!sendKey || !receiveKey || !Number.isSafeInteger(s.sendCounter) || s.sendCounter < 0 || !(s.ageMs >= 0)) return null;
  const kp = new Keypair({
    sendKey, receiveKey, localIndex: s.localIndex >>> 0, remoteIndex: s.remoteIndex >>> 0, isInitiator: !!s.isInitiator,
    createdAt: wholeMs(now - s.ageMs), peer, slots: device.keySlots,
  });
  kp.sendCounter = s.sendCounter;
  if (!kp.replay.restore(s.replay) || !device.indexes.restoreKeypair(kp.localIndex, kp)) { kp.zero(device.keySlots); return null; }
  return kp;
}

/**
 * The peer's lingering keypairs back, each until the deadline it had (never later than LINGER_MS
 * after the export): one whose time ran out during the handover is not restored.
 */
function restoreLingering(device: Device, peer: Peer, states: LingeringKeypairState[], at: number, now: number): void {
  for (const s of states) {
    const until = at + Math.min(Number(s?.leftMs), LINGER_MS);
    if (!(until > now)) continue; // also a leftMs that is not a number
    const kp = restoreKeypair(device, peer, s, at);
    if (kp) device.lingering.restore(kp, until);
  }
}

/**
 * Gives the device's peers (already added, by public key) their sessions back, aged by `elapsedMs`
 * (the time between export and now, when no packet moved). A peer with no state, or a keypair that
 * does not read back, starts without it and handshakes. Returns how many peers got sessions.
 */
export function importSessions(device: Device, sessions: WireGuardSessions, now: number, elapsedMs: number): number {
  const gap = Math.max(0, elapsedMs);
  const at = now - gap; // the export's moment on this device's clock
  let restored = 0;
  for (const s of sessions.peers) {
    const peer = device.peer(s.publicKey);
    if (!peer || peer.publicKeyBase64 !== s.publicKey || peer.current || peer.previous || peer.next) continue;
    peer.current = restoreKeypair(device, peer, s.current, at);
    peer.previous = restoreKeypair(device, peer, s.previous, at);
    peer.next = restoreKeypair(device, peer, s.next, at);
    if (Array.isArray(s.lingering)) restoreLingering(device, peer, s.lingering, at, now);
    if (s.endpoint && !peer.endpoint) peer.endpoint = compactEndpoint(s.endpoint);
    if (s.lastHandshakeAgeMs !== null) {
      peer.stats.lastHandshakeAt = wholeMs(at - s.lastHandshakeAgeMs); // its Unix time read through this device's clock
    }
    if (s.onCurrentKey && s.publicKey && sessions.publicKey === device.publicKeyBase64) peer.ourKeyAtHandshake = device.publicKey;
    peer.stats.rxBytes = s.rxBytes;
    peer.stats.txBytes = s.txBytes;
    const t = peer.timers, st = s.timers;
    const due = (x: number | null) => (x === null ? null : wholeMs(at + x));
    t.sendKeepaliveAt = due(st.sendKeepalive);
    t.newHandshakeAt = due(st.newHandshake);
    t.zeroKeyMaterialAt = due(st.zeroKeyMaterial);
    t.persistentKeepaliveAt = due(st.persistentKeepalive);
    t.needAnotherKeepalive = st.needAnotherKeepalive;
    t.sentLastMinuteHandshake = st.sentLastMinuteHandshake;
    const d = peer.nextDeadline(); // set above, not armed: queue the peer by them
    if (d !== null) device.timerArmed(peer, d);
    if (peer.current || peer.next) restored++;
  }
  return restored;
}
