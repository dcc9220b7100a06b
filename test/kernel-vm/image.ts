// What the kernel VM boots: a stock Debian kernel (scripts/fetch-kernel-vm.sh downloads and unpacks
// it, never installs it) and an initramfs made here: busybox, iproute2's ip and tc, wg, their
// libraries, the kernel modules a WireGuard / xfrm peer needs in dependency order (the guest has
// no kmod), the UDP-encap socket helper and guest-init.sh. The initramfs is built once per input
// (cached by a hash of everything that goes in) and written as an uncompressed newc cpio: TCG
// decompresses slowly.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';
import { CpioWriter } from './cpio.js';

export const CACHE_DIR = process.env['VEIL_KERNEL_VM_CACHE'] ?? '/var/cache/veil-kernel-vm';
const SOURCES = join(dirname(fileURLToPath(import.meta.url)), '../../../test/kernel-vm');

/**
 * Modules the peer needs (those built into the kernel are skipped): the NIC, WireGuard, ESP with
 * GCM and CBC+HMAC, xfrm's netlink, the tc drop and mark filters, and stdrng (seqiv wants it on 6.1).
 */
const WANTED_MODULES = [
  // stdrng first, in the order the crypto API would have asked for them (jitterentropy wants sha3-256)
  'sha3_generic', 'jitterentropy_rng', 'sha512_generic', 'sha512_ssse3', 'drbg',
  'virtio_pci', 'virtio_net', 'wireguard', 'esp4', 'xfrm_user', 'xfrm_algo', 'gcm', 'ghash_generic', 'ghash_clmulni_intel',
  'aesni_intel', 'seqiv', 'echainiv', 'authenc', 'authencesn', 'ctr', 'crypto_null', 'sch_ingress', 'cls_u32', 'act_gact', 'act_skbedit',
];

export interface KernelImage {
  version: string;
  kernel: string;
  initramfs: string;
}

/** Why the VM cannot run here, or undefined when it can (QEMU and the kernel image present). */
export function qemuMissing(): string | undefined {
  if (run(['sh', '-c', 'command -v qemu-system-x86_64']).status !== 0) return 'qemu-system-x86_64 is not installed (scripts/setup.sh installs qemu-system-x86)';
  if (!existsSync(join(CACHE_DIR, 'kernel', 'current'))) return `no kernel image in ${CACHE_DIR} (scripts/setup.sh runs scripts/fetch-kernel-vm.sh, which downloads it)`;
  return undefined;
}

/** The kernel and initramfs, building the initramfs if its inputs changed. */
export function kernelImage(): KernelImage {
  const current = join(CACHE_DIR, 'kernel', 'current');
  if (!existsSync(current)) throw new Error(`no kernel in ${CACHE_DIR}: run scripts/setup.sh (it runs scripts/fetch-kernel-vm.sh)`);
  const version = readFileSync(current, 'utf8').trim();
  const root = join(CACHE_DIR, 'kernel', version);
  const kernel = join(root, 'boot', `vmlinuz-${version}`);
  const busybox = join(CACHE_DIR, 'busybox', 'bin', 'busybox');
  if (!existsSync(kernel) || !existsSync(busybox)) throw new Error(`${kernel} or ${busybox} missing: run scripts/fetch-kernel-vm.sh`);
  const init = readFileSync(join(SOURCES, 'guest-init.sh'));
  const encapSource = readFileSync(join(SOURCES, 'udp-encap-socket.c'));
  const tools = ['/usr/sbin/ip', '/usr/sbin/tc', '/usr/bin/wg'];
  const h = createHash('sha256').update(version).update(init).update(encapSource).update(WANTED_MODULES.join(','));
  for (const t of tools) h.update(`${t}:${statSync(t).mtimeMs}`);
  const initramfs = join(CACHE_DIR, `initramfs-${h.digest('hex').slice(0, 16)}.cpio`);
  if (!existsSync(initramfs)) buildInitramfs(initramfs, root, version, busybox, init, encapSource, tools);
  return { version, kernel, initramfs };
}

function buildInitramfs(out: string, root: string, version: string, busybox: string, init: Buffer, encapSource: Buffer, tools: string[]): void {
  const cpio = new CpioWriter();
  cpio.file('init', init, 0o755);
  cpio.file('bin/busybox', readFileSync(busybox), 0o755);
  for (const t of tools) cpio.file(`usr/local/sbin/${basename(t)}`, readFileSync(t), 0o755);
  // their shared libraries, as ldd resolves them
  const libs = new Set<string>();
  for (const line of mustRun(['ldd', ...tools]).split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+ld-linux\S*)/.exec(line);
    if (m) libs.add(m[1]!);
  }
  for (const lib of libs) cpio.file(lib.slice(1), readFileSync(realpathSync(lib)), 0o755);
  const encapBin = join(CACHE_DIR, 'udp-encap-socket');
  const encapSrc = join(CACHE_DIR, 'udp-encap-socket.c');
  writeFileSync(encapSrc, encapSource);
  mustRun(['gcc', '-O2', '-static', '-s', '-o', encapBin, encapSrc]);
  cpio.file('usr/local/sbin/udp-encap-socket', readFileSync(encapBin), 0o755);
  const modules = moduleLoadOrder(join(root, 'lib', 'modules', version), WANTED_MODULES);
  for (const m of modules) cpio.file(`lib/modules/${version}/${m.rel}`, readFileSync(m.path), 0o644);
  cpio.file('vm/modules.list', Buffer.from(modules.map((m) => m.rel).join('\n') + '\n'), 0o644);
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, cpio.finish());
  renameSync(tmp, out);
}

interface ModuleFile { name: string; rel: string; path: string }

/**
 * The .ko files to insmod, dependencies first, for the wanted modules (read from each module's
 * `depends=` modinfo field: the unpacked package has no modules.dep and the host may have no
 * kmod). Wanted modules the kernel has built in are not in its tree and are skipped.
 */
export function moduleLoadOrder(moduleDir: string, wanted: string[]): ModuleFile[] {
  const byName = new Map<string, ModuleFile>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ko')) byName.set(e.name.slice(0, -3).replace(/-/g, '_'), { name: e.name.slice(0, -3), rel: p.slice(moduleDir.length + 1), path: p });
    }
  };
  walk(join(moduleDir, 'kernel'));
  const order: ModuleFile[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    seen.add(key);
    const m = byName.get(key);
    if (!m) return; // built in
    const info = readFileSync(m.path).toString('latin1');
    const deps = /\0depends=([^\0]*)\0/.exec(info)?.[1] ?? '';
    for (const d of deps.split(',').filter(Boolean)) visit(d);
    order.push(m);
  };
  for (const w of wanted) visit(w);
  return order;
}

/** The per-VM part of the initramfs (appended as a second cpio): files under /vm. */
export function configCpio(files: Record<string, string>): Buffer {
  const cpio = new CpioWriter();
  for (const [name, text] of Object.entries(files)) cpio.file(`vm/${name}`, Buffer.from(text), 0o600);
  return cpio.finish();
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
