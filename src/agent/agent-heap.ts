// The agent's V8 young generation, capped. V8 lets the young generation of each thread grow to
// 16 MB semi-spaces (~48 MB) under bursts of short-lived objects, and at 5,000 peers every burst of
// peer events is one: at 1,000 peers it stays small, so the growth showed as memory per peer. With
// 2 MB semi-spaces the young generation is ~6 MB per thread and is collected more often, which
// costs little once a pass allocates only for what changed. The main thread's size is fixed when
// V8 starts, so every launcher passes the flag: the lab's supervisor on the command line, the
// systemd unit and the DaemonSet in NODE_OPTIONS; the datapath worker gets it as its resource limit.

export const AGENT_SEMI_SPACE_MB = 2;

/** What every launcher of `veil agent run` gives node (argv or NODE_OPTIONS). */
export const AGENT_NODE_OPTIONS = `--max-semi-space-size=${AGENT_SEMI_SPACE_MB}`;

/** The datapath worker's young generation (V8: two semi-spaces and a large-object space as big as one). */
export const WORKER_YOUNG_GENERATION_MB = 3 * AGENT_SEMI_SPACE_MB;
