// The answering synthetic WireGuard peers' process (wireguard-responder.ts's shell), run by the
// scale bench inside its own namespace on the lab bridge (responder-host.ts), so its CPU is never
// the agent's. One UDP socket per synthetic address, bound to it on WG_PORT: what a peer sends
// leaves from its own address. Commands arrive as JSON lines on stdin; answers are JSON lines on stdout:
//   {"op":"agents","agents":[{"publicKey":B64,"address":IP,"port":N}],"answer":BOOL}   first, once
//   {"op":"set","peers":[{"address":IP,"name":NAME,"privateKey":B64}]}  -> {"op":"set","bound":N}
//   {"op":"counts"}                                                      -> {"op":"counts",...counts}
import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { WireGuardResponder, type Outgoing } from './wireguard-responder.js';
import { WG_PORT } from '../../src/agent/wireguard-mode.js';

/** How often the synthetic peers' timers run: they only retransmit their own (rare) initiations. */
const TICK_MS = 1000;

interface Command {
  op: string;
  agents?: { publicKey: string; address: string; port: number }[];
  answer?: boolean;
  peers?: { address: string; name: string; privateKey: string }[];
}

let responder: WireGuardResponder | undefined;
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
    s.bind(WG_PORT, address, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      sockets.set(address, s);
      resolve();
    });
  });
}

async function handle(c: Command): Promise<void> {
  if (c.op === 'agents') {
    if (responder) throw new Error('agents given twice');
    responder = new WireGuardResponder((c.agents ?? []).map((a) => ({ publicKey: Buffer.from(a.publicKey, 'base64'), endpoint: { address: a.address, port: a.port } })), performance.timeOrigin, c.answer ?? true);
    setInterval(() => send(responder!.tick(performance.now())), TICK_MS);
  } else if (c.op === 'set') {
    if (!responder) throw new Error('set before agents');
    const fresh: Promise<void>[] = [];
    for (const p of c.peers ?? []) {
      responder.set(p.address, p.name, Buffer.from(p.privateKey, 'base64'));
      if (!sockets.has(p.address)) fresh.push(bind(p.address));
    }
    await Promise.all(fresh);
    reply({ op: 'set', bound: sockets.size });
  } else if (c.op === 'counts') {
    reply({ op: 'counts', peers: responder?.size ?? 0, ...responder?.counts });
  } else {
    throw new Error(`unknown command '${c.op}'`);
  }
}

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(() => handle(JSON.parse(line) as Command)).catch((e: unknown) => {
    process.stderr.write(`wireguard responder: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}).on('close', () => process.exit(0));
