// Network namespaces by name, through iproute2.
import { run, mustRun } from '../util/exec.js';

export function listNetns(): string[] {
  const r = run(['ip', 'netns', 'list']);
  if (r.status !== 0) return [];
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}

export function netnsExists(ns: string): boolean {
  return listNetns().includes(ns);
}

/** Creates a namespace with lo up. */
export function addNetns(ns: string): void {
  mustRun(['ip', 'netns', 'add', ns]);
  mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
}

/** PIDs of the processes inside a namespace. */
export function netnsPids(ns: string): number[] {
  const r = run(['ip', 'netns', 'pids', ns]);
  if (r.status !== 0) return [];
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

/** Deletes a namespace if it exists; returns whether it did. */
export function deleteNetns(ns: string): boolean {
  return run(['ip', 'netns', 'del', ns]).status === 0;
}
