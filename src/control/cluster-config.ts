// The clusters a veil CLI knows, like a kubeconfig: ~/.veil/config ($VEIL_CONFIG overrides) lists
// each cluster's registry (etcd endpoints and credentials; a lab's are its etcd's unix sockets) and names the
// current one. YAML, as a kubeconfig is, read and written with the `yaml` package, whose document
// API lets `veil cluster add|use` change one entry and keep the rest of the file, comments included.
// Relative file paths in it are relative to the file's directory.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument, isMap, isSeq, type Document } from 'yaml';
import { writeFileDurable } from '../util/durable-file.js';
import { VeilError } from '../util/errors.js';
import { checkEndpoints, type EtcdConnectionOptions } from './etcd/etcd-connection.js';

/** How to reach the cluster's etcd (the file's password-file is passwordFile here). */
export interface EtcdRegistryConfig extends Pick<EtcdConnectionOptions, 'endpoints' | 'ca' | 'cert' | 'key' | 'username' | 'passwordFile'> {
  type: 'etcd';
}

/** A Kubernetes cluster, reached like kubectl (a kubeconfig and context); veil's objects are in namespace. */
export interface KubernetesRegistryConfig {
  type: 'kubernetes';
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

export type RegistryConfig = EtcdRegistryConfig | KubernetesRegistryConfig;

export interface ClusterEntry {
  name: string;
  registry: RegistryConfig;
}

export interface ClusterConfig {
  path: string;
  currentCluster: string | undefined;
  clusters: ClusterEntry[];
}

/** $VEIL_CONFIG, else config in $VEIL_HOME (a lab's home keeps its own clusters), else ~/.veil/config. */
export function clusterConfigPath(): string {
  const home = process.env['VEIL_HOME'];
  return process.env['VEIL_CONFIG'] || (home ? join(home, 'config') : join(homedir(), '.veil', 'config'));
}

/** The config file's clusters (none when the file does not exist), file paths made absolute. */
export function loadClusterConfig(path = clusterConfigPath()): ClusterConfig {
  if (!existsSync(path)) return { path, currentCluster: undefined, clusters: [] };
  const raw = documentValue(readDoc(path), path);
  if (raw === null || raw === undefined) return { path, currentCluster: undefined, clusters: [] };
  const bad = (what: string) => new VeilError('BAD_CLUSTER_CONFIG', `${path}: ${what}`, "fix the file, or rewrite an entry with 'veil cluster add' (see 'veil cluster add -h')");
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('not a map of current-cluster and clusters');
  const top = raw as Record<string, unknown>;
  for (const k of Object.keys(top)) if (k !== 'current-cluster' && k !== 'clusters') throw bad(`unknown key '${k}' (known: current-cluster, clusters)`);
  const current = top['current-cluster'];
  if (current !== undefined && typeof current !== 'string') throw bad('current-cluster is not a name');
  const list = top['clusters'] ?? [];
  if (!Array.isArray(list)) throw bad('clusters is not a list');
  const base = dirname(resolve(path));
  const clusters = list.map((c, i) => parseEntry(c, `clusters[${i}]`, base, bad));
  return { path, currentCluster: current as string | undefined, clusters };
}

function parseEntry(c: unknown, at: string, base: string, bad: (what: string) => VeilError): ClusterEntry {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad(`${at} is not a map`);
  const e = c as Record<string, unknown>;
  if (typeof e['name'] !== 'string' || !e['name']) throw bad(`${at} has no name`);
  const name = e['name'];
  const r = e['registry'];
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw bad(`cluster '${name}' has no registry map`);
  const reg = r as Record<string, unknown>;
  if (reg['type'] === 'kubernetes') return { name, registry: parseKubernetesEntry(reg, name, base, bad) };
  if (reg['type'] !== 'etcd') throw bad(`cluster '${name}': registry type ${JSON.stringify(reg['type'])} (etcd or kubernetes)`);
  const known = ['type', 'endpoints', 'ca', 'cert', 'key', 'username', 'password-file'];
  for (const k of Object.keys(reg)) if (!known.includes(k)) throw bad(`cluster '${name}': unknown registry key '${k}' (known: ${known.join(', ')})`);
  const endpoints = reg['endpoints'];
  if (!Array.isArray(endpoints) || !endpoints.every((x) => typeof x === 'string')) throw bad(`cluster '${name}': endpoints is not a list of URLs`);
  try { checkEndpoints(endpoints); } catch (err) { throw bad(`cluster '${name}': ${(err as VeilError).describe()}`); }
  const file = (k: string): string | undefined => {
    const v = reg[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !v) throw bad(`cluster '${name}': ${k} is not a file path`);
    return isAbsolute(v) ? v : resolve(base, v);
  };
  const username = reg['username'];
  if (username !== undefined && typeof username !== 'string') throw bad(`cluster '${name}': username is not a string`);
  const out: EtcdRegistryConfig = { type: 'etcd', endpoints };
  const ca = file('ca'), cert = file('cert'), key = file('key'), passwordFile = file('password-file');
  if (ca) out.ca = ca;
  if (cert) out.cert = cert;
  if (key) out.key = key;
  if (username) out.username = username;
  if (passwordFile) out.passwordFile = passwordFile;
  return { name, registry: out };
}

function parseKubernetesEntry(reg: Record<string, unknown>, name: string, base: string, bad: (what: string) => VeilError): KubernetesRegistryConfig {
  const known = ['type', 'kubeconfig', 'context', 'namespace'];
  for (const k of Object.keys(reg)) if (!known.includes(k)) throw bad(`cluster '${name}': unknown registry key '${k}' (known: ${known.join(', ')})`);
  const out: KubernetesRegistryConfig = { type: 'kubernetes' };
  for (const k of ['kubeconfig', 'context', 'namespace'] as const) {
    const v = reg[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !v) throw bad(`cluster '${name}': ${k} is not a string`);
    out[k] = k === 'kubeconfig' && !isAbsolute(v) ? resolve(base, v) : v;
  }
  return out;
}

/** Adds the cluster, or replaces the entry of that name; the rest of the file stays as it was. */
export function saveClusterEntry(entry: ClusterEntry, path = clusterConfigPath()): void {
  const doc = existsSync(path) ? readDoc(path) : parseDocument('');
  if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as typeof doc.contents;
  const reg = entry.registry;
  const node = reg.type === 'kubernetes' ? doc.createNode({ name: entry.name, registry: { ...reg } }) : doc.createNode({
    name: entry.name,
    registry: {
      type: 'etcd', endpoints: reg.endpoints,
      ...(reg.ca ? { ca: reg.ca } : {}), ...(reg.cert ? { cert: reg.cert } : {}), ...(reg.key ? { key: reg.key } : {}),
      ...(reg.username ? { username: reg.username } : {}), ...(reg.passwordFile ? { 'password-file': reg.passwordFile } : {}),
    },
  });
  let seq = doc.get('clusters');
  if (!isSeq(seq)) {
    seq = doc.createNode([]);
    doc.set('clusters', seq);
  }
  const items = (seq as { items: unknown[] }).items;
  const at = items.findIndex((i) => isMap(i) && i.get('name') === entry.name);
  if (at >= 0) items[at] = node;
  else items.push(node);
  writeDoc(path, doc);
}

/** Removes the cluster's entry (and current-cluster if it names it); nothing if there is none. */
export function removeClusterEntry(name: string, path = clusterConfigPath()): void {
  if (!existsSync(path)) return;
  const doc = readDoc(path);
  const seq = doc.get('clusters');
  let changed = false;
  if (isSeq(seq)) {
    const items = (seq as { items: unknown[] }).items;
    const at = items.findIndex((i) => isMap(i) && i.get('name') === name);
    if (at >= 0) { items.splice(at, 1); changed = true; }
  }
  if (doc.get('current-cluster') === name) { doc.delete('current-cluster'); changed = true; }
  if (changed) writeDoc(path, doc);
}

/** Records name as the config's current cluster. */
export function saveCurrentCluster(name: string, path = clusterConfigPath()): void {
  const doc = existsSync(path) ? readDoc(path) : parseDocument('');
  if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as typeof doc.contents;
  doc.set('current-cluster', name);
  writeDoc(path, doc);
}

function readDoc(path: string): Document {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new VeilError('BAD_CLUSTER_CONFIG', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'check its permissions, or point $VEIL_CONFIG at another file');
  }
  const doc = parseDocument(text);
  if (doc.errors.length) {
    throw new VeilError('BAD_CLUSTER_CONFIG', `${path} is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`, 'fix the file (it is YAML, like a kubeconfig)');
  }
  return doc;
}

/** The document as plain values; the YAML library's own refusals (an alias bomb) said as ours. */
function documentValue(doc: Document, path: string): unknown {
  try {
    return doc.toJS();
  } catch (e) {
    throw new VeilError('BAD_CLUSTER_CONFIG', `${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`, 'fix the file (it is YAML, like a kubeconfig)');
  }
}

function writeDoc(path: string, doc: Document): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // the user's own file: a crash must not lose an edit; it names credentials: 0600
  writeFileDurable(path, doc.toString(), { mode: 0o600 });
}
