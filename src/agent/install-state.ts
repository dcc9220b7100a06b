// What `veil install` stored in the registry: the settings (ConfigMap veil-install) and the agent
// config rendered from them (ConfigMap veil-config, what `veil config view` prints).
import type { Registry, RegistryObject } from '../control/registry.js';
import { VeilError } from '../util/errors.js';
import { defaultSettings, renderConfig, type Settings } from './settings.js';

export const INSTALL_CONFIGMAP = 'veil-install';
export const AGENT_CONFIGMAP = 'veil-config';

export async function readSettings(reg: Registry): Promise<Settings | undefined> {
  const cm = await reg.get('ConfigMap', INSTALL_CONFIGMAP);
  const raw = cm?.data?.['settings.json'];
  if (!raw) return undefined;
  return { ...defaultSettings(), ...(JSON.parse(raw) as Partial<Settings>) };
}

/** The IPsec key secret's name: the installed encryption.ipsec.secretName, else the default. */
export async function ipsecSecretName(reg: Registry): Promise<string> {
  const settings = await readSettings(reg).catch(() => undefined);
  return settings?.['encryption.ipsec.secretName'] ?? defaultSettings()['encryption.ipsec.secretName'];
}

export async function mustReadSettings(reg: Registry): Promise<Settings> {
  const s = await readSettings(reg);
  if (!s) throw new VeilError('NOT_INSTALLED', 'veil is not installed on this cluster', "run 'veil install --encryption wireguard' or '--encryption ipsec'");
  return s;
}

function configMap(name: string, data: Record<string, string>): RegistryObject {
  return { kind: 'ConfigMap', metadata: { name, creationTimestamp: new Date().toISOString() }, data };
}

export async function writeSettings(reg: Registry, s: Settings): Promise<void> {
  await reg.mutate('ConfigMap', INSTALL_CONFIGMAP, (cur) => ({ ...(cur ?? configMap(INSTALL_CONFIGMAP, {})), data: { 'settings.json': JSON.stringify(s) } }));
  await reg.mutate('ConfigMap', AGENT_CONFIGMAP, (cur) => ({ ...(cur ?? configMap(AGENT_CONFIGMAP, {})), data: renderConfig(s) }));
}

export async function clearSettings(reg: Registry): Promise<void> {
  await reg.delete('ConfigMap', INSTALL_CONFIGMAP);
  await reg.delete('ConfigMap', AGENT_CONFIGMAP);
}
