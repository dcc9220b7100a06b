// What the agent reads from its cluster besides its node: the install settings and the secrets
// (the IPsec key file, the API token). On etcd (a lab, hosts) both are registry objects, watched;
// on Kubernetes they are files the kubelet mounts from the ConfigMap and the Secrets, so the agent
// needs no right to read Secrets through the API.
import type { Registry, RegistryObject, Watch } from '../control/registry.js';
import type { Settings } from './settings.js';
import { INSTALL_CONFIGMAP, mustReadSettings } from './install-state.js';

export interface SecretSource {
  /** The secret as a registry object (data base64), or undefined when it does not exist. */
  get(name: string): Promise<RegistryObject | undefined>;
  /** Calls onChange with the secret's new content (undefined: deleted) whenever it changes. */
  watch(name: string, onChange: (secret: RegistryObject | undefined) => void): Promise<Watch>;
  /**
   * Makes the secret's earlier values (old keys) unreadable from the store's history; what it did,
   * for the log. Absent where the agent cannot (a mounted Kubernetes Secret: the API server's etcd).
   */
  forgetEarlierValues?(name: string): Promise<string>;
}

export interface AgentInputs {
  /** The install settings; fails with NOT_INSTALLED when there are none. */
  settings(): Promise<Settings>;
  secrets: SecretSource;
  /**
   * Calls onUninstalled once the install settings are gone (an uninstall, or a failed install rolled
   * back), also when they went before the watch began. Absent where the agent's own removal ends it
   * (Kubernetes: uninstall deletes the DaemonSet).
   */
  watchUninstall?(onUninstalled: () => void): Promise<Watch>;
  close(): void;
}

export function registrySecrets(reg: Registry): SecretSource {
  return {
    get: (name) => reg.get('Secret', name),
    async watch(name, onChange) {
      return reg.watch('Secret', await reg.revision(), (ev) => {
        if (ev.object.metadata.name === name) onChange(ev.type === 'DELETED' ? undefined : ev.object);
      });
    },
    ...(reg.forgetHistoryBefore ? {
      async forgetEarlierValues(name: string) {
        const rv = (await reg.get('Secret', name))?.metadata.resourceVersion;
        if (rv === undefined) return `secret ${name} is gone: nothing to keep`;
        await reg.forgetHistoryBefore!(rv);
        return `history compacted to revision ${rv}, the secret's current value`;
      },
    } : {}),
  };
}

/** The inputs of an agent on a registry (etcd or embedded). */
export function registryInputs(reg: Registry): AgentInputs & { registry: Registry } {
  return {
    registry: reg, settings: () => mustReadSettings(reg), secrets: registrySecrets(reg), close: () => reg.close(),
    async watchUninstall(onUninstalled) {
      let told = false;
      const tell = () => { if (!told) { told = true; onUninstalled(); } };
      const w = await reg.watch('ConfigMap', await reg.revision(), (ev) => {
        if (ev.object.metadata.name === INSTALL_CONFIGMAP && ev.type === 'DELETED') tell();
      });
      if (!(await reg.get('ConfigMap', INSTALL_CONFIGMAP))) tell(); // deleted before the watch began
      return w;
    },
  };
}
