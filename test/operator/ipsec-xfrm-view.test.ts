// The ip-xfrm views and the Wireshark SA export, from a report shaped as the agent's /ipsec/sas.
// (End to end, test/e2e/ipsec.test.ts has tshark decrypt a real capture with this export; a CBC
// export was checked by hand the same way when veil's SHA-256 ICV was 128 bits; it is 96 bits now, the kernel's default for
// Cilium's hmac(sha256) keys, which Wireshark calls HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]: not re-checked by hand.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatXfrmPolicy, formatXfrmState, wiresharkOptionLines, wiresharkSaRecords, wiresharkUatFile, xfrmPolicyEntries, xfrmStateEntries,
} from '../../src/operator/ipsec-xfrm-view.js';
import type { IpsecSasReport } from '../../src/agent/api.js';
import type { EspSaStatus } from '../../src/datapath/messages.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const gcm = (p: Partial<EspSaStatus>): EspSaStatus => ({
  peer: 'n2', direction: 'out', src: '172.18.0.3', dst: '172.18.0.4', spi: 3, mode: 'tunnel', encap: 'espinudp 4500', algorithm: 'rfc4106(gcm(aes)) 128', icvBits: 128, replayWindow: 1024, esn: true,
  transform: { aead: 'rfc4106(gcm(aes))' }, active: true, bytes: 380, packets: 5, addTimeMs: T0, useTimeMs: T0 + 2000, sequence: 2 ** 32 + 5, ...p,
});

function report(withKeys: boolean): IpsecSasReport {
  const key = (b: string) => (withKeys ? { key: { encryption: b.repeat(20) } } : {});
  return {
    node: 'n1', internalIP: '172.18.0.3', podCIDR: '10.244.1.0/24',
    sas: [
      gcm({ direction: 'in', src: '172.18.0.4', dst: '172.18.0.3', sequence: 7, useTimeMs: 0, bytes: 0, packets: 0, ...key('bb') }),
      gcm({ spi: 4, active: false, ...key('cc') }),
      gcm({ ...key('aa') }),
    ],
    peers: [{ name: 'n2', ip: '172.18.0.4', activeSpi: 3, allowedIPs: ['10.244.2.0/24'] }], peerCount: 1,
  };
}

test('state: outbound first, then by SPI; keys hidden unless the report has them; ESN sequence split in hi/lo', () => {
  const entries = xfrmStateEntries(report(false));
  assert.deepEqual(entries.map((e) => [e.dir, e.spi, e.active]), [['out', '0x00000003', true], ['out', '0x00000004', false], ['in', '0x00000003', true]]);
  const text = formatXfrmState(entries);
  assert.match(text, /^src 172\.18\.0\.3 dst 172\.18\.0\.4\n\tproto esp spi 0x00000003\(3\) reqid 1\(0x00000001\) mode tunnel\n\treplay-window 0 flag esn \(0x00000010\)\n\taead rfc4106\(gcm\(aes\)\) \(hidden, use --show-keys\) 128\n\tencap type espinudp sport 4500 dport 4500 addr 0\.0\.0\.0\n\tdir out peer n2 \(active\)\n/);
  assert.match(text, /\t seq-hi 0x0, seq 0x0, oseq-hi 0x1, oseq 0x5\n\t replay_window 1024, bitmap-length 32\n/);
  assert.match(text, /\t  380\(bytes\), 5\(packets\)\n\t  add 2026-01-02 03:04:05 use 2026-01-02 03:04:07\n/);
  assert.match(text, /\t  add 2026-01-02 03:04:05 use -\n?$/);
  assert.doesNotMatch(text, /aaaa/);
  assert.match(formatXfrmState(xfrmStateEntries(report(true))), /\taead rfc4106\(gcm\(aes\)\) 0x(aa){20} 128\n/);
});

test('state: CBC+HMAC shows auth-trunc and enc lines', () => {
  const r = report(true);
  r.sas = [gcm({ transform: { auth: 'hmac(sha512)', enc: 'cbc(aes)' }, icvBits: 256, key: { encryption: '11'.repeat(16), authentication: '22'.repeat(64) } })];
  const text = formatXfrmState(xfrmStateEntries(r));
  assert.match(text, /\tauth-trunc hmac\(sha512\) 0x(22){64} 256\n\tenc cbc\(aes\) 0x(11){16}\n/);
  assert.deepEqual(wiresharkSaRecords(r), [`"IPv4","172.18.0.3","172.18.0.4","0x00000003","AES-CBC [RFC3602]","0x${'11'.repeat(16)}","HMAC-SHA-512-256 [RFC4868]","0x${'22'.repeat(64)}"`]);
});

test('policy: out through the SA in use, in and fwd from the peer tunnel, counters from the SAs', () => {
  const entries = xfrmPolicyEntries(report(false));
  assert.deepEqual(entries.map((e) => [e.dir, e.src, e.dst, e.tmpl.src, e.tmpl.dst, e.tmpl.spi]), [
    ['out', '10.244.1.0/24', '10.244.2.0/24', '172.18.0.3', '172.18.0.4', '0x00000003'],
    ['in', '10.244.2.0/24', '10.244.1.0/24', '172.18.0.4', '172.18.0.3', '0x00000000'],
    ['fwd', '10.244.2.0/24', '10.244.1.0/24', '172.18.0.4', '172.18.0.3', '0x00000000'],
  ]);
  assert.equal(entries[0]!.lifetime.current.bytes, 380, 'the active SA, not the standby one');
  assert.match(formatXfrmPolicy(entries), /^src 10\.244\.1\.0\/24 dst 10\.244\.2\.0\/24 uid 0\n\tdir out action allow priority 0 ptype main/);
  assert.match(formatXfrmPolicy(entries), /\ttmpl src 172\.18\.0\.3 dst 172\.18\.0\.4\n\t\tproto esp spi 0x00000003 reqid 1 mode tunnel\n/);
});

test('wireshark: eight quoted fields per SA; tshark -o lines and the esp_sa file', () => {
  const records = wiresharkSaRecords(report(true));
  assert.equal(records[0], `"IPv4","172.18.0.3","172.18.0.4","0x00000003","AES-GCM with 16 octet ICV [RFC4106]","0x${'aa'.repeat(20)}","NULL",""`);
  assert.equal(records.length, 3);
  const opts = wiresharkOptionLines(records).split('\n');
  assert.equal(opts[0], '-o esp.enable_encryption_decode:TRUE');
  assert.equal(opts[1], `-o 'uat:esp_sa:${records[0]}'`);
  assert.equal(wiresharkUatFile(records), `# This file is automatically generated, DO NOT MODIFY.\n${records.join('\n')}\n`);
  assert.throws(() => wiresharkSaRecords(report(false)), /came without its key/);
  const r = report(true);
  r.sas = [gcm({ icvBits: 96, key: { encryption: 'dd'.repeat(20) } })];
  assert.match(wiresharkSaRecords(r)[0]!, /"AES-GCM with 12 octet ICV \[RFC4106\]"/);
});
