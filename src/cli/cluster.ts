// veil cluster: the clusters this CLI knows (like kubectl config get-contexts/use-context):
// list them, pick the current one, add one with its registry. The file is src/control/cluster-config.ts.
import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import { VeilError } from '../util/errors.js';
import { clusterDir } from '../util/paths.js';
import { checkClusterName, clusterEtcdOptions, currentCluster, useCluster } from '../control/cluster.js';
import { grantNodeCredentials, nodeUserName, revokeNodeCredentials } from '../control/etcd/etcd-node-credentials.js';
import { checkName } from '../control/object-checks.js';
import { writePrivateFile } from '../util/private-files.js';
import { clusterConfigPath, loadClusterConfig, saveClusterEntry, type ClusterEntry, type RegistryConfig } from '../control/cluster-config.js';
import { checkEndpoints } from '../control/etcd/etcd-connection.js';
import { printStructured } from './output.js';
import { command, flagValue, group, UsageError } from './flags.js';
import { table } from '../util/text-table.js';

interface ClusterRow {
  name: string;
  current: boolean;
  registry: RegistryConfig;
  /** config: an entry of the config file; lab: a lab cluster on this machine. */
  source: 'config' | 'lab';
}

function rows(): ClusterRow[] {
  const cfg = loadClusterConfig();
  const current = currentCluster();
  return cfg.clusters.map((c) => ({ name: c.name, current: c.name === current, registry: c.registry,
    source: c.registry.type === 'etcd' && c.registry.endpoints.every((e) => e.startsWith(`unix://${clusterDir(c.name)}/`)) ? 'lab' : 'config' }));
}

const list = command({
  name: 'veil cluster list',
  summary: 'every known cluster; * marks the current one',
  usage: ['veil cluster list [-o json|yaml]'],
  about: 'Every cluster in the config file (lab clusters too: lab up adds them); * marks the current one.',
  cluster: false,
  output: { choices: ['json', 'yaml'] },
  examples: ['veil cluster list', 'veil cluster list -o json'],
  run({ values }) {
    const all = rows();
    if (values.output) {
      printStructured({ config: clusterConfigPath(), currentCluster: currentCluster(), clusters: all }, values.output);
      return 0;
    }
    if (!all.length) {
      console.log(`no clusters yet: 'veil lab up' makes one, 'veil cluster add' names one (config: ${clusterConfigPath()})`);
      return 0;
    }
    const describe = (r: RegistryConfig) => r.type === 'kubernetes' ? ['kubernetes', `${r.kubeconfig ?? '(default kubeconfig)'}${r.context ? ` context ${r.context}` : ''}`, `namespace ${r.namespace ?? 'veil'}`] : [
      'etcd', r.endpoints.join(','),
      [r.ca || r.cert ? `tls${r.cert ? '+client-cert' : ''}` : '', r.username ? `user ${r.username}` : ''].filter(Boolean).join(', ') || '-',
    ];
    console.log(table([['CURRENT', 'NAME', 'REGISTRY', 'ENDPOINTS', 'AUTH', 'SOURCE'],
      ...all.map((r) => [r.current ? '*' : '', r.name, ...describe(r.registry), r.source])]));
    return 0;
  },
});

const use = command({
  name: 'veil cluster use',
  summary: 'make NAME the cluster later commands talk to',
  usage: ['veil cluster use NAME'],
  about: 'Makes NAME the cluster later commands talk to (--cluster and $VEIL_CLUSTER still override).',
  cluster: false,
  positionals: true,
  examples: ['veil cluster use prod', 'veil cluster use kind'],
  run({ positionals }) {
    if (positionals.length !== 1) throw new UsageError('cluster use takes one NAME', "e.g. 'veil cluster use prod'");
    const name = checkClusterName(positionals[0]!);
    const known = rows().map((r) => r.name);
    if (!known.includes(name)) {
      throw new VeilError('UNKNOWN_CLUSTER', `no cluster named '${name}'${known.length ? ` (known: ${known.join(', ')})` : ''}`, "add it with 'veil cluster add' or make a lab with 'veil lab up --name NAME'");
    }
    useCluster(name);
    console.log(`Switched to cluster "${name}".`);
    return 0;
  },
});

const add = command({
  name: 'veil cluster add',
  summary: 'add a cluster (its etcd) to the config file',
  usage: [
    'veil cluster add NAME --etcd-endpoints URL[,URL...] [--ca FILE] [--cert FILE --key FILE] [--username USER --password-file FILE]',
    'veil cluster add NAME --kubernetes [--kubeconfig FILE] [--context NAME] [--namespace NS]',
  ],
  about: `Adds NAME to the config file (or replaces its entry). File paths are stored absolute. etcd
endpoints are tried in turn (failover); https endpoints want the CA that signed etcd's server
certificate, and a client certificate and key when etcd runs with --client-cert-auth.`,
  cluster: false,
  positionals: true,
  flags: {
    'etcd-endpoints': { type: 'string', value: 'URL[,URL...]', help: "etcd's client URLs, tried in turn" },
    kubernetes: { type: 'boolean', help: 'a Kubernetes cluster where veil runs as a DaemonSet (read through its API)' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'with --kubernetes: the kubeconfig (default $KUBECONFIG, else ~/.kube/config)' },
    context: { type: 'string', value: 'NAME', help: 'with --kubernetes: the kubeconfig context' },
    namespace: { type: 'string', value: 'NS', help: 'with --kubernetes: where veil runs (default veil)' },
    ca: { type: 'string', value: 'FILE', help: "the CA that signed etcd's server certificate (https)" },
    cert: { type: 'string', value: 'FILE', help: 'a client certificate (with --key)' },
    key: { type: 'string', value: 'FILE', help: "the client certificate's key" },
    username: { type: 'string', value: 'USER', help: 'an etcd user (with --password-file)' },
    'password-file': { type: 'string', value: 'FILE', help: "a file holding the user's password" },
  },
  examples: [
    `veil cluster add prod --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379 \\
      --ca /etc/veil/etcd-ca.crt --cert /etc/veil/etcd-client.crt --key /etc/veil/etcd-client.key`,
    'veil cluster add staging --etcd-endpoints http://127.0.0.1:2379 --username veil --password-file ~/.veil/staging.password',
  ],
  run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError('cluster add takes one NAME', "run 'veil cluster add -h' for examples");
    const name = checkClusterName(positionals[0]!);
    if (values.kubernetes) {
      if (values['etcd-endpoints'] !== undefined) throw new UsageError('--etcd-endpoints does not go with --kubernetes', 'a Kubernetes cluster is reached through its kubeconfig');
      const kubeconfig = values.kubeconfig === undefined ? undefined : resolve(values.kubeconfig);
      if (kubeconfig) { try { accessSync(kubeconfig, constants.R_OK); } catch { throw new VeilError('BAD_FLAG', `--kubeconfig ${values.kubeconfig}: no readable file at ${kubeconfig}`, 'check the path'); } }
      saveClusterEntry({ name, registry: { type: 'kubernetes', ...(kubeconfig ? { kubeconfig } : {}), ...(values.context ? { context: values.context } : {}), ...(values.namespace ? { namespace: values.namespace } : {}) } });
      console.log(`cluster "${name}" (Kubernetes) written to ${clusterConfigPath()}${currentCluster() === name ? '' : ` (make it current: veil cluster use ${name})`}`);
      return 0;
    }
    const endpoints = values['etcd-endpoints'];
    if (endpoints === undefined) {
      throw new UsageError('cluster add needs --etcd-endpoints', "run 'veil cluster add -h' for examples");
    }
    let entry: ClusterEntry;
    {
      const eps = endpoints!.split(',').map((e) => e.trim()).filter(Boolean);
      flagValue(() => checkEndpoints(eps));
      if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('--cert and --key go together', 'give both (a client certificate and its key) or neither');
      if ((values.username === undefined) !== (values['password-file'] === undefined)) throw new UsageError('--username and --password-file go together', 'give both or neither');
      if ((values.ca || values.cert) && !eps[0]!.startsWith('https:')) throw new UsageError('--ca/--cert are for https endpoints', 'write the endpoints as https://HOST:PORT');
      const file = (flag: string, v: string | undefined) => {
        if (v === undefined) return {};
        const p = resolve(v);
        try { accessSync(p, constants.R_OK); } catch {
          throw new VeilError('BAD_FLAG', `--${flag} ${v}: no readable file at ${p}`, 'check the path');
        }
        return { [flag === 'password-file' ? 'passwordFile' : flag]: p };
      };
      entry = {
        name,
        registry: {
          type: 'etcd', endpoints: eps,
          ...file('ca', values.ca), ...file('cert', values.cert), ...file('key', values.key),
          ...(values.username ? { username: values.username } : {}), ...file('password-file', values['password-file']),
        },
      };
    }
    saveClusterEntry(entry);
    console.log(`cluster "${name}" written to ${clusterConfigPath()}${currentCluster() === name ? '' : ` (make it current: veil cluster use ${name})`}`);
    return 0;
  },
});

const nodeUser = command({
  name: 'veil cluster node-user',
  summary: "an etcd user for one node's agent that may write only that node's objects",
  usage: ['veil cluster node-user NODE --password-file FILE', 'veil cluster node-user NODE --delete'],
  about: `Makes (or resets, with a new password) the etcd user and role ${'`'}veil-node/<cluster>/NODE${'`'}: read on
the cluster's prefix veil/<cluster>/, read-write on exactly NODE's own Node object and liveness
Lease. Put the user and the password file in that node's agent config (etcd.username,
etcd.passwordFile): a host taken over can then not forge or rewrite another node's object.
Needs the cluster's admin credentials (etcd's root role) and takes effect once etcd runs with
auth enabled (etcdctl auth enable); it says so when etcd does not enforce it. The password file is
written 0600. --delete removes the user and role.`,
  positionals: true,
  flags: {
    'password-file': { type: 'string', value: 'FILE', help: "where to write the new user's password (0600)" },
    delete: { type: 'boolean', help: "remove the node's user and role" },
  },
  examples: [
    'veil cluster node-user worker-1 --password-file /etc/veil/etcd-worker-1.password',
    'veil cluster node-user worker-1 --delete',
  ],
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError('cluster node-user takes one NODE', "run 'veil cluster node-user -h' for examples");
    const node = positionals[0]!;
    flagValue(() => checkName(node));
    const cluster = currentCluster(values.cluster);
    const admin = clusterEtcdOptions(cluster);
    if (values.delete) {
      if (values['password-file'] !== undefined) throw new UsageError('--delete takes no --password-file', "run 'veil cluster node-user -h'");
      const gone = await revokeNodeCredentials(admin, cluster, node);
      console.log(gone ? `etcd user and role ${nodeUserName(cluster, node)} deleted` : `no etcd user ${nodeUserName(cluster, node)}: nothing to delete`);
      return 0;
    }
    if (values['password-file'] === undefined) throw new UsageError('cluster node-user needs --password-file FILE', 'the new password is written there (0600), for the agent config');
    const file = resolve(values['password-file']);
    const creds = await grantNodeCredentials(admin, cluster, node);
    writePrivateFile(file, creds.password + '\n');
    console.log(`etcd user ${creds.username}: reads veil/${cluster}/, writes only Node and Lease '${node}'; password in ${file}`);
    console.log(`in ${node}'s agent config:\n  etcd:\n    username: ${creds.username}\n    passwordFile: ${file}`);
    if (!creds.enforced) {
      console.error(`warning: etcd does not enforce it: auth is not enabled there (a write outside the node's keys was not refused); enable it: etcdctl user add root && etcdctl auth enable`);
    }
    return 0;
  },
});

export const { run } = group({
  name: 'veil cluster',
  about: `veil cluster: the clusters this CLI knows, and which one commands talk to

The clusters are kept in ~/.veil/config ($VEIL_HOME/config when $VEIL_HOME is set; $VEIL_CONFIG
overrides both), like a kubeconfig; 'veil lab up' adds its cluster there (its etcd's unix sockets)
and 'veil lab down' removes it.`,
  commands: { list, use, add, 'node-user': nodeUser },
});
