// veil secret: the kubectl subset used to create, read and rotate keys (e.g. ipsec-keys).
// Argument parsing and printing only; the work is in src/control/secrets.ts.
import { parseArgs } from 'node:util';
import { VeilError } from '../util/errors.js';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import {
  createSecret, deleteSecret, getSecret, parseFromFile, parseFromLiteral, patchSecret, secretManifest, type PatchType,
} from '../control/secrets.js';
import { renderGoTemplate } from '../control/go-template.js';
import { toYaml } from '../control/yaml.js';
import { formatAge } from '../lab/objects.js';
import { table } from '../util/text-table.js';

const HELP: Record<string, string> = {
  '': `veil secret: create, read, patch and delete secrets (the kubectl subset)

Usage: veil secret <create|get|patch|delete> NAME [flags] [--cluster NAME]

Run 'veil secret <command> -h' for its flags and examples.`,
  create: `Usage: veil secret create [generic] NAME [--from-literal key=value]... [--from-file [key=]path]... [--cluster NAME]

Examples:
  veil secret create ipsec-keys --from-literal keys="3+ rfc4106(gcm(aes)) $(dd if=/dev/urandom count=20 bs=1 2>/dev/null | xxd -p -c 64) 128"
  veil secret create tls --from-file cert=./cert.pem --from-file ./key.pem`,
  get: `Usage: veil secret get NAME [-o json|yaml|name|go-template=TEMPLATE] [--cluster NAME]

Examples:
  veil secret get ipsec-keys
  veil secret get ipsec-keys -o yaml
  veil secret get ipsec-keys -o go-template='{{.data.keys | base64decode}}{{"\\n"}}'`,
  patch: `Usage: veil secret patch NAME -p PATCH [--type merge|strategic] [--cluster NAME]

PATCH is a JSON merge patch: stringData (plain text) or data (base64) maps; null removes a key.

Examples:
  veil secret patch ipsec-keys -p '{"stringData":{"keys":"4+ rfc4106(gcm(aes)) 0123... 128"}}'
  veil secret patch ipsec-keys --type=merge -p '{"data":{"keys":"NCsgcmZj..."}}'`,
  delete: `Usage: veil secret delete NAME [--cluster NAME]

Example:
  veil secret delete ipsec-keys`,
};

const COMMON = {
  cluster: { type: 'string' },
  // accepted for copy-paste from kubectl; the lab has one namespace
  namespace: { type: 'string', short: 'n' },
} as const;

export async function run(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(HELP['']);
    return 0;
  }
  if (!(cmd in HELP)) throw new VeilError('BAD_FLAG', `unknown secret command '${cmd}'`, "use create, get, patch or delete ('veil secret -h')");
  if (rest.includes('-h') || rest.includes('--help')) {
    console.log(HELP[cmd]);
    return 0;
  }
  switch (cmd) {
    case 'create': return create(rest);
    case 'get': return get(rest);
    case 'patch': return patch(rest);
    case 'delete': return del(rest);
  }
  return 2;
}

function oneName(cmd: string, positionals: string[]): string {
  if (positionals.length !== 1) {
    throw new VeilError('BAD_FLAG', `secret ${cmd} takes one NAME, got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'}`, `run 'veil secret ${cmd} -h' for examples`);
  }
  return positionals[0]!;
}

async function withRegistry<T>(cluster: string | undefined, fn: (reg: Registry) => Promise<T>): Promise<T> {
  const reg = openRegistry(currentCluster(cluster));
  try { return await fn(reg); } finally { reg.close(); }
}

async function create(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { ...COMMON, 'from-literal': { type: 'string', multiple: true }, 'from-file': { type: 'string', multiple: true }, type: { type: 'string' } },
  });
  const name = oneName('create', positionals[0] === 'generic' ? positionals.slice(1) : positionals);
  const entries = [...(values['from-literal'] ?? []).map(parseFromLiteral), ...(values['from-file'] ?? []).map(parseFromFile)];
  await withRegistry(values.cluster, (reg) => createSecret(reg, name, entries, values.type ?? 'Opaque'));
  console.log(`secret/${name} created`);
  return 0;
}

async function get(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { ...COMMON, output: { type: 'string', short: 'o' }, template: { type: 'string' } },
  });
  const name = oneName('get', positionals);
  const s = await withRegistry(values.cluster, (reg) => getSecret(reg, name));
  const o = values.output;
  if (o === undefined) {
    console.log(table([['NAME', 'TYPE', 'DATA', 'AGE'], [name, s.type ?? 'Opaque', String(Object.keys(s.data ?? {}).length), formatAge(s.metadata.creationTimestamp)]]));
  } else if (o === 'json') {
    console.log(JSON.stringify(secretManifest(s), null, 4));
  } else if (o === 'yaml') {
    process.stdout.write(toYaml(secretManifest(s)));
  } else if (o === 'name') {
    console.log(`secret/${name}`);
  } else if (o === 'go-template' || o.startsWith('go-template=')) {
    const template = o === 'go-template' ? values.template : o.slice('go-template='.length);
    if (!template) throw new VeilError('BAD_FLAG', 'go-template needs a template', `e.g. -o go-template='{{.data.keys | base64decode}}'`);
    process.stdout.write(renderGoTemplate(template, secretManifest(s)));
  } else {
    throw new VeilError('BAD_FLAG', `unsupported output format '${o}'`, 'use -o json, yaml, name or go-template=...');
  }
  return 0;
}

async function patch(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { ...COMMON, patch: { type: 'string', short: 'p' }, type: { type: 'string' } },
  });
  const name = oneName('patch', positionals);
  if (values.patch === undefined) throw new VeilError('BAD_FLAG', 'secret patch needs -p PATCH', `e.g. -p '{"stringData":{"keys":"..."}}'`);
  const type = values.type ?? 'strategic';
  if (type !== 'merge' && type !== 'strategic') {
    throw new VeilError('BAD_FLAG', `patch --type '${type}' is not supported`, 'use --type=merge (or strategic, the default)');
  }
  await withRegistry(values.cluster, (reg) => patchSecret(reg, name, values.patch!, type as PatchType));
  console.log(`secret/${name} patched`);
  return 0;
}

async function del(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { ...COMMON } });
  const name = oneName('delete', positionals);
  await withRegistry(values.cluster, (reg) => deleteSecret(reg, name));
  console.log(`secret "${name}" deleted`);
  return 0;
}
