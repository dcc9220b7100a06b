// Per-node etcd credentials: one etcd user and role per node that may read the cluster's prefix and
// write only that node's own keys (its Node object and its liveness Lease). A node whose host is
// taken over can then not forge or rewrite another node's object: etcd itself refuses the write.
// Made by an etcd admin (the CLI's cluster credentials) with `veil cluster node-user`.
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { connectEtcd, type EtcdConnectionOptions } from './etcd-connection.js';
import { VeilError } from '../../util/errors.js';
import { checkName } from '../object-checks.js';
import { clusterPrefix, objectKey } from './keys.js';
import { prefixRange } from './etcd3-lib.js';
import { etcdError, NODE_USER_PREFIX } from './etcd-errors.js';

/** The etcd user (and role) of one node: no ':' (etcdctl --user splits there), unique per cluster and node. */
export function nodeUserName(cluster: string, node: string): string {
  return `${NODE_USER_PREFIX}${cluster}/${node}`;
}

export interface NodePermission {
  kind: 'read' | 'readwrite';
  key: string;
  /** undefined: the one key. */
  prefix?: boolean;
}

/** What a node's role may do: read everything of its cluster, write its own Node and Lease keys. */
export function nodePermissions(cluster: string, node: string): NodePermission[] {
  return [
    { kind: 'read', key: clusterPrefix(cluster), prefix: true },
    { kind: 'readwrite', key: objectKey(cluster, 'Node', node) },
    { kind: 'readwrite', key: objectKey(cluster, 'Lease', node) },
  ];
}

export interface NodeCredentials {
  username: string;
  password: string;
  /** Whether etcd enforces them (auth enabled): a write to another node's key was refused. */
  enforced: boolean;
}

const already = (e: unknown, what: RegExp) => what.test((e as Error)?.message ?? '');

/** fn with a client on the admin's credentials, closed after. */
async function asAdmin<T>(adminOpts: EtcdConnectionOptions, fn: (admin: Etcd3) => Promise<T>): Promise<T> {
  const admin = connectEtcd(adminOpts);
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}

/**
 * Creates (or resets) the node's user and role, as adminOpts' user (who needs etcd's root role),
 * then checks with the new credentials that etcd refuses them a write outside the node's keys.
 * A new password every time: the old one stops working.
 */
export async function grantNodeCredentials(adminOpts: EtcdConnectionOptions, cluster: string, node: string): Promise<NodeCredentials> {
  checkName(node);
  const made = await asAdmin(adminOpts, (admin) => makeNodeUser(admin, adminOpts, cluster, node));
  const { username: _u, passwordFile: _p, password: _pw, ...transport } = adminOpts;
  const asNode = connectEtcd({ ...transport, ...made });
  try {
    return { ...made, enforced: await writesOutsideOwnKeysRefused(asNode, cluster) };
  } catch (e) {
    throw await etcdError(e, { ...transport, ...made }, 'checking the new user\'s permissions');
  } finally {
    asNode.close();
  }
}

async function makeNodeUser(admin: Etcd3, adminOpts: EtcdConnectionOptions, cluster: string, node: string): Promise<{ username: string; password: string }> {
  const name = nodeUserName(cluster, node);
  const password = randomBytes(24).toString('base64url');
  const auth = admin.auth;
  const call = async <T>(doing: string, fn: () => Promise<T>, okIf?: RegExp): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      if (okIf && already(e, okIf)) return undefined;
      const err = await etcdError(e, adminOpts, doing);
      if (err.code === 'ETCD_PERMISSION_DENIED') {
        throw new VeilError('ETCD_NOT_ADMIN', `etcd denied ${doing} to user '${adminOpts.username ?? '(client certificate CN)'}': managing users needs etcd's root role`,
          "run this with the cluster's admin credentials (veil cluster add NAME --username root --password-file FILE), or make the user and role with etcdctl as README shows");
      }
      throw err;
    }
  };
  await call(`adding role ${name}`, () => auth.roleAdd({ name }), /role name already exists/);
  // Start from no permission at all, so a role that someone widened is narrowed again.
  const role = await call(`reading role ${name}`, () => auth.roleGet({ role: name }));
  for (const p of role?.perm ?? []) {
    await call(`revoking a permission of role ${name}`, () => auth.roleRevokePermission({ role: name, key: p.key, range_end: p.range_end }), /permission is not granted/);
  }
  for (const p of nodePermissions(cluster, node)) {
    const range = p.prefix ? prefixRange(p.key) : { key: Buffer.from(p.key), range_end: Buffer.alloc(0) };
    await call(`granting ${p.kind} on ${p.key} to role ${name}`, () => auth.roleGrantPermission({
      name, perm: { permType: p.kind === 'read' ? 'Read' : 'Readwrite', key: range.key, range_end: range.range_end },
    }));
  }
  const added = await call(`adding user ${name}`, () => auth.userAdd({ name, password }), /user name already exists/);
  if (added === undefined) await call(`setting the password of user ${name}`, () => auth.userChangePassword({ name, password }));
  await call(`granting role ${name} to user ${name}`, () => auth.userGrantRole({ user: name, role: name }));
  return { username: name, password };
}

/** Removes the node's user and role; false when there was none. */
export async function revokeNodeCredentials(adminOpts: EtcdConnectionOptions, cluster: string, node: string): Promise<boolean> {
  const name = nodeUserName(cluster, node);
  return asAdmin(adminOpts, async (admin) => {
    let found = false;
    for (const [what, fn] of [['user', () => admin.auth.userDelete({ name })], ['role', () => admin.auth.roleDelete({ role: name })]] as const) {
      try {
        await fn();
        found = true;
      } catch (e) {
        if (already(e, /not found/)) continue;
        throw await etcdError(e, adminOpts, `deleting ${what} ${name}`);
      }
    }
    return found;
  });
}

/**
 * Whether etcd refuses `client` a write outside its node's keys (auth enabled and the role as
 * made). The probe cannot write anything: its compare (version < 0) never holds, and etcd checks
 * the permissions of both branches before it evaluates the compare.
 */
export async function writesOutsideOwnKeysRefused(client: Etcd3, cluster: string): Promise<boolean> {
  const key = Buffer.from(objectKey(cluster, 'Node', 'veil-permission-probe'));
  try {
    await client.kv.txn({ compare: [{ key, target: 'Version', result: 'Less', version: 0 }], success: [{ request_put: { key, value: Buffer.from('') } }], failure: [] });
    return false;
  } catch (e) {
    if (/permission denied/.test((e as Error)?.message ?? '')) return true;
    if (/authentication is not enabled/.test((e as Error)?.message ?? '')) return false;
    throw e;
  }
}
