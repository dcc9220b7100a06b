// The agent's V8 young generation, capped. V8 lets the young generation of each thread grow to
// 16 MB semi-spaces (~48 MB) under bursts of short-lived objects, and at 5,000 peers every burst of
// peer events is one: at 1,000 peers it stays small, so the growth showed as memory per peer. With
// 2 MB semi-spaces the young generation is ~6 MB per thread and is collected more often, which
// costs little once a pass allocates only for what changed. The main thread's size is fixed when
// V8 starts, so every launcher passes the flag on node's command line (the lab's supervisor, the
// systemd unit, the DaemonSet); the datapath worker gets it as its resource limit.

export const AGENT_SEMI_SPACE_MB = 2;

// Node's own text (V8's builtins, OpenSSL, libuv: most of what a lone packet runs through) on 2 MiB
// pages where transparent huge pages allow it (`madvise` or `always`; silently not where `never`).
// Why: on a VM whose platform runs DAMON (kdamond: every ~512 ms it clears the accessed bits of
// sampled pages, through every mapping of shared file pages), the first packet after each pass ran
// the datapath worker ~1.3 ms longer on 4 KiB text pages (docs/performance-log.md, session 21):
// idle ping p99 0.62-0.94x main's with large pages in 8 of 8 alternated mode-rounds. Costs ~24 MB of
// private memory per agent (the text is copied off the shared file mapping), ~10 MB of RSS.
const LARGE_PAGES = '--use-largepages=silent';

// V8's memory reducer off. After a burst of allocation it runs up to three more full collections,
// seconds apart, to shrink the heap; the agent already compacts each thread's heap once a burst is
// over (src/util/heap-compaction.ts), so the reducer's collections were the same work again, in
// what should be the steady state: at 5,000 peers 2.07 -> 1.56 % of a core in the scale bench's
// steady window, RSS 110 -> 111 MB (docs/performance-log.md, session 21, idle21). V8 reads it once,
// when the main thread's heap is made, and NODE_OPTIONS refuses it: hence the command line.
const NO_MEMORY_REDUCER = '--no-memory-reducer';

// V8's builtins run from node's text (on 2 MiB pages, above), not from a copy. By default V8 puts the
// embedded builtins next to each thread's JIT code (short calls): a file mapping of node's binary,
// or, once the text is on large pages (anonymous, no file left to map), a private copy on 4 KiB
// pages, 1.6 MB per thread. The builtins (interpreter, ICs, typed arrays, Map lookups) are most of
// a lone packet's code, so the copy brought back the 4 KiB pages a DAMON pass makes dear
// (docs/performance-log.md, session 22); the price is a longer call from JIT code to a builtin.
const BUILTINS_IN_TEXT = '--no-short-builtin-calls';

/** What every launcher of `veil agent run` gives node on its command line, one argument each. */
export const AGENT_NODE_FLAGS: readonly string[] = [`--max-semi-space-size=${AGENT_SEMI_SPACE_MB}`, LARGE_PAGES, NO_MEMORY_REDUCER, BUILTINS_IN_TEXT];

/** The datapath worker's young generation (V8: two semi-spaces and a large-object space as big as one). */
export const WORKER_YOUNG_GENERATION_MB = 3 * AGENT_SEMI_SPACE_MB;
