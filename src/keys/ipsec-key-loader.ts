// The key in force across reloads of the key file (spec ipsec.md §4, §10). Each line after the one
// in force is a rotation and must follow the rules: a new id (Cilium's same-SPI error), the same
// KeyLen (Cilium's key-length error) and, veil's own rule, exactly the next id (15 wraps to 1).
// Lines are taken in order and each in Cilium's order: its grammar, Cilium's rotation rules, then
// veil's own refusals (algorithms, key sizes: where Cilium leaves them to the kernel), then the
// next-id rule. A load is all or nothing: on any error the key in force stays, as Cilium's
// watcher keeps it. checkKeyFileUpdate() runs the same rules where a key file is written.
import { VeilError } from '../util/errors.js';
import { keyFileNonEmptyLines, parseKeyLine, readKeyLine, sameKey, type IpsecKey, type KeyLine, type Result } from './ipsec-keyfile.js';
import { nextKeyId } from './ipsec-spi.js';

export interface KeyLoadOutcome {
  /** The key in force after this load (the file's last line). */
  current: IpsecKey;
  /** False when the file holds nothing new (an unchanged file reloaded): nothing to do. */
  changed: boolean;
  /** Keys superseded by this load, oldest first; their removal timer started at this load. */
  rotatedFrom: IpsecKey[];
}

export interface RetiredKey {
  key: IpsecKey;
  /** When it stopped being current (ms); its SAs go `rotationDuration` later. */
  sinceMs: number;
}

function rotationError(message: string, hint: string): Result<never> {
  return { ok: false, error: new VeilError('IPSEC_KEY_ROTATION', message, hint) };
}

export class IpsecKeyLoader {
  #current: IpsecKey | undefined;
  readonly #retired = new Map<number, RetiredKey>();

  /** The key in force, undefined before the first successful load. */
  get current(): IpsecKey | undefined {
    return this.#current;
  }

  /** Loads the whole file text; `nowMs` stamps the keys it retires. */
  load(text: string, nowMs: number): Result<KeyLoadOutcome> {
    const lines = keyFileNonEmptyLines(text);
    if (!lines.ok) return lines;
    let cur = this.#current;
    // Lines up to and including the key in force are already applied.
    let start = 0;
    if (cur) {
      for (let i = lines.value.length - 1; i >= 0; i--) {
        const k = parseKeyLine(lines.value[i]!, i + 1);
        if (k.ok && sameKey(k.value, cur)) {
          start = i + 1;
          break;
        }
      }
    }
    const rotatedFrom: IpsecKey[] = [];
    for (let i = 0; i < lines.value.length; i++) {
      const line = readKeyLine(lines.value[i]!, i + 1);
      if (!line.ok) return line;
      const rotation = i >= start && cur !== undefined;
      if (rotation) {
        const bad = checkCiliumRotation(cur!, line.value);
        if (bad) return bad;
      }
      const key = line.value.key();
      if (!key.ok) return key;
      if (i < start) continue;
      if (rotation) {
        const bad = checkNextId(cur!, key.value);
        if (bad) return bad;
        rotatedFrom.push(cur!);
      }
      cur = key.value;
    }
    if (!cur) return rotationError('internal: no key loaded', 'report this');
    const changed = cur !== this.#current;
    for (const old of rotatedFrom) this.#retired.set(old.spi, { key: old, sinceMs: nowMs });
    this.#retired.delete(cur.spi);
    this.#current = cur;
    return { ok: true, value: { current: cur, changed, rotatedFrom } };
  }

  /** Keys rotated out and not yet expired. */
  retired(): RetiredKey[] {
    return [...this.#retired.values()];
  }

  /** Forgets and returns the retired keys whose rotation duration has passed: remove their SAs. */
  expire(nowMs: number, rotationDurationMs: number): IpsecKey[] {
    const gone: IpsecKey[] = [];
    for (const [spi, r] of this.#retired) {
      if (nowMs - r.sinceMs >= rotationDurationMs) {
        gone.push(r.key);
        this.#retired.delete(spi);
      }
    }
    return gone;
  }
}

/** Cilium's rotation rules, in its order: a new id, then the same KeyLen. */
function checkCiliumRotation(cur: IpsecKey, line: KeyLine): Result<never> | undefined {
  if (line.spi === cur.spi) {
    return rotationError('invalid SPI: changing IPSec keys requires incrementing the key id',
      `key id ${cur.spi} is in force; give the new key id ${nextKeyId(cur.spi)} (\`veil encryption rotate-key\` does this)`);
  }
  if (line.keyLen !== cur.keyLen) {
    return rotationError('invalid key rotation: key length must not change',
      `the key in force has KeyLen ${cur.keyLen}, the new one ${line.keyLen}; keep the algorithm, the ICV length and the key sizes`);
  }
  return undefined;
}

/** veil's own rotation rule: exactly the next id. */
function checkNextId(cur: IpsecKey, key: IpsecKey): Result<never> | undefined {
  const expected = nextKeyId(cur.spi);
  if (key.spi !== expected) {
    return rotationError(`invalid key rotation: key id ${key.spi} does not follow key id ${cur.spi}; the next key id is ${expected}`,
      'rotate one id at a time (15 wraps to 1), so that every node can tell the older key from the newer');
  }
  return undefined;
}

/**
 * Whether agents would load `next` as the key file, given that they loaded `previous` (undefined:
 * none, or one they refused, so they check `next` as a first load): the same rules, the same
 * messages, before the file is written anywhere an agent reads it.
 */
export function checkKeyFileUpdate(previous: string | undefined, next: string): Result<KeyLoadOutcome> {
  const loader = new IpsecKeyLoader();
  if (previous !== undefined) loader.load(previous, 0);
  return loader.load(next, 0);
}
