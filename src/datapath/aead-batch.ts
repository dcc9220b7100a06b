// Bulk AEAD through the native addon: a key context created once, and batches of in-place seal/open
// operations described by (ctx, data, nonce, AAD) offsets into one buffer. The same shape serves
// WireGuard (nonce = 0^4 || counter LE, no AAD) and ESP AES-GCM (nonce = salt || IV, AAD = SPI || seq).
import { VeilError } from '../util/errors.js';
import { AEAD_ALG, AEAD_DESC_STRIDE, AEAD_KEY_LENGTH, type AeadAlgorithm, native, nativeError } from '../native/addon.js';

/** Which batches a key serves: seal (encrypt), open (decrypt) or both. */
export type AeadUse = 'seal' | 'open' | 'both';
const AEAD_USE: Record<AeadUse, number> = { seal: 1, open: 2, both: 3 }; // native/aead.c USE_SEAL, USE_OPEN

/** One key in native cipher contexts (one per direction it serves). Free it when the key retires. */
export class AeadKey {
  readonly algorithm: AeadAlgorithm;
  readonly tagLength: number;
  #handle: number;

  private constructor(algorithm: AeadAlgorithm, tagLength: number, handle: number) {
    this.algorithm = algorithm;
    this.tagLength = tagLength;
    this.#handle = handle;
  }

  /**
   * Creates the context. tagLength: 16 for ChaCha20-Poly1305; 8, 12 or 16 for AES-GCM (ESP ICV).
   * use: the direction(s) it serves; a key for one direction holds half the native memory (an
   * AES-GCM context is ~1.5 KB, and an agent holds one per SA per peer), and fails batches of the other.
   */
  static create(algorithm: AeadAlgorithm, key: Uint8Array, tagLength = 16, use: AeadUse = 'both'): AeadKey {
    return new AeadKey(algorithm, tagLength, AeadKey.createHandle(algorithm, key, tagLength, use));
  }

  /**
   * create()'s native key without the object around it: its handle, for AeadBatch.addHandle and
   * freeHandle (AeadContexts keeps thousands, made and freed at the prober's rate, as numbers).
   */
  static createHandle(algorithm: AeadAlgorithm, key: Uint8Array, tagLength = 16, use: AeadUse = 'both'): number {
    const want = AEAD_KEY_LENGTH[algorithm];
    if (want === undefined) throw new VeilError('AEAD_ALG', `unknown AEAD algorithm '${algorithm}'`, `use one of ${Object.keys(AEAD_ALG).join(', ')}`);
    if (key.length !== want) throw new VeilError('AEAD_KEY', `${algorithm} needs a ${want}-byte key, got ${key.length} bytes`);
    const tagOk = algorithm === 'chacha20-poly1305' ? tagLength === 16 : tagLength === 8 || tagLength === 12 || tagLength === 16; // no array literal: a lone packet's key is made per batch
    if (!tagOk) throw new VeilError('AEAD_TAG', `${algorithm} does not support a ${tagLength}-byte tag`);
    const h = native().aeadCreate(AEAD_ALG[algorithm], key, tagLength, AEAD_USE[use]);
    if (h < 0) throw nativeError(h, `cannot create a ${algorithm} context`);
    return h;
  }

  /** Frees a handle createHandle made (once: a freed handle may name another key later). */
  static freeHandle(handle: number): void {
    native().aeadFree(handle);
  }

  /** The native handle to put in descriptors; -1 once freed. */
  get handle(): number {
    return this.#handle;
  }

  free(): void {
    if (this.#handle >= 0) AeadKey.freeHandle(this.#handle);
    this.#handle = -1;
  }
}

/** Most crypto threads a datapath worker may use (native VEIL_MAX_CRYPTO_THREADS). */
export const MAX_CRYPTO_THREADS = 8;

/**
 * Crypto threads in all, this worker included, that share its large AEAD batches (1 = the worker
 * alone). Applies to the calling thread's batches only.
 */
export function setCryptoThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_CRYPTO_THREADS) {
    throw new VeilError('CRYPTO_THREADS', `crypto threads must be a whole number from 1 to ${MAX_CRYPTO_THREADS}, got ${threads}`);
  }
  const r = native().aeadSetThreads(threads);
  if (r < 0) throw nativeError(r, `cannot start ${threads - 1} crypto thread(s)`);
}

/** How many batches the calling worker has shared with its crypto threads. */
export function cryptoPoolBatches(): number {
  return native().aeadPoolBatches();
}

/** Descriptors for up to `capacity` AEAD operations, reused batch after batch. */
export class AeadBatch {
  readonly capacity: number;
  readonly descs: Int32Array;
  /** ok[i] = 1 when operation i succeeded (after seal/open). */
  readonly ok: Uint8Array;
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.descs = new Int32Array(capacity * AEAD_DESC_STRIDE);
    this.ok = new Uint8Array(capacity);
  }

  /**
   * Queues one operation: data (plaintext to seal / ciphertext to open) at dataOffset, tag right
   * after it, 12-byte nonce at nonceOffset, AAD at aadOffset (aadLength may be 0). Returns its index.
   */
  add(key: AeadKey, dataOffset: number, dataLength: number, nonceOffset: number, aadOffset = 0, aadLength = 0): number {
    return this.addHandle(key.handle, dataOffset, dataLength, nonceOffset, aadOffset, aadLength);
  }

  /** add() by a key's native handle (AeadKey.createHandle, AeadContexts.get). */
  addHandle(handle: number, dataOffset: number, dataLength: number, nonceOffset: number, aadOffset = 0, aadLength = 0): number {
    const i = this.count++;
    const d = this.descs, b = i * AEAD_DESC_STRIDE;
    d[b] = handle;
    d[b + 1] = dataOffset;
    d[b + 2] = dataLength;
    d[b + 3] = nonceOffset;
    d[b + 4] = aadOffset;
    d[b + 5] = aadLength;
    return i;
  }

  clear(): void {
    this.count = 0;
  }

  /** Encrypts every queued packet in place and writes its tag; returns how many succeeded. */
  seal(buf: Uint8Array): number {
    return native().sealBatch(buf, this.count, this.descs, this.ok);
  }

  /** Decrypts and authenticates every queued packet in place; returns how many were authentic. */
  open(buf: Uint8Array): number {
    return native().openBatch(buf, this.count, this.descs, this.ok);
  }
}
