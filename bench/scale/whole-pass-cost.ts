// What the checks of the agent's periodic whole pass cost at scale, in-process: `node
// dist/bench/scale/whole-pass-cost.js [peers]` (default 5000; root: it runs in a network namespace
// of its own, veil-wpc-<pid>, with a TUN device that holds the routes). An ESP engine holds one peer
// per node (an outbound and an inbound SA with keys of their own, a pod CIDR), the device a route
// and a fail-closed blackhole per pod CIDR, as at the scale bench's 5,000. Per round, the CPU of each
// part of a whole pass with nothing changed, the way it was made until session 21 and the way it is
// now: the specs' digest (the agent's main thread: hashed over every spec, or kept spec by spec and
// read), the engine's digest (the datapath worker's: made from its whole table, or the one held
// since its last peer update), and the routing table's check (its `ip` processes, as children's CPU
// from /proc; the listing through a pipe, read and compared, as it was; through a temporary file,
// then its fingerprint only, when the listing is the one found in place before, or read and
// compared when it is not).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import type { EspPeerSpec } from '../../src/datapath/messages.js';
import { TunDevice } from '../../src/datapath/tun-device.js';
import { UdpSocket } from '../../src/datapath/udp-socket.js';
import { packedSa, packTransforms, AEAD_GCM } from '../../src/esp/esp-transform.js';
import { EspSpecsDigest, espSpecsDigest } from '../../src/datapath/esp-table-digest.js';
import { mustRun, run } from '../../src/util/exec.js';
import { listTunnelRoutes, readTunnelRoutes, routesToMend, steerIntoTunnel, tunnelRoutesNow, type TunnelRoutesNow } from '../../src/agent/routes.js';

const DEVICE = 'veil-wpc0';

/** The listing as it was read until session 21: through a pipe (ip flushes every route), then read. */
function routesThroughPipe(device: string): TunnelRoutesNow {
  const now: TunnelRoutesNow = { routed: new Map(), failClosed: new Set() };
  for (const fam of ['-4', '-6'] as const) {
    const r = run(['ip', fam, '-force', '-batch', '-'], { input: `route show table main dev ${device}\nroute show table main type blackhole\n` });
    readTunnelRoutes(r.stdout, fam === '-4' ? '/32' : '/128', now);
  }
  return now;
}
const ROUNDS = 10;

/** This process's children's CPU (utime + stime of the waited-for ones), ms. */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10; // cutime, cstime (fields 16, 17) in USER_HZ ticks of 10 ms
}

function cpuMs(f: () => unknown): number {
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

function inner(n: number): void {
  mustRun(['ip', 'link', 'set', 'lo', 'up']);
  const dir = mkdtempSync(join(tmpdir(), 'veil-wpc-'));
  const tun = TunDevice.open(DEVICE, { vnetHdr: true });
  mustRun(['ip', 'link', 'set', DEVICE, 'up']);
  const engine = new EspEngine({ localIp: '127.0.0.1', mtu: 1400, marksFile: join(dir, 'marks.json'), marks: {} }, tun, UdpSocket.open('127.0.0.1', 4500));
  try {
    const specs: EspPeerSpec[] = [];
    const routes: string[] = [];
    for (let i = 0; i < n; i++) {
      const [out, inb] = packTransforms([0, 1].map(() => ({ kind: 'aead' as const, name: AEAD_GCM, key: new Uint8Array(randomBytes(16)), salt: new Uint8Array(randomBytes(4)), icvLength: 16 })));
      const cidr = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
      specs.push({ name: `node-${i}`, ip: `172.18.${1 + (i >> 8)}.${i & 255}`, allowedIPs: [cidr], outbound: packedSa(3, out!), activeSpi: 3, inbound: packedSa(3, inb!) } as unknown as EspPeerSpec);
      routes.push(cidr);
    }
    engine.control({ type: 'setPeers', peers: specs });
    steerIntoTunnel(routes.map((prefix) => ({ prefix, device: DEVICE })));
    const kept = new EspSpecsDigest();
    for (const s of specs) kept.add(s);
    const inPlace = listTunnelRoutes(DEVICE).fingerprint;
    const rows: Record<string, number[]> = { specsDigest: [], engineDigest: [], routesRead: [], routesIp: [], routesCompare: [], keptDigest: [], engineDigestHeld: [], routesFingerprint: [], routesFingerprintIp: [], routesFileReadCompare: [], routesFileIp: [] };
    for (let r = 0; r < ROUNDS + 2; r++) {
      const keep = r >= 2; // two rounds to warm up
      let wanted = '', held = '';
      const a = cpuMs(() => { wanted = espSpecsDigest(specs); });
      const b = cpuMs(() => { held = (engine.control({ type: 'digest', full: true }) as { digest: string }).digest; });
      let heldAgain = '';
      const b2 = cpuMs(() => { heldAgain = (engine.control({ type: 'digest' }) as { digest: string }).digest; });
      if (heldAgain !== held) throw new Error(`the held digest differs: ${heldAgain} ${held}`);
      if (wanted !== held) throw new Error(`digests differ: ${wanted} ${held}`);
      const ch0 = childrenCpuMs();
      let table: ReturnType<typeof tunnelRoutesNow> | undefined;
      const c = cpuMs(() => { table = routesThroughPipe(DEVICE); });
      const ip = childrenCpuMs() - ch0;
      let mend = -1;
      const d = cpuMs(() => { mend = routesToMend(routes, table!).length; });
      if (mend !== 0) throw new Error(`${mend} routes to mend`);
      const ch2 = childrenCpuMs();
      const g = cpuMs(() => { mend = routesToMend(routes, tunnelRoutesNow(DEVICE)).length; });
      const ip3 = childrenCpuMs() - ch2;
      if (mend !== 0) throw new Error(`${mend} routes to mend`);
      let keptValue = '', fingerprint = '';
      const e = cpuMs(() => { keptValue = kept.value; });
      if (keptValue !== held) throw new Error(`the kept digest differs: ${keptValue} ${held}`);
      const ch1 = childrenCpuMs();
      const f = cpuMs(() => { fingerprint = listTunnelRoutes(DEVICE).fingerprint; });
      const ip2 = childrenCpuMs() - ch1;
      if (fingerprint !== inPlace) throw new Error('the listing moved');
      if (keep) {
        rows.specsDigest!.push(a); rows.engineDigest!.push(b); rows.routesRead!.push(c); rows.routesIp!.push(ip); rows.routesCompare!.push(d);
        rows.keptDigest!.push(e); rows.engineDigestHeld!.push(b2); rows.routesFileReadCompare!.push(g); rows.routesFileIp!.push(ip3); rows.routesFingerprint!.push(f); rows.routesFingerprintIp!.push(ip2);
      }
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1] ?? NaN;
    const out = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { medianMs: +median(v).toFixed(2), runs: v.map((x) => +x.toFixed(2)) }]));
    console.log(JSON.stringify({ peers: n, cpuMs: out }));
  } finally {
    engine.close();
    tun.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `inner` in a network namespace of its own, then removes it. */
function outer(args: string[]): number {
  const ns = `veil-wpc-${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns], { stdio: 'inherit' });
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, new URL(import.meta.url).pathname, '--inner', ...args], { stdio: 'inherit' });
    return r.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'inherit' });
  }
}

const args = process.argv.slice(2);
const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 5000);
if (args.includes('--inner')) inner(n);
else process.exitCode = outer(args);
