// How veil reaches a Kubernetes API server: the official client's KubeConfig, from the pod's
// service account (in the DaemonSet), or from a kubeconfig file and context (the operator's CLI,
// like kubectl). Errors say which file or context is wrong.
import { existsSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import { VeilError, errorMessage } from '../../util/errors.js';

export interface KubeConnectionOptions {
  /** A kubeconfig file; undefined: in-cluster when running in a pod, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** A context of that file; undefined: its current-context. */
  context?: string;
}

/** Where a pod finds its service account's token and CA. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export function inCluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!env['KUBERNETES_SERVICE_HOST'] && existsSync(`${SERVICE_ACCOUNT_DIR}/token`);
}

export function loadKubeConfig(o: KubeConnectionOptions = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else if (inCluster()) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (e) {
    throw new VeilError('BAD_KUBECONFIG', `cannot load the kubeconfig${o.kubeconfig ? ` ${o.kubeconfig}` : ''}: ${errorMessage(e)}`, 'give a readable kubeconfig with --kubeconfig (or $KUBECONFIG)');
  }
  if (o.context) {
    if (!kc.getContexts().some((c) => c.name === o.context)) {
      throw new VeilError('BAD_KUBECONFIG', `the kubeconfig has no context '${o.context}'`, `use one of: ${kc.getContexts().map((c) => c.name).join(', ') || '(none)'}`);
    }
    kc.setCurrentContext(o.context);
  }
  if (!kc.getCurrentCluster()) throw new VeilError('BAD_KUBECONFIG', 'the kubeconfig names no current cluster', 'set current-context, or pass --context');
  return kc;
}
