// Which implementation serves the handshake primitives: the addon's native/noise-crypto.c (raw
// keys, no objects, one crossing per KDF) when it is built, node:crypto otherwise. Chosen once at
// load; tests switch with setCryptoBackend() to check both give the same bytes.
import { native, type NativeDatapath } from '../native/addon.js';

export type NoiseNative = Pick<NativeDatapath,
  'noiseBlake2s' | 'noiseKdf' | 'noiseAead' | 'noiseX25519' | 'noiseX25519Public' | 'noiseX25519Generate' | 'noiseX25519Backend' |
  'noiseCreateInitiation' | 'noiseConsumeInitiationStatic' | 'noiseConsumeInitiationTimestamp' | 'noiseCreateResponse' | 'noiseConsumeResponse'>;

function load(): NoiseNative | null {
  if (process.env.VEIL_CRYPTO === 'node') return null;
  try {
    const n = native();
    return typeof n.noiseCreateInitiation === 'function' ? n : null; // an addon built before noise-handshake.c
  } catch {
    return null;
  }
}

const loaded = load();

/** The native primitives in use, or null for node:crypto (live binding). */
export let noise: NoiseNative | null = loaded;

export type CryptoBackend = 'native' | 'node';

/** Selects the backend ('native' only when the addon has it); returns the one in effect. */
export function setCryptoBackend(kind: CryptoBackend): CryptoBackend {
  noise = kind === 'native' ? loaded : null;
  return cryptoBackend();
}

export function cryptoBackend(): CryptoBackend {
  return noise ? 'native' : 'node';
}
