// Whether a read of the node's routing table still holds: a netlink socket on link and route
// changes in this netns (native/route-changes.c), drained before each read. The agent's own
// changes (routes through the ignored devices, its fail-closed blackholes) do not count, so what it
// read stays good across its own steering. Without the socket (no addon) nothing holds: every read
// asks ip. The underlay reader and the replaced-routes record each keep one.
import { native } from '../native/addon.js';
import { FAIL_CLOSED_METRIC } from './routes.js';

export class RouteChangeWatch {
  #fd = -1;
  #readAtMs: number | undefined;
  /** A change was drained since the last read marked (drain() keeps the socket's queue short between reads). */
  #changed = false;

  /** maxAgeMs: a read older than this is made again even with no change notified (a safety net, not the mechanism). */
  constructor(private readonly ignoredDevices: readonly string[], private readonly maxAgeMs: number, private readonly now: () => number = () => performance.now()) {
    try {
      const fd = native().routeChangesOpen();
      if (fd >= 0) this.#fd = fd;
    } catch { /* no addon here: read every time */ }
  }

  /** Whether changes are watched (else every read asks ip). */
  get watching(): boolean {
    return this.#fd >= 0;
  }

  /**
   * Drains the socket (before a read: a change while ip runs is counted at the next one, never
   * lost): true when nothing moved since the last read marked (markRead) and it is not too old.
   */
  unchanged(): boolean {
    this.drain();
    return this.#fd >= 0 && !this.#changed && this.#readAtMs !== undefined && this.now() - this.#readAtMs < this.maxAgeMs;
  }

  /**
   * Reads what the socket holds now, remembering whether anything counted: called after the agent's
   * own route writes, whose notifications (not counted, but queued) would otherwise fill the socket
   * until the next read and, lost, count as a change.
   */
  drain(): void {
    if (this.#fd < 0) return;
    const changes = native().routeChangesDrain(this.#fd, this.ignoredDevices, FAIL_CLOSED_METRIC);
    if (changes < 0) this.close();
    else if (changes > 0) this.#changed = true;
  }

  /** A read was just made: whether it may be kept (only while changes are watched). */
  markRead(): boolean {
    if (this.#fd < 0) return false;
    this.#changed = false;
    this.#readAtMs = this.now();
    return true;
  }

  close(): void {
    if (this.#fd >= 0) native().close(this.#fd);
    this.#fd = -1;
    this.#readAtMs = undefined;
  }
}
