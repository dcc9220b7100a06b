// The native datapath addon (native/*.c, built by `npm ci` into build/Release/veil_datapath.node):
// a typed view of its functions, its constants, and the translation of its negative error returns
// into VeilErrors. The addon only does syscalls and bulk crypto; decisions stay in TypeScript.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorMap } from 'node:util';
import { VeilError } from '../util/errors.js';

/** A PacketBatch's buffers as the addon holds them (batchBind): opaque to TypeScript. */
export type NativeBatch = { readonly __nativeBatch: unique symbol };

/** A file replacer thread (fileReplacerOpen): opaque to TypeScript. */
export type NativeFileReplacer = { readonly __nativeFileReplacer: unique symbol };

/** The raw functions of the addon. Failures are negative numbers; see `nativeError`. */
export interface NativeDatapath {
  tunOpen(name: string, flags: number): number;
  tunSetOffload(fd: number, tunFlags: number): number;
  tunName(fd: number): string | number;
  /**
   * Registers a PacketBatch's buffers once (validated here) and answers the handle the batch I/O
   * calls take instead of the arrays; the handle keeps them alive.
   */
  batchBind(buf: Uint8Array, slotSize: number, headroom: number, tailroom: number, slots: number,
    offs: Int32Array, lens: Int32Array, addrs: Uint8Array, families: Uint8Array, ports: Uint16Array): NativeBatch;
  /** The calling thread's nice value (-20..19; below 0 needs CAP_SYS_NICE). */
  threadSetNice(nice: number): number;
  /** The calling thread's name (1..15 bytes; /proc's comm): 0 | error. */
  threadSetName(name: string): number;
  /** The calling thread to SCHED_FIFO at priority 1..99, or with 0 back to SCHED_OTHER at its nice (CAP_SYS_NICE). */
  threadSetRealtime(priority: number): number;
  /** true: the calling thread to the first CPU it may run on; false: back to all of them (no capability needed). */
  threadPinFirstCpu(pin: boolean): number;
  /** sched_yield() for the calling thread: 0. */
  threadYield(): number;
  tunReadBatch(fd: number, batch: NativeBatch, maxPkts: number, vnet: number, scratch: Uint8Array | null,
    stats: Float64Array): number;
  tunWriteBatch(fd: number, batch: NativeBatch, n: number, mode: number, stats: Float64Array, yieldEvery: number): number;
  close(fd: number): number;
  /** Blocks up to timeoutMs (-1: forever); bit i set when fds[i] is readable. Worker threads only. */
  waitReadable(fds: Int32Array, count: number, timeoutMs: number): number;
  // The datapath worker's wake-up (native/wake-fd.c): an eventfd the host signals after a request.
  wakeFdOpen(): number;
  wakeFdSignal(fd: number): number;
  /** Signals since the last drain (0: none); the fd is not readable after. */
  wakeFdDrain(fd: number): number;
  /** Gives the free pages of every malloc arena back to the kernel (native/malloc-trim.c): 1 when it gave some. */
  mallocTrim(): number;
  /** Blocks of at least bytes mapped on their own, the threshold fixed (native/malloc-trim.c): 1 when glibc took it. */
  mallocMmapThreshold(bytes: number): number;
  /** A netlink socket on this netns's link and route changes (native/route-changes.c), non-blocking. */
  routeChangesOpen(): number;
  /** Changes since the last drain that can move the underlay or the host's routes (not through ignoredDevices, not the fail-closed blackholes at ownBlackholeMetric; 0: none). */
  routeChangesDrain(fd: number, ignoredDevices: readonly string[], ownBlackholeMetric: number): number;
  /**
   * The tunnel's steering through netlink (native/route-steer.c), in netns ('': this thread's own):
   * per prefix two messages, steer (release 0) the blackhole at metric then the route through the
   * device, release (1) the device's route then the blackhole. errors[2i + k] gets 0 or that
   * message's errno, texts[2i + k] the kernel's text where it gave one. Returns the failed
   * messages, or a negative error when nothing could be sent (the namespace, the socket).
   */
  routesWrite(netns: string, device: string, release: number, metric: number, prefixes: readonly string[],
    mtus: Int32Array | null, sources: readonly (string | undefined)[] | null, errors: Int32Array, texts: (string | undefined)[]): number;
  /** glibc malloc_info(0): every arena's system and free bytes, as XML (native/malloc-stats.c; read by malloc-stats.ts). */
  mallocInfo(): string;
  udpOpen(addr: string, port: number, v6only: number): number;
  udpSetGro(fd: number, on: number): number;
  udpSetBuffers(fd: number, bytes: number): number;
  udpLocalPort(fd: number): number;
  udpRecvBatch(fd: number, batch: NativeBatch, maxMsgs: number, maxPkts: number, stats: Float64Array): number;
  udpSendBatch(fd: number, batch: NativeBatch, n: number, mode: number, stats: Float64Array): number;
  udpSend(fd: number, buf: Uint8Array, offset: number, length: number, addr: Uint8Array, family: number,
    port: number, mode: number): number;
  /** SO_TIMESTAMPNS: the kernel stamps each datagram as it is queued (read by udpRecvStamped). */
  udpSetRecvStamps(fd: number): number;
  /**
   * Datagrams waiting (recvmmsg, non-blocking): datagram i at buf[i * slot], its length in lens[i]
   * (-1: truncated), its source in addrs[16 i..] and fams[i] (4|6), its arrival in ms since the
   * epoch in stamps[i] (the kernel's stamp; NaN without one). At most lens.length (and 256).
   */
  udpRecvStamped(fd: number, buf: Uint8Array, slot: number, lens: Int32Array, addrs: Uint8Array, fams: Uint8Array,
    stamps: Float64Array): number;
  /** A raw IP socket for `protocol` bound to addr (batches then go through udpRecvBatch/udpSendBatch). */
  rawOpen(addr: string, protocol: number): number;
  /** Handles belong to the thread (napi env) that created them. */
  /** use: 1 seal, 2 open, 3 both (AeadKey's AEAD_USE; the contexts made: one direction is half the native memory). */
  aeadCreate(alg: number, key: Uint8Array, tagLen: number, use: number): number;
  aeadFree(handle: number): number;
  /** descs: AEAD_DESC_STRIDE int32 per packet (see AeadDesc); ok[i] = 1 when packet i succeeded. */
  sealBatch(buf: Uint8Array, n: number, descs: Int32Array, ok: Uint8Array): number;
  openBatch(buf: Uint8Array, n: number, descs: Int32Array, ok: Uint8Array): number;
  /** Crypto threads in all (caller included) sharing this worker's large AEAD batches; 1 = none. */
  aeadSetThreads(threads: number): number;
  /** Batches this worker has shared with its crypto pool. */
  aeadPoolBatches(): number;
  checksum(buf: Uint8Array, offset: number, length: number, initial: number): number;
  // fd passing (native/fdpass.c): the datapath handover to a supervisor's fd store.
  /** A non-blocking unix datagram socket bound at path ('@name': abstract). */
  unixDgramBind(path: string): number;
  /** One datagram to the socket at path: text plus the fds (SCM_RIGHTS). */
  sendFds(path: string, text: Uint8Array, fds: Int32Array): number;
  /** One datagram: its text length; the fds received go to fds[] (-1 after the last). EAGAIN when none waits. */
  recvFds(fd: number, text: Uint8Array, fds: Int32Array): number;
  memfdCreate(name: string): number;
  // A file replaced atomically on a thread of its own (native/file-replacer.c): the ESP marks.
  /** Starts the thread for the file at path (created with mode); the handle stops it when collected. */
  fileReplacerOpen(path: string, mode: number): NativeFileReplacer;
  /** Queues a complete snapshot of the file (copied; replaces one not yet started): its generation. */
  fileReplacerSubmit(writer: NativeFileReplacer, bytes: Uint8Array): number;
  /** out = [newest generation written, newest ended, errno of the last failure]; waitFor > 0 blocks until that one ended. */
  fileReplacerState(writer: NativeFileReplacer, out: Int32Array, waitFor: number): number;
  /** Writes what is pending, then stops the thread. */
  fileReplacerClose(writer: NativeFileReplacer): number;
  // Handshake crypto (native/noise-crypto.c), used by src/crypto when the addon is built.
  /** BLAKE2s of a||b||c into out (1..32 bytes), keyed when key is not empty. */
  noiseBlake2s(out: Uint8Array, key: Uint8Array, a: Uint8Array, b: Uint8Array, c: Uint8Array): number;
  /** Noise KDF over HMAC-BLAKE2s: out.length / 32 outputs (32, 64 or 96 bytes). */
  noiseKdf(out: Uint8Array, chainingKey: Uint8Array, input: Uint8Array): number;
  /** ChaCha20-Poly1305 (12-byte nonce) or XChaCha20-Poly1305 (24); 1 ok, 0 tag mismatch. Seal: out = input + 16; open: out = input - 16. */
  noiseAead(encrypt: number, out: Uint8Array, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array): number;
  /** X25519 shared secret into out; 1 ok, 0 all-zero result. */
  noiseX25519(out: Uint8Array, privateKey: Uint8Array, publicKey: Uint8Array): number;
  noiseX25519Public(out: Uint8Array, privateKey: Uint8Array): number;
  noiseX25519Generate(privateKey: Uint8Array, publicKey: Uint8Array): number;
  /**
   * Bits: 1 when node's raw OpenSSL scalar multiplication serves shared secrets (0: the EVP
   * fallback); 2 when public keys come from the fixed-base comb on node's fe64 field routines; 4
   * when the handshake steps' own ladder on those routines (one inversion per message) passed its check;
   * 8 when shared secrets (alone or a message's several) run on AVX-512 IFMA vector ladders (checked likewise).
   */
  noiseX25519Backend(): number;
  /** 1 when BLAKE2s compresses on AVX-512VL rows (checked against the scalar one at load), 0 scalar. */
  noiseBlake2sBackend(): number;
  /** out.length / 32 (1 to 4) shared secrets in one batch, as a handshake message computes them; 1 ok, 0 an all-zero result. */
  noiseX25519Many(out: Uint8Array, privateKeys: Uint8Array, publicKeys: Uint8Array): number;
  /** How many batches (noiseX25519Many calls, handshake messages, single shared secrets) ran on the AVX-512 IFMA ladders. */
  noiseX25519IfmaBatches(): number;
  // The four handshake steps (native/noise-handshake.c), one crossing each, on a 256-byte work
  // slab (HandshakeWork in src/wireguard/noise-handshake.ts). Each returns 1, or 0 on a key that
  // fails or a field that does not decrypt. generate 0 keeps the ephemeral already in work (tests).
  noiseCreateInitiation(work: Uint8Array, msg: Uint8Array, localPublic: Uint8Array, remoteStatic: Uint8Array,
    staticStatic: Uint8Array, timestamp: Uint8Array, generate: number): number;
  /** Also draws the response's ephemeral into work (generate 0: keeps the one there) and its public key. */
  noiseConsumeInitiationStatic(work: Uint8Array, msg: Uint8Array, localPrivate: Uint8Array, responderInitialHash: Uint8Array,
    staticOut: Uint8Array, generate: number): number;
  noiseConsumeInitiationTimestamp(work: Uint8Array, msg: Uint8Array, staticStatic: Uint8Array, timestampOut: Uint8Array): number;
  /** Uses the ephemeral key pair noiseConsumeInitiationStatic left in work. */
  noiseCreateResponse(work: Uint8Array, msg: Uint8Array, remoteStatic: Uint8Array, presharedKey: Uint8Array): number;
  /** Leaves work untouched when the response does not authenticate. */
  noiseConsumeResponse(work: Uint8Array, msg: Uint8Array, localPrivate: Uint8Array, presharedKey: Uint8Array): number;
}

/** tunOpen flags. */
export const TUN_OPEN = { VNET_HDR: 1, MULTI_QUEUE: 2, PERSIST: 4 } as const;
/** TUNSETOFFLOAD flags (linux/if_tun.h). */
export const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, UFO: 0x10, USO4: 0x20, USO6: 0x40 } as const;
/** tunWriteBatch mode bits. */
export const TUN_WRITE = { VNET: 1, COALESCE: 2, CSUM_TRUSTED: 4 } as const;
/** Slots of the Float64Array the TUN functions add their counters to. */
export const TUN_STAT = {
  reads: 0, gsoIn: 1, segmentsOut: 2, checksumsCompleted: 3, dropMalformed: 4, dropTooBig: 5,
  writes: 6, coalescedWrites: 7, coalescedSegments: 8, writeErrors: 9, lastErrno: 10, yields: 11,
} as const;
export const TUN_STAT_COUNT = 13;
/** Stats slot (not a counter): 1 when the last TUN read batch found the device empty. */
export const TUN_DRAINED_SLOT = 12;
/** udpSendBatch / udpSend mode bits. */
export const UDP_MODE = { GSO: 1, SOCKET_V6: 2 } as const;
/** Slots of the Float64Array the UDP functions add their counters to. */
export const UDP_STAT = {
  recvCalls: 0, recvDatagrams: 1, groSplit: 2, dropTruncated: 3, dropNoRoom: 4, sendCalls: 5,
  sent: 6, sendErrors: 7, gsoFallback: 8, lastErrno: 9,
} as const;
export const UDP_STAT_COUNT = 11;
/** Stats slot (not a counter): 1 when the last UDP receive batch found the queue empty. */
export const UDP_DRAINED_SLOT = 10;

export type AeadAlgorithm = 'chacha20-poly1305' | 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';
export const AEAD_ALG: Record<AeadAlgorithm, number> = {
  'chacha20-poly1305': 0, 'aes-128-gcm': 1, 'aes-192-gcm': 2, 'aes-256-gcm': 3,
};
export const AEAD_KEY_LENGTH: Record<AeadAlgorithm, number> = {
  'chacha20-poly1305': 32, 'aes-128-gcm': 16, 'aes-192-gcm': 24, 'aes-256-gcm': 32,
};
/** Int32 slots per packet in an AEAD batch descriptor array. */
export const AEAD_DESC_STRIDE = 6;
/** Offsets inside one AEAD descriptor. */
export const AeadDesc = { ctx: 0, dataOffset: 1, dataLength: 2, nonceOffset: 3, aadOffset: 4, aadLength: 5 } as const;

/**
 * Blocks until one of fds[0..count) is readable or timeoutMs passes (-1: forever); returns the
 * bitmask of readable ones (bit i = fds[i]). For datapath worker threads, never the main thread.
 */
export function waitAnyReadable(fds: Int32Array, count: number, timeoutMs: number): number {
  return check(native().waitReadable(fds, count, timeoutMs), 'waiting for packets');
}

/** A named view of a stats array the addon fills (slots from TUN_STAT or UDP_STAT). */
export function countersFrom<K extends string>(stats: Float64Array, slots: Record<K, number>): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(slots) as K[]) out[k] = stats[slots[k]] ?? 0;
  return out;
}

/** The step of the addon that failed, encoded in bits 12.. of a negative return. */
export const ERROR_STAGE = {
  none: 0, tunOpen: 1, tunSetIff: 2, tunPersist: 3, tunOffload: 4, udpSocket: 5, udpBind: 6, udpAddress: 7,
  udpGro: 8, io: 9, argument: 10,
} as const;

export interface DecodedError { stage: number; errno: number; name: string; text: string }

/** Splits a negative addon return into its stage and errno (name like 'ENOENT', text like 'no such file or directory'). */
export function decodeNativeError(ret: number): DecodedError {
  const code = -ret;
  const errno = code & 0xfff;
  const [name, text] = getSystemErrorMap().get(-errno) ?? [`E${errno}`, `error ${errno}`];
  return { stage: code >> 12, errno, name, text };
}

/** The name of an errno number, e.g. 11 -> 'EAGAIN'. */
export function errnoName(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[0] ?? `E${errno}`;
}

function hintFor(stage: number, name: string): string | undefined {
  if (name === 'EPERM' || name === 'EACCES') return 'run veil as root (it needs CAP_NET_ADMIN)';
  switch (stage) {
    case ERROR_STAGE.tunOpen:
      return name === 'ENOENT' || name === 'ENODEV' ? 'load the tun module (modprobe tun)' : undefined;
    case ERROR_STAGE.tunSetIff:
      if (name === 'EBUSY') return 'another process holds this device, or it exists with other flags (vnetHdr/multiQueue); stop that process or delete the link';
      if (name === 'EINVAL') return 'a non-TUN link with this name exists, or the flags do not match the existing device; delete it (ip link del NAME)';
      return undefined;
    case ERROR_STAGE.tunOffload:
      return 'this kernel refuses TUN offloads; open the device without vnetHdr';
    case ERROR_STAGE.udpBind:
      if (name === 'EADDRINUSE') return 'another socket uses this port; stop it or choose another port';
      if (name === 'EADDRNOTAVAIL') return 'the address is not configured on any interface in this network namespace';
      return undefined;
    case ERROR_STAGE.udpAddress:
      return 'give an IPv4 (10.0.0.1) or IPv6 (fd00::1) address';
    case ERROR_STAGE.udpGro:
      return 'this kernel lacks UDP_GRO (Linux >= 5.0); open the socket without gro';
    default:
      return undefined;
  }
}

/** A VeilError for a negative addon return; `what` says what was being done ("cannot open /dev/net/tun"). */
export function nativeError(ret: number, what: string): VeilError {
  const d = decodeNativeError(ret);
  return new VeilError(`DATAPATH_${d.name}`, `${what}: ${d.text} (${d.name})`, hintFor(d.stage, d.name));
}

/** Returns ret when it is >= 0, otherwise throws nativeError(ret, what). */
export function check(ret: number, what: string): number {
  if (ret < 0) throw nativeError(ret, what);
  return ret;
}

/** The package root: the nearest directory above this file with veil's package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'veil') return dir;
      } catch { /* keep looking */ }
    }
    const up = dirname(dir);
    if (up === dir) throw new VeilError('NATIVE_MISSING', 'cannot find the veil package root', 'run veil from its installed package');
    dir = up;
  }
}

export const ADDON_RELATIVE_PATH = join('build', 'Release', 'veil_datapath.node');
let loaded: NativeDatapath | undefined;

/** The addon, loaded once per thread. Throws a VeilError telling how to build it when missing. */
export function native(): NativeDatapath {
  if (loaded) return loaded;
  const root = packageRoot();
  const file = join(root, ADDON_RELATIVE_PATH);
  if (!existsSync(file)) {
    throw new VeilError('NATIVE_MISSING', `the native datapath addon ${file} is not built`,
      `run 'npm ci' in ${root} (needs g++, make and python3; scripts/setup.sh installs them)`);
  }
  try {
    loaded = createRequire(import.meta.url)(file) as NativeDatapath;
  } catch (e) {
    throw new VeilError('NATIVE_LOAD', `cannot load ${file}: ${(e as Error).message}`,
      `rebuild it for this node (${process.version}) with 'npm ci' or 'npx node-gyp rebuild'`);
  }
  return loaded;
}
