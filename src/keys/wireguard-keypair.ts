// The node's WireGuard static key pair, kept as Cilium keeps it (spec §2): 32 raw bytes (not
// base64), file mode 0600 in a state directory of mode 0700 (Cilium's is 0770; here no group
// shares it), generated on first start only when
// the file does not exist, never rotated otherwise. The public key travels as standard base64.
import { readFileSync, writeFileSync } from 'node:fs';
import { ensurePrivateDir, narrowToPrivate } from '../util/private-files.js';
import { dirname } from 'node:path';
import { VeilError } from '../util/errors.js';
import { X25519PrivateKey, generatePrivateKey, X25519_KEY_SIZE } from '../crypto/index.js';

export interface WireGuardKeyPair {
  /** 32 raw clamped private key bytes. */
  privateKey: Uint8Array;
  /** 32 raw public key bytes. */
  publicKey: Uint8Array;
  /** Standard base64 with padding (44 characters): the annotation value. */
  publicKeyBase64: string;
  /** True if this call created the key file. */
  generated: boolean;
}

const HINT_SIZE = 'the file must hold exactly 32 raw bytes; delete it and restart the agent to generate a new key (peers pick up the new public key)';

/**
 * Loads the private key at `path`, or generates and saves one if the file does not exist.
 * Errors are VeilErrors: 'WG_KEY_LOAD' ("failed to load wg private key: ...") and
 * 'WG_KEY_SAVE' ("failed to save wg private key: ...").
 */
export function loadOrGenerateKeyPair(path: string): WireGuardKeyPair {
  let raw: Buffer | null = null;
  try {
    raw = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      throw new VeilError('WG_KEY_LOAD', `failed to load wg private key: ${(e as Error).message}`, `check that ${path} is a readable file`);
    }
  }
  if (raw) {
    if (raw.length !== X25519_KEY_SIZE) {
      throw new VeilError('WG_KEY_LOAD', `failed to load wg private key: incorrect key size ${raw.length} bytes in ${path} (want ${X25519_KEY_SIZE})`, HINT_SIZE);
    }
    const key = new X25519PrivateKey(raw);
    raw.fill(0);
    narrowToPrivate(path); // a key file an older version or a careless copy left readable
    return result(key, false);
  }
  const key = generatePrivateKey();
  try {
    ensurePrivateDir(dirname(path));
    // 'wx': never overwrite a key that appeared meanwhile (another agent instance).
    writeFileSync(path, key.raw, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrGenerateKeyPair(path);
    throw new VeilError('WG_KEY_SAVE', `failed to save wg private key: ${(e as Error).message}`, `check that ${dirname(path)} is writable`);
  }
  return result(key, true);
}

/** Public key (base64) of a raw 32-byte private key. */
export function publicKeyBase64Of(privateKey: Uint8Array): string {
  return Buffer.from(new X25519PrivateKey(privateKey).publicKey).toString('base64');
}

function result(key: X25519PrivateKey, generated: boolean): WireGuardKeyPair {
  return {
    privateKey: key.raw,
    publicKey: key.publicKey,
    publicKeyBase64: Buffer.from(key.publicKey).toString('base64'),
    generated,
  };
}
