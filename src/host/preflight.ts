// What a host agent checks before it changes anything: the capability to manage links and routes,
// a usable /dev/net/tun, and a free UDP port. Each refusal says what to do.
import { closeSync, constants, openSync, readFileSync, statSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { VeilError } from '../util/errors.js';

export const TUN_PATH = '/dev/net/tun';
const CAP_NET_ADMIN = 12n;
/** The TUN clone device's numbers (Documentation/admin-guide/devices.txt: misc 200). */
const TUN_MAJOR = 10, TUN_MINOR = 200;

/** The effective capability set of this process (CapEff in /proc/self/status). */
export function effectiveCapabilities(statusText = readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(statusText);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function requireNetAdmin(caps = effectiveCapabilities()): void {
  if ((caps >> CAP_NET_ADMIN) & 1n) return;
  throw new VeilError('NO_CAPABILITY', 'the agent lacks CAP_NET_ADMIN (it creates a TUN device and routes)',
    'run it as root, or under the shipped systemd unit (deploy/systemd/veil-agent.service), which grants exactly that');
}

export function requireTun(path = TUN_PATH): void {
  let rdev = -1;
  try { const st = statSync(path); if (st.isCharacterDevice()) rdev = st.rdev; } catch { /* reported below */ }
  if (rdev < 0) {
    throw new VeilError('NO_TUN', `${path} is missing`, 'load the tun module (modprobe tun); in a container, pass the device in (--device /dev/net/tun)');
  }
  const major = (rdev >> 8) & 0xfff, minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  if (major !== TUN_MAJOR || minor !== TUN_MINOR) {
    throw new VeilError('NO_TUN', `${path} is not the TUN device (char ${major}:${minor}, expected ${TUN_MAJOR}:${TUN_MINOR})`, `recreate it: mknod ${path} c ${TUN_MAJOR} ${TUN_MINOR}`);
  }
  try {
    closeSync(openSync(path, constants.O_RDWR));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new VeilError('NO_TUN', `${path} cannot be opened (${code})`, code === 'EACCES' || code === 'EPERM'
      ? 'allow the device to the agent (systemd: DeviceAllow=/dev/net/tun rw; containers: the device and CAP_NET_ADMIN)'
      : 'check that the tun module is loaded (modprobe tun)');
  }
}

/** Binds the port once, alone, and lets go: another process on it would steal the tunnel's packets. */
export async function requireUdpPortFree(port: number, address = '0.0.0.0'): Promise<void> {
  const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', reuseAddr: false });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ port, address, exclusive: true }, () => resolve());
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new VeilError('PORT_IN_USE', `UDP port ${port} is not free on ${address} (${code})`,
      code === 'EADDRINUSE' ? `find the process with 'ss -ulpn sport = :${port}' and stop it, or stop the other veil agent` : 'check the address and port');
  } finally {
    await new Promise<void>((r) => { try { socket.close(() => r()); } catch { r(); } });
  }
}

/** All of the above, before the agent creates anything. */
export async function hostPreflight(udpPort: number): Promise<void> {
  requireNetAdmin();
  requireTun();
  await requireUdpPortFree(udpPort);
}
