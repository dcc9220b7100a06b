// Where the bytes per peer are, from two V8 heap snapshots of one thread (fewer peers, then more):
// `node dist/bench/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot PEERS [OWNER,...]`, e.g. the
// snapshots `node dist/bench/ipsec-peer-memory.js 5000 --heap-snapshots DIR` writes.
// Every object is charged to one owner: the nearest instance of a class of ours on its path from the
// roots and the property it hangs from ("EspEngine.peers"), with its own type ("object:Uint8Array").
// Paths are found breadth first from the OWNER classes named (in that order: an object two of them
// reach goes to the first), then from the roots, stacks and handles last (a bench's locals are not
// the agent's). Prints the self sizes' growth divided by PEERS, by owner, then by owner and type.
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Constructor names that are not owners (an object of ours sits above them). */
const BUILTIN = new Set(['Object', 'Array', 'Map', 'Set', 'WeakMap', 'WeakSet', 'ArrayBuffer', 'Buffer', 'FastBuffer', 'Promise', 'Function',
  'Error', 'Date', 'RegExp', 'String', 'Number', 'DataView', 'Uint8Array', 'Uint8ClampedArray', 'Int8Array', 'Uint16Array', 'Int16Array',
  'Uint32Array', 'Int32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array']);
/** Roots reached last: what a stack or a handle holds is the bench's, not an owner's. */
const LAST_ROOTS = new Set(['(Stack roots)', '(Handle scope)', '(Global handles)', '(Eternal handles)']);

/** Bytes and objects by "Owner.property | type:name". */
function charge(file: string, owners: string[]): Map<string, { bytes: number; count: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const m = s.snapshot.meta;
  const nf = m.node_fields.length, ef = m.edge_fields.length;
  const nodeTypes = m.node_types[0], edgeTypes = m.edge_types[0];
  const { nodes, edges, strings } = s;
  const count = nodes.length / nf;
  const T = m.node_fields.indexOf('type'), NAME = m.node_fields.indexOf('name'), SIZE = m.node_fields.indexOf('self_size'), EDGES = m.node_fields.indexOf('edge_count');
  const typeOf = (n: number) => nodeTypes[nodes[n * nf + T]!]!;
  const nameOf = (n: number) => strings[nodes[n * nf + NAME]!]!;
  const firstEdge = new Uint32Array(count + 1);
  for (let n = 0; n < count; n++) firstEdge[n + 1] = firstEdge[n]! + nodes[n * nf + EDGES]!;

  // Breadth first from each owner class's instances (not through closures: a callback's scope is
  // not what the owner holds), then from the roots.
  const parent = new Int32Array(count).fill(-1), viaEdge = new Int32Array(count).fill(-1);
  const seen = new Uint8Array(count);
  const queue = new Uint32Array(count);
  let head = 0, tail = 0, fromOwner = true;
  const seeds: number[] = [];
  for (const c of owners) for (let n = 0; n < count; n++) if (typeOf(n) === 'object' && nameOf(n) === c) seeds.push(n);
  seeds.push(0);
  const last: number[] = [];
  const weak = edgeTypes.indexOf('weak');
  for (;;) {
    if (head === tail) {
      while (seeds.length && seen[seeds[0]!]) seeds.shift();
      let next = seeds.shift();
      if (next !== undefined) { seen[next] = 1; fromOwner = next !== 0; }
      else if ((next = last.shift()) !== undefined) fromOwner = false;
      else break;
      queue[tail++] = next;
    }
    const n = queue[head++]!;
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e++) {
      if (edges[e * ef] === weak) continue;
      const to = edges[e * ef + 2]! / nf;
      if (seen[to] || (fromOwner && (typeOf(to) === 'closure' || typeOf(to) === 'code'))) continue;
      seen[to] = 1;
      parent[to] = n;
      viaEdge[to] = e;
      if (LAST_ROOTS.has(nameOf(to))) last.push(to); else queue[tail++] = to;
    }
  }

  const isOwner = (n: number) => typeOf(n) === 'object' && /^[A-Z_]/.test(nameOf(n)) && !BUILTIN.has(nameOf(n)) && !nameOf(n).startsWith('system');
  const edgeName = (e: number) => {
    const t = edgeTypes[edges[e * ef]!];
    return t === 'element' || t === 'hidden' ? '[]' : String(strings[edges[e * ef + 1]!]);
  };
  const out = new Map<string, { bytes: number; count: number }>();
  for (let n = 0; n < count; n++) {
    const size = nodes[n * nf + SIZE]!;
    if (!seen[n] || !size) continue;
    let owner = 'root', prop = '';
    if (isOwner(n)) owner = `${nameOf(n)}(self)`;
    else {
      for (let a = n, depth = 0; parent[a]! >= 0 && depth < 40; depth++) {
        prop = edgeName(viaEdge[a]!);
        a = parent[a]!;
        if (isOwner(a)) { owner = nameOf(a); break; }
      }
    }
    const t = typeOf(n);
    const what = t === 'object' || t === 'closure' ? `${t}:${nameOf(n)}` : t.endsWith('string') ? t : `${t}:${nameOf(n).slice(0, 40)}`;
    const key = `${owner}${prop ? `.${prop}` : ''} | ${what}`;
    const g = out.get(key) ?? { bytes: 0, count: 0 };
    g.bytes += size;
    g.count++;
    out.set(key, g);
  }
  return out;
}

const [before, after, peersArg, ownersArg] = process.argv.slice(2);
const peers = Number(peersArg);
if (!before || !after || !(peers > 0)) {
  console.error('usage: node dist/bench/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot PEERS [OWNER,...]');
  process.exit(2);
}
const owners = (ownersArg ?? 'RegistryNodeSource,PeerAdmission,EtcdWatch,IpsecMode,EspEngine').split(',');
const a = charge(before, owners), b = charge(after, owners);
const rows: { key: string; bytes: number; count: number }[] = [];
for (const key of new Set([...a.keys(), ...b.keys()])) {
  rows.push({ key, bytes: ((b.get(key)?.bytes ?? 0) - (a.get(key)?.bytes ?? 0)) / peers, count: ((b.get(key)?.count ?? 0) - (a.get(key)?.count ?? 0)) / peers });
}
rows.sort((x, y) => y.bytes - x.bytes);
const byOwner = new Map<string, number>();
for (const r of rows) byOwner.set(r.key.split(' | ')[0]!, (byOwner.get(r.key.split(' | ')[0]!) ?? 0) + r.bytes);
console.log(`${rows.reduce((n, r) => n + r.bytes, 0).toFixed(0)} B per peer in all`);
console.log('-- by owner (B per peer)');
for (const [owner, bytes] of [...byOwner].sort((x, y) => y[1] - x[1])) if (Math.abs(bytes) >= 8) console.log(bytes.toFixed(0).padStart(6), owner);
console.log('-- by owner and type (B per peer, objects per peer)');
for (const r of rows) if (Math.abs(r.bytes) >= 8) console.log(r.bytes.toFixed(0).padStart(6), r.count.toFixed(2).padStart(6), r.key);
