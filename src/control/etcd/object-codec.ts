// Objects as etcd values: JSON, without resourceVersion (etcd's mod_revision is the version, so a
// stored value never disagrees with it). Decoding checks the value really is the object its key
// names: anyone with write access to etcd can put anything there.
import type { IKeyValue } from 'etcd3';
import type { Kind, RegistryObject } from '../registry.js';
import { parseObjectKey } from './keys.js';
import { checkName } from '../object-checks.js';

export function encodeObject(obj: RegistryObject): string {
  const stored = structuredClone(obj);
  delete stored.metadata.resourceVersion;
  return JSON.stringify(stored);
}

/**
 * The most a stored object may hold. A node object is a few KiB; anyone who can write to etcd can
 * put up to etcd's request limit (1.5 MiB by default, more where raised) at a key, and every agent
 * lists every node: such a value is refused by its size before it is parsed (a 60 MB one once took
 * agents from 70 MB to over 400 MB).
 */
export const MAX_OBJECT_BYTES = 512 * 1024;

export type Decoded =
  | { ok: true; key: string; object: RegistryObject }
  | { ok: false; key: string; reason: string };

/** The object stored in kv, with resourceVersion = its mod_revision; or why it is not one. */
export function decodeObject(cluster: string, kv: IKeyValue): Decoded {
  const key = kv.key.toString();
  const where = parseObjectKey(cluster, key);
  if (!where) return { ok: false, key, reason: 'the key is not veil/<cluster>/<kind>/<name>' };
  if (kv.value.length > MAX_OBJECT_BYTES) {
    return { ok: false, key, reason: `${kv.value.length} bytes, more than the ${MAX_OBJECT_BYTES} a veil object may hold (not read)` };
  }
  let value: unknown;
  try {
    value = JSON.parse(kv.value.toString());
  } catch (e) {
    return { ok: false, key, reason: `not JSON (${(e as Error).message})` };
  }
  const reason = shapeProblem(value, where.kind, where.name);
  if (reason) return { ok: false, key, reason };
  const object = value as RegistryObject;
  object.metadata.resourceVersion = Number(kv.mod_revision);
  return { ok: true, key, object };
}

function shapeProblem(v: unknown, kind: Kind, name: string): string | undefined {
  if (!isMap(v)) return 'not a JSON object';
  const o = v;
  if (o['kind'] !== kind) return `kind is ${JSON.stringify(o['kind'])}, the key says ${kind}`;
  const meta = o['metadata'];
  if (!isMap(meta)) return 'no metadata';
  const n = meta['name'];
  if (n !== name) return `metadata.name is ${JSON.stringify(n)}, the key says '${name}'`;
  try { checkName(name); } catch (e) { return (e as Error).message; }
  // Every field readers use as a string or a map of strings is one (a number where a timestamp
  // should be made the node source's sort throw: found by the registry fuzz harness).
  if (meta['creationTimestamp'] !== undefined && typeof meta['creationTimestamp'] !== 'string') return 'metadata.creationTimestamp is not a string';
  for (const f of ['labels', 'annotations'] as const) {
    if (meta[f] !== undefined && !isStringMap(meta[f])) return `metadata.${f} is not a map of strings`;
  }
  for (const f of ['spec', 'status', 'data'] as const) {
    if (o[f] !== undefined && !isMap(o[f])) return `${f} is not an object`;
  }
  if (o['data'] !== undefined && !isStringMap(o['data'])) return 'data is not a map of strings';
  if (o['type'] !== undefined && typeof o['type'] !== 'string') return 'type is not a string';
  return undefined;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringMap(v: unknown): boolean {
  return isMap(v) && Object.values(v).every((x) => typeof x === 'string');
}
