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

/** The HTTP status of a failed API call (the client's ApiException, or a watch's error), if any. */
export function apiStatusCode(e: unknown): number | undefined {
  const x = e as { code?: unknown; statusCode?: unknown };
  return typeof x?.code === 'number' ? x.code : typeof x?.statusCode === 'number' ? x.statusCode : undefined;
}

/** The API server's own message for a failed call (its Status.message), else the error's. */
export function apiErrorMessage(e: unknown): string {
  const body = (e as { body?: unknown })?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') { try { parsed = JSON.parse(body); } catch { /* not JSON */ } }
  const msg = (parsed as { message?: unknown } | undefined)?.message;
  const code = apiStatusCode(e);
  if (typeof msg === 'string') return code ? `${msg} (HTTP ${code})` : msg;
  return errorMessage(e).split('\n')[0]!;
}

/** A failed API call as a VeilError that says what was asked and what the server said. */
export function apiError(what: string, e: unknown, hint?: string): VeilError {
  const code = apiStatusCode(e);
  const h = hint ?? (code === 403 ? 'the service account lacks this right: re-apply the ClusterRole (veil install --kubernetes)'
    : code === 401 ? 'the credentials were refused: check the kubeconfig user or the service account token'
      : code === undefined ? 'check that the API server is reachable from here' : undefined);
  return new VeilError(code === 404 ? 'NOT_FOUND' : code === 409 ? 'CONFLICT' : 'KUBE_API', `${what}: ${apiErrorMessage(e)}`, h);
}
