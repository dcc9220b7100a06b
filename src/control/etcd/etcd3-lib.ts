// The etcd3 library, loaded on first use: it parses etcd's protos and loads gRPC at import, which
// would slow every veil command down, also those on the embedded registry that never touch etcd.
import { createRequire } from 'node:module';

type Etcd3Lib = typeof import('etcd3');
type CockatielLib = typeof import('cockatiel');
let lib: Etcd3Lib | undefined;
let cockatiel: CockatielLib | undefined;

export function etcd3(): Etcd3Lib {
  lib ??= createRequire(import.meta.url)('etcd3') as Etcd3Lib;
  return lib;
}

/** cockatiel: the fault-handling policies etcd3 takes (loaded with it, on first use). */
export function faultPolicies(): CockatielLib {
  cockatiel ??= createRequire(import.meta.url)('cockatiel') as CockatielLib;
  return cockatiel;
}

/** The key range of every key that starts with prefix (etcd's [key, range_end)). */
export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  let i = end.length - 1;
  while (i >= 0 && end[i] === 0xff) i--;
  if (i < 0) return { key, range_end: Buffer.from([0]) }; // all keys from prefix on
  end[i]! += 1;
  return { key, range_end: end.subarray(0, i + 1) };
}
