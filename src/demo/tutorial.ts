// `veil demo`: the seed tutorial, run for real on a fresh local lab. Every step prints the command
// a user would type and what it showed, and checks it; a step that does not show what it should
// stops the demo with a clear error. The lab is torn down at the end (and on failure) unless
// --keep was given.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VeilError } from '../util/errors.js';
import { readLabMeta } from '../lab/objects.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { WG_PUBKEY_ANNOTATION } from '../agent/wireguard-mode.js';

const MAIN_JS = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');

export interface DemoOptions {
  cluster: string;
  keep: boolean;
  /** Called with each line the demo prints. */
  out: (line: string) => void;
}

interface Shown {
  status: number;
  stdout: string;
  stderr: string;
}

class DemoFailure extends VeilError {
  constructor(step: string, message: string, output?: string) {
    super('DEMO_FAILED', `step "${step}" failed: ${message}${output ? `\n--- output ---\n${output.trim()}` : ''}`,
      'the lab is torn down; rerun with VEIL_DEBUG=1, or with --keep to explore what is left');
  }
}

export class Tutorial {
  private step = '';
  private readonly started = Date.now();
  private readonly psk = randomBytes(20).toString('hex');
  private readonly podA = 'pod-worker';
  private readonly podB = 'pod-worker2';
  /** Only a lab this demo created is ever torn down. */
  private created = false;

  constructor(private readonly o: DemoOptions) {}

  private get nodeA(): string { return `${this.o.cluster}-worker`; }
  private get nodeB(): string { return `${this.o.cluster}-worker2`; }

  private heading(title: string): void {
    this.step = title;
    const t = ((Date.now() - this.started) / 1000).toFixed(0).padStart(3);
    this.o.out('');
    this.o.out(`== [${t}s] ${title}`);
  }

  /** Runs `veil args`, prints the command line and (some of) its output. */
  private veil(args: string[], opts: { display?: string; quiet?: boolean; maxLines?: number; input?: string; timeoutMs?: number } = {}): Shown {
    this.o.out(`$ ${opts.display ?? `veil ${args.map(quote).join(' ')}`}`);
    const r = spawnSync(process.execPath, [MAIN_JS, ...args], {
      encoding: 'utf8', env: { ...process.env, VEIL_CLUSTER: this.o.cluster }, input: opts.input, timeout: opts.timeoutMs ?? 120_000,
    });
    const shown: Shown = { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    if (!opts.quiet) {
      const lines = (shown.stdout + shown.stderr).trimEnd().split('\n').filter((l) => l !== '');
      const max = opts.maxLines ?? 40;
      for (const l of lines.slice(0, max)) this.o.out(`  ${l}`);
      if (lines.length > max) this.o.out(`  ... (${lines.length - max} more lines)`);
    }
    return shown;
  }

  private must(r: Shown, what: string, pattern?: RegExp): string {
    const all = r.stdout + r.stderr;
    if (r.status !== 0) throw new DemoFailure(this.step, `${what} exited with status ${r.status}`, all);
    if (pattern && !pattern.test(all)) throw new DemoFailure(this.step, `${what} did not show ${pattern}`, all);
    return r.stdout;
  }

  private podIP(pod: string): string {
    const j = JSON.parse(this.must(this.veil(['lab', 'get', 'pods', '-o', 'json'], { quiet: true, display: 'veil lab get pods -o json' }), 'lab get pods')) as { items: { metadata: { name: string }; spec: { podIP: string } }[] };
    const p = j.items.find((i) => i.metadata.name === pod);
    if (!p) throw new DemoFailure(this.step, `pod ${pod} is missing`);
    return p.spec.podIP;
  }

  async run(): Promise<void> {
    const o = this.o;
    const c = this.o.cluster;
    o.out(`veil demo: the encryption tutorial on a local ${4}-node lab cluster "${c}"`);

    if (readLabMeta(c)) {
      throw new VeilError('DEMO_CLUSTER_EXISTS', `a lab cluster named "${c}" already exists; the demo needs a fresh one`,
        `remove it with 'veil lab down --name ${c}' or run the demo with --name OTHER`);
    }
    this.heading('1. A local cluster: 4 nodes (NotReady: no agent yet) and two pods on different nodes');
    this.created = true;
    this.must(this.veil(['lab', 'up', '--name', c, '--nodes', '4']), 'lab up');
    this.must(this.veil(['lab', 'get', 'nodes']), 'lab get nodes', /NotReady/);
    this.must(this.veil(['lab', 'pod', 'create', this.podA, '--node', this.nodeA]), 'pod create');
    this.must(this.veil(['lab', 'pod', 'create', this.podB, '--node', this.nodeB]), 'pod create');
    this.must(this.veil(['lab', 'get', 'pods', '-o', 'wide']), 'lab get pods', /Running/);
    const ipB = this.podIP(this.podB);
    const plain = await this.captureWhile(this.nodeA, 'underlay', ['-c', '4', 'icmp'], () => this.ping(this.podA, ipB, 2));
    if (!/ICMP echo/.test(plain)) throw new DemoFailure(this.step, 'the plaintext ICMP was not visible on the underlay before encryption', plain);
    o.out('  -> without encryption the pod traffic crosses the underlay in plaintext (ICMP above)');

    this.heading('2. A pre-shared key for IPsec, kept in the secret ipsec-keys');
    o.out(`$ PSK=$(openssl rand -hex 20)    # ${this.psk.length / 2} random bytes: AES-128 key + 4-byte salt`);
    this.must(this.veil(['secret', 'create', 'ipsec-keys', `--from-literal=keys=3+ rfc4106(gcm(aes)) ${this.psk} 128`],
      { display: 'veil secret create ipsec-keys --from-literal=keys="3+ rfc4106(gcm(aes)) $PSK 128"' }), 'secret create');
    this.must(this.veil(['secret', 'get', 'ipsec-keys', '-o', 'go-template={{.data.keys | base64decode}}{{"\\n"}}'],
      { display: `veil secret get ipsec-keys -o go-template='{{.data.keys | base64decode}}{{"\\n"}}'` }), 'secret get', /^3\+ rfc4106\(gcm\(aes\)\) [0-9a-f]{40} 128/m);

    this.heading('3. Install veil with IPsec encryption');
    this.must(this.veil(['install', '--encryption', 'ipsec']), 'install', /Found existing encryption secret ipsec-keys/);
    this.must(this.veil(['status', '--wait', '--wait-duration', '60s']), 'status', /IPsec/);
    const cfg = this.must(this.veil(['config', 'view'], { quiet: true, display: 'veil config view | grep enable-ipsec' }), 'config view');
    const line = cfg.split('\n').find((l) => l.startsWith('enable-ipsec'));
    if (!line || !/\btrue\b/.test(line)) throw new DemoFailure(this.step, 'config view has no "enable-ipsec  true"', cfg);
    o.out(`  ${line}`);

    this.heading('4. On the wire: only ESP (in UDP 4500) with SPI 3 between the nodes');
    const esp = await this.captureWhile(this.nodeA, 'underlay', ['-c', '8'], () => this.ping(this.podA, ipB, 3));
    if (!/ESP\(spi=0x00000003/.test(esp)) throw new DemoFailure(this.step, 'no ESP with spi=3 on the underlay', esp);
    if (/ICMP echo/.test(esp)) throw new DemoFailure(this.step, 'plaintext ICMP on the underlay', esp);
    this.must(this.veil(['ipsec', 'policy', this.nodeA]), 'ipsec policy', /esp/i);

    this.heading('5. Key rotation: patch the secret to key id 4 while the pods ping each other');
    const pinger = this.startPing(this.podA, ipB, 120, 0.05);
    sleep(1000);
    const psk2 = randomBytes(20).toString('hex');
    o.out('$ PSK=$(openssl rand -hex 20)');
    this.must(this.veil(['secret', 'patch', 'ipsec-keys', '-p', JSON.stringify({ stringData: { keys: `4+ rfc4106(gcm(aes)) ${psk2} 128` } })],
      { display: `veil secret patch ipsec-keys -p '{"stringData":{"keys":"4+ rfc4106(gcm(aes)) '$PSK' 128"}}'` }), 'secret patch');
    this.must(this.veil(['secret', 'get', 'ipsec-keys', '-o', 'go-template={{.data.keys | base64decode}}{{"\\n"}}'],
      { display: `veil secret get ipsec-keys -o go-template='{{.data.keys | base64decode}}{{"\\n"}}'` }), 'secret get', /^4\+ rfc4106/m);
    // Captured until the new SPI shows (each node switches once its peers publish the new key id,
    // after a jitter), and that capture is the one shown.
    const movedArgs = ['-c', '6', 'udp', 'port', String(ESP_IN_UDP_PORT)];
    o.out(`$ veil capture ${this.nodeA} --iface underlay ${movedArgs.join(' ')}`);
    let moved = '';
    for (let i = 0; i < 10 && !/ESP\(spi=0x00000004/.test(moved); i++) {
      sleep(1000);
      moved = await this.captureWhile(this.nodeA, 'underlay', movedArgs, () => undefined, true);
    }
    this.showCapture(moved);
    if (!/ESP\(spi=0x00000004/.test(moved)) throw new DemoFailure(this.step, 'the wire did not move to spi=4', moved);
    const pingOut = await pinger;
    o.out(`  ${pingOut.split('\n').find((l) => /packets transmitted/.test(l)) ?? pingOut}`);
    if (!/ 0% packet loss/.test(pingOut)) throw new DemoFailure(this.step, 'packets were lost during the rotation', pingOut);
    o.out('  -> the wire moved to spi=4 and not one ping was lost');

    this.heading('6. Switch to WireGuard: each node generates its own key pair');
    this.must(this.veil(['uninstall']), 'uninstall');
    this.must(this.veil(['install', '--encryption', 'wireguard']), 'install', /successfully installed/);
    const nodes = JSON.parse(this.must(this.veil(['lab', 'get', 'nodes', '-o', 'json'], { quiet: true }), 'lab get nodes')) as { items: { metadata: { name: string; annotations?: Record<string, string> } }[] };
    const node = nodes.items.find((n) => n.metadata.name === this.nodeA);
    const key = node?.metadata.annotations?.[WG_PUBKEY_ANNOTATION];
    if (!key) throw new DemoFailure(this.step, `node ${this.nodeA} has no ${WG_PUBKEY_ANNOTATION} annotation`);
    o.out(`  ${this.nodeA} annotation ${WG_PUBKEY_ANNOTATION}: ${key}`);
    this.must(this.veil(['agent', 'status', this.nodeA]), 'agent status', /veil_wg0 \(Pubkey: [A-Za-z0-9+/]{43}=, Port: 51871, Peers: 3\)/);

    this.heading('7. Pod to pod through WireGuard: ICMP inside veil_wg0, only WireGuard on the underlay');
    const inner = await this.captureWhile(this.nodeA, 'tunnel', ['-c', '4', 'icmp'], () => this.ping(this.podA, ipB, 2));
    if (!/ICMP echo/.test(inner)) throw new DemoFailure(this.step, 'no ICMP inside veil_wg0', inner);
    const outer = await this.captureWhile(this.nodeA, 'underlay', ['-c', '6'], () => this.ping(this.podA, ipB, 3));
    if (!/51871/.test(outer) || /ICMP echo/.test(outer)) throw new DemoFailure(this.step, 'the underlay did not carry only WireGuard', outer);

    this.heading('8. Prove it: veil verify (every node pair, ICMP/TCP/UDP with a marker, captures everywhere)');
    this.must(this.veil(['verify']), 'verify');

    const secs = ((Date.now() - this.started) / 1000).toFixed(0);
    o.out('');
    o.out(`Done in ${secs}s: IPsec with a rotation that lost nothing, then WireGuard with generated keys; every byte between the nodes was ciphertext.`);
  }

  private ping(pod: string, ip: string, count: number): void {
    this.must(this.veil(['lab', 'exec', pod, '--', 'ping', '-c', String(count), '-i', '0.2', ip], { maxLines: 3 }), 'ping');
  }

  private startPing(pod: string, ip: string, count: number, interval: number): Promise<string> {
    this.o.out(`$ veil lab exec ${pod} -- ping -c ${count} -i ${interval} ${ip} &`);
    return new Promise((resolveP) => {
      const p = spawn(process.execPath, [MAIN_JS, 'lab', 'exec', pod, '--', 'ping', '-c', String(count), '-i', String(interval), ip], { env: { ...process.env, VEIL_CLUSTER: this.o.cluster } });
      let out = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      p.on('close', () => resolveP(out)); // after the last output, not just the exit
    });
  }

  /**
   * Captures on a node while `traffic` runs; prints the capture. The traffic runs once tcpdump
   * listens (unless the capture already has its packets) and always finishes before this returns;
   * its failure fails the step.
   */
  /** A capture's first packet lines, as tcpdump printed them. */
  private showCapture(out: string): void {
    for (const l of out.trimEnd().split('\n').filter((x) => /IP|ESP|ICMP|UDP/.test(x)).slice(0, 8)) this.o.out(`  ${l}`);
  }

  private captureWhile(node: string, iface: 'underlay' | 'tunnel', tcpdumpArgs: string[], traffic: () => void, quiet = false): Promise<string> {
    const args = ['capture', node, '--iface', iface, ...tcpdumpArgs];
    if (!quiet) this.o.out(`$ veil ${args.map(quote).join(' ')}`);
    return new Promise((resolveP, rejectP) => {
      const child = spawn(process.execPath, [MAIN_JS, ...args], { env: { ...process.env, VEIL_CLUSTER: this.o.cluster } });
      let out = '';
      let exited = false;
      let trafficDone = false;
      let trafficError: unknown;
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      const killer = setTimeout(() => child.kill('SIGINT'), 15_000);
      const finish = () => {
        if (!exited || !trafficDone) return;
        clearTimeout(killer);
        if (!quiet) this.showCapture(out);
        if (trafficError) rejectP(trafficError); else resolveP(out);
      };
      child.on('close', () => { exited = true; finish(); }); // the capture's output is complete
      setTimeout(() => {
        if (!exited) {
          try { traffic(); } catch (e) { trafficError = e; }
          // tcpdump -c N may still wait for packets that will not come: give it a moment, then stop it.
          setTimeout(() => { if (!exited) child.kill('SIGINT'); }, 3000);
        }
        trafficDone = true;
        finish();
      }, 1200);
    });
  }

  teardown(): void {
    if (!this.created) return;
    if (this.o.keep) {
      this.o.out('');
      this.o.out(`The lab "${this.o.cluster}" is still up (--keep). Explore it with 'veil lab get nodes', 'veil status', 'veil verify'; remove it with 'veil lab down --name ${this.o.cluster}'.`);
      return;
    }
    spawnSync(process.execPath, [MAIN_JS, 'lab', 'down', '--name', this.o.cluster], { encoding: 'utf8' });
    this.o.out(`(lab "${this.o.cluster}" torn down)`);
  }
}

function quote(a: string): string {
  return /^[A-Za-z0-9_./:=,+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
