// A small store for outbound sequence marks (see sequence-store.ts) and inbound replay marks
// (replay-mark.ts) that outlives the agent: one JSON file of { "<sa id>": mark }, replaced
// atomically, so an agent killed at any moment leaves either the old or the new marks, never a torn
// file, and a mark the sender relies on is never lost. Not fsync'd (native/file-replacer.c): what
// loses the page cache gives the machine a new boot id, and every key a mark guards is derived from it.
import { hash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { keyParts, packedMaterial, type EspTransform, type PackedTransform } from './esp-transform.js';
import { VeilError } from '../util/errors.js';

/** The identity of an outbound SA's key for its mark: SPI and tunnel IPs (a jump forward is always safe). */
export function sequenceMarkId(spi: number, src: string, dst: string): string {
  return [spi, ' ', src, '>', dst].join(''); // one flat string: a template makes a tree of parts (kept per SA)
}

const REPLAY_PREFIX = 'in ';

/**
 * The identity of an inbound SA's replay mark: SPI, tunnel IPs and a fingerprint of its key, since
 * a top means nothing for another key (a peer that rebooted derives new keys and starts at 1).
 */
export function replayMarkId(spi: number, src: string, dst: string, transform: EspTransform | PackedTransform): string {
  // over key then salt (encryption then authentication key): packed or not, the same bytes. One-shot
  // hash(), not a Hash object: a refill made one per SA it wrote, ~40 % of its ~190 µs (lat31).
  const key = 'material' in transform ? packedMaterial(transform) : Buffer.concat(keyParts(transform));
  return [REPLAY_PREFIX, spi, ' ', src, '>', dst, ' ', hash('sha256', key, 'hex').slice(0, 16)].join(''); // flat, as above
}

/** The SPI of a replay mark id, undefined for an outbound sequence mark. */
export function replayMarkSpi(id: string): number | undefined {
  return id.startsWith(REPLAY_PREFIX) ? Number(id.slice(REPLAY_PREFIX.length).split(' ')[0]) : undefined;
}

/** The marks stored at `path`; an empty map when the file does not exist yet. */
export async function readSequenceMarks(path: string): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw e;
  }
  const marks = new Map<string, number>();
  let corrupt = false;
  try {
    const data: unknown = JSON.parse(text);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) corrupt = true;
    else {
      for (const [id, mark] of Object.entries(data)) {
        if (typeof mark === 'number' && Number.isSafeInteger(mark) && mark >= 0) marks.set(id, mark);
        else corrupt = true;
      }
    }
  } catch {
    corrupt = true;
  }
  if (corrupt) {
    // Without the marks we cannot know which IVs were used: sending with these keys could repeat one.
    throw new VeilError('IPSEC_SEQ_MARKS_CORRUPT', `the IPsec sequence mark file ${path} is corrupt`,
      'rotate the IPsec key (`veil encryption rotate-key`) so that fresh keys are used, then delete the file');
  }
  return marks;
}

/** The file's contents for `marks` (what readSequenceMarks reads back). */
export function encodeSequenceMarks(marks: Iterable<readonly [string, number]>): string {
  // Written out entry by entry, not through an object of them all (Object.fromEntries): at 5,000 peers
  // a write's encoding took ~3 ms that way. Ids are unique (a Map's, or the engine's disjoint sets).
  let out = '{', sep = '';
  for (const [id, mark] of marks) {
    out += sep + markEntryText(id, mark);
    sep = ',';
  }
  return out + '}\n';
}

/** One entry of the file's text, as encodeSequenceMarks writes it (for a writer that walks its marks itself). */
export function markEntryText(id: string, mark: number): string {
  return JSON.stringify(id) + ':' + mark;
}

/** The file holds no key, but its marks say how far SAs got: the agent's alone. */
export const SEQUENCE_MARKS_MODE = 0o600;
