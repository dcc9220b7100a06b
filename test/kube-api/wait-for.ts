// Waits for a condition the API stand-in's watchers bring about, failing with what was awaited:
// the shared poll (../wait-for.ts), asked every 50 ms.
import { waitFor as poll } from '../wait-for.js';

export async function waitFor(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  await poll(what, cond, ms, { everyMs: 50 });
}
