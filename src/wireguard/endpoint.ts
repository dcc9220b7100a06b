// Where a peer's datagrams go: the outer UDP address. Opaque to the core except for comparison
// (roaming) and as cookie input.

export interface Endpoint {
  /** IPv4 or IPv6 address as the socket layer reports it. */
  readonly address: string;
  readonly port: number;
}

/**
 * A plain-object copy of an endpoint, built without an object literal: copies live as long as the
 * peer, and V8 pretenures a long-lived literal's allocation site, throwing away the optimised code
 * that inlined it (here the whole handshake path, a few rounds into a burst of handshakes).
 */
export function copyEndpoint(e: Endpoint): Endpoint {
  const copy = new Object() as { address: string; port: number };
  copy.address = e.address;
  copy.port = e.port;
  return copy;
}

export function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  return a === b || (!!a && !!b && a.port === b.port && a.address === b.address);
}

/** Bytes identifying the source for cookies: only the responder ever recomputes them. */
export function endpointBytes(e: Endpoint): Uint8Array {
  return new Uint8Array(Buffer.from(`${e.address}|${e.port}`, 'latin1'));
}

export function formatEndpoint(e: Endpoint | null): string {
  if (!e) return '(none)';
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
