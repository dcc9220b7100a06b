// Admission control for handshake messages, so that a flood of them cannot take the CPU that
// established sessions need (the kernel's ratelimiter.c and its under-load test, sans-I/O):
//  - load: more than LOAD_THRESHOLD handshake messages (more with many peers: their own rekeys)
//    in the current or the previous second puts the device under load at once (no waiting for a
//    window to close);
//  - cookie replies, under load: a device-wide budget (COOKIE_REPLY_RATE/s), so that a flood
//    from many addresses costs at most that many replies a second; once it is spent, a message
//    without mac2 (which could only earn a cookie reply) is dropped before any MAC is computed;
//  - per source address, under load: a token bucket (PER_SOURCE_RATE/s, burst PER_SOURCE_BURST)
//    admits a source's handshake messages to the Diffie-Hellman work. It is charged only after
//    mac1 and mac2 verified (the protocol's order, as the kernel and wireguard-go): a valid mac2
//    proves the sender receives at its address, so a forged message bearing another's address
//    is refused before it can spend that address's budget.
// Every decision reads only the `now` passed in.

/** Handshake messages per second above which the device is under load (a device with few peers). */
export const LOAD_THRESHOLD = 100;
/**
 * Peers whose own rekeys may bring one handshake message a second without meaning load. Each
 * session is renewed every REKEY_AFTER_TIME (120 s) from either side: ~2 messages in per peer per
 * 120 s, and sessions made together (a cluster's start) come due together. At 5,000 peers a fixed
 * 100 a second was crossed by the cluster's own rekeys: responses dropped for mac2, every one a
 * cookie round trip and a retry 5 s later (the scale bench, session 29). So the threshold is
 * max(LOAD_THRESHOLD, peers / PEERS_PER_MESSAGE_PER_SECOND): 333 a second at 5,000 peers, ~4x the
 * steady rate; a flood still meets it (and what it admits is bounded by the per-source rate).
 */
export const PEERS_PER_MESSAGE_PER_SECOND = 15;

/** Handshake messages a second above which a device with this many peers is under load. */
export function handshakeLoadThreshold(peers: number, base = LOAD_THRESHOLD): number {
  return Math.max(base, peers / PEERS_PER_MESSAGE_PER_SECOND);
}
/** Handshake messages per second one source address may have processed under load (as the kernel's ratelimiter). */
export const PER_SOURCE_RATE = 20;
export const PER_SOURCE_BURST = 5;
/**
 * Cookie replies per second the device sends at most under load (burst as many). Low on purpose:
 * a reply to a spoofed on-link source costs a neighbour entry and an ARP broadcast, and at 2,000/s
 * the neighbour table overflowed and took real peers' entries with it (e2e handshake-flood test).
 * Real peers need one cookie per COOKIE_REFRESH_TIME and retry after REKEY_TIMEOUT.
 */
export const COOKIE_REPLY_RATE = 250;
/** Source buckets kept; beyond it idle ones are forgotten, then all (a flood of spoofed sources). */
const MAX_SOURCES = 8192;

interface Bucket {
  tokens: number;
  at: number;
}

/** A token bucket refilled at `rate` per second up to `burst`. */
function take(b: Bucket, now: number, rate: number, burst: number): boolean {
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) * rate) / 1000);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

export class HandshakeLimiter {
  /** threshold: handshake messages a second that mean load (default LOAD_THRESHOLD). */
  constructor(private readonly threshold = LOAD_THRESHOLD) {}

  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private inPreviousWindow = 0;
  private readonly sources = new Map<string, Bucket>();
  private readonly cookies: Bucket = { tokens: COOKIE_REPLY_RATE, at: 0 };

  /** Counts one handshake message; true when the device is under load. peers: how many the device has. */
  arrive(now: number, peers = 0): boolean {
    if (now - this.windowStart >= 1000) {
      this.inPreviousWindow = now - this.windowStart < 2000 ? this.inWindow : 0;
      this.windowStart = now;
      this.inWindow = 0;
    }
    this.inWindow++;
    const threshold = handshakeLoadThreshold(peers, this.threshold);
    return this.inWindow > threshold || this.inPreviousWindow > threshold;
  }

  /** Under load: may this source address have one more handshake message processed? */
  admitSource(address: string, now: number): boolean {
    let b = this.sources.get(address);
    if (!b) {
      if (this.sources.size >= MAX_SOURCES) this.forgetIdle(now);
      b = { tokens: PER_SOURCE_BURST, at: now };
      this.sources.set(address, b);
    }
    return take(b, now, PER_SOURCE_RATE, PER_SOURCE_BURST);
  }

  /** Under load: may the device send one more cookie reply now? */
  admitCookieReply(now: number): boolean {
    return take(this.cookies, now, COOKIE_REPLY_RATE, COOKIE_REPLY_RATE);
  }

  /** Under load: is the cookie-reply budget spent (without taking from it)? */
  cookieBudgetSpent(now: number): boolean {
    return this.cookies.tokens + ((now - this.cookies.at) * COOKIE_REPLY_RATE) / 1000 < 1;
  }

  /** Drops buckets that have refilled (their sources are quiet); all of them if none has. */
  private forgetIdle(now: number): void {
    const full = (1000 * PER_SOURCE_BURST) / PER_SOURCE_RATE;
    for (const [k, b] of this.sources) if (now - b.at >= full) this.sources.delete(k);
    if (this.sources.size >= MAX_SOURCES) this.sources.clear();
  }
}
