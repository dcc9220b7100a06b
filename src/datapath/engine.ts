// The contract between the datapath worker loop and a tunnel protocol's shell (WireGuard, ESP).
// The loop owns the fds and the clock; an engine turns readable fds into batches of work.
import type { AnyReplyOf, EspEngineState, EspProtocol, RequestOf, WireGuardEngineState, WireGuardProtocol } from './messages.js';

export interface DatapathEngine<P extends WireGuardProtocol | EspProtocol> {
  /** Handles what the TUN device has to read; returns packets handled (0: nothing was there). */
  fromTunnel(now: number): number;
  /** Handles what the UDP socket has to read; returns datagrams handled. */
  fromNetwork(now: number): number;
  /** Runs due timers. */
  tick(now: number): void;
  /** When tick() next has work (same clock as now), or Infinity; `now`: the loop's clock (read when absent). */
  nextDeadline(now?: number): number;
  /** A control request of the engine's protocol (messages.ts); the reply is posted back. */
  control(request: RequestOf<P>): AnyReplyOf<P>;
  /** The state a next datapath resumes from (after the loop stopped: nothing is sent after it). */
  exportState(now: number): P extends WireGuardProtocol ? WireGuardEngineState : EspEngineState;
  close(): void;
}
