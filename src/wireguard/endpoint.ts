// Where a peer's datagrams go: the outer UDP address. Opaque to the core except for comparison
// (roaming) and as cookie input.

export interface Endpoint {
  /** IPv4 or IPv6 address as the socket layer reports it. */
  readonly address: string;
  readonly port: number;
}

/**
 * An IPv4 endpoint as two numbers: its address an int32 (a Smi), spelled as text only when read.
 * Every live peer keeps one: a plain object and its address string were ~90 B a peer, and the
 * datapath's map from each endpoint to its address as a number ~25 B more.
 */
export class Ipv4Endpoint implements Endpoint {
  /** ipv4: the address's four bytes, most significant first, as an int32 (`(a << 24) | …`). */
  constructor(readonly ipv4: number, readonly port: number) {}

  get address(): string {
    const n = this.ipv4;
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
}

/** A dotted quad's int32 (as Ipv4Endpoint keeps it) when `address` is one spelled canonically ("10.0.0.1"), else undefined. */
function canonicalIpv4(address: string): number | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    const b = Number(p);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || b > 255) return undefined;
    n = (n << 8) | b;
  }
  return n;
}

/**
 * A copy of an endpoint to keep (roaming): an Ipv4Endpoint is kept as it is (never changed, so
 * shared), any other as a plain object. Built without an object literal: copies live as long as
 * the peer, and V8 pretenures a long-lived literal's allocation site, throwing away the optimised
 * code that inlined it (here the whole handshake path, a few rounds into a burst of handshakes).
 */
export function copyEndpoint(e: Endpoint): Endpoint {
  if (e instanceof Ipv4Endpoint) return e;
  const copy = new Object() as { address: string; port: number };
  copy.address = e.address;
  copy.port = e.port;
  return copy;
}

/**
 * An endpoint to keep, as small as it can be: an Ipv4Endpoint when the address is an IPv4 one
 * spelled as Ipv4Endpoint spells it back (so what was given reads back the same), else a copy
 * (IPv6, the rare case).
 */
export function compactEndpoint(e: Endpoint): Endpoint {
  if (e instanceof Ipv4Endpoint) return e;
  const ipv4 = canonicalIpv4(e.address);
  return ipv4 === undefined ? copyEndpoint(e) : new Ipv4Endpoint(ipv4, e.port);
}

export function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  if (a === b) return true;
  if (!a || !b || a.port !== b.port) return false;
  if (a instanceof Ipv4Endpoint && b instanceof Ipv4Endpoint) return a.ipv4 === b.ipv4;
  return a.address === b.address;
}

/** A plain-object copy (address and port as own fields: what a spread, JSON or a structured clone needs). */
export function plainEndpoint(e: Endpoint): Endpoint {
  return { address: e.address, port: e.port };
}

/** Bytes identifying the source for cookies: only the responder ever recomputes them. */
export function endpointBytes(e: Endpoint): Uint8Array {
  return new Uint8Array(Buffer.from(`${e.address}|${e.port}`, 'latin1'));
}

export function formatEndpoint(e: Endpoint | null): string {
  if (!e) return '(none)';
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
