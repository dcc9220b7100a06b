// Secrets, the kubectl way: data holds base64 values; stringData (in create/patch) is plain text
// that lands base64-encoded in data. Used for `ipsec-keys` and friends.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { VeilError } from '../util/errors.js';
import type { Registry, RegistryObject } from './registry.js';

const KEY_RE = /^[-._a-zA-Z0-9]+$/;

function checkKey(key: string, from: string): string {
  if (!KEY_RE.test(key)) {
    throw new VeilError('BAD_FLAG', `invalid secret key '${key}' in '${from}'`, 'keys are letters, digits, dashes, dots and underscores');
  }
  return key;
}

/** --from-literal key=value (the value may contain '='). */
export function parseFromLiteral(arg: string): [string, Buffer] {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new VeilError('BAD_FLAG', `--from-literal '${arg}' is not key=value`, `e.g. --from-literal keys="3+ rfc4106(gcm(aes)) ... 128"`);
  return [checkKey(arg.slice(0, eq), arg), Buffer.from(arg.slice(eq + 1), 'utf8')];
}

/** --from-file [key=]path (key defaults to the file's name). */
export function parseFromFile(arg: string): [string, Buffer] {
  const eq = arg.indexOf('=');
  const [key, path] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [basename(arg), arg];
  let content: Buffer;
  try {
    content = readFileSync(path);
  } catch (e) {
    throw new VeilError('BAD_FLAG', `--from-file: cannot read '${path}': ${(e as Error).message}`, 'give a readable file, optionally as key=path');
  }
  return [checkKey(key, arg), content];
}

function notFound(name: string): VeilError {
  return new VeilError('NOT_FOUND', `secret '${name}' not found`, `create it with 'veil secret create ${name} --from-literal key=value'`);
}

/** Refuses a write (throws a VeilError): `before` is undefined when the secret is created. */
export type SecretWriteCheck = (before: RegistryObject | undefined, after: RegistryObject) => void;

export async function createSecret(reg: Registry, name: string, entries: [string, Buffer][], type = 'Opaque', check?: SecretWriteCheck): Promise<RegistryObject> {
  const data: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (k in data) throw new VeilError('BAD_FLAG', `secret key '${k}' given twice`, 'give each key once');
    data[k] = v.toString('base64');
  }
  const obj: RegistryObject = { kind: 'Secret', metadata: { name }, type, data };
  check?.(undefined, obj);
  try {
    return await reg.create(obj);
  } catch (e) {
    if (e instanceof VeilError && e.code === 'ALREADY_EXISTS') {
      throw new VeilError('ALREADY_EXISTS', `secret '${name}' already exists`, `change it with 'veil secret patch ${name} -p ...', or delete it first`);
    }
    throw e;
  }
}

export async function getSecret(reg: Registry, name: string): Promise<RegistryObject> {
  const s = await reg.get('Secret', name);
  if (!s) throw notFound(name);
  return s;
}

/** The value of one key, decoded; undefined if the key is absent. */
export function secretValue(secret: RegistryObject, key: string): Buffer | undefined {
  const v = secret.data?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64');
}

export type PatchType = 'merge' | 'strategic';

/** Parses and checks a patch: an object with data (base64), stringData, metadata labels/annotations. */
export function parseSecretPatch(text: string): Record<string, unknown> {
  let patch: unknown;
  try {
    patch = JSON.parse(text);
  } catch (e) {
    throw new VeilError('BAD_PATCH', `the patch is not valid JSON (${(e as Error).message})`, `e.g. -p '{"stringData":{"keys":"..."}}'`);
  }
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
    throw new VeilError('BAD_PATCH', 'the patch must be a JSON object', `e.g. -p '{"stringData":{"keys":"..."}}'`);
  }
  const p = patch as Record<string, unknown>;
  for (const k of Object.keys(p)) {
    if (!['data', 'stringData', 'metadata', 'type', 'kind', 'apiVersion'].includes(k)) {
      throw new VeilError('BAD_PATCH', `the patch changes '${k}', which a secret does not have`, 'patch data, stringData or metadata.labels/annotations');
    }
  }
  for (const field of ['data', 'stringData'] as const) {
    const m = p[field];
    if (m === undefined || m === null) continue;
    if (typeof m !== 'object' || Array.isArray(m)) throw new VeilError('BAD_PATCH', `'${field}' in the patch must be an object of strings`);
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      checkKey(k, field);
      if (v !== null && typeof v !== 'string') throw new VeilError('BAD_PATCH', `${field}.${k} must be a string (or null to remove it)`);
      if (field === 'data' && typeof v === 'string' && !isBase64(v)) {
        throw new VeilError('BAD_PATCH', `data.${k} is not base64`, 'use stringData for plain text, or base64-encode the value');
      }
    }
  }
  return p;
}

function isBase64(s: string): boolean {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length % 4 === 0;
}

/** Applies a JSON merge patch (RFC 7386) to a secret, atomically; `check` may refuse the result. */
export async function patchSecret(reg: Registry, name: string, patchText: string, type: PatchType = 'strategic', check?: SecretWriteCheck): Promise<RegistryObject> {
  void type; // for a secret's flat maps strategic-merge and merge patches are the same thing
  const p = parseSecretPatch(patchText);
  let missing = false;
  let refused: unknown;
  const out = await reg.mutate('Secret', name, (cur) => {
    missing = false; refused = undefined;
    if (!cur) { missing = true; return undefined; }
    const data = { ...(cur.data ?? {}) };
    const apply = (m: unknown, encode: boolean) => {
      for (const [k, v] of Object.entries((m ?? {}) as Record<string, string | null>)) {
        if (v === null) delete data[k];
        else data[k] = encode ? Buffer.from(v, 'utf8').toString('base64') : v;
      }
    };
    apply(p['data'], false);
    apply(p['stringData'], true); // as in Kubernetes, stringData wins over data
    const meta = (p['metadata'] ?? {}) as { labels?: Record<string, string | null>; annotations?: Record<string, string | null> };
    const metadata = { ...cur.metadata, labels: mergeMap(cur.metadata.labels, meta.labels), annotations: mergeMap(cur.metadata.annotations, meta.annotations) };
    if (!metadata.labels) delete metadata.labels;
    if (!metadata.annotations) delete metadata.annotations;
    const next = { ...cur, metadata, data, type: typeof p['type'] === 'string' ? p['type'] : cur.type };
    try {
      check?.(cur, next);
    } catch (e) {
      refused = e;
      return undefined;
    }
    return next;
  });
  if (refused) throw refused;
  if (missing || !out) throw notFound(name);
  return out;
}

function mergeMap(cur: Record<string, string> | undefined, patch: Record<string, string | null> | undefined): Record<string, string> | undefined {
  if (!patch) return cur;
  const out = { ...(cur ?? {}) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = String(v);
  }
  return Object.keys(out).length ? out : undefined;
}

export async function deleteSecret(reg: Registry, name: string): Promise<void> {
  if (!(await reg.delete('Secret', name))) throw notFound(name);
}

/** The secret as kubectl prints it (apiVersion v1, resourceVersion as a string). */
export function secretManifest(s: RegistryObject): Record<string, unknown> {
  const { resourceVersion, ...meta } = s.metadata;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { ...meta, ...(resourceVersion !== undefined ? { resourceVersion: String(resourceVersion) } : {}) },
    type: s.type ?? 'Opaque',
    data: s.data ?? {},
  };
}
