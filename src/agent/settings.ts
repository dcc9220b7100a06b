// The install settings (Helm-style keys), their validation, and the agent config they render to
// (Cilium's config keys, as `veil config view` shows them).
import { VeilError } from '../util/errors.js';
import { nearest } from '../util/nearest.js';
import { DEFAULT_IPSEC_SECRET, IPSEC_SECRET_DATA_KEY } from '../keys/ipsec-key-secret.js';

/** The encryption mode as the setting spells it (encryption.type). */
export type EncryptionType = 'ipsec' | 'wireguard';

/** Cilium's display spelling of a mode ('Encryption: Wireguard', `cilium encrypt status`). */
export type CiliumModeName = 'IPsec' | 'Wireguard';

export function ciliumModeName<T extends EncryptionType>(t: T): T extends 'wireguard' ? 'Wireguard' : 'IPsec' {
  return (t === 'wireguard' ? 'Wireguard' : 'IPsec') as T extends 'wireguard' ? 'Wireguard' : 'IPsec';
}

/** How ESP travels between nodes: in UDP 4500 (RFC 3948, veil's default) or as IP protocol 50 (Cilium's nodes). */
export type IpsecEncapsulation = 'udp' | 'esp';

export interface Settings {
  'encryption.enabled': boolean;
  'encryption.type': EncryptionType;
  'encryption.nodeEncryption': boolean;
  'encryption.wireguard.persistentKeepalive': string;
  'encryption.wireguard.keylogFile': string;
  'encryption.wireguard.keyRotationInterval': string;
  'encryption.ipsec.secretName': string;
  'encryption.ipsec.secretNamespace': string;
  'encryption.ipsec.keyRotationDuration': string;
  'encryption.ipsec.keyWatcher': boolean;
  'encryption.ipsec.encapsulation': IpsecEncapsulation;
  'agent.metricsPort': number;
  'agent.apiPort': number;
  'agent.healthProbeInterval': string;
  'datapath.cryptoThreads': number;
  'datapath.priority': number;
  'datapath.realtime': boolean;
}

type Kind = 'bool' | 'duration' | 'string' | 'port' | 'threads' | 'nice' | { oneOf: readonly string[] };

/** Most crypto threads per datapath worker (the native pool's limit). */
const MAX_THREADS = 8;

const SCHEMA: { [K in keyof Settings]: { kind: Kind; default: Settings[K]; doc: string } } = {
  'encryption.enabled': { kind: 'bool', default: false, doc: 'encrypt traffic between nodes' },
  'encryption.type': { kind: { oneOf: ['ipsec', 'wireguard'] }, default: 'ipsec', doc: 'ipsec or wireguard' },
  'encryption.nodeEncryption': { kind: 'bool', default: false, doc: 'also encrypt node-to-node traffic (WireGuard)' },
  'encryption.wireguard.persistentKeepalive': { kind: 'duration', default: '0s', doc: 'keepalive interval, 0s = off' },
  'encryption.wireguard.keyRotationInterval': { kind: 'duration', default: '0s', doc: "rotate each node's WireGuard static key this often, without loss (0s: only on `veil encryption rotate-key --wireguard`)" },
  'encryption.wireguard.keylogFile': { kind: 'string', default: '', doc: "write WireGuard session secrets for Wireshark (per node: '{node}' expands)" },
  'encryption.ipsec.secretName': { kind: 'string', default: DEFAULT_IPSEC_SECRET, doc: `secret holding the IPsec key file (data key "${IPSEC_SECRET_DATA_KEY}")` },
  'encryption.ipsec.secretNamespace': { kind: 'string', default: '', doc: "Kubernetes: the secret's namespace, where veil then runs (a pod mounts only its own namespace's Secrets); default veil" },
  'encryption.ipsec.keyRotationDuration': { kind: 'duration', default: '5m', doc: 'how long old keys keep decrypting after a rotation' },
  'encryption.ipsec.keyWatcher': { kind: 'bool', default: true, doc: 'apply key file changes without a restart' },
  'encryption.ipsec.encapsulation': { kind: { oneOf: ['udp', 'esp'] }, default: 'udp', doc: "udp: ESP in UDP 4500 (crosses NAT and firewalls that pass only UDP); esp: raw ESP, IP protocol 50, as Cilium's nodes send it" },
  'agent.metricsPort': { kind: 'port', default: 9962, doc: 'Prometheus metrics port on the node IP' },
  'agent.apiPort': { kind: 'port', default: 9964, doc: 'the agent API over HTTPS on the node IP (read-only, needs the veil-agent-api-token secret)' },
  'agent.healthProbeInterval': { kind: 'duration', default: '2s', doc: 'how often agents probe every other node through the tunnel' },
  // 1 by default: on a machine whose cores are all busy (both lab nodes, iperf3 and the kernel on 2 vCPUs)
  // a helper only competes for them; more pays off where cores are idle (bench/aead-batch.ts).
  'datapath.cryptoThreads': { kind: 'threads', default: 1, doc: `threads (1-${MAX_THREADS}) that share the datapath's large ChaCha20 batches` },
  // -10 by default: woken by a lone packet, the worker then preempts what runs on its CPU instead of
  // waiting up to a scheduler tick (4 ms here) behind it; idle ping p99 fell in every lab A/B round.
  'datapath.priority': { kind: 'nice', default: -10, doc: "the datapath worker thread's nice value (-20..19; below 0 needs CAP_SYS_NICE, without it the worker runs at 0 and the agent warns; 0 leaves it alone)" },
  // A woken realtime worker preempts any normal thread at once (idle ping p99 0.36x main's in the
  // lab, idle-realtime.ts). On by default since session 19: it cost 15-18 % of idle p50 while the
  // RT scheduler left the two lab workers on different vCPUs (each hand-off woke a halted one); it
  // now sits on the first CPU it may use. Under a flow the worker is SCHED_OTHER on every CPU
  // (sampled from /proc), at the same throughput and CPU per GB (docs/performance-log.md).
  'datapath.realtime': { kind: 'bool', default: true, doc: 'the datapath worker runs SCHED_FIFO (priority 1), on the first CPU it may use, while it moves little traffic and drops to SCHED_OTHER at datapath.priority on every CPU while busy or answering control requests; needs CAP_SYS_NICE, without it the agent warns once and the worker stays SCHED_OTHER' },
};

export const SETTING_KEYS = Object.keys(SCHEMA) as (keyof Settings)[];

export function defaultSettings(): Settings {
  const s: Record<string, unknown> = {};
  for (const k of SETTING_KEYS) s[k] = SCHEMA[k].default;
  return s as unknown as Settings;
}

export function settingDoc(key: keyof Settings): string {
  return SCHEMA[key].doc;
}

/** Parses a Go-style duration ("5m", "1m30s", "250ms", "0s") to milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(?:\d+(?:\.\d+)?(?:h|m|s|ms))+$/.exec(text);
  if (!m && text !== '0') throw new VeilError('BAD_DURATION', `invalid duration "${text}"`, 'use a Go duration such as 30s, 5m or 1m30s');
  let total = 0;
  for (const part of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) {
    const n = Number(part[1]);
    total += n * ({ h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const)[part[2] as 'h' | 'm' | 's' | 'ms'];
  }
  return total;
}

export function nearestKey(key: string): string | undefined {
  return nearest(key, SETTING_KEYS);
}

/** Applies one `key=value` assignment (as given to --set), validating key and value. */
export function applySet(settings: Settings, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new VeilError('BAD_SET', `--set "${assignment}" is not key=value`, 'write it as --set encryption.type=wireguard');
  const key = assignment.slice(0, eq).trim();
  const value = assignment.slice(eq + 1).trim();
  // own keys only: `in` also finds Object.prototype's (--set valueOf=x threw a TypeError; found by fuzzing)
  if (!Object.hasOwn(SCHEMA, key)) {
    const near = nearestKey(key);
    throw new VeilError('UNKNOWN_SETTING', `unknown setting "${key}"`,
      near ? `did you mean "${near}"?` : `known settings: ${SETTING_KEYS.join(', ')}`);
  }
  const k = key as keyof Settings;
  const kind = SCHEMA[k].kind;
  const target = settings as unknown as Record<string, unknown>;
  if (kind === 'bool') {
    if (value !== 'true' && value !== 'false') throw new VeilError('BAD_SETTING', `${key} must be true or false, not "${value}"`);
    target[k] = value === 'true';
  } else if (kind === 'duration') {
    parseDuration(value);
    target[k] = value;
  } else if (kind === 'port') {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new VeilError('BAD_SETTING', `${key} must be a port number 1-65535, not "${value}"`);
    target[k] = n;
  } else if (kind === 'threads') {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) throw new VeilError('BAD_SETTING', `${key} must be a whole number from 1 to ${MAX_THREADS}, not "${value}"`);
    target[k] = n;
  } else if (kind === 'nice') {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || n < -20 || n > 19) throw new VeilError('BAD_SETTING', `${key} must be a whole number from -20 to 19 (a nice value), not "${value}"`);
    target[k] = n;
  } else if (kind === 'string') {
    target[k] = value;
  } else {
    if (!kind.oneOf.includes(value)) throw new VeilError('BAD_SETTING', `${key} must be one of ${kind.oneOf.join(', ')}, not "${value}"`);
    target[k] = value;
  }
}

/** The agent config keys and values (Cilium's names), as `veil config view` prints them. */
export function renderConfig(s: Settings): Record<string, string> {
  const c: Record<string, string> = {};
  if (s['encryption.enabled'] && s['encryption.type'] === 'ipsec') {
    c['enable-ipsec'] = 'true';
    c['ipsec-key-file'] = `secret:${s['encryption.ipsec.secretName']}/${IPSEC_SECRET_DATA_KEY}`;
    c['ipsec-key-rotation-duration'] = s['encryption.ipsec.keyRotationDuration'];
    c['enable-ipsec-key-watcher'] = String(s['encryption.ipsec.keyWatcher']);
  }
  if (s['encryption.enabled'] && s['encryption.type'] === 'wireguard') {
    c['enable-wireguard'] = 'true';
    c['wireguard-persistent-keepalive'] = s['encryption.wireguard.persistentKeepalive'];
    if (s['encryption.nodeEncryption']) c['encrypt-node'] = 'true';
    if (s['encryption.wireguard.keylogFile']) c['wireguard-keylog-file'] = s['encryption.wireguard.keylogFile'];
  }
  c['prometheus-serve-addr'] = `:${s['agent.metricsPort']}`;
  c['agent-api-serve-addr'] = `:${s['agent.apiPort']}`;
  c['health-probe-interval'] = s['agent.healthProbeInterval'];
  c['datapath-crypto-threads'] = String(s['datapath.cryptoThreads']);
  c['datapath-priority'] = String(s['datapath.priority']);
  c['datapath-realtime'] = String(s['datapath.realtime']);
  return c;
}
