// The host agent's start-up checks, on this machine's real capabilities, /dev/net/tun and sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { effectiveCapabilities, requireNetAdmin, requireTun, requireUdpPortFree } from '../../src/host/preflight.js';
import { isVeilError } from '../../src/util/errors.js';

const code = (c: string, re: RegExp) => (e: unknown) => isVeilError(e) && e.code === c && re.test(e.describe());

test('CAP_NET_ADMIN is read from CapEff', () => {
  assert.equal(effectiveCapabilities('Name:\tx\nCapEff:\t0000000000001000\n'), 0x1000n);
  assert.doesNotThrow(() => requireNetAdmin(0x1000n));
  assert.throws(() => requireNetAdmin(0x2000n | 0x1n), code('NO_CAPABILITY', /lacks CAP_NET_ADMIN.*systemd unit/));
  // the tests run as root, so this process has it
  assert.doesNotThrow(() => requireNetAdmin());
});

test('/dev/net/tun: present and openable here; a missing device says how to get one', () => {
  assert.doesNotThrow(() => requireTun());
  assert.throws(() => requireTun('/dev/null-veil-missing'), code('NO_TUN', /missing.*modprobe tun/));
  assert.throws(() => requireTun('/dev/null'), code('NO_TUN', /is not the TUN device \(char 1:3.*mknod/));
});

test('a UDP port held by another socket is refused, a free one passes and is let go', async () => {
  const holder = createSocket('udp4');
  await new Promise<void>((r) => holder.bind(0, '127.0.0.1', () => r()));
  const port = holder.address().port;
  try {
    await assert.rejects(requireUdpPortFree(port, '127.0.0.1'), code('PORT_IN_USE', new RegExp(`UDP port ${port} is not free.*ss -ulpn`)));
  } finally {
    holder.close();
  }
  await requireUdpPortFree(port, '127.0.0.1');
  await requireUdpPortFree(port, '127.0.0.1'); // the check itself let the port go
});
