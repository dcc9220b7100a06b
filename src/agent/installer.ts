// Installing veil on a cluster, as far as the registry goes: store the settings, wait until every
// node's agent holds its lease and reports ready; and the reverse. Who starts the agents is not
// the installer's business: the lab starts its nodes' agents (src/lab/agents.ts), a real host
// runs its agent under systemd.
import type { Registry, RegistryObject } from '../control/registry.js';
import { VeilError } from '../util/errors.js';
import { clearSettings, readSettings, writeSettings } from './install-state.js';
import { agentStatusOf, leasesByName, nodeReady } from './registry-node-source.js';
import type { Settings } from './settings.js';
import { WG_DEVICE, WG_PUBKEY_ANNOTATION } from './wireguard-mode.js';
import { IPSEC_DEVICE } from './ipsec-mode.js';

/** The tunnel devices an agent may have left (they are persistent: they outlive the agent). */
export const TUNNEL_DEVICES = [WG_DEVICE, IPSEC_DEVICE];

/** The annotations agents publish (removed on uninstall). */
const AGENT_ANNOTATIONS = [WG_PUBKEY_ANNOTATION];

/** Stores the settings (refusing a switch of mode without an uninstall); returns the nodes. */
export async function install(cluster: string, reg: Registry, settings: Settings): Promise<RegistryObject[]> {
  const nodes = await reg.list('Node');
  if (!nodes.length) throw new VeilError('NO_NODES', `cluster '${cluster}' has no nodes`, "create the lab first: 'veil lab up'");
  await storeSettings(reg, settings);
  return nodes;
}

/**
 * `veil install` on hosts, whose agents systemd runs: the settings (an agent that found none exits
 * and is restarted), then the wait for the nodes registered so far; hosts that join later read them.
 */
export async function hostInstall(reg: Registry, settings: Settings, timeoutMs: number, progress?: (ready: number, total: number, notReady: string[]) => void): Promise<RegistryObject[]> {
  await storeSettings(reg, settings);
  const nodes = await reg.list('Node');
  if (nodes.length) await waitReady(reg, timeoutMs, progress);
  return nodes;
}

async function storeSettings(reg: Registry, settings: Settings): Promise<void> {
  const prev = await readSettings(reg);
  if (prev && prev['encryption.enabled'] && (prev['encryption.type'] !== settings['encryption.type'])) {
    throw new VeilError('ALREADY_INSTALLED', `veil is already installed with ${prev['encryption.type']} encryption`, "run 'veil uninstall' first");
  }
  await writeSettings(reg, settings);
}

/** Removes the settings, the liveness leases and what agents published to their nodes (their agents must be stopped). */
export async function uninstall(reg: Registry): Promise<void> {
  for (const l of await reg.list('Lease')) await reg.delete('Lease', l.metadata.name); // stopped agents let theirs lapse
  for (const n of await reg.list('Node')) {
    await reg.mutate('Node', n.metadata.name, (cur) => {
      if (!cur) return undefined;
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      for (const a of AGENT_ANNOTATIONS) delete annotations[a];
      const status = { ...(cur.status ?? {}) };
      delete status['agent'];
      const spec = { ...(cur.spec ?? {}) };
      delete spec['encryption'];
      return { ...cur, metadata: { ...cur.metadata, annotations }, spec, status };
    });
  }
  await clearSettings(reg);
}

/**
 * Waits until every node is ready (its agent's lease is live and it reports ready); calls progress
 * on each change. `gone(node)` may say that a node's agent is not running (with the reason, if
 * known): the wait then ends at once instead of at the timeout.
 */
export async function waitReady(reg: Registry, timeoutMs: number, progress?: (ready: number, total: number, notReady: string[]) => void,
  gone?: (node: RegistryObject) => Promise<{ reason?: string } | undefined>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    const nodes = await reg.list('Node');
    const leases = await leasesByName(reg);
    const waiting = nodes.filter((n) => !nodeReady(n, leases.get(n.metadata.name)));
    const notReady = waiting.map((n) => n.metadata.name);
    const ready = nodes.length - notReady.length;
    if (ready !== last) { progress?.(ready, nodes.length, notReady); last = ready; }
    if (!notReady.length) return;
    for (const n of waiting) {
      const g = await gone?.(n);
      if (!g) continue;
      const name = n.metadata.name;
      throw new VeilError('AGENT_FAILED', `the agent on ${name} exited${g.reason ? `: ${g.reason}` : ''}`, `look at 'veil agent logs ${name}', fix the cause, then re-run 'veil install'`);
    }
    if (Date.now() > deadline) {
      throw new VeilError('NOT_READY', `agents not ready after ${Math.round(timeoutMs / 1000)}s on: ${notReady.join(', ')}`,
        `look at 'veil agent logs ${notReady[0]}' and 'veil status'`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Why a node's agent failed to start, as it published it (pid: only that process's report). */
export function publishedStartFailure(node: RegistryObject, pid?: number): string | undefined {
  const st = agentStatusOf(node);
  if (!st?.error || (pid !== undefined && st.pid !== pid)) return undefined;
  return st.error;
}
