// Where the scale bench's synthetic nodes live on the lab's underlay: a namespace of their own on
// the lab bridge (veil-<cluster>_synthetic, so `lab down` takes it with the lab) that owns their
// addresses (an AnyIP `local` route: sockets bind to them), which the real nodes reach through one
// gateway address. Both modes use it: what the agents send a synthetic peer (WireGuard handshakes,
// either mode's health probes) crosses one neighbour entry, as packets to live peers would, rather
// than an ARP resolution per address that nobody answers (IPsec's prober left ~400 FAILED and
// INCOMPLETE entries a node at 5,000 peers), and the kernel's neighbour table (one for every
// namespace, gc_thresh3 1024 by default) does not overflow (it did with 5,000 on-link WireGuard
// peers: most packets to them were dropped).
import { mustRun } from '../../src/util/exec.js';
import { addNetns, deleteNetns } from '../../src/lab/netns.js';
import { FABRIC_BRIDGE, UNDERLAY_IF, fabricNetns } from '../../src/lab/names.js';
import { labNetnsPrefix } from '../../src/control/cluster.js';

/** The fabric end of the namespace's veth. */
const FABRIC_PORT = 'veil-syn0';
/** The synthetic nodes' underlay addresses (172.18.100.2 upward: synthetic-nodes.ts), up to 20,000 of them. */
const SYNTHETIC_RANGES = ['172.18.96.0/19', '172.18.128.0/18'];
/** The namespace's own address (below the ranges): the real nodes' gateway to the synthetic ones. */
const GATEWAY = '172.18.95.254';
const GATEWAY_PREFIX = 16;

export class SyntheticUnderlay {
  private constructor(readonly netns: string) {}

  /** Makes the namespace and routes every real node's traffic for the synthetic ranges through it. */
  static create(cluster: string, nodeNetns: string[]): SyntheticUnderlay {
    const ns = `${labNetnsPrefix(cluster)}synthetic`;
    addNetns(ns);
    const underlay = new SyntheticUnderlay(ns);
    try {
      const fabric = fabricNetns(cluster);
      mustRun(['ip', '-n', fabric, 'link', 'add', FABRIC_PORT, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns]);
      mustRun(['ip', '-n', fabric, 'link', 'set', FABRIC_PORT, 'master', FABRIC_BRIDGE, 'up']);
      mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_nonlocal_bind=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
      mustRun(['ip', '-n', ns, 'addr', 'add', `${GATEWAY}/${GATEWAY_PREFIX}`, 'dev', UNDERLAY_IF]);
      mustRun(['ip', '-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);
      for (const r of SYNTHETIC_RANGES) mustRun(['ip', '-n', ns, 'route', 'add', 'local', r, 'dev', UNDERLAY_IF]);
      for (const node of nodeNetns) for (const r of SYNTHETIC_RANGES) mustRun(['ip', '-n', node, 'route', 'add', r, 'via', GATEWAY, 'dev', UNDERLAY_IF]);
    } catch (e) {
      underlay.destroy();
      throw e;
    }
    return underlay;
  }

  destroy(): void {
    deleteNetns(this.netns);
  }
}
