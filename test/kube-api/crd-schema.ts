// CustomResourceDefinitions as kube-apiserver judges them, for the test API server: the CRD itself
// (its name, scope, one storage version, a structural schema: every field typed, no keyword this
// stand-in does not implement, which it refuses rather than ignore), and each custom object written
// under it: unknown fields pruned (or refused with fieldValidation=Strict), defaults filled in, then
// validated, with the field paths and messages kube-apiserver's OpenAPI validation uses.
import { isIP } from 'node:net';
import { clone, isObject, type Json, type JsonObject } from './patches.js';

/** The OpenAPI keywords this stand-in implements; a schema using another is refused, never half-checked. */
const KEYWORDS = new Set([
  'type', 'description', 'title', 'example', 'properties', 'required', 'items', 'additionalProperties', 'enum', 'pattern',
  'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minItems', 'maxItems', 'format',
  'default', 'nullable', 'x-kubernetes-list-type', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-int-or-string',
]);
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);
/** The formats kube-apiserver knows; this stand-in checks the ones named in FORMAT_CHECKS and refuses a schema with another. */
const FORMAT_CHECKS: Record<string, (s: string) => boolean> = {
  cidr: (s) => {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
    const family = m ? isIP(m[1]!) : 0;
    return !!family && Number(m![2]) <= (family === 4 ? 32 : 128);
  },
  ipv4: (s) => isIP(s) === 4,
  ipv6: (s) => isIP(s) === 6,
  uuid: (s) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(s),
};

export interface CrdVersion { name: string; served: boolean; storage: boolean; schema: JsonObject; statusSubresource: boolean }
export interface CrdSpec { group: string; scope: 'Cluster' | 'Namespaced'; plural: string; singular: string; kind: string; listKind: string; shortNames?: string[]; categories?: string[]; versions: CrdVersion[] }

const str = (v: Json | undefined): string => (typeof v === 'string' ? v : '');

function schemaProblems(s: Json, path: string, out: string[], root = false): void {
  if (!isObject(s)) { out.push(`${path}: Invalid value: must be an object`); return; }
  for (const k of Object.keys(s)) if (!KEYWORDS.has(k)) out.push(`${path}.${k}: Forbidden: the test API server does not implement this schema keyword`);
  const open = s['x-kubernetes-int-or-string'] === true || s['x-kubernetes-preserve-unknown-fields'] === true;
  if (s['type'] === undefined ? !open : !TYPES.has(str(s['type']))) out.push(`${path}.type: Required value: must not be empty for specified object fields`);
  if (root && s['type'] !== 'object') out.push(`${path}.type: Invalid value: "${str(s['type'])}": must be object at the root`);
  if (s['properties'] !== undefined && s['additionalProperties'] !== undefined) out.push(`${path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive`);
  if (s['format'] !== undefined && !(str(s['format']) in FORMAT_CHECKS)) out.push(`${path}.format: Forbidden: the test API server does not implement format "${str(s['format'])}"`);
  if (s['pattern'] !== undefined) { try { new RegExp(str(s['pattern']), 'u'); } catch { out.push(`${path}.pattern: Invalid value: "${str(s['pattern'])}": not a regular expression`); } }
  if (isObject(s['properties'])) for (const [k, v] of Object.entries(s['properties'])) schemaProblems(v, `${path}.properties[${k}]`, out);
  if (s['items'] !== undefined) {
    if (Array.isArray(s['items'])) out.push(`${path}.items: Forbidden: items must be a schema object and not an array`);
    else schemaProblems(s['items'], `${path}.items`, out);
  }
  if (isObject(s['additionalProperties'])) schemaProblems(s['additionalProperties'], `${path}.additionalProperties`, out);
  if (s['default'] !== undefined) {
    const d = clone(s['default']);
    const errs: string[] = [];
    validate(prune(d, s, 'default', []), s, 'default', errs);
    for (const e of errs) out.push(`${path}.default: Invalid value: ${e}`);
  }
}

/** A CRD's spec, or the reasons kube-apiserver would refuse it (422). */
export function parseCrd(crd: JsonObject): CrdSpec | string[] {
  const out: string[] = [];
  const name = str((crd['metadata'] as JsonObject | undefined)?.['name']);
  const spec = isObject(crd['spec']) ? crd['spec'] : {};
  const names = isObject(spec['names']) ? spec['names'] : {};
  const group = str(spec['group']);
  const plural = str(names['plural']);
  const kind = str(names['kind']);
  if (!group.includes('.')) out.push(`spec.group: Invalid value: "${group}": should be a domain with at least one dot`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(plural)) out.push(`spec.names.plural: Invalid value: "${plural}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`);
  if (!kind) out.push('spec.names.kind: Required value');
  if (name !== `${plural}.${group}`) out.push(`metadata.name: Invalid value: "${name}": must be spec.names.plural+"."+spec.group`);
  if (spec['scope'] !== 'Cluster' && spec['scope'] !== 'Namespaced') out.push(`spec.scope: Unsupported value: "${str(spec['scope'])}": supported values: "Cluster", "Namespaced"`);
  const versions: CrdVersion[] = [];
  (Array.isArray(spec['versions']) ? spec['versions'] : []).forEach((v, i) => {
    const vo = isObject(v) ? v : {};
    const schema = (isObject(vo['schema']) ? vo['schema'] : {})['openAPIV3Schema'];
    const at = `spec.versions[${i}].schema.openAPIV3Schema`;
    if (!isObject(schema)) out.push(`${at}: Required value: schemas are required`);
    else schemaProblems(schema, at, out, true);
    const subresources = isObject(vo['subresources']) ? vo['subresources'] : {};
    for (const k of Object.keys(subresources)) if (k !== 'status') out.push(`spec.versions[${i}].subresources.${k}: Forbidden: the test API server does not implement this subresource`);
    versions.push({ name: str(vo['name']), served: vo['served'] === true, storage: vo['storage'] === true, schema: isObject(schema) ? schema : {}, statusSubresource: 'status' in subresources });
  });
  if (!versions.length) out.push('spec.versions: Invalid value: null: must have exactly one version marked as storage version');
  else if (versions.filter((v) => v.storage).length !== 1) out.push(`spec.versions: Invalid value: ${JSON.stringify(versions.map((v) => v.name))}: must have exactly one version marked as storage version`);
  if (out.length) return out;
  const list = (v: Json | undefined) => (Array.isArray(v) ? v.map(String) : undefined);
  return {
    group, scope: spec['scope'] as CrdSpec['scope'], plural, kind, singular: str(names['singular']) || kind.toLowerCase(), listKind: str(names['listKind']) || `${kind}List`,
    shortNames: list(names['shortNames']), categories: list(names['categories']), versions,
  };
}

const ROOT_KEEP = new Set(['apiVersion', 'kind', 'metadata']);

/** Drops the fields the schema does not declare (kube-apiserver's pruning); their paths go to `unknown`. */
export function prune(v: Json, s: JsonObject, path: string, unknown: string[]): Json {
  if (s['x-kubernetes-preserve-unknown-fields'] === true && s['properties'] === undefined) return v;
  if (isObject(v) && (s['type'] === 'object' || s['properties'] !== undefined)) {
    const props = isObject(s['properties']) ? s['properties'] : undefined;
    const extra = isObject(s['additionalProperties']) ? s['additionalProperties'] : undefined;
    for (const k of Object.keys(v)) {
      const sub = props?.[k] ?? extra;
      if (path === '' && ROOT_KEEP.has(k)) continue;
      if (sub === undefined) {
        if (s['x-kubernetes-preserve-unknown-fields'] !== true && s['additionalProperties'] !== true) { unknown.push(path ? `${path}.${k}` : k); delete v[k]; }
      } else if (isObject(sub)) v[k] = prune(v[k]!, sub, path ? `${path}.${k}` : k, unknown);
    }
  } else if (Array.isArray(v) && isObject(s['items'])) {
    return v.map((x, i) => prune(x, s['items'] as JsonObject, `${path}[${i}]`, unknown));
  }
  return v;
}

/** Fills in the schema's defaults for absent fields. */
export function applyDefaults(v: Json, s: JsonObject): Json {
  if (isObject(v) && isObject(s['properties'])) {
    for (const [k, sub] of Object.entries(s['properties'])) {
      if (!isObject(sub)) continue;
      if (v[k] === undefined && sub['default'] !== undefined) v[k] = clone(sub['default']);
      if (v[k] !== undefined) v[k] = applyDefaults(v[k]!, sub);
    }
  } else if (Array.isArray(v) && isObject(s['items'])) return v.map((x) => applyDefaults(x, s['items'] as JsonObject));
  return v;
}

function typeName(v: Json): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;
}

/** The validation errors of v against s, as kube-apiserver words them (path, then what is wrong). */
export function validate(v: Json, s: JsonObject, path: string, out: string[]): void {
  const at = path || '<root>';
  const shown = JSON.stringify(v);
  if (v === null) {
    if (s['nullable'] !== true) out.push(`${at}: Invalid value: "null": ${at} in body must be of type ${str(s['type']) || 'object'}: "null"`);
    return;
  }
  if (s['x-kubernetes-int-or-string'] === true) {
    if (typeof v !== 'string' && !Number.isInteger(v)) out.push(`${at}: Invalid value: "${typeName(v)}": ${at} in body must be of type integer,string: "${typeName(v)}"`);
  } else if (s['type'] !== undefined) {
    const t = str(s['type']);
    const actual = typeName(v);
    if (!(actual === t || (t === 'number' && actual === 'integer'))) { out.push(`${at}: Invalid value: "${actual}": ${at} in body must be of type ${t}: "${actual}"`); return; }
  }
  if (Array.isArray(s['enum']) && !s['enum'].some((e) => JSON.stringify(e) === shown)) out.push(`${at}: Unsupported value: ${shown}: supported values: ${s['enum'].map((e) => JSON.stringify(e)).join(', ')}`);
  if (typeof v === 'string') {
    if (typeof s['pattern'] === 'string' && !new RegExp(s['pattern'], 'u').test(v)) out.push(`${at}: Invalid value: ${shown}: ${at} in body should match '${s['pattern']}'`);
    if (typeof s['minLength'] === 'number' && [...v].length < s['minLength']) out.push(`${at}: Invalid value: ${shown}: ${at} in body should be at least ${s['minLength']} chars long`);
    if (typeof s['maxLength'] === 'number' && [...v].length > s['maxLength']) out.push(`${at}: Too long: may not be more than ${s['maxLength']} bytes`);
    const check = FORMAT_CHECKS[str(s['format'])];
    if (check && !check(v)) out.push(`${at}: Invalid value: ${shown}: ${at} in body must be of type ${str(s['format'])}: ${shown}`);
  }
  if (typeof v === 'number') {
    if (typeof s['minimum'] === 'number' && (s['exclusiveMinimum'] === true ? v <= s['minimum'] : v < s['minimum'])) out.push(`${at}: Invalid value: ${v}: ${at} in body should be greater than ${s['exclusiveMinimum'] === true ? '' : 'or equal to '}${s['minimum']}`);
    if (typeof s['maximum'] === 'number' && (s['exclusiveMaximum'] === true ? v >= s['maximum'] : v > s['maximum'])) out.push(`${at}: Invalid value: ${v}: ${at} in body should be less than ${s['exclusiveMaximum'] === true ? '' : 'or equal to '}${s['maximum']}`);
  }
  if (Array.isArray(v)) {
    if (typeof s['minItems'] === 'number' && v.length < s['minItems']) out.push(`${at}: Invalid value: ${v.length}: ${at} in body should have at least ${s['minItems']} items`);
    if (typeof s['maxItems'] === 'number' && v.length > s['maxItems']) out.push(`${at}: Too many: ${v.length}: must have at most ${s['maxItems']} items`);
    if (s['x-kubernetes-list-type'] === 'set') {
      const seen = new Set<string>();
      v.forEach((x, i) => { const k = JSON.stringify(x); if (seen.has(k)) out.push(`${path}[${i}]: Duplicate value: ${k}`); seen.add(k); });
    }
    if (isObject(s['items'])) v.forEach((x, i) => validate(x, s['items'] as JsonObject, `${path}[${i}]`, out));
  }
  if (isObject(v)) {
    for (const k of Array.isArray(s['required']) ? s['required'] : []) if (v[String(k)] === undefined) out.push(`${path ? `${path}.` : ''}${String(k)}: Required value`);
    const props = isObject(s['properties']) ? s['properties'] : undefined;
    const extra = isObject(s['additionalProperties']) ? s['additionalProperties'] : undefined;
    for (const [k, x] of Object.entries(v)) {
      if (path === '' && ROOT_KEEP.has(k) && !(props && k in props && k !== 'metadata')) continue;
      const sub = props?.[k] ?? extra;
      if (isObject(sub)) validate(x, sub, path ? `${path}.${k}` : k, out);
    }
  }
}
