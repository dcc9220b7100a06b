// A handshake flood against a node must not stop its established sessions (issue 6). On a
// 3-node lab with veil WireGuard: pod pa (worker) pings pod pb (worker2) 100 times a second while
// a flooder in the control-plane node's namespace sends worker2's WireGuard port initiations as
// fast as it can, each from a random static key and with a valid mac1 (mac1 is keyed by the
// receiver's PUBLIC key, so anyone can compute it). The session pa<->pb must keep passing
// traffic, the node must answer with cookie replies and count the flood, and no flooder key may
// become a peer or a session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { WireGuardEncryptStatus } from '../../src/agent/api.js';
import { registerPid } from '../../src/lab/pids.js';
import { COOKIE_REPLY_RATE } from '../../src/wireguard/handshake-limiter.js';
import { ok, veilCli, sleep } from './cli.js';

const C = `vtflood-${process.pid}`; // a run cut off mid-test must not collide with the next
const WG_PORT = 51871;
const home = mkdtempSync(join(tmpdir(), 'veil-t-flood-'));
process.env['VEIL_HOME'] = home; // registerPid records go to the lab's own state, which lab down reads
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home };
delete env['VEIL_CLUSTER'];
const CP = `${C}-control-plane`, W1 = `${C}-worker`, W2 = `${C}-worker2`;
const nsOf = (node: string) => `veil-${C}_${node.slice(C.length + 1)}`;
const nodeIP: Record<string, string> = {};
let podB = '';

const veil = veilCli(env, 120_000);

type WgStatus = WireGuardEncryptStatus;
const encryptStatus = (node: string) => JSON.parse(ok(veil('agent', 'encrypt', 'status', node, '-o', 'json'))) as WgStatus;

/**
 * The flooder (ESM, run with `node --input-type=module -e` inside a lab namespace): builds a pool
 * of initiations with veil's own sans-I/O core, each from a fresh random static key to the
 * target's public key (real Noise messages with a valid mac1, mac2 empty), then sends them round
 * robin for the given seconds with at most 512 sends in flight, counts the cookie replies that
 * come back, and prints one JSON line. A rate (initiations/s, 0 = as fast as it goes) paces it.
 */
const FLOODER = `
const [distRoot, host, port, pubB64, seconds, poolSize, poolFile, rateArg] = process.argv.slice(1);
const rate = Number(rateArg || 0);
const { Device } = await import(distRoot + '/src/wireguard/index.js');
const { generatePrivateKey } = await import(distRoot + '/src/crypto/index.js');
const dgram = await import('node:dgram');
const target = Buffer.from(pubB64, 'base64');
const pool = [];
for (let i = 0; i < Number(poolSize); i++) {
  const d = new Device({ privateKey: generatePrivateKey().raw });
  const p = d.addPeer({ publicKey: target, endpoint: { address: host, port: Number(port) } });
  const a = d.initiateHandshake(p, Date.now()).find((x) => x.kind === 'network');
  pool.push(Buffer.from(a.datagram));
}
if (poolFile) {
  (await import('node:fs')).writeFileSync(poolFile, pool.map((p) => p.toString('hex')).join('\\n'));
  process.exit(0);
}
const s = dgram.createSocket('udp4');
s.on('error', () => {});
let cookies = 0, others = 0;
s.on('message', (m) => { if (m.length === 64 && m[0] === 3) cookies++; else others++; });
await new Promise((r) => s.bind(0, r));
let sent = 0, inflight = 0, errors = 0, i = 0;
const t0 = Date.now(), end = t0 + Number(seconds) * 1000;
const done = (e) => { inflight--; if (e) errors++; else sent++; };
await new Promise((resolve) => {
  const pump = () => {
    if (Date.now() >= end) return resolve();
    const allowed = rate > 0 ? (Date.now() - t0) / 1000 * rate : Infinity;
    while (inflight < 512 && sent + inflight < allowed) { inflight++; s.send(pool[i++ % pool.length], Number(port), host, done); }
    setImmediate(pump);
  };
  pump();
});
const elapsed = (Date.now() - t0) / 1000;
await new Promise((r) => setTimeout(r, 300));
console.log(JSON.stringify({ sent, errors, seconds: elapsed, perSecond: Math.round(sent / elapsed), cookieReplies: cookies, otherReplies: others, pool: pool.length }));
s.close();
`;

/**
 * The spoofing flooder (Python, raw socket): the same initiations (read from a pool file), each
 * from a random source address of the underlay subnet that no node uses (172.18.128.0/17), so no
 * per-source limit applies: only the device-wide cookie-reply budget and the cheap drops stand.
 * Every cookie reply to such a source costs the node a neighbour entry and an ARP broadcast; with
 * a budget of 2,000 replies/s the neighbour table overflowed and pings lost 39 % at this rate,
 * which is why the budget is 250/s (measured at 120k/s). The offered rate is fixed (SPOOF_RATE, or VEIL_T_SPOOF_RATE;
 * 0 = as fast as Python goes): above ~165k handshake messages/s the node's one UDP socket
 * overflows and drops data with the flood (measured: 437k/s offered, 25 % ping loss), which only
 * steering handshake messages to a socket of their own in the kernel would avoid.
 */
const SPOOF_RATE = 20_000;
/**
 * The floods here run at a fixed 20,000 initiations/s: 200 times the load threshold, so every
 * defence (load detection, cookies, per-source and device-wide budgets) is exercised, yet low
 * enough that the flooder and the lab share 2 busy vCPUs without starving the pings, whatever
 * the machine. At 70k-107k/s a fresh machine lost 5-13 % of pings to CPU starvation alone: how
 * much a full-rate flood costs is a figure for the bench (set VEIL_T_FLOOD_RATE / VEIL_T_SPOOF_RATE
 * to 0 to run these tests at full rate by hand), not a pass/fail line.
 */
const FLOOD_RATE = 20_000;
const SPOOFER = `
import json, random, socket, struct, sys, time
host, port, seconds, pool_file, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
far = len(sys.argv) > 6 and sys.argv[6] == 'far' # sources no route leads back to
pool = [bytes.fromhex(l) for l in open(pool_file).read().split()]
dst = socket.inet_aton(host)
pkts = []
for i in range(8192):
    src = bytes([10, 99, random.randrange(256), random.randrange(1, 255)]) if far else bytes([172, 18, random.randrange(128, 256), random.randrange(1, 255)])
    payload = pool[i % len(pool)]
    udp = struct.pack('!HHHH', 1024 + random.randrange(60000), port, 8 + len(payload), 0) + payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    pkts.append(ip + udp)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
t0 = time.time(); end = t0 + seconds; n = 0; errors = 0
while time.time() < end:
    if rate > 0 and n > (time.time() - t0) * rate:
        time.sleep(0.001)
        continue
    for p in pkts[(n % 8192):(n % 8192) + 512]:
        try:
            s.sendto(p, (host, 0)); n += 1
        except OSError:
            errors += 1
el = time.time() - t0
print(json.dumps({"sent": n, "errors": errors, "seconds": round(el, 3), "perSecond": round(n / el)}))
`;

before(() => {
  ok(veil('lab', 'up', '--name', C, '--nodes', '3'));
  const items = JSON.parse(ok(veil('lab', 'get', 'nodes', '-o', 'json'))).items as { metadata: { name: string }; spec: { internalIP: string } }[];
  for (const n of items) nodeIP[n.metadata.name] = n.spec.internalIP;
  ok(veil('lab', 'pod', 'create', 'pa', '--node', W1));
  podB = /with IP (\S+)/.exec(ok(veil('lab', 'pod', 'create', 'pb', '--node', W2)))![1]!;
  ok(veil('install', '--encryption', 'wireguard'));
});

after(() => {
  veil('lab', 'down', '--name', C);
  rmSync(home, { recursive: true, force: true });
});

/** Runs ping in pod pa (100 per second) and resolves with its summary once it ends. */
function pingFlow(count: number): Promise<{ sent: number; received: number; loss: number; out: string }> {
  const p = spawn(process.execPath, ['dist/src/cli/main.js', 'lab', 'exec', 'pa', '--', 'ping', '-q', '-i', '0.01', '-W', '1', '-c', String(count), podB],
    { env, stdio: ['ignore', 'pipe', 'pipe'] });
  registerPid(C, 'flood-ping', p.pid!);
  let out = '';
  p.stdout!.on('data', (d) => { out += d; });
  p.stderr!.on('data', (d) => { out += d; });
  return new Promise((res) => p.on('close', () => { // 'close': the summary line read, not only the process gone
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    const sent = Number(m?.[1] ?? 0), received = Number(m?.[2] ?? 0);
    res({ sent, received, loss: sent ? (sent - received) / sent : 1, out });
  }));
}

interface FloodRun {
  ping: Awaited<ReturnType<typeof pingFlow>>;
  flood: { sent: number; perSecond: number; cookieReplies?: number; otherReplies?: number };
  before: WgStatus;
  after: WgStatus;
  /** Growth of a drop counter of worker2 over the run. */
  drop: (reason: keyof WgStatus['drops']) => number;
}

/** 8 s of pings pa -> pb with a 5 s flood (the process `flooder` starts) through the middle. */
async function pingsUnderFlood(flooder: (pubB64: string) => ChildProcess, prepare?: (pubB64: string) => void): Promise<FloodRun> {
  // The session exists before the flood.
  for (let i = 0; i < 50 && veil('lab', 'exec', 'pa', '--', 'ping', '-c', '1', '-W', '1', podB).status !== 0; i++) await sleep(200);
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '1', podB));
  const before = encryptStatus(W2);
  prepare?.(before.wireguard.interfaces[0]!['public-key']);
  const pings = pingFlow(800);
  await sleep(1500);
  const f = flooder(before.wireguard.interfaces[0]!['public-key']);
  registerPid(C, 'flooder', f.pid!);
  let fout = '', ferr = '';
  f.stdout!.on('data', (d) => { fout += d; });
  f.stderr!.on('data', (d) => { ferr += d; });
  const floodExit = new Promise<number | null>((r) => f.on('close', (code) => r(code))); // its output read
  const [ping, code] = await Promise.all([pings, floodExit]);
  assert.equal(code, 0, `flooder: ${ferr}`);
  const flood = JSON.parse(fout.trim().split('\n').at(-1)!) as FloodRun['flood'];
  const after = encryptStatus(W2);
  const drop = (k: keyof WgStatus['drops']) => (after.drops[k] ?? 0) - (before.drops[k] ?? 0);
  console.log(`flood: ${JSON.stringify(flood)}; ping: ${ping.received}/${ping.sent} (loss ${(ping.loss * 100).toFixed(1)} %); ` +
    `worker2 drops during the flood: ${JSON.stringify(Object.fromEntries((Object.keys(after.drops) as (keyof WgStatus['drops'])[]).filter((k) => drop(k) > 0).map((k) => [k, drop(k)])))}`);
  assert.ok(flood.perSecond >= 5_000, `a real flood: ${flood.perSecond} initiations/s`);
  assert.ok(ping.sent >= 790, `ping ran its course: ${ping.out}`);
  assert.ok(ping.loss <= 0.05, `the established session keeps passing traffic: loss ${(ping.loss * 100).toFixed(1)} %\n${ping.out}`);
  // No flooder key became a peer; the two real peers are the same.
  const keys = (st: WgStatus) => st.wireguard.interfaces[0]!.peers.map((p) => p['public-key']).sort();
  assert.deepEqual(keys(after), keys(before));
  return { ping, flood, before, after, drop };
}

test('e2e handshake flood: the established session keeps passing traffic, the node answers with cookies, no flooder becomes a peer', async () => {
  const run = await pingsUnderFlood((pub) => spawn('ip', ['netns', 'exec', nsOf(CP), process.execPath, '--input-type=module', '-e', FLOODER,
    resolve('dist'), nodeIP[W2]!, String(WG_PORT), pub, '5', '4000', '', process.env['VEIL_T_FLOOD_RATE'] ?? String(FLOOD_RATE)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  // The node saw the flood: it asked for cookies (each mac2Required drop is a cookie reply sent),
  // then cut the source off before any crypto.
  assert.ok(run.drop('mac2Required') > 0, `cookie replies sent: ${JSON.stringify(run.after.drops)}`);
  assert.ok(run.drop('handshakeRateLimited') > run.flood.sent / 2, 'most of the flood dropped unprocessed');
  assert.ok(run.flood.cookieReplies! > 0, 'cookie replies reached the flooder');
  assert.equal(run.flood.otherReplies, 0, 'never a handshake response to the flooder');
  // And the session is still there once the flood is over.
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '1', podB));
});

/** Writes `size` initiations to worker2's key (given its public key) into file, for the spoofer. */
function poolWriter(file: string, size: number): (pubB64: string) => void {
  return (pub) => {
    const made = spawnSync(process.execPath, ['--input-type=module', '-e', FLOODER, resolve('dist'), nodeIP[W2]!, String(WG_PORT), pub, '0', String(size), file], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
  };
}

/** The spoofer in the control plane's namespace for 5 s at rate/s; 'far': sources no route leads back to. */
function spoofer(poolFile: string, rate: string, far?: 'far'): ChildProcess {
  return spawn('ip', ['netns', 'exec', nsOf(CP), 'python3', '-c', SPOOFER, nodeIP[W2]!, String(WG_PORT), '5', poolFile, rate, ...(far ? [far] : [])],
    { stdio: ['ignore', 'pipe', 'pipe'] });
}

test('e2e handshake flood from spoofed sources: no per-source limit applies, the cookie budget and mac checks hold the line', async () => {
  const poolFile = join(home, 'pool.hex');
  const run = await pingsUnderFlood(() => spoofer(poolFile, process.env['VEIL_T_SPOOF_RATE'] ?? String(SPOOF_RATE)), poolWriter(poolFile, 4000));
  assert.ok(run.drop('mac2Required') > 0, 'cookie replies sent');
  // At most the budget over the run (flood and pings: < 10 s) plus one burst.
  assert.ok(run.drop('mac2Required') <= COOKIE_REPLY_RATE * 11, `within the device-wide cookie budget: ${run.drop('mac2Required')}`);
  assert.ok(run.drop('handshakeRateLimited') > run.flood.sent / 2, 'most of the flood dropped without a reply');
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '1', podB));
});

// Cookie replies to sources with no route back (10.99.0.0/16 is routed nowhere in the lab) fail
// with ENETUNREACH. Found with this test: UdpSocket.sendTo threw on that errno and the exception
// ended the datapath worker, so one such datagram under load stopped every session of the node.
test('e2e handshake flood from unroutable spoofed sources: the node keeps running', async () => {
  const poolFile = join(home, 'pool-far.hex');
  const run = await pingsUnderFlood(() => spoofer(poolFile, String(FLOOD_RATE), 'far'), poolWriter(poolFile, 1000));
  assert.ok(run.drop('mac2Required') > 0, 'the node tried to answer with cookies (and could not reach the sources)');
  // Its datapath is still the same worker, healthy, and the session still passes traffic.
  assert.equal(run.after.wireguard.interfaces[0]!.peers.length, run.before.wireguard.interfaces[0]!.peers.length);
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '1', podB));
  const status = veil('status', '-o', 'json');
  assert.equal(status.status, 0, `every agent healthy after the flood: ${status.stdout}${status.stderr}`);
});
