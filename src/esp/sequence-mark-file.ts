// A small durable store for outbound sequence marks (see sequence-store.ts): one JSON file of
// { "<sa id>": mark }, replaced atomically (write a temporary file, fsync, rename, fsync the folder),
// so a crash leaves either the old or the new marks, never a torn file.
import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VeilError } from '../util/errors.js';

/** The identity of an outbound SA's key for its mark: SPI and tunnel IPs (a jump forward is always safe). */
export function sequenceMarkId(spi: number, src: string, dst: string): string {
  return `${spi} ${src}>${dst}`;
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

/** Replaces the file at `path` with `marks`, durably. */
export async function writeSequenceMarks(path: string, marks: ReadonlyMap<string, number>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(Object.fromEntries(marks)) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
