// The admission policy that makes a veil agent write only its own Node, and there only veil's
// annotations. RBAC cannot say "your own Node" (it grants `patch` on every Node) and NodeRestriction
// knows only kubelets; but since Kubernetes 1.30 (ServiceAccountTokenPodNodeInfo, locked on in
// 1.32) a pod's bound ServiceAccount token carries the node it runs on as the user extra
// `authentication.kubernetes.io/node-name`, and ValidatingAdmissionPolicy is GA
// (admissionregistration.k8s.io/v1). The policy compares the two on every update of a Node by
// veil's ServiceAccount, and keeps its spec, labels and every annotation outside network.veil.io/
// unchanged. Other users (admins, kubelets, controllers) are not matched and not touched.
import type { Manifest } from './kubernetes-manifests.js';

export const NODE_WRITE_POLICY = 'veil-agent-writes-own-node';
/** The user extra a pod-bound ServiceAccount token carries (Kubernetes 1.30+). */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const VEIL_ANNOTATION_PREFIX = 'network.veil.io/';

/** has(a) == has(b) && (!has(a) || a == b), for a field that may be absent. */
const unchanged = (field: string) => `has(object.${field}) == has(oldObject.${field}) && (!has(object.${field}) || object.${field} == oldObject.${field})`;

/** Every annotation outside veil's prefix is the same before and after (none added, changed or removed). */
const OTHER_ANNOTATIONS_UNCHANGED = [
  `(!has(object.metadata.annotations) || object.metadata.annotations.all(k, k.startsWith('${VEIL_ANNOTATION_PREFIX}') || (has(oldObject.metadata.annotations) && k in oldObject.metadata.annotations && oldObject.metadata.annotations[k] == object.metadata.annotations[k])))`,
  `(!has(oldObject.metadata.annotations) || oldObject.metadata.annotations.all(k, k.startsWith('${VEIL_ANNOTATION_PREFIX}') || (has(object.metadata.annotations) && k in object.metadata.annotations)))`,
].join(' && ');

/** The ValidatingAdmissionPolicy and its binding for the agent's ServiceAccount `namespace/serviceAccount`. */
export function nodeWritePolicy(namespace: string, serviceAccount: string, labels: Record<string, string>): Manifest[] {
  const extra = `request.userInfo.extra['${NODE_NAME_EXTRA}']`;
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: NODE_WRITE_POLICY, labels: { ...labels } },
      spec: {
        // a policy that cannot be evaluated refuses: an agent that cannot be checked writes nothing
        failurePolicy: 'Fail',
        // the agent's RBAC grants nodes get/list/watch/patch: an update is all it can write
        matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['nodes'] }] },
        matchConditions: [{ name: 'veil-agent', expression: `request.userInfo.username == 'system:serviceaccount:${namespace}:${serviceAccount}'` }],
        validations: [
          {
            expression: `has(request.userInfo.extra) && '${NODE_NAME_EXTRA}' in request.userInfo.extra && ${extra} == [object.metadata.name]`,
            messageExpression: `'the veil agent on Node ' + ${extra}[0] + ' may not write Node ' + object.metadata.name + ': an agent writes only its own Node'`,
            // the fallback when the token names no node (older than Kubernetes 1.30, or not pod-bound)
            message: `a veil agent writes only its own Node, and its token names none (${NODE_NAME_EXTRA}: Kubernetes 1.30+, a pod-bound ServiceAccount token)`,
            reason: 'Forbidden',
          },
          { expression: unchanged('spec'), message: 'a veil agent may not change a Node\'s spec' },
          { expression: unchanged('metadata.labels'), message: 'a veil agent may not change a Node\'s labels' },
          { expression: OTHER_ANNOTATIONS_UNCHANGED, message: `a veil agent may change only the ${VEIL_ANNOTATION_PREFIX} annotations of its Node` },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: NODE_WRITE_POLICY, labels: { ...labels } },
      spec: { policyName: NODE_WRITE_POLICY, validationActions: ['Deny'] },
    },
  ];
}
