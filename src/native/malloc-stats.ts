// What glibc's malloc holds, arena by arena (native/malloc-stats.c: malloc_info(3)'s XML, read here).
// The agent's /memory answers it next to RSS by mapping: whether the threads' arenas grow with live
// blocks (native state per peer) or with free ones (holes that a trim gives back).
import { native } from './addon.js';

/** One malloc arena (bytes): nr 0 is the main thread's (brk heap), the others belong to threads. */
export interface MallocArena {
  nr: number;
  /** Bytes the arena took from the system (its heaps, resident or not). */
  systemBytes: number;
  /** Of those, in free chunks (fastbins and the rest). */
  freeBytes: number;
}

export interface MallocStats {
  arenas: MallocArena[];
  /** Blocks above the mmap threshold, each a mapping of its own. */
  mmappedBytes: number;
}

const attr = (block: string, tag: string, type: string): number =>
  Number(new RegExp(`<${tag} type="${type}"[^>]*size="(\\d+)"`).exec(block)?.[1] ?? 0);

/** Parses malloc_info(0)'s report (exported for its test). */
export function parseMallocInfo(xml: string): MallocStats {
  const arenas: MallocArena[] = [];
  for (const m of xml.matchAll(/<heap nr="(\d+)">([\s\S]*?)<\/heap>/g)) {
    const b = m[2]!;
    arenas.push({ nr: Number(m[1]), systemBytes: attr(b, 'system', 'current'), freeBytes: attr(b, 'total', 'fast') + attr(b, 'total', 'rest') });
  }
  const tail = xml.slice(xml.lastIndexOf('</heap>') + 1);
  return { arenas, mmappedBytes: attr(tail, 'total', 'mmap') };
}

/** The process's malloc arenas now (every thread's: glibc's report covers them all). */
export function mallocStats(): MallocStats {
  return parseMallocInfo(native().mallocInfo());
}
