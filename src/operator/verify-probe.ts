// The traffic end of `veil verify`, run inside one test pod's namespace (`ip netns exec <pod> node
// verify-probe.js <json>`): it echoes TCP and UDP on a port, prints "ready", waits for "go" on
// stdin, then sends ICMP (ping -p marker), TCP and UDP carrying each target's marker to every
// target, checks the echoes, prints one JSON line of results and exits when stdin closes.
import { spawn } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

export interface ProbeTarget {
  node: string;
  ip: string;
  /** 6: the target's IPv6 address (a dual-stack lab probes both). */
  family?: 4 | 6;
  /** 16 bytes, hex: what the traffic to this target carries. */
  marker: string;
}

export interface ProbeConfig {
  port: number;
  timeoutMs: number;
  targets: ProbeTarget[];
  /** The pod has an IPv6 address too: echo on it as well. */
  ipv6?: boolean;
}

export interface ProbeResult {
  node: string;
  family?: 4 | 6;
  icmp: boolean;
  tcp: boolean;
  udp: boolean;
  detail: string[];
}

/** The payload: the marker (binary) and its hex again (so it shows in either form), twice. */
export function probePayload(markerHex: string, proto: string): Buffer {
  const m = Buffer.from(markerHex, 'hex');
  return Buffer.concat([m, Buffer.from(` veil-verify ${proto} ${markerHex} `), m]);
}

function ping(t: ProbeTarget, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const count = 3;
    // -c with -w: ping keeps sending until `count` replies came back or the deadline passed, so a
    // request lost while a tunnel handshakes is retried, like TCP's and our UDP retransmissions.
    const p = spawn('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-w', String(Math.max(1, Math.round(timeoutMs / 1000))), '-p', t.marker, t.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', (e) => resolve({ ok: false, detail: `ping: ${e.message}` }));
    // 'close', not 'exit': only then has all of ping's output (its summary) been read.
    p.on('close', () => {
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      const ok = !!m && Number(m[2]) >= count;
      resolve({ ok, detail: ok ? '' : `icmp: ${m ? `${m[2]} replies to ${m[1]} requests` : out.trim().split('\n').pop()}` });
    });
  });
}

function tcp(t: ProbeTarget, port: number, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const payload = probePayload(t.marker, 'tcp');
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const s = connect({ host: t.ip, port, timeout: timeoutMs }, () => s.end(payload));
    const done = (ok: boolean, detail: string) => { s.destroy(); resolve({ ok, detail }); };
    s.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); });
    s.on('end', () => done(got.equals(payload), got.equals(payload) ? '' : `tcp: echo ${got.length}/${payload.length} bytes`));
    s.on('timeout', () => done(false, 'tcp: timed out'));
    s.on('error', (e) => done(false, `tcp: ${e.message}`));
  });
}

function udp(t: ProbeTarget, port: number, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const payload = probePayload(t.marker, 'udp');
  return new Promise((resolve) => {
    const s = createSocket(t.family === 6 ? 'udp6' : 'udp4');
    let sent = 0;
    const send = () => { sent++; s.send(payload, port, t.ip); };
    // UDP may lose the first datagram while a tunnel handshakes: resend a few times.
    const retry = setInterval(send, 300);
    const finish = (ok: boolean, detail: string) => { clearInterval(retry); clearTimeout(timer); s.close(); resolve({ ok, detail }); };
    const timer = setTimeout(() => finish(false, `udp: no echo to ${sent} datagrams`), timeoutMs);
    s.on('message', (m) => { if (m.equals(payload)) finish(true, ''); });
    s.on('error', (e) => finish(false, `udp: ${e.message}`));
    send();
  });
}

async function probe(cfg: ProbeConfig, t: ProbeTarget): Promise<ProbeResult> {
  const [i, tc, u] = await Promise.all([ping(t, cfg.timeoutMs), tcp(t, cfg.port, cfg.timeoutMs), udp(t, cfg.port, cfg.timeoutMs)]);
  return { node: t.node, ...(t.family === 6 ? { family: 6 as const } : {}), icmp: i.ok, tcp: tc.ok, udp: u.ok, detail: [i.detail, tc.detail, u.detail].filter(Boolean) };
}

/** TCP and UDP echo servers on the port, on IPv4 and (ipv6) on IPv6. */
async function listen(port: number, ipv6: boolean): Promise<{ close(): void }> {
  const closers: (() => void)[] = [];
  for (const family of ipv6 ? [4, 6] as const : [4] as const) {
    const host = family === 4 ? '0.0.0.0' : '::';
    const server = createServer((c: Socket) => {
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('end', () => c.end(Buffer.concat(chunks)));
      c.on('error', () => c.destroy());
    });
    const u = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
    u.on('message', (m, r) => u.send(m, r.port, r.address));
    await new Promise<void>((r) => server.listen({ port, host, ipv6Only: family === 6 }, () => r()));
    await new Promise<void>((r) => u.bind(port, host, () => r()));
    closers.push(() => { server.close(); u.close(); });
  }
  return { close: () => closers.forEach((c) => c()) };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as ProbeConfig;
  const servers = await listen(cfg.port, cfg.ipv6 === true);
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() !== 'go') continue;
    const results = await Promise.all(cfg.targets.map((t) => probe(cfg, t)));
    process.stdout.write(JSON.stringify(results) + '\n');
  }
  servers.close();
  process.exit(0);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  main().catch((e) => { process.stderr.write(`verify-probe: ${e instanceof Error ? e.message : String(e)}\n`); process.exit(1); });
}
