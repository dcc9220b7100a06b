// The agent's health: named checks, each Ok or with a reason; the worst decides the state.

export type HealthState = 'Ok' | 'Degraded' | 'Failure';

export interface HealthCheck {
  name: string;
  state: HealthState;
  message: string;
  since: string;
}

export class Health {
  private readonly checks = new Map<string, HealthCheck>();

  set(name: string, state: HealthState, message: string): void {
    const prev = this.checks.get(name);
    const since = prev && prev.state === state && prev.message === message ? prev.since : new Date().toISOString();
    this.checks.set(name, { name, state, message, since });
  }

  ok(name: string, message = 'OK'): void {
    this.set(name, 'Ok', message);
  }

  clear(name: string): void {
    this.checks.delete(name);
  }

  /**
   * Makes the checks whose names start with `prefix` exactly `problems` (name -> reason, all
   * Degraded): one that is no longer a problem is gone, not left behind.
   */
  replaceGroup(prefix: string, problems: ReadonlyMap<string, string>): void {
    for (const name of [...this.checks.keys()]) if (name.startsWith(prefix) && !problems.has(name)) this.checks.delete(name);
    for (const [name, message] of problems) this.set(name, 'Degraded', message);
  }

  state(): HealthState {
    let worst: HealthState = 'Ok';
    for (const c of this.checks.values()) {
      if (c.state === 'Failure') return 'Failure';
      if (c.state === 'Degraded') worst = 'Degraded';
    }
    return worst;
  }

  list(): HealthCheck[] {
    return [...this.checks.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  problems(): HealthCheck[] {
    return this.list().filter((c) => c.state !== 'Ok');
  }
}
