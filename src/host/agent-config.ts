// The host agent's configuration: /etc/veil/agent.yaml, then VEIL_* variables, then flags (each
// overrides the one before). Validated whole before the agent touches anything, so a bad config
// changes nothing and says what to fix.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { checkClusterName } from '../control/cluster.js';
import { formatCidr, parseCidr, parseIp } from '../net/cidr.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { nearest } from '../util/nearest.js';

export const DEFAULT_AGENT_CONFIG = '/etc/veil/agent.yaml';
export const DEFAULT_STATE_DIR = '/var/lib/veil';
export const DEFAULT_RUN_DIR = '/run/veil';

/** How the agent reaches the cluster's etcd (the same fields `veil cluster add` takes). */
export interface EtcdConnection {
  endpoints: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  passwordFile?: string;
}

export interface HostAgentConfig {
  cluster: string;
  /** Default: the host name. */
  nodeName: string;
  etcd: EtcdConnection;
  underlay: {
    /** Default: the interface of the route to the first etcd endpoint (else the default route). */
    interface?: string;
    /** Default: that interface's primary address. */
    address?: string;
    /** Default: that interface's MTU. */
    mtu?: number;
  };
  /** Default: the pod CIDRs of this node's object in the registry. */
  podCIDRs: string[];
  stateDir: string;
  runDir: string;
}

/** Each setting's file path, variable and flag: the one table all three layers are read from. */
const FIELDS = {
  cluster: { env: 'VEIL_CLUSTER', flag: 'cluster', type: 'cluster' },
  nodeName: { env: 'VEIL_NODE_NAME', flag: 'node', type: 'name' },
  'etcd.endpoints': { env: 'VEIL_ETCD_ENDPOINTS', flag: 'etcd-endpoints', type: 'urls' },
  'etcd.caFile': { env: 'VEIL_ETCD_CA_FILE', flag: 'etcd-ca-file', type: 'file' },
  'etcd.certFile': { env: 'VEIL_ETCD_CERT_FILE', flag: 'etcd-cert-file', type: 'file' },
  'etcd.keyFile': { env: 'VEIL_ETCD_KEY_FILE', flag: 'etcd-key-file', type: 'file' },
  'etcd.username': { env: 'VEIL_ETCD_USERNAME', flag: 'etcd-username', type: 'string' },
  'etcd.passwordFile': { env: 'VEIL_ETCD_PASSWORD_FILE', flag: 'etcd-password-file', type: 'file' },
  'underlay.interface': { env: 'VEIL_UNDERLAY_INTERFACE', flag: 'underlay-interface', type: 'ifname' },
  'underlay.address': { env: 'VEIL_UNDERLAY_ADDRESS', flag: 'underlay-address', type: 'ip' },
  'underlay.mtu': { env: 'VEIL_UNDERLAY_MTU', flag: 'underlay-mtu', type: 'mtu' },
  podCIDRs: { env: 'VEIL_POD_CIDRS', flag: 'pod-cidr', type: 'cidrs' },
  stateDir: { env: 'VEIL_STATE_DIR', flag: 'state-dir', type: 'path' },
  runDir: { env: 'VEIL_RUN_DIR', flag: 'run-dir', type: 'path' },
} as const;

export type ConfigField = keyof typeof FIELDS;
export const CONFIG_FIELDS = Object.keys(FIELDS) as ConfigField[];
/** The flags `veil agent run` takes for the fields (all string-valued; --pod-cidr repeats). */
export const CONFIG_FLAGS: Record<string, ConfigField> = Object.fromEntries(CONFIG_FIELDS.map((f) => [FIELDS[f].flag, f]));

export interface ConfigSources {
  /** The config file's path; undefined: the default path, used only if it exists. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by field (strings as typed; podCIDRs may repeat). */
  flags?: Partial<Record<ConfigField, string | string[]>>;
}

function invalid(where: string, what: string, hint: string): never {
  throw new VeilError('BAD_AGENT_CONFIG', `${where}: ${what}`, hint);
}

/** Flattens the YAML document to dotted field names, refusing unknown keys with the nearest known one. */
function flattenFile(doc: unknown, file: string): Partial<Record<ConfigField, unknown>> {
  const out: Partial<Record<ConfigField, unknown>> = {};
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== 'object' || Array.isArray(doc)) invalid(file, 'the file is not a mapping of settings', `see ${DEFAULT_AGENT_CONFIG} in README ("Run on your own hosts")`);
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix + k;
      if ((key === 'etcd' || key === 'underlay') && v && typeof v === 'object' && !Array.isArray(v)) { walk(v as Record<string, unknown>, `${key}.`); continue; }
      if (!(CONFIG_FIELDS as string[]).includes(key)) {
        const near = nearest(key, CONFIG_FIELDS);
        invalid(file, `unknown setting "${key}"`, near ? `did you mean "${near}"?` : `known settings: ${CONFIG_FIELDS.join(', ')}`);
      }
      out[key as ConfigField] = v;
    }
  };
  walk(doc as Record<string, unknown>, '');
  return out;
}

function readFileLayer(sources: ConfigSources): { values: Partial<Record<ConfigField, unknown>>; file?: string } {
  const file = sources.file ?? DEFAULT_AGENT_CONFIG;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && sources.file === undefined) return { values: {} }; // no file: flags and variables alone
    return invalid(file, `cannot read the config file (${code ?? errorMessage(e)})`, code === 'ENOENT' ? `create it (see README, "Run on your own hosts") or pass the path with --config` : 'make it readable by the agent (root)');
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    return invalid(file, `not valid YAML: ${errorMessage(e).split('\n')[0]}`, 'fix the line it names');
  }
  return { values: flattenFile(doc, file), file };
}

/** Converts and checks one value; `where` names its source for the error. */
function convert(field: ConfigField, raw: unknown, where: string): unknown {
  const { type } = FIELDS[field];
  const asString = (): string => {
    if (typeof raw === 'number') return String(raw);
    if (typeof raw !== 'string' || raw.trim() === '') invalid(where, `${field} must be a non-empty string`, `set ${field}`);
    return raw.trim();
  };
  const asList = (): string[] => {
    const items = Array.isArray(raw) ? raw.map(String) : asString().split(',');
    const list = items.map((s) => s.trim()).filter((s) => s !== '');
    if (list.length === 0) invalid(where, `${field} is empty`, `give at least one value`);
    return list;
  };
  switch (type) {
    case 'cluster': {
      const s = asString();
      try { return checkClusterName(s); } catch (e) { return invalid(where, errorMessage(e), 'fix the cluster name'); }
    }
    case 'name': {
      const s = asString();
      if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(s)) invalid(where, `${field} "${s}" is not a valid name`, 'use lowercase letters, digits, dots and dashes (a DNS-1123 subdomain)');
      return s;
    }
    case 'string': case 'path': case 'file': {
      const s = asString();
      if ((type === 'path' || type === 'file') && !s.startsWith('/')) invalid(where, `${field} "${s}" is not an absolute path`, 'give the full path, starting with /');
      return s;
    }
    case 'ifname': {
      const s = asString();
      if (!/^[^\s/]{1,15}$/.test(s)) invalid(where, `${field} "${s}" is not an interface name`, "name an interface 'ip link' shows");
      return s;
    }
    case 'ip': {
      const s = asString();
      try { parseIp(s); } catch { invalid(where, `${field} "${s}" is not an IP address`, 'give an IPv4 or IPv6 address'); }
      return s;
    }
    case 'mtu': {
      const n = Number(asString());
      if (!Number.isInteger(n) || n < 1280 || n > 65535) invalid(where, `${field} "${String(raw)}" is not an MTU`, 'give a whole number from 1280 to 65535');
      return n;
    }
    case 'cidrs':
      return asList().map((c) => {
        try { return formatCidr(parseCidr(c)); } catch (e) { return invalid(where, `${field}: ${errorMessage(e)}`, 'give CIDRs such as 10.244.1.0/24'); }
      });
    case 'urls':
      return asList().map((u) => {
        if (/^unix:\/\/\/\S+$/.test(u)) return u; // a local etcd's socket (the lab's members offer one)
        let url: URL;
        try { url = new URL(u); } catch { return invalid(where, `${field}: "${u}" is not a URL`, 'write endpoints as https://10.0.0.1:2379 (or http:// without TLS)'); }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') invalid(where, `${field}: "${u}" must be http:// or https://`, 'write endpoints as https://10.0.0.1:2379');
        // url.port is '' for a scheme's default port even when written (http://x:80): read the text too.
        const port = url.port || (/^[a-z]+:\/\/(?:\[[^\]]*\]|[^/:@]*)(?::(\d+))/i.exec(u)?.[1] ?? '');
        if (!port) invalid(where, `${field}: "${u}" has no port`, "etcd's client port is usually 2379");
        return `${url.protocol}//${url.hostname}:${Number(port)}`;
      });
  }
}

function setField(cfg: Record<string, unknown>, field: ConfigField, value: unknown): void {
  const dot = field.indexOf('.');
  if (dot < 0) { cfg[field] = value; return; }
  const group = field.slice(0, dot);
  (cfg[group] as Record<string, unknown>)[field.slice(dot + 1)] = value;
}

/**
 * Reads the config from file, variables and flags, later layers winning, and checks it whole:
 * every error names where the bad value came from and what to write instead.
 */
export function loadAgentConfig(sources: ConfigSources = {}): HostAgentConfig {
  const env = sources.env ?? process.env;
  const cfg: Record<string, unknown> = {
    cluster: 'default', nodeName: hostname().toLowerCase(), etcd: { endpoints: [] }, underlay: {},
    podCIDRs: [], stateDir: DEFAULT_STATE_DIR, runDir: DEFAULT_RUN_DIR,
  };
  const fileLayer = readFileLayer(sources);
  for (const [field, raw] of Object.entries(fileLayer.values) as [ConfigField, unknown][]) {
    setField(cfg, field, convert(field, raw, fileLayer.file ?? DEFAULT_AGENT_CONFIG));
  }
  for (const field of CONFIG_FIELDS) {
    const raw = env[FIELDS[field].env];
    if (raw !== undefined && raw !== '') setField(cfg, field, convert(field, raw, `$${FIELDS[field].env}`));
  }
  for (const [field, raw] of Object.entries(sources.flags ?? {}) as [ConfigField, string | string[]][]) {
    if (raw === undefined) continue;
    setField(cfg, field, convert(field, raw, `--${FIELDS[field].flag}`));
  }
  const out = cfg as unknown as HostAgentConfig;
  if (out.etcd.endpoints.length === 0) {
    invalid('agent config', 'no etcd endpoints', `set etcd.endpoints in ${fileLayer.file ?? DEFAULT_AGENT_CONFIG}, $VEIL_ETCD_ENDPOINTS or --etcd-endpoints`);
  }
  if ((out.etcd.certFile === undefined) !== (out.etcd.keyFile === undefined)) {
    invalid('agent config', 'etcd.certFile and etcd.keyFile go together', 'give both (the client certificate and its key) or neither');
  }
  if (out.etcd.passwordFile !== undefined && out.etcd.username === undefined) {
    invalid('agent config', 'etcd.passwordFile without etcd.username', 'set etcd.username too');
  }
  const usesTls = out.etcd.endpoints.some((u) => u.startsWith('https:'));
  if (usesTls && out.etcd.endpoints.some((u) => !u.startsWith('https:'))) {
    invalid('agent config', 'etcd endpoints mix https:// with http:// or unix://', 'use https:// for all of them, or none');
  }
  if (!usesTls && (out.etcd.caFile || out.etcd.certFile)) {
    invalid('agent config', 'TLS files are set but every etcd endpoint is http://', 'write the endpoints as https://');
  }
  for (const f of [out.etcd.caFile, out.etcd.certFile, out.etcd.keyFile, out.etcd.passwordFile]) {
    if (f === undefined) continue;
    try { readFileSync(f); } catch (e) {
      invalid('agent config', `cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)})`, 'check the path and that root can read it');
    }
  }
  return out;
}
