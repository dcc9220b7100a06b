// The Peer objects of a Kubernetes cluster (peers.network.veil.io), followed by an informer as the
// Nodes and Leases are, for the same admission as on etcd (WithExternalPeers). A cluster that does
// not serve the resource yet (the CRD not applied, or the ClusterRole without peers) is no reason to
// stop encrypting between the nodes: the agent runs without peers, says why in its health, and
// the informer keeps retrying until the resource is there.
import type * as k8s from '@kubernetes/client-node';
import type { RegistryObject } from '../control/registry.js';
import { Informer } from '../control/kubernetes/informer.js';
import { PEER_API_VERSION, PEER_CRD_NAME, PEER_KIND, PEER_PATH, peerObjectOf } from '../control/kubernetes/peer-crd.js';
import type { PeerObjects } from './external-peers.js';

export class KubernetesPeerObjects implements PeerObjects {
  private informer?: Informer;
  private failing?: string;

  constructor(private readonly kc: k8s.KubeConfig, private readonly log?: (msg: string) => void) {}

  follow(onChange: () => void): Promise<void> {
    this.informer = new Informer(this.kc, { apiVersion: PEER_API_VERSION, kind: PEER_KIND, path: PEER_PATH }, {
      upsert: () => onChange(),
      remove: () => onChange(),
      synced: () => { if (this.failing !== undefined) { this.failing = undefined; onChange(); } },
      listFailed: (message) => {
        const was = this.failing;
        this.failing = `cannot list the Peer objects (${PEER_CRD_NAME}): ${message}; ${/\(HTTP 404\)|not found/i.test(message)
          ? 'the CRD is not installed: re-run veil install --kubernetes' : /\(HTTP 403\)/.test(message) ? "the agent's ClusterRole lacks get/list/watch on peers: re-run veil install --kubernetes" : 'retrying'}`;
        if (was !== this.failing) onChange();
      },
      error: (m) => this.log?.(m),
    });
    this.informer.startInBackground();
    return Promise.resolve();
  }

  objects(): RegistryObject[] {
    return (this.informer?.items() ?? []).map(peerObjectOf);
  }

  problem(): string | undefined {
    return this.failing;
  }

  stop(): void {
    this.informer?.stop();
  }
}
