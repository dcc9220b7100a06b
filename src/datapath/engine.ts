// The contract between the datapath worker loop and a tunnel protocol's shell (WireGuard, ESP).
// The loop owns the fds and the clock; an engine turns readable fds into batches of work.

export interface DatapathEngine {
  /** Handles what the TUN device has to read; returns packets handled (0: nothing was there). */
  fromTunnel(now: number): number;
  /** Handles what the UDP socket has to read; returns datagrams handled. */
  fromNetwork(now: number): number;
  /** Runs due timers. */
  tick(now: number): void;
  /** When tick() next has work (same clock as now), or Infinity. */
  nextDeadline(): number;
  /** A control request from the agent (configure, status); the reply is posted back. */
  control(request: ControlRequest): unknown;
  close(): void;
}

export interface ControlRequest {
  type: string;
  [key: string]: unknown;
}

/** Messages between the agent (main thread) and the worker. */
export interface ControlEnvelope {
  id: number;
  request: ControlRequest;
}

export interface ControlReply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { code: string; message: string; hint?: string };
}
