// How `veil encryption rotate-key --wireguard` asks agents to rotate their node's WireGuard static
// key: a request id per node (base64, as Secret data is) in one Secret, which agents read where they
// read the IPsec key secret (the registry, or a mounted Secret under Kubernetes). An agent acts once
// on each new id for its node (src/agent/wireguard-key-rotation.ts); the Secret changes only on such
// a request, so watching it costs nothing.
import { randomUUID } from 'node:crypto';
import type { Registry } from '../control/registry.js';
import { VeilError } from '../util/errors.js';

export const WG_ROTATION_SECRET = 'veil-wireguard-key-rotation';

/**
 * Requests a rotation on `nodes` (every registered node when undefined). Returns the request id
 * and the nodes asked. Fails for a node the registry does not know.
 */
export async function requestWireGuardRotation(reg: Registry, nodes: string[] | undefined): Promise<{ id: string; nodes: string[] }> {
  const known = (await reg.list('Node')).map((n) => n.metadata.name);
  const targets = nodes ?? known;
  for (const n of targets) {
    if (!known.includes(n)) throw new VeilError('UNKNOWN_NODE', `node '${n}' is not in the registry`, `known nodes: ${known.join(', ') || 'none'}`);
  }
  if (targets.length === 0) throw new VeilError('NO_NODES', 'the cluster has no nodes to rotate', 'register nodes first');
  const id = `${new Date().toISOString()}-${randomUUID().slice(0, 8)}`;
  await reg.mutate('Secret', WG_ROTATION_SECRET, (cur) => ({
    kind: 'Secret', type: 'Opaque', metadata: cur?.metadata ?? { name: WG_ROTATION_SECRET },
    data: { ...(cur?.data ?? {}), ...Object.fromEntries(targets.map((n) => [n, Buffer.from(id).toString('base64')])) },
  }));
  return { id, nodes: targets };
}

/** The request id for `node` in the rotation Secret's data, or undefined. */
export function rotationRequestFor(data: Record<string, string> | undefined, node: string): string | undefined {
  const v = data?.[node];
  return v ? Buffer.from(v, 'base64').toString('utf8') : undefined;
}
