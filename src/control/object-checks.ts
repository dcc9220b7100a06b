// What every registry backend checks before it stores an object: a known kind, a name that is safe
// as a file name and as an etcd key segment, metadata present.
import { VeilError } from '../util/errors.js';
import type { Kind, RegistryObject } from './registry.js';

export const KINDS: readonly Kind[] = ['Node', 'Pod', 'Secret', 'ConfigMap', 'Lease', 'Peer'];

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export function checkKind(kind: Kind): void {
  if (!KINDS.includes(kind)) throw new VeilError('INVALID_KIND', `unknown object kind '${kind}'`, `use one of ${KINDS.join(', ')}`);
}

export function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new VeilError('INVALID_NAME', `invalid object name '${name}'`, 'use letters, digits, dots, dashes and underscores, starting with a letter or digit');
  }
}

export function checkObject(obj: RegistryObject): void {
  checkKind(obj.kind);
  if (!obj.metadata) throw new VeilError('INVALID_OBJECT', `${obj.kind} object has no metadata`);
  checkName(obj.metadata.name);
}

/** A copy of obj keeping the creation time of the object it replaces (or now, for a new one). */
export function withCreation(obj: RegistryObject, cur: RegistryObject | undefined): RegistryObject {
  const o = structuredClone(obj);
  o.metadata.creationTimestamp = cur?.metadata.creationTimestamp ?? o.metadata.creationTimestamp ?? new Date().toISOString();
  return o;
}
