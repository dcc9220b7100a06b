// veil secret: the kubectl subset used to create, read and rotate keys (e.g. ipsec-keys).
// Argument parsing and printing only; the work is in src/control/secrets.ts.
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import {
  createSecret, deleteSecret, getSecret, parseFromFile, parseFromLiteral, patchSecret, secretManifest, type PatchType, type SecretWriteCheck,
} from '../control/secrets.js';
import { ipsecSecretName } from '../agent/install-state.js';
import { checkIpsecSecretWrite } from '../keys/ipsec-key-secret.js';
import { renderGoTemplate } from '../control/go-template.js';
import { formatAge } from '../lab/objects.js';
import { command, group, UsageError, type FlagSpec } from './flags.js';
import { printStructured } from './output.js';
import { table } from '../util/text-table.js';

/** Accepted for copy-paste from kubectl; the lab has one namespace. */
const NAMESPACE: FlagSpec = { type: 'string', short: 'n', value: 'NS', help: 'accepted for kubectl compatibility (the lab has one namespace)' };

function oneName(cmd: string, positionals: string[]): string {
  if (positionals.length !== 1) {
    throw new UsageError(`secret ${cmd} takes one NAME, got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'}`, `run 'veil secret ${cmd} -h' for examples`);
  }
  return positionals[0]!;
}

async function withRegistry<T>(cluster: string | undefined, fn: (reg: Registry) => Promise<T>): Promise<T> {
  const reg = openRegistry(currentCluster(cluster));
  try { return await fn(reg); } finally { reg.close(); }
}

/** The IPsec key secret is checked as agents check it before it is written; other secrets are not. */
async function writeCheck(reg: Registry, name: string): Promise<SecretWriteCheck | undefined> {
  if (name !== await ipsecSecretName(reg)) return undefined;
  return (before, after) => checkIpsecSecretWrite(name, before, after);
}

const create = command({
  name: 'veil secret create',
  summary: 'create a secret from literals and files',
  usage: ['veil secret create [generic] NAME [--from-literal key=value]... [--from-file [key=]path]... [--cluster NAME]'],
  positionals: true,
  flags: {
    'from-literal': { type: 'string', multiple: true, value: 'key=value', help: 'a key and its value (repeatable)' },
    'from-file': { type: 'string', multiple: true, value: '[key=]path', help: "a key and a file's content; the key defaults to the file name (repeatable)" },
    type: { type: 'string', value: 'TYPE', help: 'the secret type (default Opaque)' },
    namespace: NAMESPACE,
  },
  examples: [
    'veil secret create ipsec-keys --from-literal keys="3+ rfc4106(gcm(aes)) $(dd if=/dev/urandom count=20 bs=1 2>/dev/null | xxd -p -c 64) 128"',
    'veil secret create tls --from-file cert=./cert.pem --from-file ./key.pem',
  ],
  async run({ values, positionals }) {
    const name = oneName('create', positionals[0] === 'generic' ? positionals.slice(1) : positionals);
    const entries = [...(values['from-literal'] ?? []).map(parseFromLiteral), ...(values['from-file'] ?? []).map(parseFromFile)];
    await withRegistry(values.cluster, async (reg) => createSecret(reg, name, entries, values.type ?? 'Opaque', await writeCheck(reg, name)));
    console.log(`secret/${name} created`);
    return 0;
  },
});

const get = command({
  name: 'veil secret get',
  summary: 'show a secret (table, json, yaml, name or a go-template)',
  usage: ['veil secret get NAME [-o json|yaml|name|go-template=TEMPLATE] [--cluster NAME]'],
  positionals: true,
  flags: {
    template: { type: 'string', value: 'TEMPLATE', help: 'the template of -o go-template' },
    namespace: NAMESPACE,
  },
  output: { choices: ['json', 'yaml', 'name', 'go-template='] },
  examples: [
    'veil secret get ipsec-keys',
    'veil secret get ipsec-keys -o yaml',
    `veil secret get ipsec-keys -o go-template='{{.data.keys | base64decode}}{{"\\n"}}'`,
  ],
  async run({ values, positionals }) {
    const name = oneName('get', positionals);
    const s = await withRegistry(values.cluster, (reg) => getSecret(reg, name));
    const o = values.output;
    if (o === undefined) {
      console.log(table([['NAME', 'TYPE', 'DATA', 'AGE'], [name, s.type ?? 'Opaque', String(Object.keys(s.data ?? {}).length), formatAge(s.metadata.creationTimestamp)]]));
    } else if (o === 'json') {
      console.log(JSON.stringify(secretManifest(s), null, 4));
    } else if (o === 'yaml') {
      printStructured(secretManifest(s), 'yaml');
    } else if (o === 'name') {
      console.log(`secret/${name}`);
    } else {
      const template = o === 'go-template' ? values.template : o.slice('go-template='.length);
      if (!template) throw new UsageError('go-template needs a template', `e.g. -o go-template='{{.data.keys | base64decode}}'`);
      process.stdout.write(renderGoTemplate(template, secretManifest(s)));
    }
    return 0;
  },
});

const patch = command({
  name: 'veil secret patch',
  summary: 'change a secret with a JSON merge patch',
  usage: ['veil secret patch NAME -p PATCH [--type merge|strategic] [--cluster NAME]'],
  about: 'PATCH is a JSON merge patch: stringData (plain text) or data (base64) maps; null removes a key.',
  positionals: true,
  flags: {
    patch: { type: 'string', short: 'p', value: 'PATCH', help: 'the patch (JSON)' },
    type: { type: 'string', value: 'TYPE', choices: ['merge', 'strategic'], help: 'merge or strategic (the default; the same for secrets)' },
    namespace: NAMESPACE,
  },
  examples: [
    `veil secret patch ipsec-keys -p '{"stringData":{"keys":"4+ rfc4106(gcm(aes)) 0123... 128"}}'`,
    `veil secret patch ipsec-keys --type=merge -p '{"data":{"keys":"NCsgcmZj..."}}'`,
  ],
  async run({ values, positionals }) {
    const name = oneName('patch', positionals);
    const p = values.patch;
    if (p === undefined) throw new UsageError('secret patch needs -p PATCH', `e.g. -p '{"stringData":{"keys":"..."}}'`);
    await withRegistry(values.cluster, async (reg) => patchSecret(reg, name, p, (values.type ?? 'strategic') as PatchType, await writeCheck(reg, name)));
    console.log(`secret/${name} patched`);
    return 0;
  },
});

const del = command({
  name: 'veil secret delete',
  summary: 'delete a secret',
  usage: ['veil secret delete NAME [--cluster NAME]'],
  positionals: true,
  flags: { namespace: NAMESPACE },
  examples: ['veil secret delete ipsec-keys'],
  async run({ values, positionals }) {
    const name = oneName('delete', positionals);
    await withRegistry(values.cluster, (reg) => deleteSecret(reg, name));
    console.log(`secret "${name}" deleted`);
    return 0;
  },
});

export const { run } = group({
  name: 'veil secret',
  about: 'veil secret: create, read, patch and delete secrets (the kubectl subset)',
  commands: { create, get, patch, delete: del },
});
