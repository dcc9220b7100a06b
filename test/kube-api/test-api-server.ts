// A Kubernetes API server for the tests (no real one can run on these machines): the REST protocol
// of kube-apiserver for the resources veil uses, faithful where veil and kubectl depend on it.
// - discovery (/api, /apis, APIResourceList, /version), so kubectl maps kinds and short names;
// - one resourceVersion counter over all objects; list returns it, watch resumes from it (events
//   after it, in order), a resourceVersion older than the compacted history gets an ERROR event with
//   a 410 Expired Status (as the watch cache sends it), allowWatchBookmarks gets BOOKMARK events;
// - create 409 AlreadyExists, update with a stale resourceVersion 409 Conflict, 404 NotFound with
//   Status bodies, a namespaced object needs its Namespace;
// - PATCH as JSON merge, JSON patch, strategic merge (merge keys, $patch) and server-side apply
//   (field managers, conflicts unless force, fields a manager stops applying are removed);
// - status subresources for Nodes and DaemonSets; Secrets' stringData folded into data;
//   metadata.generation moves when anything but metadata and status does;
// - callers told apart by bearer token (the admin's, or `identities`: username, groups, extra), and
//   ValidatingAdmissionPolicies with their bindings enforced on every create and update
//   (admission-policy.ts), with the API server's refusal; no RBAC (every identity may do anything
//   the policies allow);
// - CustomResourceDefinitions: a CRD is checked (crd-schema.ts), Established a moment after it is
//   written (a status write of its own, as the controllers do it), and from then on its resource is
//   served (discovery, list, watch, get, create, update, merge/JSON/apply patches, delete; a strategic
//   merge patch is 415, as for every custom resource): objects pruned to the schema (warned, or 400
//   with fieldValidation=Strict), defaulted and validated (422 with kube-apiserver's field messages);
//   deleting the CRD deletes its objects and ends their watches.
// Test controls (POST /veil-test/...): compact the history, cut every watch with 410, hold event
// delivery to the open watches (events then go missing, as for a watcher the cache dropped).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { clone, fieldPaths, fieldsV1, isObject, jsonMergePatch, jsonPatch, PatchError, removePath, strategicMergePatch, type Json, type JsonObject } from './patches.js';
import { apiVersionOf, groups, RESOURCES, VERBS, type Resource } from './resources.js';
import { admit, unsupportedPolicy, type UserInfo } from './admission-policy.js';
import { applyDefaults, parseCrd, prune, validate } from './crd-schema.js';

interface Stored {
  object: JsonObject;
  /** Server-side apply: the paths each manager applied last. */
  managers: Map<string, Set<string>>;
}

interface HistoryEvent { rv: number; resource: Resource; namespace: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: JsonObject }

interface Watcher {
  resource: Resource;
  namespace?: string;
  matches: (o: JsonObject) => boolean;
  res: ServerResponse;
  held: boolean;
  close(): void;
}

class ApiError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string, readonly details: JsonObject = {}) { super(message); }
}

function status(code: number, reason: string, message: string, details: JsonObject = {}): JsonObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details, code };
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface TestApiServerOptions {
  /** How often an open watch with allowWatchBookmarks gets a BOOKMARK (a real server: about a minute). */
  bookmarkIntervalMs?: number;
  /** Serve TCP over TLS with this certificate (PEM files), as every real API server does. */
  tls?: { cert: string; key: string };
  /** The bearer token TCP clients must present (401 otherwise), the cluster admin's; the unix socket is trusted as the admin. */
  token?: string;
  /** More bearer tokens and who they authenticate (e.g. a ServiceAccount's pod-bound token, with its extra). */
  identities?: Record<string, UserInfo>;
  /** Resources (plural names) this server does not serve, as an older Kubernetes (e.g. validatingadmissionpolicies before 1.30). */
  unserved?: string[];
}

/** The cluster admin (kubeadm's admin.conf user): the test token and the unix socket. */
export const ADMIN: UserInfo = { username: 'kubernetes-admin', groups: ['kubeadm:cluster-admins', 'system:authenticated'] };

/** What one request's admission needs: who asked, which subresource, and the warnings for the reply. */
interface RequestContext { user: UserInfo; sub: string; warnings: string[]; /** The request's fieldValidation (Strict, Warn, Ignore; '' as Warn). */ fieldValidation: string }

/** Who the API server's own controllers write as (a CRD's status, as the apiextensions controller does). */
const CONTROLLER: UserInfo = { username: 'system:apiserver', groups: ['system:masters', 'system:authenticated'] };

export class TestApiServer {
  private rv = 1;
  private compactedRv = 0;
  private readonly objects = new Map<string, Stored>();
  private history: HistoryEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly servers: Server[] = [];
  /** Custom resources of Established CRDs, by CRD name and version. */
  private readonly custom = new Map<string, Resource>();
  /** Requests by method and path, for tests that check what a client did. */
  readonly requests: string[] = [];
  /** Faults to answer: the next `count` requests to `path` (any method) get `code`. */
  private readonly faults: { path: string; count: number; code: number }[] = [];

  constructor(private readonly opts: TestApiServerOptions = {}) {}

  /** Listens on host:port (port 0: any) or on a unix socket path; returns the URL or the path. */
  async listen(where: { host: string; port: number } | { path: string }): Promise<string> {
    const tcp = !('path' in where);
    const handler = (req: IncomingMessage, res: ServerResponse): void => { void this.handle(req, res, tcp); };
    const tls = this.opts.tls;
    const server = tcp && tls ? createTlsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler) : createServer(handler);
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('path' in where) server.listen(where.path, resolve); else server.listen(where.port, where.host, resolve);
    });
    if ('path' in where) return where.path;
    const a = server.address() as { address: string; port: number };
    return `${this.opts.tls ? 'https' : 'http'}://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
  }

  // ---- test controls ----

  /**
   * The next `count` requests to exactly `path` (any method) fail with `code`, as a real server
   * answers while its etcd is unavailable or slow (500 InternalError, 503 ServiceUnavailable,
   * 504 Timeout "etcdserver: request timed out"): the object is neither read nor written.
   */
  failNext(path: string, count: number, code: 500 | 503 | 504 = 504): void {
    this.faults.push({ path, count, code });
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410. */
  compact(): void {
    this.compactedRv = this.rv + 1;
    this.history = [];
  }

  /** Ends every open watch with a 410 Expired ERROR event, after compacting (so resuming fails too). */
  expireWatches(): number {
    this.compact();
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      w.res.write(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${this.compactedRv - 1} (${this.rv})`) })}\n`);
      w.close();
    }
    return n;
  }

  /** Stops delivering events (and bookmarks) to the watches open now (of one resource, if given); they miss what happens meanwhile. */
  holdWatches(resource?: string): number {
    const held = [...this.watchers].filter((w) => !resource || w.resource.name === resource);
    for (const w of held) w.held = true;
    return held.length;
  }

  openWatches(resource?: string): number {
    return [...this.watchers].filter((w) => !resource || w.resource.name === resource).length;
  }

  // ---- store ----

  private key(r: Resource, ns: string, name: string): string {
    return `${r.group}/${r.name}/${ns}/${name}`;
  }

  /** What is served now: the built-in resources and the custom ones. */
  private resources(): Resource[] {
    return [...RESOURCES, ...this.custom.values()];
  }

  get(resourceName: string, namespace: string, name: string): JsonObject | undefined {
    const r = this.resources().find((x) => x.name === resourceName)!;
    const s = this.objects.get(this.key(r, r.namespaced ? namespace : '', name));
    return s && clone(s.object);
  }

  private list(r: Resource, ns: string | undefined): Stored[] {
    const prefix = `${r.group}/${r.name}/`;
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(prefix) && (ns === undefined || k.startsWith(`${prefix}${ns}/`)))
      .map(([, s]) => s)
      .sort((a, b) => String((a.object['metadata'] as JsonObject)['name']).localeCompare(String((b.object['metadata'] as JsonObject)['name'])));
  }

  private commit(r: Resource, ns: string, name: string, type: HistoryEvent['type'], stored: Stored): JsonObject {
    const k = this.key(r, ns, name);
    const meta = stored.object['metadata'] as JsonObject;
    meta['resourceVersion'] = String(++this.rv);
    if (type === 'DELETED') this.objects.delete(k); else this.objects.set(k, stored);
    const ev: HistoryEvent = { rv: this.rv, resource: r, namespace: ns, type, object: clone(stored.object) };
    this.history.push(ev);
    if (this.history.length > 10_000) { this.compactedRv = this.history[5_000]!.rv; this.history = this.history.slice(5_000); }
    for (const w of this.watchers) this.deliver(w, ev);
    return clone(stored.object);
  }

  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (w.held || w.resource !== ev.resource || (w.namespace !== undefined && w.namespace !== ev.namespace) || !w.matches(ev.object)) return;
    if (w.res.destroyed || w.res.writableEnded) { w.close(); return; }
    w.res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
  }

  /** Defaults, the kind's rules and generation, then the write. */
  private write(r: Resource, ns: string, name: string, next: JsonObject, old: Stored | undefined, ctx: RequestContext, managers?: Map<string, Set<string>>): JsonObject {
    next['apiVersion'] = apiVersionOf(r);
    next['kind'] = r.kind;
    const meta = (isObject(next['metadata']) ? next['metadata'] : {}) as JsonObject;
    next['metadata'] = meta;
    if (meta['name'] !== name) throw new ApiError(400, 'BadRequest', `the name of the object (${String(meta['name'])}) does not match the name on the URL (${name})`);
    if (!DNS_SUBDOMAIN.test(name) || name.length > 253) {
      throw new ApiError(422, 'Invalid', `${r.kind} "${name}" is invalid: metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`, { name, kind: r.name });
    }
    if (r.namespaced) meta['namespace'] = ns; else delete meta['namespace'];
    if (r.crd) this.admitCustom(r, name, next, ctx);
    const isCrd = r.kind === 'CustomResourceDefinition' && r.group === 'apiextensions.k8s.io';
    if (isCrd) {
      const problems = parseCrd(next);
      if (Array.isArray(problems)) throw this.invalid(r, name, problems);
    }
    const oldMeta = old?.object['metadata'] as JsonObject | undefined;
    meta['uid'] = oldMeta?.['uid'] ?? randomUUID();
    meta['creationTimestamp'] = oldMeta?.['creationTimestamp'] ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (r.kind === 'Secret') {
      if (isObject(next['stringData'])) {
        const data = (isObject(next['data']) ? next['data'] : {}) as JsonObject;
        for (const [k, v] of Object.entries(next['stringData'])) data[k] = Buffer.from(String(v), 'utf8').toString('base64');
        next['data'] = data;
      }
      delete next['stringData'];
      for (const [k, v] of Object.entries((next['data'] ?? {}) as JsonObject)) {
        if (!/^[-._a-zA-Z0-9]+$/.test(k)) throw new ApiError(422, 'Invalid', `Secret "${name}" is invalid: data[${k}]: Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`);
        if (typeof v !== 'string' || Buffer.from(v, 'base64').toString('base64') !== v) throw new ApiError(400, 'BadRequest', `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at data[${k}]`);
      }
      next['type'] ??= 'Opaque';
    }
    if (r.kind === 'Namespace') next['status'] = { phase: 'Active' };
    if (r.kind === 'Lease') {
      // MicroTime: Go parses it with RFC3339Micro, six fractional digits exactly.
      for (const f of ['renewTime', 'acquireTime']) {
        const t = (next['spec'] as JsonObject | undefined)?.[f];
        if (t !== undefined && t !== null && !(typeof t === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/.test(t))) {
          throw new ApiError(400, 'BadRequest', `Lease in version "v1" cannot be handled as a Lease: parsing time "${String(t)}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse`);
        }
      }
    }
    const body = (o: JsonObject | undefined) => JSON.stringify(Object.fromEntries(Object.entries(o ?? {}).filter(([k]) => !['metadata', 'status', 'apiVersion', 'kind'].includes(k))));
    const gen = Number(oldMeta?.['generation'] ?? 0);
    meta['generation'] = !old ? 1 : body(old.object) === body(next) ? gen || 1 : gen + 1;
    if (r.kind === 'Node' || r.kind === 'Namespace' || r.kind === 'Secret' || r.kind === 'ConfigMap' || r.kind === 'ServiceAccount' || r.kind === 'Lease') delete meta['generation'];
    const mgrs = managers ?? old?.managers ?? new Map<string, Set<string>>();
    if (r.kind === 'ValidatingAdmissionPolicy') {
      const why = unsupportedPolicy(next);
      if (why) {
        throw new ApiError(422, 'Invalid', `ValidatingAdmissionPolicy.admissionregistration.k8s.io "${name}" is invalid: ${why.field}: ${why.message}`,
          { name, group: r.group, kind: r.kind, causes: [{ reason: 'FieldValueForbidden', message: why.message, field: why.field }] });
      }
    }
    this.admit(r, ns, name, next, old?.object ?? null, ctx);
    // A write that changes nothing is no write: no new resourceVersion, no event (as kube-apiserver).
    const comparable = (o: JsonObject, m: Map<string, Set<string>>) => JSON.stringify([{ ...o, metadata: { ...(o['metadata'] as JsonObject), resourceVersion: null, managedFields: null, generation: null } }, [...m].map(([k, v]) => [k, [...v].sort()])]);
    if (old && comparable(old.object, old.managers) === comparable(next, mgrs)) return clone(old.object);
    if (mgrs.size) {
      meta['managedFields'] = [...mgrs].map(([manager, paths]) => ({
        manager, operation: 'Apply', apiVersion: apiVersionOf(r), time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), fieldsType: 'FieldsV1', fieldsV1: fieldsV1(paths),
      }));
    } else delete meta['managedFields'];
    const written = this.commit(r, ns, name, old ? 'MODIFIED' : 'ADDED', { object: next, managers: mgrs });
    // The controllers accept its names and establish it a moment later (not within this request).
    if (isCrd && JSON.stringify(old?.object['spec']) !== JSON.stringify(next['spec'])) setImmediate(() => this.establish(name));
    return written;
  }

  private invalid(r: Resource, name: string, errors: string[]): ApiError {
    return new ApiError(422, 'Invalid', `${r.kind}${r.group ? `.${r.group}` : ''} "${name}" is invalid: ${errors.length > 1 ? `[${errors.join(', ')}]` : errors[0]}`,
      { name, group: r.group, kind: r.kind, causes: errors.map((e) => ({ reason: 'FieldValueInvalid', message: e.slice(e.indexOf(': ') + 2), field: e.slice(0, e.indexOf(': ')) })) });
  }

  /** A custom object as kube-apiserver stores it: pruned to the schema, defaulted, valid. */
  private admitCustom(r: Resource, name: string, obj: JsonObject, ctx: RequestContext): void {
    const schema = r.crd!.schema;
    const unknown: string[] = [];
    prune(obj, schema, '', unknown);
    if (unknown.length && ctx.fieldValidation === 'Strict') {
      throw new ApiError(400, 'BadRequest', `${r.kind} in version "${r.version}" cannot be handled as a ${r.kind}: strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`);
    }
    if (ctx.fieldValidation !== 'Ignore') ctx.warnings.push(...unknown.map((u) => `unknown field "${u}"`));
    applyDefaults(obj, schema);
    const errors: string[] = [];
    validate(obj, schema, '', errors);
    if (errors.length) throw this.invalid(r, name, errors);
  }

  /** The CRD's names accepted and its served versions registered; its status says so. */
  private establish(crdName: string): void {
    const crdResource = RESOURCES.find((x) => x.kind === 'CustomResourceDefinition')!;
    const cur = this.objects.get(this.key(crdResource, '', crdName));
    if (!cur) return;
    const spec = parseCrd(cur.object);
    if (Array.isArray(spec)) return;
    const served = new Set<string>();
    for (const v of spec.versions.filter((x) => x.served)) {
      const k = `${crdName}/${v.name}`;
      served.add(k);
      const r: Resource = {
        group: spec.group, version: v.name, name: spec.plural, singular: spec.singular, kind: spec.kind, namespaced: spec.scope === 'Namespaced',
        shortNames: spec.shortNames, categories: spec.categories, status: v.statusSubresource, crd: { name: crdName, schema: v.schema },
      };
      const had = this.custom.get(k);
      if (had) Object.assign(had, r); else this.custom.set(k, r); // the same object: open watches keep matching
    }
    for (const k of [...this.custom.keys()]) if (k.startsWith(`${crdName}/`) && !served.has(k)) this.custom.delete(k);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const names = { plural: spec.plural, singular: spec.singular, kind: spec.kind, listKind: spec.listKind, ...(spec.shortNames ? { shortNames: spec.shortNames } : {}), ...(spec.categories ? { categories: spec.categories } : {}) };
    const status: JsonObject = {
      conditions: [
        { type: 'NamesAccepted', status: 'True', lastTransitionTime: now, reason: 'NoConflicts', message: 'no conflicts found' },
        { type: 'Established', status: 'True', lastTransitionTime: now, reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
      ],
      acceptedNames: names, storedVersions: [spec.versions.find((v) => v.storage)!.name],
    };
    this.write(crdResource, '', crdName, { ...clone(cur.object), status }, cur, { user: CONTROLLER, sub: 'status', warnings: [], fieldValidation: '' });
  }

  /** A CRD going: its objects are deleted (events and all), its watches end, its resource is no longer served. */
  private dropCustom(crdName: string): void {
    for (const [k, r] of [...this.custom]) {
      if (!k.startsWith(`${crdName}/`)) continue;
      for (const s of this.list(r, undefined)) {
        const m = s.object['metadata'] as JsonObject;
        this.commit(r, String(m['namespace'] ?? ''), String(m['name']), 'DELETED', s);
      }
      for (const w of [...this.watchers]) if (w.resource === r) w.close();
      this.custom.delete(k);
    }
  }

  /** Validating admission (after defaults, before storage; also for a write that changes nothing, as kube-apiserver). */
  private admit(r: Resource, ns: string, name: string, object: JsonObject, oldObject: JsonObject | null, ctx: RequestContext): void {
    const objects = (resource: string) => this.list(RESOURCES.find((x) => x.name === resource)!, undefined).map((s) => s.object);
    const policies = objects('validatingadmissionpolicies');
    if (!policies.length) return;
    const nsObject = r.namespaced ? this.objects.get(this.key(RESOURCES.find((x) => x.name === 'namespaces')!, '', ns))?.object ?? null : null;
    const { denial, warnings } = admit(policies, objects('validatingadmissionpolicybindings'), {
      operation: oldObject ? 'UPDATE' : 'CREATE', resource: r, subResource: ctx.sub, name, namespace: ns, user: ctx.user,
      object: clone(object), oldObject: oldObject && clone(oldObject), namespaceObject: nsObject && clone(nsObject), dryRun: false,
    });
    ctx.warnings.push(...warnings);
    if (denial) throw new ApiError(denial.code, denial.reason, denial.message, denial.details);
  }

  private requireNamespace(r: Resource, ns: string): void {
    if (r.namespaced && !this.objects.has(this.key(RESOURCES.find((x) => x.name === 'namespaces')!, '', ns))) {
      throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
    }
  }

  private notFound(r: Resource, name: string): ApiError {
    return new ApiError(404, 'NotFound', `${r.group ? `${r.name}.${r.group}` : r.name} "${name}" not found`, { name, group: r.group, kind: r.name });
  }

  /** A write to the object keeps its status; a write to /status keeps everything else. */
  private subresourceRules(r: Resource, sub: string | undefined, old: JsonObject, next: JsonObject): JsonObject {
    if (!r.status) return next;
    if (sub === 'status') return { ...clone(old), status: next['status'] ?? null, metadata: { ...(old['metadata'] as JsonObject), resourceVersion: (next['metadata'] as JsonObject | undefined)?.['resourceVersion'] ?? null } };
    if (old['status'] === undefined) { const { status: _, ...rest } = next; return rest; }
    return { ...next, status: clone(old['status']) };
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse, tcp: boolean): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const user = this.authenticate(req, tcp);
    if (!user) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(status(401, 'Unauthorized', 'Unauthorized')));
      return;
    }
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (this.requests.length > 1000) this.requests.splice(0, 500);
    const fault = this.faults.find((f) => f.path === url.pathname && f.count > 0);
    if (fault) {
      fault.count--;
      const reason = { 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' }[fault.code as 500 | 503 | 504];
      res.writeHead(fault.code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(status(fault.code, reason, fault.code === 504 ? 'etcdserver: request timed out' : 'the server is currently unable to handle the request')));
      return;
    }
    const ctx: RequestContext = { user, sub: '', warnings: [], fieldValidation: url.searchParams.get('fieldValidation') ?? '' };
    const warning = (): Record<string, string[]> => (ctx.warnings.length ? { Warning: ctx.warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {});
    try {
      const body = await new Promise<string>((resolve, reject) => {
        let s = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => { s += d; });
        req.on('end', () => resolve(s));
        req.on('error', reject);
      });
      const out = this.route(req, res, url, body, ctx);
      if (out === undefined) return; // a watch: the response stays open
      res.writeHead(out.code, { 'Content-Type': 'application/json', ...warning() });
      res.end(JSON.stringify(out.body));
    } catch (e) {
      const err = e instanceof ApiError ? e : e instanceof PatchError ? new ApiError(422, 'Invalid', e.message) : new ApiError(500, 'InternalError', (e as Error).message);
      if (res.headersSent) { res.end(); return; }
      res.writeHead(err.code, { 'Content-Type': 'application/json', ...warning() });
      res.end(JSON.stringify(status(err.code, err.reason, err.message, err.details)));
    }
  }

  private served(): Resource[] {
    return this.resources().filter((r) => !this.opts.unserved?.includes(r.name));
  }

  /** Who the request is: the admin's token or the unix socket, else a token of `identities`; undefined: 401. */
  private authenticate(req: IncomingMessage, tcp: boolean): UserInfo | undefined {
    if (!tcp || (!this.opts.token && !this.opts.identities)) return ADMIN;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return undefined;
    if (m[1] === this.opts.token) return ADMIN;
    return this.opts.identities?.[m[1]!];
  }

  private route(req: IncomingMessage, res: ServerResponse, url: URL, body: string, ctx: RequestContext): { code: number; body: Json } | undefined {
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (path.startsWith('/veil-test/') && method === 'POST' && !req.socket.remotePort) return { code: 200, body: this.control(path.slice('/veil-test/'.length), url.searchParams) };
    if (path === '/version') return { code: 200, body: { major: '1', minor: '32', gitVersion: 'v1.32.0-veil-test', platform: 'linux/amd64' } };
    if (path === '/healthz' || path === '/readyz' || path === '/livez') return { code: 200, body: 'ok' };
    if (path === '/api') return { code: 200, body: { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: req.headers.host ?? '' }] } };
    if (path === '/apis') {
      return {
        code: 200, body: {
          kind: 'APIGroupList', apiVersion: 'v1',
          groups: [...groups(this.served())].map(([name, version]) => ({ name, versions: [{ groupVersion: `${name}/${version}`, version }], preferredVersion: { groupVersion: `${name}/${version}`, version } })),
        },
      };
    }
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/(.*))?$/.exec(path);
    if (!m) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const group = m[2] ?? '';
    const version = m[1] ?? m[3]!;
    const served = this.served().filter((r) => r.group === group && r.version === version);
    if (!served.length) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (!m[4]) return { code: 200, body: this.resourceList(group, version, served) };
    let segs = m[4].split('/').map(decodeURIComponent);
    let ns: string | undefined;
    if (segs[0] === 'namespaces' && segs.length >= 3) { ns = segs[1]; segs = segs.slice(2); }
    const r = served.find((x) => x.name === segs[0]);
    if (!r || (ns !== undefined && !r.namespaced)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const [, name, sub] = segs;
    ctx.sub = sub ?? '';
    if (sub !== undefined && (sub !== 'status' || !r.status)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (r.namespaced && name !== undefined && ns === undefined) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const q = url.searchParams;
    const namespace = r.namespaced ? ns : undefined;

    if (name === undefined) {
      if (method === 'GET') {
        if (q.get('watch') === 'true' || q.get('watch') === '1') { this.watch(r, namespace, q, res); return undefined; }
        return { code: 200, body: this.listBody(r, namespace, q) };
      }
      if (method === 'POST') {
        if (r.namespaced && ns === undefined) throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
        const obj = this.parseBody(req, body);
        const n = String((obj['metadata'] as JsonObject | undefined)?.['name'] ?? '');
        if (!n) throw new ApiError(422, 'Invalid', `${r.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
        this.requireNamespace(r, ns ?? '');
        if (this.objects.has(this.key(r, ns ?? '', n))) throw new ApiError(409, 'AlreadyExists', `${r.name} "${n}" already exists`, { name: n, group, kind: r.name });
        delete (obj['metadata'] as JsonObject)['resourceVersion'];
        if (r.status && r.kind !== 'Node') delete obj['status'];
        return { code: 201, body: this.write(r, ns ?? '', n, obj, undefined, ctx) };
      }
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }

    const nsKey = ns ?? '';
    const cur = this.objects.get(this.key(r, nsKey, name));
    switch (method) {
      case 'GET':
        if (!cur) throw this.notFound(r, name);
        return { code: 200, body: clone(cur.object) };
      case 'PUT': {
        if (!cur) throw this.notFound(r, name);
        const obj = this.parseBody(req, body);
        const given = (obj['metadata'] as JsonObject | undefined)?.['resourceVersion'];
        if (given === undefined || given === '') throw new ApiError(422, 'Invalid', `${r.kind} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`);
        if (given !== (cur.object['metadata'] as JsonObject)['resourceVersion']) throw this.conflict(r, name);
        return { code: 200, body: this.write(r, nsKey, name, this.subresourceRules(r, sub, cur.object, obj), cur, ctx) };
      }
      case 'PATCH': return this.patch(r, nsKey, name, sub, cur, req, body, q, ctx);
      case 'DELETE': {
        if (!cur) throw this.notFound(r, name);
        if (r.kind === 'Namespace') for (const [k, s] of [...this.objects]) {
          const o = s.object;
          if ((o['metadata'] as JsonObject)['namespace'] === name) {
            const [g, rn] = k.split('/');
            this.commit(this.resources().find((x) => x.group === g && x.name === rn)!, name, String((o['metadata'] as JsonObject)['name']), 'DELETED', s);
          }
        }
        if (r.kind === 'CustomResourceDefinition' && r.group === 'apiextensions.k8s.io') this.dropCustom(name);
        return { code: 200, body: this.commit(r, nsKey, name, 'DELETED', cur) };
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
  }

  private conflict(r: Resource, name: string): ApiError {
    return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${r.group ? `${r.name}.${r.group}` : r.name} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, group: r.group, kind: r.name });
  }

  private parseBody(req: IncomingMessage, body: string): JsonObject {
    const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim();
    // This server speaks JSON (and YAML for apply); a real one also protobuf and CBOR.
    if (!['application/json', 'application/yaml', 'application/apply-patch+yaml', 'application/merge-patch+json', 'application/strategic-merge-patch+json', 'application/json-patch+json'].includes(type)) {
      throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
    }
    let v: unknown;
    try {
      v = type === 'application/apply-patch+yaml' || type === 'application/yaml' ? parseYaml(body) : JSON.parse(body);
    } catch (e) {
      throw new ApiError(400, 'BadRequest', `the body of the request was in an unknown format: ${(e as Error).message.split('\n')[0]}`);
    }
    if (type === 'application/json-patch+json' ? !Array.isArray(v) : !isObject(v)) throw new ApiError(400, 'BadRequest', 'the body of the request is not an object');
    return v as JsonObject;
  }

  private patch(r: Resource, ns: string, name: string, sub: string | undefined, cur: Stored | undefined, req: IncomingMessage, body: string, q: URLSearchParams, ctx: RequestContext): { code: number; body: Json } {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const patch = this.parseBody(req, body) as Json;
    if (type === 'application/apply-patch+yaml') return this.apply(r, ns, name, sub, cur, patch as JsonObject, q, ctx);
    if (!cur) throw this.notFound(r, name);
    let next: Json;
    switch (type) {
      case 'application/merge-patch+json': next = jsonMergePatch(cur.object, patch); break;
      case 'application/strategic-merge-patch+json':
        if (r.crd) throw new ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml');
        next = strategicMergePatch(cur.object, patch); break;
      case 'application/json-patch+json': next = jsonPatch(cur.object, patch); break;
      default: throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
    }
    if (!isObject(next)) throw new ApiError(422, 'Invalid', 'the patch made the object something other than an object');
    const given = (next['metadata'] as JsonObject | undefined)?.['resourceVersion'];
    if (given !== undefined && given !== (cur.object['metadata'] as JsonObject)['resourceVersion']) throw this.conflict(r, name);
    return { code: 200, body: this.write(r, ns, name, this.subresourceRules(r, sub, cur.object, next), cur, ctx) };
  }

  /** Server-side apply: the configuration merged in, owned by its field manager. */
  private apply(r: Resource, ns: string, name: string, sub: string | undefined, cur: Stored | undefined, config: JsonObject, q: URLSearchParams, ctx: RequestContext): { code: number; body: Json } {
    const manager = q.get('fieldManager');
    if (!manager) throw new ApiError(400, 'BadRequest', 'PATCH requests with apply content type must specify fieldManager');
    if (config['apiVersion'] !== apiVersionOf(r) || config['kind'] !== r.kind) {
      throw new ApiError(400, 'BadRequest', `the apiVersion and kind of the configuration (${String(config['apiVersion'])}, ${String(config['kind'])}) do not match the URL (${apiVersionOf(r)}, ${r.kind})`);
    }
    const owned = clone(config);
    delete owned['apiVersion']; delete owned['kind'];
    const meta = (isObject(owned['metadata']) ? owned['metadata'] : {}) as JsonObject;
    delete meta['name']; delete meta['namespace']; delete meta['resourceVersion']; delete meta['managedFields'];
    if (!Object.keys(meta).length) delete owned['metadata'];
    if (r.status && sub !== 'status') delete owned['status'];
    const paths = fieldPaths(owned);
    const managers = new Map([...(cur?.managers ?? new Map<string, Set<string>>())].map(([m, s]) => [m, new Set(s)]));
    if (!cur) {
      this.requireNamespace(r, ns);
      managers.set(manager, new Set(paths.keys()));
      const created: JsonObject = { ...config, metadata: { ...(config['metadata'] as JsonObject), name } };
      if (r.status && r.kind !== 'Node') delete created['status']; // as on POST: a new object's status is the controllers'
      return { code: 201, body: this.write(r, ns, name, created, undefined, ctx, managers) };
    }
    const current = fieldPaths(cur.object);
    const conflicts: string[] = [];
    for (const [m, set] of managers) {
      if (m === manager) continue;
      for (const p of paths.keys()) {
        if (!set.has(p) || current.get(p) === paths.get(p)) continue;
        if (q.get('force') === 'true') set.delete(p); else conflicts.push(`conflict with "${m}": ${p.replace(/f:/g, '')}`);
      }
    }
    if (conflicts.length) throw new ApiError(409, 'Conflict', `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${conflicts.join('\n')}`, { name, group: r.group, kind: r.name });
    let next = strategicMergePatch(cur.object, owned) as JsonObject;
    const others = new Set([...managers].filter(([m]) => m !== manager).flatMap(([, s]) => [...s]));
    for (const p of managers.get(manager) ?? []) if (!paths.has(p) && !others.has(p)) removePath(next, p);
    next = this.subresourceRules(r, sub, cur.object, next);
    managers.set(manager, new Set(paths.keys()));
    for (const [m, s] of managers) if (!s.size) managers.delete(m);
    return { code: 200, body: this.write(r, ns, name, next, cur, ctx, managers) };
  }

  private resourceList(group: string, version: string, served: Resource[]): JsonObject {
    return {
      kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version,
      resources: served.flatMap((r) => [
        { name: r.name, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: VERBS, ...(r.shortNames ? { shortNames: r.shortNames } : {}), ...(r.categories ? { categories: r.categories } : {}) },
        ...(r.status ? [{ name: `${r.name}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] }] : []),
      ]),
    };
  }

  private selector(r: Resource, q: URLSearchParams): (o: JsonObject) => boolean {
    const fields = (q.get('fieldSelector') ?? '').split(',').filter(Boolean).map((s) => {
      const [k, v] = s.split(/!?==?/) as [string, string];
      if (k !== 'metadata.name' && k !== 'metadata.namespace') throw new ApiError(400, 'BadRequest', `"${k}" is not a known field selector: only "metadata.name", "metadata.namespace"`);
      return { k: k.slice('metadata.'.length), v, neg: s.includes('!=') };
    });
    const labels = (q.get('labelSelector') ?? '').split(',').filter(Boolean).map((s) => {
      const m = /^([^!=]+?)(!=|==|=)?([^=]*)$/.exec(s.trim());
      if (!m) throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${s}`);
      return { k: m[1]!.replace(/^!/, ''), op: m[2] ?? (m[1]!.startsWith('!') ? 'absent' : 'exists'), v: m[3]! };
    });
    void r;
    return (o) => {
      const meta = o['metadata'] as JsonObject;
      const lab = (meta['labels'] ?? {}) as JsonObject;
      return fields.every((f) => (meta[f.k] === f.v) !== f.neg)
        && labels.every((l) => l.op === 'exists' ? l.k in lab : l.op === 'absent' ? !(l.k in lab) : l.op === '!=' ? lab[l.k] !== l.v : lab[l.k] === l.v);
    };
  }

  private listBody(r: Resource, ns: string | undefined, q: URLSearchParams): JsonObject {
    const rv = q.get('resourceVersion');
    if (rv && rv !== '0' && q.get('resourceVersionMatch') === 'Exact' && Number(rv) !== this.rv) {
      throw new ApiError(410, 'Expired', `resourceVersion ${rv} is not the current one (${this.rv}): this server lists only the current state`);
    }
    const matches = this.selector(r, q);
    return {
      kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.rv) },
      items: this.list(r, ns).map((s) => clone(s.object)).filter(matches),
    };
  }

  private watch(r: Resource, ns: string | undefined, q: URLSearchParams, res: ServerResponse): void {
    const matches = this.selector(r, q);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders(); // as kube-apiserver does: a client blocked on the headers of a quiet watch could not let go of it
    const rv = q.get('resourceVersion');
    const from = rv && rv !== '0' ? Number(rv) : undefined;
    if (from !== undefined && (!Number.isInteger(from) || from < this.compactedRv - 1)) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${rv} (${this.rv})`) })}\n`);
      return;
    }
    const timers: NodeJS.Timeout[] = [];
    const w: Watcher = {
      resource: r, namespace: ns, matches, res, held: false,
      close: () => { for (const t of timers) clearTimeout(t); this.watchers.delete(w); res.end(); },
    };
    // Without a resourceVersion: the current state as ADDED events, then what follows.
    if (from === undefined) {
      for (const s of this.list(r, ns)) if (matches(s.object)) res.write(`${JSON.stringify({ type: 'ADDED', object: s.object })}\n`);
    } else {
      for (const ev of this.history) if (ev.rv > from) this.deliver(w, ev);
    }
    this.watchers.add(w);
    res.on('close', () => w.close());
    res.on('error', () => w.close()); // the client went away mid-write: it is gone, the server is not
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) timers.push(setTimeout(() => w.close(), timeout * 1000));
    if (q.get('allowWatchBookmarks') === 'true') {
      const every = this.opts.bookmarkIntervalMs ?? 60_000;
      const bookmark = (): void => {
        if (res.destroyed || res.writableEnded) { w.close(); return; }
        if (!w.held) res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.rv), annotations: {} } } })}\n`);
        timers.push(setTimeout(bookmark, every));
      };
      timers.push(setTimeout(bookmark, every));
    }
  }

  private control(what: string, q: URLSearchParams): Json {
    switch (what) {
      case 'compact': this.compact(); return { resourceVersion: String(this.rv) };
      case 'expire-watches': return { expired: this.expireWatches() };
      case 'hold-watches': return { held: this.holdWatches(q.get('resource') ?? undefined) };
      case 'watches': return Object.fromEntries(this.resources().map((r) => [r.name, this.openWatches(r.name)]));
      default: throw new ApiError(404, 'NotFound', `no test control '${what}'`);
    }
  }
}
