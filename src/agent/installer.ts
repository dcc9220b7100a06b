// Installing veil on a cluster, as far as the registry goes: store the settings, wait until every
// node's agent holds its lease and reports ready; and the reverse. Who starts the agents is not
// the installer's business: the lab starts its nodes' agents (src/lab/agents.ts), a real host
// runs its agent under systemd.
import type { Registry, RegistryObject } from '../control/registry.js';
import { VeilError, errorMessage } from '../util/errors.js';
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

/** How long a rolled-back host install waits for the agents to remove their tunnels and let go of their leases. */
export const HOST_ROLLBACK_WAIT_MS = 60_000;

/**
 * `veil install` on hosts, all or nothing: when the wait fails, the settings this install wrote are
 * taken back. A cluster that was not installed loses them: every running agent sees its settings
 * go, removes its tunnel (device, fail-closed routes, the plaintext routes it replaced put back)
 * and lets go of its lease; once all have (at most rollbackWaitMs), what they published is
 * removed. One that was installed gets its previous settings back. The error says what was undone
 * (the caller removes the secrets it made).
 */
export async function hostInstallAtomic(reg: Registry, settings: Settings, timeoutMs: number, progress?: (ready: number, total: number, notReady: string[]) => void,
  rollbackWaitMs = HOST_ROLLBACK_WAIT_MS): Promise<RegistryObject[]> {
  const before = await readSettings(reg);
  try {
    return await hostInstall(reg, settings, timeoutMs, progress);
  } catch (e) {
    if (e instanceof VeilError && e.code === 'ALREADY_INSTALLED') throw e; // nothing was written
    let undone: string;
    try {
      if (before) {
        await writeSettings(reg, before);
        undone = 'the previous settings are back';
      } else {
        await clearSettings(reg);
        const holding = await leasesGone(reg, rollbackWaitMs);
        if (holding.length) {
          undone = `the install was rolled back, but the agents on ${holding.join(', ')} have not let go of their leases in ${Math.round(rollbackWaitMs / 1000)}s: look at 'journalctl -u veil-agent' there, then run 'veil uninstall'`;
        } else {
          await uninstall(reg);
          undone = 'the install was rolled back: its settings are removed, and every agent removed its tunnel (devices, fail-closed routes) and put its plaintext routes back';
        }
      }
    } catch (r) {
      undone = `rolling it back failed too (${errorMessage(r)}): run 'veil uninstall'`;
    }
    if (e instanceof VeilError) throw new VeilError(e.code, `${e.message}; ${undone}`, e.hint);
    throw new VeilError('INSTALL_FAILED', `${errorMessage(e)}; ${undone}`);
  }
}

/** Waits until no agent holds a lease (at most ms); returns the nodes whose agents still do. */
async function leasesGone(reg: Registry, ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const holding = (await reg.list('Lease')).map((l) => l.metadata.name);
    if (!holding.length || Date.now() > deadline) return holding;
    await new Promise((r) => setTimeout(r, 250));
  }
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
