// WireGuard static key rotation of this node, without loss (no CNI does it: cilium#37920). The
// node is the peer's identity, WireGuard peers are keyed by public key, so the key moves in
// three steps, each safe on its own:
//   1. announce: a new key pair (veil_wg0.key.next), its public key published beside the current
//      one (wg-next-pub-key). Every peer accepts handshakes from it as this node's and says so
//      (its wg-accepts annotation lists the next keys its datapath holds).
//   2. switch: once every peer accepted (or ANNOUNCE_TIMEOUT_MS passed: a peer that is down learns
//      the key from the registry), the files move (key -> key.previous, key.next -> key) and the
//      datapath switches: handshakes use the new key, every peer gets one at once, initiations to
//      the old key are still answered. Sessions go on throughout: they do not depend on static keys.
//   3. retire: once every peer completed a handshake under the new key (or CONFIRM_TIMEOUT_MS),
//      the old key is dropped from the datapath and the disk.
// Triggers: `veil encryption rotate-key --wireguard` (a request id per node in the Secret
// veil-wireguard-key-rotation, read like the IPsec key secret) and encryption.wireguard.keyRotationInterval.
import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Watch } from '../control/registry.js';
import { writeFileAtomic } from '../util/durable-file.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { loadOrGenerateKeyPair, type WireGuardKeyPair } from '../keys/wireguard-keypair.js';
import { WG_ROTATION_SECRET, rotationRequestFor } from '../keys/wireguard-rotation-request.js';
import type { SecretSource } from './agent-inputs.js';
import type { Tunnel } from './tunnel.js';

export const WG_NEXT_PUBKEY_ANNOTATION = 'network.veil.io/wg-next-pub-key';
/** A node's acknowledgement: the next keys of other nodes its datapath accepts (space-separated). */
export const WG_ACCEPTS_ANNOTATION = 'network.veil.io/wg-accepts';
export const ANNOUNCE_TIMEOUT_MS = 60_000;
export const CONFIRM_TIMEOUT_MS = 120_000;
/** While a rotation runs: how often its step looks at the peers' acceptance and handshakes. */
const STEP_MS = 250;
/** While idle, the schedule is looked at again at least this often (the wall clock may move). */
const IDLE_RECHECK_MS = 60_000;

export type RotationPhase = 'idle' | 'announced' | 'switched';

/** The last rotation and the one in progress, as status shows them (and kept on disk). */
export interface RotationRecord {
  phase: RotationPhase;
  /** The request id (of rotate-key) this node acted on last. */
  request?: string;
  trigger?: string;
  startedAt?: string;
  switchedAt?: string;
  retiredAt?: string;
  oldKey?: string;
  newKey?: string;
  /** Peers that accepted the new key before the switch / confirmed it after, "n/m". */
  accepted?: string;
  confirmed?: string;
  /** While announced: the peers that have not accepted the next key yet; while switched: not confirmed it yet. */
  waitingFor?: string[];
}

/** A peer as rotation sees it: its name and what it publishes. */
export interface RotationPeer {
  name: string;
  annotations: Record<string, string>;
}

export class WireGuardKeyRotation {
  private keys: WireGuardKeyPair;
  private next?: WireGuardKeyPair;
  private record: RotationRecord;
  private peers: RotationPeer[] = [];
  private tunnel?: Tunnel<'wireguard'>;
  private timer?: NodeJS.Timeout;
  private watch?: Watch;
  private busy = false;
  private stopped = false;
  private pendingRequest?: string;
  private phaseSince = Date.now();

  constructor(
    private readonly dir: string, private readonly device: string, private readonly node: string,
    private readonly o: { log: Logger; secrets: SecretSource; intervalMs: number; requestReconcile: () => void },
  ) {
    const restored = this.readRecord();
    this.keys = loadOrGenerateKeyPair(this.path('key'));
    // A switch that a restart interrupted is complete on disk (key is the new one): the datapath
    // starts with it alone, so the old key is retired at once (peers that still initiate to it
    // retry within REKEY_TIMEOUT, by then with the key the registry shows).
    rmSync(this.path('previous'), { force: true });
    if (existsSync(this.path('next'))) {
      this.next = loadOrGenerateKeyPair(this.path('next'));
      this.record = { ...restored, phase: 'announced' };
    } else {
      this.record = { ...restored, phase: 'idle' };
      if (restored.phase === 'switched') this.record.retiredAt = new Date().toISOString();
    }
  }

  private path(which: 'key' | 'next' | 'previous' | 'record'): string {
    const base = join(this.dir, `${this.device}.key`);
    return which === 'key' ? base : which === 'record' ? join(this.dir, `${this.device}.rotation.json`) : `${base}.${which}`;
  }

  private readRecord(): RotationRecord {
    try {
      return JSON.parse(readFileSync(this.path('record'), 'utf8')) as RotationRecord;
    } catch {
      return { phase: 'idle' };
    }
  }

  private saveRecord(): void {
    writeFileAtomic(this.path('record'), JSON.stringify(this.record, null, 1) + '\n', { mode: 0o600 });
  }

  get current(): WireGuardKeyPair {
    return this.keys;
  }

  /** The announced key's public half while announced, else undefined. */
  get nextPublicKey(): string | undefined {
    return this.record.phase === 'announced' ? this.next?.publicKeyBase64 : undefined;
  }

  get status(): RotationRecord {
    return { ...this.record };
  }

  /** The peers of the latest desired state (desired() tells them). */
  observe(peers: RotationPeer[]): void {
    this.peers = peers;
  }

  /** Starts following requests and the schedule once the tunnel is up. */
  async start(tunnel: Tunnel<'wireguard'>): Promise<void> {
    this.tunnel = tunnel;
    const onRequest = (data: Record<string, string> | undefined): void => {
      const id = rotationRequestFor(data, this.node);
      if (id && id !== this.record.request) {
        this.pendingRequest = id;
        this.arm(0);
      }
    };
    try {
      this.watch = await this.o.secrets.watch(WG_ROTATION_SECRET, (secret) => onRequest(secret?.data));
      onRequest((await this.o.secrets.get(WG_ROTATION_SECRET))?.data);
    } catch (e) {
      this.o.log.warn('cannot follow WireGuard key rotation requests', { error: errorMessage(e) });
    }
    this.arm(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watch?.stop();
  }

  /** The next step in ms (one timer at a time; a step re-arms it when it ends). */
  private arm(ms: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => { this.timer = undefined; void this.step().then((ran) => { if (ran) this.armNext(); }); }, ms);
    this.timer.unref();
  }

  /**
   * A rotation under way steps every STEP_MS; an idle one only when a request comes (onRequest
   * arms it), when the schedule makes the key due, or IDLE_RECHECK_MS: an idle agent woke every
   * 250 ms here, and stat'ed the key file each time.
   */
  private armNext(): void {
    if (this.record.phase !== 'idle') return this.arm(STEP_MS);
    if (this.pendingRequest) return this.arm(0);
    if (this.o.intervalMs <= 0) return this.arm(IDLE_RECHECK_MS);
    this.arm(Math.min(IDLE_RECHECK_MS, Math.max(0, this.keyBornAt() + this.o.intervalMs - Date.now()) + 1));
  }

  /** One step of the state machine (serialized): false when another one is under way (it re-arms when it ends). */
  private async step(): Promise<boolean> {
    if (this.busy || !this.tunnel) return false;
    this.busy = true;
    try {
      if (this.record.phase === 'idle') this.maybeStart();
      else if (this.record.phase === 'announced') await this.maybeSwitch();
      else await this.maybeRetire();
    } catch (e) {
      this.o.log.warn('WireGuard key rotation step failed', { phase: this.record.phase, error: errorMessage(e) });
    } finally {
      this.busy = false;
    }
    return true;
  }

  /** When the key was made (its last rotation, else the key file's age). */
  private keyBornAt(): number {
    const retired = this.record.retiredAt ? Date.parse(this.record.retiredAt) : NaN;
    if (Number.isFinite(retired)) return retired;
    try { return statSync(this.path('key')).mtimeMs; } catch { return Date.now(); }
  }

  private maybeStart(): void {
    const trigger = rotationDue(this.pendingRequest, this.o.intervalMs, this.keyBornAt(), Date.now());
    if (!trigger) return;
    if (this.pendingRequest) this.record.request = this.pendingRequest;
    this.pendingRequest = undefined;
    rmSync(this.path('next'), { force: true });
    this.next = loadOrGenerateKeyPair(this.path('next')); // a new key: the file was just removed
    const now = new Date().toISOString();
    this.record = {
      phase: 'announced', request: this.record.request, trigger, startedAt: now, oldKey: this.keys.publicKeyBase64, newKey: this.next.publicKeyBase64,
    };
    this.phaseSince = Date.now();
    this.saveRecord();
    this.o.log.info('WireGuard key rotation: next key announced', { trigger, newKey: this.next.publicKeyBase64 });
    this.o.requestReconcile();
  }

  private async maybeSwitch(): Promise<void> {
    const next = this.next!;
    const waiting = this.peers.filter((p) => !(p.annotations[WG_ACCEPTS_ANNOTATION] ?? '').split(' ').includes(next.publicKeyBase64));
    const timedOut = Date.now() - this.phaseSince >= ANNOUNCE_TIMEOUT_MS;
    this.record.waitingFor = waiting.map((p) => p.name);
    if (waiting.length > 0 && !timedOut) return;
    if (waiting.length > 0) this.o.log.warn('WireGuard key rotation: switching without every peer\'s acceptance', { waiting: waiting.map((p) => p.name) });
    // Files first: an agent restarted from here on starts with the new key, which peers accept.
    renameSync(this.path('key'), this.path('previous'));
    renameSync(this.path('next'), this.path('key'));
    await this.tunnel!.request({ type: 'rotateKey', privateKey: next.privateKey });
    this.keys = next;
    this.next = undefined;
    this.record = { ...this.record, waitingFor: undefined, phase: 'switched', switchedAt: new Date().toISOString(), accepted: `${this.peers.length - waiting.length}/${this.peers.length}` };
    this.phaseSince = Date.now();
    this.saveRecord();
    this.o.log.info('WireGuard key rotation: switched to the new key', { publicKey: next.publicKeyBase64, accepted: this.record.accepted });
    this.o.requestReconcile();
  }

  private async maybeRetire(): Promise<void> {
    const st = await this.tunnel!.request({ type: 'status' });
    const names = new Set(this.peers.map((p) => p.name));
    const peers = st.peers.filter((p) => p.name !== null && names.has(p.name));
    const confirmed = peers.filter((p) => p.onCurrentKey).length;
    this.record.waitingFor = peers.filter((p) => !p.onCurrentKey).map((p) => p.name!);
    if (confirmed < peers.length && Date.now() - this.phaseSince < CONFIRM_TIMEOUT_MS) return;
    await this.tunnel!.request({ type: 'retireKey' });
    rmSync(this.path('previous'), { force: true });
    this.record = { ...this.record, waitingFor: undefined, phase: 'idle', retiredAt: new Date().toISOString(), confirmed: `${confirmed}/${peers.length}` };
    this.saveRecord();
    this.o.log.info('WireGuard key rotation: old key retired', { oldKey: this.record.oldKey, confirmed: this.record.confirmed });
    this.o.requestReconcile();
  }

  /** One line for `veil status`. */
  describe(): string {
    const r = this.record;
    const waiting = r.waitingFor?.length ? ` (waiting for ${r.waitingFor.join(', ')})` : '';
    if (r.phase === 'announced') return `Key rotation: next key ${short(r.newKey)} announced, peers accepting${waiting}`;
    if (r.phase === 'switched') return `Key rotation: switched to ${short(r.newKey)}, retiring ${short(r.oldKey)}, peers confirming${waiting}`;
    if (r.retiredAt && r.oldKey) return `Key rotated ${r.retiredAt} (${short(r.oldKey)} -> ${short(r.newKey)}, peers accepted ${r.accepted ?? '?'}, confirmed ${r.confirmed ?? '?'})`;
    return '';
  }
}

/**
 * Why a rotation starts now, or undefined: a request not acted on yet, else a key older than the
 * interval (0: no schedule).
 */
export function rotationDue(pendingRequest: string | undefined, intervalMs: number, keyBornAt: number, now: number): string | undefined {
  if (pendingRequest) return `request ${pendingRequest}`;
  if (intervalMs > 0 && now - keyBornAt >= intervalMs) return 'schedule (encryption.wireguard.keyRotationInterval)';
  return undefined;
}

function short(key: string | undefined): string {
  return key ? `${key.slice(0, 8)}...` : '?';
}
