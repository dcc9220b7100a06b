// A digest of a WireGuard datapath's table as the agent gave it (table-digest.ts): each peer's
// given public key, name, endpoint, keepalive and next key, and the allowed IPs it owns. Made the
// same way from the agent's specs and from what the engine keeps of what it was given, so that the
// agent's periodic whole pass sends the table only when the two differ (a lost message, a worker
// that lost its table): at 5,000 peers the table sent every minute was ~12 % of the worker's
// samples and ~2 MB promoted in it. What the engine does on its own is not in it: a peer that
// roamed to another endpoint, or moved to the next key its node announced, still holds what it
// was given, and a resend would not undo the roam (WireGuardEngine.applyPeers).
import type { WireGuardPeerSpec } from './messages.js';
import { KeptSpecsDigest, specsDigest, TableDigest } from './table-digest.js';

/** Standard base64's alphabet, as character codes. */
const B64 = Uint8Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', (c) => c.charCodeAt(0));

/** A WireGuard table's entries: a peer as given, a prefix and its owner's given key. */
export class WireGuardTableDigest extends TableDigest {
  /** publicKey (here and in prefix()): its standard base64 text, or its 32 bytes as a Latin-1 string, hashed as that text (see key()). */
  peer(publicKey: string, name: string | undefined, endpoint: WireGuardPeerSpec['endpoint'], keepalive: number, next: string | undefined): void {
    this.text('w'); this.key(publicKey);
    this.optional(name);
    if (endpoint) { this.num(1); this.text(endpoint.address); this.num(endpoint.port); } else this.num(0);
    this.num(keepalive);
    this.optional(next);
    this.end();
  }

  /** An allowed-IPs prefix owned by the peer given this key. */
  prefix(prefix: string, publicKey: string): void {
    this.text('a'); this.text(prefix); this.key(publicKey);
    this.end();
  }

  /**
   * prefix() of an IPv4 prefix given as its address's 32-bit word and its length (the trie's own
   * form): hashed as its text "a.b.c.d/len" is, without making it (the engine's digest at 5,000
   * peers made ~4.7 MB of garbage formatting every prefix).
   */
  prefixIpv4(word: number, length: number, publicKey: string): void {
    this.text('a');
    for (let shift = 24; shift >= 0; shift -= 8) {
      this.decimal((word >>> shift) & 0xff);
      this.code(shift ? 0x2e : 0x2f); // '.', then '/'
    }
    this.decimal(length);
    this.textEnd();
    this.key(publicKey);
    this.end();
  }

  /**
   * A public key as text() hashes its standard base64: a key of 32 characters is its bytes as a
   * Latin-1 string (the engine keeps given keys so, Device's key names: 64 B a peer less than the
   * text), spelled in base64 here without making the text; any other string is text.
   */
  private key(k: string): void {
    if (k.length !== 32) { this.text(k); return; }
    let i = 0;
    for (; i + 3 <= 32; i += 3) {
      const n = (k.charCodeAt(i) << 16) | (k.charCodeAt(i + 1) << 8) | k.charCodeAt(i + 2);
      this.code(B64[n >>> 18]!); this.code(B64[(n >>> 12) & 63]!); this.code(B64[(n >>> 6) & 63]!); this.code(B64[n & 63]!);
    }
    const n = (k.charCodeAt(i) << 16) | (k.charCodeAt(i + 1) << 8); // 32 = 30 + 2: one '='
    this.code(B64[n >>> 18]!); this.code(B64[(n >>> 12) & 63]!); this.code(B64[(n >>> 6) & 63]!); this.code(0x3d);
    this.textEnd();
  }

  /** A string that may be absent (absent is not the empty string). */
  private optional(s: string | undefined): void {
    if (s === undefined) this.num(0);
    else { this.num(1); this.text(s); }
  }
}

/**
 * The digest of the table these specs give (what WireGuardEngine answers a digest request with once
 * it was given exactly them): a prefix named twice by a peer counts once, as the engine keeps it.
 */
export function wireGuardSpecsDigest(specs: readonly WireGuardPeerSpec[]): string {
  return specsDigest(specs, () => new WireGuardTableDigest(), digestSpec);
}

/** wireGuardSpecsDigest of a set of specs kept up to date spec by spec (table-digest.ts KeptSpecsDigest). */
export class WireGuardSpecsDigest extends KeptSpecsDigest<WireGuardPeerSpec, WireGuardTableDigest> {
  constructor() { super(() => new WireGuardTableDigest(), digestSpec); }
}

/** A spec's entries, as the engine keeps them (see wireGuardSpecsDigest). */
function digestSpec(d: WireGuardTableDigest, s: WireGuardPeerSpec): void {
  d.peer(s.publicKey, s.name, s.endpoint, s.persistentKeepalive, s.nextPublicKey);
  const a = s.allowedIPs;
  for (let i = 0; i < a.length; i++) if (a.indexOf(a[i]!) === i) d.prefix(a[i]!, s.publicKey);
}
