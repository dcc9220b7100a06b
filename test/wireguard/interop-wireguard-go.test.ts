// Interop with a real implementation: Debian's wireguard-go in namespace veil-twg-b-<pid>, veil's
// sans-I/O Device (driven by interop-veil-node.js) in veil-twg-a-<pid>, a veth between them.
// Proves handshake, KDF and transport format both ways, a rekey, and the Wireshark key log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { generatePrivateKey } from '../../src/crypto/index.js';

// Every machine-wide name carries our pid: a run cut off mid-test leaves its namespaces (and
// wireguard-go's socket /var/run/wireguard/<WG_IF>.sock) behind, and the next run must not meet them.
const NS_VEIL = `veil-twg-a-${process.pid}`;
const NS_WG = `veil-twg-b-${process.pid}`;
/** A link name (at most 15 characters: 'veil-w' and a pid of at most 7 digits) and the socket's name. */
const WG_IF = `veil-w${process.pid}`;
const WG_SOCKET = `/var/run/wireguard/${WG_IF}.sock`;
const here = dirname(fileURLToPath(import.meta.url));
const tools = ['ip', 'wireguard-go', 'wg', 'tcpdump', 'tshark', 'python3'];
const missing = tools.filter((t) => spawnSync('which', [t]).status !== 0);
const skip = process.getuid?.() !== 0 ? 'needs root' : missing.length ? `missing ${missing.join(', ')}` : false;

function sh(argv: string[], input?: string): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}
const inNs = (ns: string, argv: string[]) => ['ip', 'netns', 'exec', ns, ...argv];

let tmp = '';
let wgProc: ChildProcess | null = null;
let veil: ChildProcess | null = null;
let dump: ChildProcess | null = null;
const events: Record<string, unknown>[] = [];
const waiters: (() => void)[] = [];

function cleanup(): void {
  for (const p of [veil, dump, wgProc]) {
    if (p?.pid && p.exitCode === null) {
      try { process.kill(p.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
  }
  spawnSync('ip', ['netns', 'del', NS_VEIL]);
  spawnSync('ip', ['netns', 'del', NS_WG]);
  rmSync(WG_SOCKET, { force: true }); // wireguard-go removes it on SIGTERM, not if it was killed harder
}

async function waitEvent(pred: (e: Record<string, unknown>) => boolean, ms = 5000, from = 0): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = events.slice(from).find(pred);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting; events: ${JSON.stringify(events.slice(-15))}`);
    await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 50); });
  }
}

function command(c: object): void {
  veil!.stdin!.write(JSON.stringify(c) + '\n');
}

function wgShow(field: string): string {
  return sh(inNs(NS_WG, ['wg', 'show', WG_IF, field])).trim();
}

const veilKey = generatePrivateKey();
const wgKey = generatePrivateKey();

before(async () => {
  if (skip) return;
  cleanup();
  tmp = mkdtempSync(join(tmpdir(), 'veil-twg-'));
  sh(['ip', 'netns', 'add', NS_VEIL]);
  sh(['ip', 'netns', 'add', NS_WG]);
  sh(['ip', 'link', 'add', 'veil-twga0', 'netns', NS_VEIL, 'type', 'veth', 'peer', 'name', 'veil-twgb0', 'netns', NS_WG]);
  sh(['ip', '-n', NS_VEIL, 'addr', 'add', '10.99.0.1/24', 'dev', 'veil-twga0']);
  sh(['ip', '-n', NS_WG, 'addr', 'add', '10.99.0.2/24', 'dev', 'veil-twgb0']);
  for (const [ns, dev] of [[NS_VEIL, 'veil-twga0'], [NS_WG, 'veil-twgb0'], [NS_VEIL, 'lo'], [NS_WG, 'lo']] as const) {
    sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
  }
  // wireguard-go, configured with wg
  wgProc = spawn('ip', ['netns', 'exec', NS_WG, 'wireguard-go', WG_IF], {
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'verbose' }, stdio: ['ignore', process.env.VEIL_TEST_WG_LOG ? 'inherit' : 'ignore', 'ignore'],
  });
  for (let i = 0; i < 100 && !existsSync(WG_SOCKET); i++) await new Promise((r) => setTimeout(r, 50));
  const keyFile = join(tmp, 'wg.key');
  writeFileSync(keyFile, Buffer.from(wgKey.raw).toString('base64') + '\n', { mode: 0o600 });
  sh(inNs(NS_WG, ['wg', 'set', WG_IF, 'private-key', keyFile, 'listen-port', '51820',
    'peer', Buffer.from(veilKey.publicKey).toString('base64'), 'allowed-ips', '10.98.0.1/32', 'endpoint', '10.99.0.1:51871']));
  sh(['ip', '-n', NS_WG, 'addr', 'add', '10.98.0.2/24', 'dev', WG_IF]);
  sh(['ip', '-n', NS_WG, 'link', 'set', WG_IF, 'up']);
  // capture the underlay for the key log check
  dump = spawn('ip', ['netns', 'exec', NS_VEIL, 'tcpdump', '-i', 'veil-twga0', '-U', '--immediate-mode', '-w', join(tmp, 'wg.pcap'), 'udp'], { stdio: 'ignore' });
  // veil's Device in the other namespace
  veil = spawn('ip', ['netns', 'exec', NS_VEIL, process.execPath, join(here, 'interop-veil-node.js'),
    Buffer.from(veilKey.raw).toString('base64'), Buffer.from(wgKey.publicKey).toString('base64'),
    '10.99.0.2', '51820', '10.99.0.1', '51871', join(tmp, 'keylog.txt')], {
    env: { ...process.env, VEIL_INTEROP_CHILD: '1' }, stdio: ['pipe', 'pipe', 'inherit'],
  });
  createInterface({ input: veil.stdout! }).on('line', (l) => {
    events.push(JSON.parse(l) as Record<string, unknown>);
    waiters.splice(0).forEach((w) => w());
  });
  await waitEvent((e) => e.event === 'ready');
  await new Promise((r) => setTimeout(r, 300)); // tcpdump attaches
});

after(() => {
  if (skip) return;
  veil?.stdin?.end();
  cleanup();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('interop with wireguard-go: veil initiates, rekeys, wireguard-go initiates, payload intact, keylog decrypts', { skip, timeout: 60_000 }, async () => {
  // 1. veil initiates: the first packet ever is veil's echo request.
  assert.equal(wgShow('latest-handshakes').split(/\s+/)[1], '0');
  command({ cmd: 'ping', seq: 1 });
  const r1 = await waitEvent((e) => e.event === 'echoReply' && e.seq === 1);
  assert.equal(r1.checksumOk, true);
  assert.notEqual(wgShow('latest-handshakes').split(/\s+/)[1], '0');
  command({ cmd: 'ping', seq: 2 });
  const r2 = await waitEvent((e) => e.event === 'echoReply' && e.seq === 2);
  assert.equal(r2.receiver, r1.receiver, 'same session');

  // 2. Rekey driven by the clock: 121 s later veil's next packet triggers a new handshake
  //    (REKEY_AFTER_TIME, initiator side), and traffic continues on the new session.
  const handshakesBefore = events.filter((e) => e.event === 'handshakeComplete').length;
  // wireguard-go drops a second initiation from a peer within 20 ms of real time as a flood,
  // whatever our simulated clock says.
  await new Promise((r) => setTimeout(r, 100));
  command({ cmd: 'advance', ms: 121_000 });
  await waitEvent((e) => e.event === 'advanced');
  command({ cmd: 'ping', seq: 3 });
  await waitEvent((e) => e.event === 'echoReply' && e.seq === 3);
  await waitEvent((e) => e.event === 'handshakeComplete', 5000, events.findIndex((e) => e.event === 'advanced'));
  assert.equal(events.filter((e) => e.event === 'handshakeComplete').length, handshakesBefore + 1);
  command({ cmd: 'ping', seq: 4 });
  const r4 = await waitEvent((e) => e.event === 'echoReply' && e.seq === 4);
  assert.notEqual(r4.receiver, r1.receiver, 'reply arrived on the new session');

  // 3. wireguard-go initiates: it forgets the peer (no session), then pings veil's inner address.
  const peerB64 = Buffer.from(veilKey.publicKey).toString('base64');
  sh(inNs(NS_WG, ['wg', 'set', WG_IF, 'peer', peerB64, 'remove']));
  sh(inNs(NS_WG, ['wg', 'set', WG_IF, 'peer', peerB64, 'allowed-ips', '10.98.0.1/32', 'endpoint', '10.99.0.1:51871']));
  const mark = events.length;
  // -w: asks again until 2 replies or 20 s (a handshake on a loaded machine can outlast one reply's wait)
  const ping = spawnSync('ip', ['netns', 'exec', NS_WG, 'ping', '-c', '2', '-w', '20', '10.98.0.1'], { encoding: 'utf8' });
  assert.equal(ping.status, 0, `ping from wireguard-go side failed: ${ping.stdout}${ping.stderr}`);
  assert.match(ping.stdout, /2 received/);
  const answered = await waitEvent((e) => e.event === 'echoRequestAnswered', 2000, mark);
  assert.equal(answered.checksumOk, true);
  // veil was the responder: it sent a handshake response (type 2)
  assert.ok(events.slice(mark).some((e) => e.event === 'sent' && e.type === 2), 'veil sent a handshake response');

  // 4. A UDP payload from the wireguard-go side arrives intact.
  const payload = randomBytes(1200);
  const digest = createHash('sha256').update(payload).digest('hex');
  sh(inNs(NS_WG, ['python3', '-c',
    'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex(sys.argv[1]), ("10.98.0.1", 9999))',
    payload.toString('hex')]));
  const udp = await waitEvent((e) => e.event === 'udp' && e.port === 9999, 3000);
  assert.equal(udp.sha256, digest);
  assert.equal(udp.length, 1200);

  // Nothing hostile happened, so nothing was dropped.
  const drops = events.filter((e) => e.event === 'drop');
  assert.deepEqual(drops, []);

  // 5. The key log lets tshark decrypt the capture: it sees the inner ICMP.
  await new Promise((r) => setTimeout(r, 300));
  if (dump?.pid) process.kill(dump.pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const keylog = readFileSync(join(tmp, 'keylog.txt'), 'utf8');
  assert.match(keylog, /^LOCAL_STATIC_PRIVATE_KEY = [A-Za-z0-9+/]{43}=$/m);
  const ts = spawnSync('tshark', ['-r', join(tmp, 'wg.pcap'), '-d', 'udp.port==51871,wg',
    '-o', `wg.keylog_file:${join(tmp, 'keylog.txt')}`, '-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type'], { encoding: 'utf8' });
  const types = ts.stdout.trim().split('\n').filter(Boolean);
  assert.ok(types.includes('8') && types.includes('0'), `tshark decrypted ICMP: ${ts.stdout} ${ts.stderr}`);
});
