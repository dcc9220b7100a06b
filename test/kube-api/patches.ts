// The patch formats of the Kubernetes API, as the test API server applies them: JSON merge patch
// (RFC 7386), JSON patch (RFC 6902), strategic merge patch (lists merged by their merge key, the
// $patch directives) and the merge step of server-side apply. Pure functions on JSON values.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function clone<T>(v: T): T {
  return structuredClone(v);
}

/** RFC 7386: objects merge recursively, null removes, anything else (lists too) replaces. */
export function jsonMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

export class PatchError extends Error {}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new PatchError(`invalid JSON pointer '${path}'`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 (add, remove, replace, test, move, copy) on a copy of doc. */
export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new PatchError('a JSON patch is a list of operations');
  let root = clone(doc);
  const parentOf = (path: string[]): [Json, string] => {
    let cur: Json = root;
    for (const seg of path.slice(0, -1)) {
      const next: Json | undefined = Array.isArray(cur) ? cur[Number(seg)] : isObject(cur) ? cur[seg] : undefined;
      if (next === undefined) throw new PatchError(`path /${path.join('/')} does not exist`);
      cur = next;
    }
    return [cur, path[path.length - 1]!];
  };
  const get = (path: string[]): Json => {
    if (!path.length) return root;
    const [p, k] = parentOf(path);
    const v = Array.isArray(p) ? p[Number(k)] : isObject(p) ? p[k] : undefined;
    if (v === undefined) throw new PatchError(`path /${path.join('/')} does not exist`);
    return v;
  };
  const remove = (path: string[]): Json => {
    const v = get(path);
    const [p, k] = parentOf(path);
    if (Array.isArray(p)) p.splice(Number(k), 1);
    else delete (p as JsonObject)[k];
    return v;
  };
  const add = (path: string[], value: Json): void => {
    if (!path.length) { root = value; return; }
    const [p, k] = parentOf(path);
    if (Array.isArray(p)) {
      const i = k === '-' ? p.length : Number(k);
      if (!(i >= 0 && i <= p.length)) throw new PatchError(`index ${k} out of range`);
      p.splice(i, 0, value);
    } else if (isObject(p)) p[k] = value;
    else throw new PatchError(`cannot add to a scalar at /${path.join('/')}`);
  };
  for (const op of ops) {
    if (!isObject(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') throw new PatchError('each operation needs op and path');
    const path = pointer(op['path']);
    switch (op['op']) {
      case 'add': add(path, clone(op['value'] ?? null)); break;
      case 'remove': remove(path); break;
      case 'replace': remove(path); add(path, clone(op['value'] ?? null)); break;
      case 'test': if (JSON.stringify(get(path)) !== JSON.stringify(op['value'])) throw new PatchError(`test failed at ${op['path']}`); break;
      case 'move': add(path, remove(pointer(String(op['from'])))); break;
      case 'copy': add(path, clone(get(pointer(String(op['from']))))); break;
      default: throw new PatchError(`unknown operation '${op['op']}'`);
    }
  }
  return root;
}

/**
 * The patchMergeKey of the list fields of the types this server holds (Node, Secret, DaemonSet's
 * pod template, RBAC), as their Go structs declare them; any other list is atomic (replaced whole).
 */
export const MERGE_KEYS: Record<string, string> = {
  addresses: 'type', conditions: 'type', containers: 'name', initContainers: 'name', ephemeralContainers: 'name',
  volumes: 'name', env: 'name', volumeMounts: 'mountPath', volumeDevices: 'devicePath', ports: 'containerPort',
  imagePullSecrets: 'name', ownerReferences: 'uid', hostAliases: 'ip', topologySpreadConstraints: 'topologyKey',
};

function keyed(list: Json[], key: string): Map<string, number> {
  const m = new Map<string, number>();
  list.forEach((e, i) => { if (isObject(e) && e[key] !== undefined) m.set(JSON.stringify(e[key]), i); });
  return m;
}

/** Strategic merge patch: like a merge patch, but keyed lists merge element by element and $patch directives apply. */
export function strategicMergePatch(target: Json | undefined, patch: Json, field = ''): Json {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (!key || !Array.isArray(target)) return patch.filter((e) => !(isObject(e) && e['$patch'] === 'delete')).map(clone);
    const out = clone(target);
    for (const p of patch) {
      if (!isObject(p) || p[key] === undefined) throw new PatchError(`element of ${field} needs its merge key '${key}'`);
      const at = keyed(out, key).get(JSON.stringify(p[key]));
      if (p['$patch'] === 'delete') { if (at !== undefined) out.splice(at, 1); continue; }
      if (at === undefined) out.push(strategicMergePatch(undefined, p, field) as Json);
      else out[at] = strategicMergePatch(out[at], p, field);
    }
    return out;
  }
  if (!isObject(patch)) return clone(patch);
  if (patch['$patch'] === 'replace') { const { $patch: _, ...rest } = patch; return clone(rest); }
  if (patch['$patch'] === 'delete') return null;
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith('$setElementOrder/')) continue;
    if (v === null) delete out[k];
    else out[k] = strategicMergePatch(out[k], v, k);
  }
  return out;
}

/**
 * The fields a configuration sets, as server-side apply tracks them: one path per leaf; a keyed list
 * element is addressed by its key (k:{"name":"x"}), an atomic list is one leaf.
 */
export function fieldPaths(config: Json, prefix = '', field = ''): Map<string, string> {
  const out = new Map<string, string>();
  if (isObject(config)) {
    const entries = Object.entries(config);
    if (!entries.length && prefix) out.set(prefix, '{}');
    for (const [k, v] of entries) for (const [p, val] of fieldPaths(v, `${prefix}.f:${k}`, k)) out.set(p, val);
  } else if (Array.isArray(config) && MERGE_KEYS[field]) {
    const key = MERGE_KEYS[field]!;
    for (const e of config) {
      const id = `${prefix}.k:${JSON.stringify({ [key]: isObject(e) ? e[key] ?? null : null })}`;
      out.set(`${id}.`, '');
      for (const [p, val] of fieldPaths(e, id, '')) out.set(p, val);
    }
  } else {
    out.set(prefix, JSON.stringify(config));
  }
  return out;
}

/** Removes one field path (as fieldPaths names it) from obj; a missing path is nothing to do. */
export function removePath(obj: JsonObject, path: string): void {
  const segs = path.split(/\.(?=[fk]:)/).filter((s) => s && s !== '.');
  let cur: Json = obj;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!.replace(/\.$/, '');
    const last = i === segs.length - 1;
    if (seg.startsWith('f:') && isObject(cur)) {
      const k = seg.slice(2);
      if (last) { delete cur[k]; return; }
      cur = cur[k] ?? null;
    } else if (seg.startsWith('k:') && Array.isArray(cur)) {
      const id = JSON.parse(seg.slice(2)) as JsonObject;
      const [key, val] = Object.entries(id)[0]!;
      const at = cur.findIndex((e) => isObject(e) && JSON.stringify(e[key]) === JSON.stringify(val));
      if (at < 0) return;
      if (last) { cur.splice(at, 1); return; }
      cur = cur[at]!;
    } else return;
  }
}

/** managedFields' fieldsV1 from a set of paths, in the API's format ({"f:spec":{"f:x":{}}}). */
export function fieldsV1(paths: Iterable<string>): JsonObject {
  const root: JsonObject = {};
  for (const p of paths) {
    let cur = root;
    for (const seg of p.split(/\.(?=[fk]:)/).filter(Boolean)) {
      const name = seg.endsWith('.') ? seg.slice(0, -1) : seg;
      cur = (cur[name] ??= {}) as JsonObject;
      if (seg.endsWith('.')) cur['.'] = {};
    }
  }
  return root;
}
