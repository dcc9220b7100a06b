// Where the DaemonSet mounts what the agent reads and keeps on a Kubernetes node: the manifests
// write these paths and `veil agent run --kubernetes` reads them, so both take them from here.
export const KUBE_PATHS = {
  settingsFile: '/etc/veil/install/settings.json',
  ipsecKeysDir: '/etc/veil/ipsec-keys',
  apiTokenDir: '/etc/veil/api-token',
  stateDir: '/var/lib/veil',
  runDir: '/run/veil',
} as const;
