// The resources the test API server serves: what veil's agent, CLI and installer use, with the
// names, scopes, short names and verbs discovery reports for them on a real API server; custom
// resources join them while their CRD is Established.

export interface Resource {
  group: string;
  version: string;
  /** Plural, as in the URL. */
  name: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  /** Has a status subresource: writes to the object keep its status, writes to /status keep the rest. */
  status?: boolean;
  categories?: string[];
  /** A custom resource: its CRD's name and this version's schema (objects are pruned, defaulted, validated). */
  crd?: { name: string; schema: import('./patches.js').JsonObject };
}

export const RESOURCES: Resource[] = [
  { group: '', version: 'v1', name: 'nodes', singular: 'node', kind: 'Node', namespaced: false, shortNames: ['no'], status: true },
  { group: '', version: 'v1', name: 'pods', singular: 'pod', kind: 'Pod', namespaced: true, shortNames: ['po'], status: true },
  { group: '', version: 'v1', name: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'] },
  { group: '', version: 'v1', name: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', name: 'configmaps', singular: 'configmap', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] },
  { group: '', version: 'v1', name: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'] },
  { group: 'coordination.k8s.io', version: 'v1', name: 'leases', singular: 'lease', kind: 'Lease', namespaced: true },
  { group: 'apps', version: 'v1', name: 'daemonsets', singular: 'daemonset', kind: 'DaemonSet', namespaced: true, shortNames: ['ds'], status: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', name: 'clusterroles', singular: 'clusterrole', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', name: 'clusterrolebindings', singular: 'clusterrolebinding', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', name: 'roles', singular: 'role', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', name: 'rolebindings', singular: 'rolebinding', kind: 'RoleBinding', namespaced: true },
  { group: 'admissionregistration.k8s.io', version: 'v1', name: 'validatingadmissionpolicies', singular: 'validatingadmissionpolicy', kind: 'ValidatingAdmissionPolicy', namespaced: false, status: true },
  { group: 'admissionregistration.k8s.io', version: 'v1', name: 'validatingadmissionpolicybindings', singular: 'validatingadmissionpolicybinding', kind: 'ValidatingAdmissionPolicyBinding', namespaced: false },
  { group: 'apiextensions.k8s.io', version: 'v1', name: 'customresourcedefinitions', singular: 'customresourcedefinition', kind: 'CustomResourceDefinition', namespaced: false, shortNames: ['crd', 'crds'], status: true },
];

export const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

export function apiVersionOf(r: Resource): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** The groups (other than the core one) and their versions. */
export function groups(served: Resource[] = RESOURCES): Map<string, string> {
  return new Map(served.filter((r) => r.group).map((r) => [r.group, r.version]));
}
