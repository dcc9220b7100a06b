// Protocol constants, named as in the WireGuard paper (§6.1, §5.4) and wireguard-go's device/.
// Times are milliseconds: every `now` the core receives is in milliseconds.

/** Noise protocol name, hashed into the initial chaining key. */
export const NOISE_CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
/** WireGuard identifier, mixed into the initial hash. */
export const WG_IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

// Limits on message counts. The exact values as bigint; the checks use the Number form, which is
// exact for REKEY (2^60) and rounds REJECT up to 2^64: counters are JS numbers (exact to 2^53, far
// beyond what any session reaches), see keypair.ts.
export const REKEY_AFTER_MESSAGES_BIG = 1n << 60n;
export const REJECT_AFTER_MESSAGES_BIG = (1n << 64n) - (1n << 13n) - 1n;
export const REKEY_AFTER_MESSAGES = Number(REKEY_AFTER_MESSAGES_BIG);
export const REJECT_AFTER_MESSAGES = Number(REJECT_AFTER_MESSAGES_BIG);

export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
/** Up to this much random jitter is added to REKEY_TIMEOUT-based timers. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
export const KEEPALIVE_TIMEOUT = 10_000;
export const COOKIE_REFRESH_TIME = 120_000;
/** Initiations from one peer closer together than this are dropped as a flood (wireguard-go). */
export const HANDSHAKE_INITIATION_RATE = 20;
/** Retransmissions before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Packets held per peer while a handshake is in flight (wireguard-go's QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;

export const MESSAGE_INITIATION_TYPE = 1;
export const MESSAGE_RESPONSE_TYPE = 2;
export const MESSAGE_COOKIE_REPLY_TYPE = 3;
export const MESSAGE_TRANSPORT_TYPE = 4;

export const MESSAGE_INITIATION_SIZE = 148;
export const MESSAGE_RESPONSE_SIZE = 92;
export const MESSAGE_COOKIE_REPLY_SIZE = 64;
export const MESSAGE_TRANSPORT_HEADER_SIZE = 16;
/** Smallest transport message: header + Poly1305 tag (a keepalive). */
export const MESSAGE_TRANSPORT_MIN_SIZE = MESSAGE_TRANSPORT_HEADER_SIZE + 16;
export const MESSAGE_KEEPALIVE_SIZE = MESSAGE_TRANSPORT_MIN_SIZE;
/** Transport plaintext is zero-padded to a multiple of this. */
export const MESSAGE_PADDING_MULTIPLE = 16;
