// systemd's file descriptor store, for the lab's supervisor: the supervised agent sends
// "FDSTORE=1\nFDNAME=NAME" with fds (SCM_RIGHTS) to $NOTIFY_SOCKET when it stops (its datapath
// handover, src/agent/datapath-handover.ts), "FDSTOREREMOVE=1\nFDNAME=NAME" once it took them; the
// next start gets the stored fds as LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID (sd_listen_fds(3)),
// exactly as under systemd with FileDescriptorStoreMax=. The socket is abstract (no path to clean
// up, no length limit from a deep state dir) and lives in the node's network namespace.
import { native, nativeError } from '../native/addon.js';

/** systemd's FileDescriptorStoreMax: more are refused (closed). */
const MAX_STORED = 16;
const MESSAGE_MAX = 4096;

export class FdStore {
  /** What $NOTIFY_SOCKET says to the child ('@' = abstract). */
  readonly address: string;
  readonly #fd: number;
  readonly #stored: { name: string; fd: number }[] = [];

  constructor(name: string) {
    this.address = `@${name}`;
    const fd = native().unixDgramBind(this.address);
    if (fd < 0) throw nativeError(fd, `binding the notify socket ${this.address}`);
    this.#fd = fd;
  }

  /** Reads every notification waiting (in order): stores and removals. Call it when the child exited. */
  drain(): void {
    const n = native();
    const text = new Uint8Array(MESSAGE_MAX);
    const fds = new Int32Array(MAX_STORED);
    for (;;) {
      const len = n.recvFds(this.#fd, text, fds);
      if (len < 0) return; // EAGAIN: nothing more (a truncated one was closed by the addon)
      const fields = new Map(Buffer.from(text.subarray(0, len)).toString('utf8').split('\n').filter(Boolean).map((l) => {
        const i = l.indexOf('=');
        return [l.slice(0, i), l.slice(i + 1)] as const;
      }));
      const name = fields.get('FDNAME') ?? 'stored';
      const passed = Array.from(fds).filter((fd) => fd >= 0);
      if (fields.get('FDSTOREREMOVE') === '1') this.remove(name);
      if (fields.get('FDSTORE') === '1') {
        for (const fd of passed) {
          if (this.#stored.length < MAX_STORED) this.#stored.push({ name, fd });
          else n.close(fd);
        }
      } else {
        for (const fd of passed) n.close(fd); // fds without FDSTORE=1 are not kept (as systemd)
      }
    }
  }

  get size(): number {
    return this.#stored.length;
  }

  /** The stored fds and their names, in the order stored: what the next start gets as fds 3, 4, ... */
  list(): { name: string; fd: number }[] {
    return [...this.#stored];
  }

  remove(name: string): void {
    for (let i = this.#stored.length - 1; i >= 0; i--) {
      if (this.#stored[i]!.name === name) { native().close(this.#stored[i]!.fd); this.#stored.splice(i, 1); }
    }
  }

  /** Closes every stored fd (a stop that is no restart: systemd flushes the store then). */
  flush(): void {
    for (const s of this.#stored) native().close(s.fd);
    this.#stored.length = 0;
  }

  close(): void {
    this.flush();
    native().close(this.#fd);
  }
}
