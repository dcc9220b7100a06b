// The answering synthetic peers' process (the sans-I/O responders' shell: wireguard-responder.ts,
// esp-responder.ts), run by the scale bench inside the synthetic nodes' namespace
// (synthetic-underlay.ts, responder-host.ts), so its CPU is never the agent's. One UDP socket per
// synthetic address, bound to it on the mode's port (WireGuard's, or 4500 for ESP in UDP): what a
// peer sends leaves from its own address. Commands arrive as JSON lines on stdin; answers are JSON
// lines on stdout:
//   {"op":"agents","mode":"wireguard","agents":[{"publicKey":B64,"address":IP,"port":N}],"answer":BOOL}   first, once
//   {"op":"agents","mode":"ipsec","agents":[{"address":IP,"bootId":ID}],"keys":KEYFILE,"answer":BOOL}     (or this)
//   {"op":"keys","keys":KEYFILE}                                          -> {"op":"keys","spis":[N...]} (IPsec)
//   {"op":"set","peers":[{"address":IP,"name":NAME,"privateKey":B64}]}  -> {"op":"set","bound":N}
//   {"op":"set","peers":[{"address":IP,"name":NAME,"bootId":ID}]}       (IPsec)
//   {"op":"counts"}                                                      -> {"op":"counts",...counts}
import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { WireGuardResponder } from './wireguard-responder.js';
import { EspResponder } from './esp-responder.js';
import type { Outgoing, SyntheticResponder } from './synthetic-responder.js';
import type { SyntheticKey } from './synthetic-nodes.js';
import { WG_PORT } from '../../src/agent/wireguard-mode.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';

/** How often the synthetic peers' timers run: they only retransmit their own (rare) initiations. */
const TICK_MS = 1000;

interface Command {
  op: string;
  mode?: 'wireguard' | 'ipsec';
  agents?: { publicKey?: string; address: string; port?: number; bootId?: string }[];
  answer?: boolean;
  keys?: string;
  peers?: { address: string; name: string; privateKey?: string; bootId?: string }[];
}

let responder: SyntheticResponder | undefined;
let esp: EspResponder | undefined;
let port = WG_PORT;
const sockets = new Map<string, Socket>();

function reply(o: object): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

function send(out: Outgoing[]): void {
  for (const o of out) sockets.get(o.from)?.send(o.datagram, o.to.port, o.to.address, () => undefined);
}

function bind(address: string): Promise<void> {
  const s = createSocket('udp4');
  s.on('message', (msg, rinfo) => send(responder!.receive(address, msg, { address: rinfo.address, port: rinfo.port }, performance.now())));
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, address, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      sockets.set(address, s);
      resolve();
    });
  });
}

function peerKey(p: NonNullable<Command['peers']>[number]): SyntheticKey {
  if (p.privateKey !== undefined) return { address: p.address, name: p.name, privateKey: Buffer.from(p.privateKey, 'base64') };
  if (p.bootId !== undefined) return { address: p.address, name: p.name, bootId: p.bootId };
  throw new Error(`${p.name}: neither a private key nor a boot id`);
}

async function handle(c: Command): Promise<void> {
  if (c.op === 'agents') {
    if (responder) throw new Error('agents given twice');
    const agents = c.agents ?? [];
    if (c.mode === 'ipsec') {
      responder = esp = new EspResponder(agents.map((a) => ({ address: a.address, bootId: a.bootId ?? '' })), c.keys ?? '', c.answer ?? true);
      port = ESP_IN_UDP_PORT;
    } else {
      responder = new WireGuardResponder(agents.map((a) => ({ publicKey: Buffer.from(a.publicKey ?? '', 'base64'), endpoint: { address: a.address, port: a.port ?? WG_PORT } })), performance.timeOrigin, c.answer ?? true);
    }
    setInterval(() => send(responder!.tick(performance.now())), TICK_MS);
  } else if (c.op === 'keys') {
    if (!esp) throw new Error('keys before IPsec agents');
    reply({ op: 'keys', spis: esp.setKeys(c.keys ?? '') });
  } else if (c.op === 'set') {
    if (!responder) throw new Error('set before agents');
    const fresh: Promise<void>[] = [];
    for (const p of c.peers ?? []) {
      responder.set(peerKey(p));
      if (!sockets.has(p.address)) fresh.push(bind(p.address));
    }
    await Promise.all(fresh);
    reply({ op: 'set', bound: sockets.size });
  } else if (c.op === 'counts') {
    reply({ op: 'counts', peers: responder?.size ?? 0, ...responder?.counts, ...(esp ? { espDrops: esp.espDrops } : {}) });
  } else {
    throw new Error(`unknown command '${c.op}'`);
  }
}

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(() => handle(JSON.parse(line) as Command)).catch((e: unknown) => {
    process.stderr.write(`synthetic peers' responder: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}).on('close', () => process.exit(0));
