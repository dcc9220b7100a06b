// ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) as kube-apiserver's admission plugin
// applies it (k8s.io/apiserver/pkg/admission/plugin/policy/validating), evaluated with a real CEL
// implementation (@bufbuild/cel, with the strings extension Kubernetes enables):
// - a policy applies when its matchConstraints match the request (resourceRules and
//   excludeResourceRules with operations, groups, versions, resources incl. "res/sub" and "*",
//   resourceNames, scope; namespaceSelector, objectSelector), then each of its bindings whose
//   matchResources match too;
// - matchConditions: any false skips the policy; an error counts under failurePolicy;
// - variables (in order, each may use the earlier ones), validations with message,
//   messageExpression and reason; a validation that is not true denies; an evaluation error denies
//   under failurePolicy Fail (the default) and is ignored under Ignore;
// - validationActions: Deny refuses the request, Warn adds a Warning header, Audit has no audit log
//   here and does nothing;
// - the refusal is the API server's: admission.NewForbidden's message
//   (`<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<p>' with binding '<b>' denied
//   request: <message>`), with the validation's reason (Invalid, 422, when it has none) and code.
// Not implemented (a policy using them is refused when it is written, saying so): paramKind and
// the authorizer variable.
import { run, isCelError } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { isObject, type Json, type JsonObject } from './patches.js';
import type { Resource } from './resources.js';

/** Who made a request, as an authenticator reports it (user.Info). */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  /** E.g. a pod-bound ServiceAccount token's authentication.kubernetes.io/node-name. */
  extra?: Record<string, string[]>;
}

export interface AdmissionRequest {
  operation: 'CREATE' | 'UPDATE' | 'DELETE';
  resource: Resource;
  subResource: string;
  name: string;
  namespace: string;
  user: UserInfo;
  object: JsonObject | null;
  oldObject: JsonObject | null;
  /** The Namespace of a namespaced object (for namespaceSelector and namespaceObject). */
  namespaceObject: JsonObject | null;
  dryRun: boolean;
}

export interface Denial { code: number; reason: string; message: string; details: JsonObject }
export interface AdmissionResult { denial?: Denial; warnings: string[] }

const CODES: Record<string, number> = { Forbidden: 403, Unauthorized: 401, RequestEntityTooLarge: 413, Invalid: 422 };

/** Why a policy cannot be served here (the field and what), or undefined. */
export function unsupportedPolicy(policy: JsonObject): { field: string; message: string } | undefined {
  const spec = (policy['spec'] ?? {}) as JsonObject;
  if (spec['paramKind'] !== undefined && spec['paramKind'] !== null) return { field: 'spec.paramKind', message: 'this test API server does not implement policy parameters' };
  const expressions = [
    ...asList(spec['validations']).flatMap((v) => [v['expression'], v['messageExpression']]),
    ...asList(spec['matchConditions']).map((c) => c['expression']),
    ...asList(spec['variables']).map((c) => c['expression']),
  ];
  if (expressions.some((e) => typeof e === 'string' && /\bauthorizer\b/.test(e))) return { field: 'spec', message: 'the authorizer variable: this test API server has no authorizer' };
  return undefined;
}

function asList(v: Json | undefined): JsonObject[] {
  return Array.isArray(v) ? v.filter(isObject) : [];
}

function strs(v: Json | undefined): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** JSON as CEL sees Kubernetes objects: integers are CEL ints (int64), not doubles. */
function celValue(v: Json | undefined): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(celValue);
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, celValue(x)]));
  return v;
}

function evaluate(expression: string, bindings: Record<string, unknown>): { value?: unknown; error?: string } {
  let out: unknown;
  try {
    out = run(expression, bindings as Parameters<typeof run>[1], { funcs: strings });
  } catch (e) {
    return { error: `expression '${expression}' resulted in error: ${(e as Error).message}` };
  }
  if (isCelError(out)) return { error: `expression '${expression}' resulted in error: ${out.message}` };
  return { value: out };
}

/** A NamedRuleWithOperations against the request. */
function ruleMatches(rule: JsonObject, a: AdmissionRequest): boolean {
  const r = a.resource;
  const has = (list: string[], v: string) => list.includes('*') || list.includes(v);
  if (!has(strs(rule['operations']), a.operation)) return false;
  if (!has(strs(rule['apiGroups']), r.group) || !has(strs(rule['apiVersions']), r.version)) return false;
  const resources = strs(rule['resources']);
  const sub = a.subResource;
  const resOk = resources.some((x) => {
    const [res, s] = x.split('/') as [string, string | undefined];
    if (res !== '*' && res !== r.name) return false;
    return s === undefined ? sub === '' : s === '*' || s === sub;
  });
  if (!resOk) return false;
  const scope = typeof rule['scope'] === 'string' ? rule['scope'] : '*';
  if (scope === 'Cluster' && r.namespaced) return false;
  if (scope === 'Namespaced' && !r.namespaced) return false;
  const names = strs(rule['resourceNames']);
  return !names.length || names.includes(a.name);
}

/** A metav1.LabelSelector (absent or empty: everything). */
function selectorMatches(sel: Json | undefined, labels: Record<string, string>): boolean {
  if (!isObject(sel)) return true;
  const ml = isObject(sel['matchLabels']) ? sel['matchLabels'] : {};
  if (!Object.entries(ml).every(([k, v]) => labels[k] === v)) return false;
  return asList(sel['matchExpressions']).every((e) => {
    const k = String(e['key']);
    const values = strs(e['values']);
    switch (e['operator']) {
      case 'In': return k in labels && values.includes(labels[k]!);
      case 'NotIn': return !(k in labels) || !values.includes(labels[k]!);
      case 'Exists': return k in labels;
      case 'DoesNotExist': return !(k in labels);
      default: return false;
    }
  });
}

const labelsOf = (o: JsonObject | null): Record<string, string> => ((o?.['metadata'] as JsonObject | undefined)?.['labels'] ?? {}) as Record<string, string>;

/** matchConstraints (of a policy) or matchResources (of a binding; absent: no further constraint). */
function resourcesMatch(m: Json | undefined, a: AdmissionRequest, isPolicy: boolean): boolean {
  if (!isObject(m)) return !isPolicy;
  const rules = asList(m['resourceRules']);
  if ((isPolicy || rules.length) && !rules.some((r) => ruleMatches(r, a))) return false;
  if (asList(m['excludeResourceRules']).some((r) => ruleMatches(r, a))) return false;
  // namespaceSelector: a cluster-scoped object other than a Namespace always matches
  const nsLabels = a.resource.kind === 'Namespace' ? labelsOf(a.object ?? a.oldObject) : a.resource.namespaced ? labelsOf(a.namespaceObject) : undefined;
  if (nsLabels && !selectorMatches(m['namespaceSelector'], nsLabels)) return false;
  // objectSelector: the new or the old object's labels
  return [a.object, a.oldObject].filter((o) => o).some((o) => selectorMatches(m['objectSelector'], labelsOf(o)));
}

function requestVariable(a: AdmissionRequest): JsonObject {
  const r = a.resource;
  const user: JsonObject = { username: a.user.username };
  if (a.user.uid) user['uid'] = a.user.uid;
  if (a.user.groups?.length) user['groups'] = a.user.groups;
  if (a.user.extra && Object.keys(a.user.extra).length) user['extra'] = a.user.extra;
  const kind = { group: r.group, version: r.version, kind: r.kind };
  const resource = { group: r.group, version: r.version, resource: r.name };
  return {
    kind, resource, requestKind: kind, requestResource: resource,
    ...(a.subResource ? { subResource: a.subResource, requestSubResource: a.subResource } : {}),
    name: a.name, ...(a.namespace ? { namespace: a.namespace } : {}),
    operation: a.operation, userInfo: user, dryRun: a.dryRun,
  };
}

interface Decision { message: string; reason: string }

/** One policy under one binding: the failed validations (empty: admitted). */
function validate(policy: JsonObject, a: AdmissionRequest): Decision[] {
  const spec = (policy['spec'] ?? {}) as JsonObject;
  const fail = spec['failurePolicy'] !== 'Ignore';
  const bindings: Record<string, unknown> = {
    object: celValue(a.object), oldObject: celValue(a.oldObject), request: celValue(requestVariable(a)),
    params: null, namespaceObject: celValue(a.namespaceObject),
  };
  const errors: string[] = [];
  let matched = true;
  for (const c of asList(spec['matchConditions'])) {
    const r = evaluate(String(c['expression']), bindings);
    if (r.error) errors.push(`matchCondition '${String(c['name'])}': ${r.error}`);
    else if (r.value !== true) matched = false;
  }
  if (!matched) return [];
  if (errors.length) return fail ? [{ message: errors.join(', '), reason: 'Invalid' }] : [];
  // variables: in order, each sees the earlier ones; one that fails is absent (using it is an error)
  const variables: Record<string, unknown> = {};
  bindings['variables'] = variables;
  for (const v of asList(spec['variables'])) {
    const r = evaluate(String(v['expression']), bindings);
    if (!r.error) variables[String(v['name'])] = r.value;
  }
  const out: Decision[] = [];
  for (const v of asList(spec['validations'])) {
    const expression = String(v['expression']);
    const r = evaluate(expression, bindings);
    if (r.error) { if (fail) out.push({ message: r.error, reason: 'Invalid' }); continue; }
    if (r.value === true) continue;
    let message = '';
    if (typeof v['messageExpression'] === 'string') {
      const m = evaluate(v['messageExpression'], bindings);
      if (typeof m.value === 'string' && !m.value.includes('\n')) message = m.value.trim();
    }
    if (!message && typeof v['message'] === 'string') message = v['message'].trim();
    if (!message) message = `failed expression: ${expression.trim()}`;
    out.push({ message, reason: typeof v['reason'] === 'string' ? v['reason'] : 'Invalid' });
  }
  return out;
}

/** Every stored policy and binding against one request: the first denial (as kube-apiserver reports it) and the warnings. */
export function admit(policies: JsonObject[], bindings: JsonObject[], a: AdmissionRequest): AdmissionResult {
  const warnings: string[] = [];
  const denied: { policy: string; binding: string; d: Decision }[] = [];
  for (const policy of policies) {
    const policyName = String((policy['metadata'] as JsonObject)['name']);
    const spec = (policy['spec'] ?? {}) as JsonObject;
    if (!resourcesMatch(spec['matchConstraints'], a, true)) continue;
    for (const binding of bindings) {
      const bspec = (binding['spec'] ?? {}) as JsonObject;
      if (bspec['policyName'] !== policyName || !resourcesMatch(bspec['matchResources'], a, false)) continue;
      const bindingName = String((binding['metadata'] as JsonObject)['name']);
      for (const d of validate(policy, a)) {
        const actions = strs(bspec['validationActions']);
        if (actions.includes('Deny')) denied.push({ policy: policyName, binding: bindingName, d });
        if (actions.includes('Warn')) warnings.push(`Validation failed for ValidatingAdmissionPolicy '${policyName}' with binding '${bindingName}': ${d.message}`);
      }
    }
  }
  const first = denied[0];
  if (!first) return { warnings };
  const inner = `ValidatingAdmissionPolicy '${first.policy}' with binding '${first.binding}' denied request: ${first.d.message}`;
  const r = a.resource;
  const name = String(((a.object ?? a.oldObject)?.['metadata'] as JsonObject | undefined)?.['name'] || 'Unknown');
  return {
    warnings,
    denial: {
      code: CODES[first.d.reason] ?? 422,
      reason: first.d.reason,
      message: `${r.group ? `${r.name}.${r.group}` : r.name} "${name}" is forbidden: ${inner}`,
      details: { name, ...(r.group ? { group: r.group } : {}), kind: r.name, causes: [{ message: inner }] },
    },
  };
}
