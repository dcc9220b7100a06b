// `veil install --kubernetes` and `veil uninstall --kubernetes` through the user's kubeconfig:
// everything is checked before anything is written (the cluster serves ValidatingAdmissionPolicy,
// the IPsec Secret exists and parses), the
// objects are server-side applied as field manager "veil" (re-running converges; a field someone
// else changed is taken back), the agent API token Secret is made once, and the wait follows the
// DaemonSet's rollout and then every Node's published agent status, printing progress as it moves.
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { apiError, apiStatusCode } from '../control/kubernetes/kube-errors.js';
import { AGENT_STATUS_ANNOTATION, ENCRYPTION_KEY_ANNOTATION, agentStatusAnnotation, kubeNodeView } from '../control/kubernetes/kube-node.js';
import { IPSEC_SECRET_DATA_KEY } from '../keys/ipsec-key-secret.js';
import { parseKeyFile } from '../keys/ipsec-keyfile.js';
import { VeilError } from '../util/errors.js';
import { API_TOKEN_SECRET } from './api-token.js';
import { AGENT_NAME, FIELD_MANAGER, installNamespace, renderManifests, type Manifest } from './kubernetes-manifests.js';
import { PEER_API_VERSION, PEER_CRD_NAME, PEER_KIND } from '../control/kubernetes/peer-crd.js';
import type { Settings } from './settings.js';
import { WG_PUBKEY_ANNOTATION } from './wireguard-mode.js';

export interface KubeInstallOptions {
  settings: Settings;
  image?: string;
  timeoutMs: number;
  progress: (line: string) => void;
}

type Obj = k8s.KubernetesObject & Record<string, unknown>;

function plain<T>(o: T): Obj {
  return JSON.parse(JSON.stringify(o)) as Obj;
}

async function readOrUndefined(api: k8s.KubernetesObjectApi, spec: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): Promise<Obj | undefined> {
  try {
    return plain(await api.read(spec));
  } catch (e) {
    if (apiStatusCode(e) === 404) return undefined;
    throw apiError(`cannot read ${spec.kind} ${spec.metadata.namespace ? `${spec.metadata.namespace}/` : ''}${spec.metadata.name}`, e);
  }
}

/** The policy that holds each agent to its own Node needs ValidatingAdmissionPolicy v1 (Kubernetes 1.30+). */
async function checkAdmissionPolicies(kc: k8s.KubeConfig): Promise<void> {
  let served: string[] = [];
  try {
    served = (await kc.makeApiClient(k8s.AdmissionregistrationV1Api).getAPIResources()).resources.map((r) => r.name);
  } catch (e) {
    if (apiStatusCode(e) !== 404) throw apiError('cannot list the API server\'s admissionregistration.k8s.io/v1 resources', e);
  }
  if (!served.includes('validatingadmissionpolicies')) {
    throw new VeilError('KUBE_TOO_OLD', 'this cluster does not serve ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1), which veil installs so that each agent writes only its own Node',
      'veil needs Kubernetes 1.30 or later: upgrade the cluster');
  }
}

/** IPsec: the key Secret must exist and hold a key file Cilium would accept. */
async function checkIpsecSecret(api: k8s.KubernetesObjectApi, s: Settings, ns: string): Promise<string> {
  const name = s['encryption.ipsec.secretName'];
  const secret = await readOrUndefined(api, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns } });
  const raw = (secret?.['data'] as Record<string, string> | undefined)?.[IPSEC_SECRET_DATA_KEY];
  if (raw === undefined) {
    throw new VeilError('NO_SECRET', `IPsec needs the Secret ${ns}/${name} with a "${IPSEC_SECRET_DATA_KEY}" entry, which does not exist`,
      `create it: kubectl create -n ${ns} secret generic ${name} --from-literal=${IPSEC_SECRET_DATA_KEY}="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128"`);
  }
  const parsed = parseKeyFile(Buffer.from(raw, 'base64').toString('utf8'));
  if (!parsed.ok) throw new VeilError(parsed.error.code, `the Secret ${ns}/${name}: ${parsed.error.message}`, parsed.error.hint);
  return `key id ${parsed.value[0]!.spi}`;
}

/** The rollout as cilium-cli reports it: desired, ready, updated, available. */
function rolloutOf(ds: Obj | undefined): { desired: number; ready: number; updated: number; available: number; current: boolean } {
  const st = (ds?.['status'] ?? {}) as Record<string, number>;
  const gen = Number((ds?.metadata as { generation?: number } | undefined)?.generation ?? 0);
  return {
    desired: st['desiredNumberScheduled'] ?? 0, ready: st['numberReady'] ?? 0, updated: st['updatedNumberScheduled'] ?? 0,
    available: st['numberAvailable'] ?? 0, current: (st['observedGeneration'] ?? 0) >= gen,
  };
}

/** Every Node's agent, as it published itself: name -> ready, or why not. */
async function agentsOnNodes(api: k8s.KubernetesObjectApi): Promise<Map<string, string | true>> {
  const list = await api.list('v1', 'Node');
  return new Map(list.items.map((n) => {
    const v = kubeNodeView(plain(n));
    const st = agentStatusAnnotation(v);
    return [v.name, st?.['ready'] === true ? true : typeof st?.['error'] === 'string' ? st['error'] : st ? 'not ready' : 'no agent yet'];
  }));
}

export async function kubernetesInstall(kc: k8s.KubeConfig, o: KubeInstallOptions): Promise<{ nodes: number }> {
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const s = o.settings;
  const ns = installNamespace(s);
  const manifests = renderManifests({ settings: s, image: o.image });
  await checkAdmissionPolicies(kc);
  if (s['encryption.type'] === 'ipsec') o.progress(`🔑 Found the IPsec Secret ${ns}/${s['encryption.ipsec.secretName']} (${await checkIpsecSecret(api, s, ns)})`);
  else o.progress('🔑 WireGuard: every node generates its own key pair and publishes its public key on its Node');
  // what the cluster holds before anything is written: an install that fails puts it back
  const before = await Promise.all(manifests.map((m) => readOrUndefined(api, m)));
  const tokenRef = { apiVersion: 'v1', kind: 'Secret', metadata: { name: API_TOKEN_SECRET, namespace: ns } };
  let madeToken = false;
  try {
    for (const m of manifests) await applyOne(api, m);
    o.progress(`🚀 Applied ${manifests.length} objects (server-side apply, field manager "${FIELD_MANAGER}") in namespace ${ns}`);
    await waitEstablished(api, Date.now() + o.timeoutMs);
    if (!await readOrUndefined(api, tokenRef)) {
      try {
        await api.create({ ...tokenRef, metadata: { ...tokenRef.metadata, labels: { 'app.kubernetes.io/part-of': 'veil' } }, type: 'Opaque', data: { token: Buffer.from(randomBytes(32).toString('base64url')).toString('base64') } } as k8s.KubernetesObject);
        madeToken = true;
        o.progress(`🔑 Generated the agent API token (Secret ${ns}/${API_TOKEN_SECRET})`);
      } catch (e) {
        if (apiStatusCode(e) !== 409) throw apiError('cannot create the agent API token Secret', e);
      }
    }
    return { nodes: await waitRollout(api, ns, o) };
  } catch (e) {
    const wasInstalled = before.some((b) => b?.kind === 'DaemonSet');
    const failed = e instanceof VeilError ? e : apiError('install failed', e);
    const undone = await rollBack(kc, api, manifests, before, wasInstalled, madeToken ? tokenRef : undefined, s, o.progress)
      .then(() => wasInstalled ? 'the objects veil had before were put back' : 'everything it applied was removed')
      .catch((r: unknown) => `rolling back failed too, so some objects may be left (veil uninstall --kubernetes removes them): ${r instanceof Error ? r.message : String(r)}`);
    throw new VeilError(failed.code, `${failed.message}; the install was rolled back: ${undone}`, failed.hint);
  }
}

/** Waits until the DaemonSet is rolled out and every Node's agent published ready; the node count. */
async function waitRollout(api: k8s.KubernetesObjectApi, ns: string, o: KubeInstallOptions): Promise<number> {
  const deadline = Date.now() + o.timeoutMs;
  let last = '';
  for (;;) {
    const ds = await readOrUndefined(api, { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: AGENT_NAME, namespace: ns } });
    const r = rolloutOf(ds);
    const agents = await agentsOnNodes(api);
    const ready = [...agents.values()].filter((x) => x === true).length;
    const line = `⌛ Waiting for DaemonSet ${ns}/${AGENT_NAME}: ${r.ready}/${r.desired} pods ready, ${r.updated}/${r.desired} updated; agents ready on ${ready}/${agents.size} nodes`;
    if (line !== last) { o.progress(line); last = line; }
    if (r.current && r.desired > 0 && r.available === r.desired && r.updated === r.desired && ready === agents.size && agents.size > 0) return agents.size;
    if (Date.now() > deadline) {
      const waiting = [...agents].filter(([, x]) => x !== true).map(([n, why]) => `${n}: ${why}`);
      throw new VeilError('INSTALL_TIMEOUT', `veil is not ready after ${Math.round(o.timeoutMs / 1000)} s: ${r.ready}/${r.desired} pods ready${waiting.length ? `; ${waiting.join('; ')}` : ''}`,
        `see kubectl -n ${ns} describe daemonset ${AGENT_NAME}, and kubectl -n ${ns} logs -l app.kubernetes.io/name=${AGENT_NAME}`);
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

/**
 * Undoes a failed install. On a cluster without veil before, that is an uninstall (which also takes
 * the Leases and annotations its agents may have published meanwhile). On one that had veil, every
 * object goes back to what it was (replaced with its earlier self; one that did not exist is
 * deleted), so the running agents go back to their earlier DaemonSet and settings.
 */
async function rollBack(kc: k8s.KubeConfig, api: k8s.KubernetesObjectApi, manifests: Manifest[], before: (Obj | undefined)[], wasInstalled: boolean,
  madeToken: { apiVersion: string; kind: string; metadata: { name: string; namespace: string } } | undefined, s: Settings, progress: (line: string) => void): Promise<void> {
  progress('↩️  The install failed: rolling back');
  if (!wasInstalled) return kubernetesUninstall(kc, s, progress);
  for (let i = manifests.length - 1; i >= 0; i--) {
    const m = manifests[i]!;
    const prior = before[i];
    const now = await readOrUndefined(api, m);
    if (!prior) {
      if (now) await api.delete(m);
      continue;
    }
    const { managedFields: _f, resourceVersion: _v, uid: _u, creationTimestamp: _c, generation: _g, ...meta } = prior.metadata as Record<string, unknown>;
    const restored = { ...prior, metadata: { ...meta, ...(now ? { resourceVersion: (now.metadata as { resourceVersion?: string }).resourceVersion } : {}) } } as Obj;
    delete restored['status'];
    try {
      if (now) await api.replace(restored);
      else await api.create(restored);
    } catch (e) {
      throw apiError(`cannot put back ${m.kind} ${m.metadata.name}`, e);
    }
  }
  if (madeToken) await api.delete(madeToken).catch((e: unknown) => { if (apiStatusCode(e) !== 404) throw apiError(`cannot delete Secret ${API_TOKEN_SECRET}`, e); });
  progress('↩️  Put back the objects veil had before');
}

/** The API server serves the Peer resource only once its CRD is Established (`veil peer add` right after install needs it). */
async function waitEstablished(api: k8s.KubernetesObjectApi, deadline: number): Promise<void> {
  for (;;) {
    const crd = await readOrUndefined(api, { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: PEER_CRD_NAME } });
    const conditions = ((crd?.['status'] as { conditions?: { type?: string; status?: string; message?: string }[] } | undefined)?.conditions ?? []);
    if (conditions.some((c) => c.type === 'Established' && c.status === 'True')) return;
    if (Date.now() > deadline) {
      const why = conditions.filter((c) => c.status !== 'True' && c.message).map((c) => `${c.type}: ${c.message}`).join('; ');
      throw new VeilError('INSTALL_TIMEOUT', `the CRD ${PEER_CRD_NAME} is not Established${why ? `: ${why}` : ''}`, `see kubectl get crd ${PEER_CRD_NAME} -o yaml`);
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function applyOne(api: k8s.KubernetesObjectApi, m: Manifest): Promise<void> {
  try {
    await api.patch(m, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
  } catch (e) {
    throw apiError(`cannot apply ${m.kind} ${m.metadata.namespace ? `${m.metadata.namespace}/` : ''}${m.metadata.name}`, e);
  }
}

/**
 * Removes what install made (the DaemonSet first, so no agent republishes), the agents' Leases
 * and their annotations on every Node. The IPsec Secret is the user's: it stays, and so does its
 * namespace while it holds a Secret; so are the Peer objects: the CRD (whose deletion would delete
 * them) stays while there is one.
 */
export async function kubernetesUninstall(kc: k8s.KubeConfig, settingsHint: Settings, progress: (line: string) => void): Promise<void> {
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const ns = installNamespace(settingsHint);
  const del = async (spec: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): Promise<boolean> => {
    try {
      await api.delete(spec);
      return true;
    } catch (e) {
      if (apiStatusCode(e) === 404) return false;
      throw apiError(`cannot delete ${spec.kind} ${spec.metadata.name}`, e);
    }
  };
  const manifests = renderManifests({ settings: settingsHint }).reverse();
  for (const m of manifests) {
    if (m.kind === 'Namespace') continue;
    if (m.kind === 'CustomResourceDefinition') {
      const peers = await api.list(PEER_API_VERSION, PEER_KIND).catch(() => ({ items: [] as k8s.KubernetesObject[] }));
      if (peers.items.length) { progress(`ℹ️  Kept CustomResourceDefinition ${m.metadata.name}: it holds your Peer(s) ${peers.items.map((x) => x.metadata?.name).join(', ')}`); continue; }
    }
    if (await del({ apiVersion: m.apiVersion, kind: m.kind, metadata: { name: m.metadata.name, namespace: m.metadata.namespace } })) progress(`🔥 Deleted ${m.kind} ${m.metadata.name}`);
  }
  await del({ apiVersion: 'v1', kind: 'Secret', metadata: { name: API_TOKEN_SECRET, namespace: ns } });
  const leases = await api.list('coordination.k8s.io/v1', 'Lease', ns).catch(() => ({ items: [] as k8s.KubernetesObject[] }));
  for (const l of leases.items) if (l.metadata?.labels?.['app.kubernetes.io/name'] === 'veil') await del({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: l.metadata.name!, namespace: ns } });
  const nodes = await api.list('v1', 'Node');
  for (const n of nodes.items) {
    const a = n.metadata?.annotations ?? {};
    const ours = [AGENT_STATUS_ANNOTATION, ENCRYPTION_KEY_ANNOTATION, WG_PUBKEY_ANNOTATION].filter((k) => k in a);
    if (!ours.length) continue;
    try {
      await api.patch({ apiVersion: 'v1', kind: 'Node', metadata: { name: n.metadata!.name!, annotations: Object.fromEntries(ours.map((k) => [k, null])) as unknown as Record<string, string> } },
        undefined, undefined, FIELD_MANAGER, undefined, k8s.PatchStrategy.StrategicMergePatch);
    } catch (e) {
      if (apiStatusCode(e) !== 404) throw apiError(`cannot remove veil's annotations from node ${n.metadata?.name}`, e);
    }
  }
  progress(`🔥 Removed the agents' Leases and their annotations on ${nodes.items.length} nodes`);
  if (ns !== 'kube-system') {
    const secrets = await api.list('v1', 'Secret', ns).catch(() => ({ items: [] as k8s.KubernetesObject[] }));
    if (!secrets.items.length && await del({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })) progress(`🔥 Deleted Namespace ${ns}`);
    else if (secrets.items.length) progress(`ℹ️  Kept Namespace ${ns}: it holds your Secret(s) ${secrets.items.map((x) => x.metadata?.name).join(', ')}`);
  }
}

