// Where a peer's datagrams go: the outer UDP address. Opaque to the core except for comparison
// (roaming) and as cookie input.

export interface Endpoint {
  /** IPv4 or IPv6 address as the socket layer reports it. */
  readonly address: string;
  readonly port: number;
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
