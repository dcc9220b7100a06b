// The scale bench's answering synthetic IPsec peers (bench/scale/esp-responder.ts): a synthetic
// node derives the same per-tunnel keys as the agent that probes it (the cluster key, both
// addresses, both boot ids), opens the agent's ESP probe and sends the prober's ack back sealed
// under the reverse tunnel's key; a reboot (new boot id), an unknown key id or address are
// dropped and counted. Deterministic: the project's ESP encoder and decoder, no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInboundSa, createOutboundSa } from '../../src/esp/security-association.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import { decodeEsp, newDropCounters } from '../../src/esp/esp-decoder.js';
import { sealEsp } from '../../src/esp/esp-encoder.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';
import { deriveTunnelTransforms } from '../../src/keys/ipsec-derive.js';
import { parseKeyFile, type IpsecKey } from '../../src/keys/ipsec-keyfile.js';
import { EspResponder } from '../../bench/scale/esp-responder.js';
import { assertAck, probe } from './probe-packets.js';

const KEY_FILE = `3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128\n`;
const ROTATED = `${KEY_FILE}4+ rfc4106(gcm(aes)) ${'cd'.repeat(20)} 128\n`;
const AGENT = { ip: '172.18.0.2', bootId: '11111111-1111-4111-8111-111111111111' };
const SYNTH = { ip: '172.18.100.2', bootId: '22222222-2222-4222-8222-222222222222' };
const FROM_AGENT = { address: AGENT.ip, port: ESP_IN_UDP_PORT };
const NOW = 1_000_000;

function key(file: string, spi: number): IpsecKey {
  const parsed = parseKeyFile(file);
  assert.ok(parsed.ok);
  return parsed.value.find((k) => k.spi === spi)!;
}

/** The agent's two SAs with the synthetic node under key `spi`, derived as its IPsec mode does. */
function agentTunnel(file: string, spi: number, synth = SYNTH) {
  const t = deriveTunnelTransforms(key(file, spi), AGENT, synth);
  const sequence = new OutboundSequence(0);
  sequence.persisted(sequence.persistDue()!);
  return {
    out: createOutboundSa({ spi, src: AGENT.ip, dst: synth.ip, transform: t.out, nowMs: NOW, sequence }),
    in: createInboundSa({ spi, src: synth.ip, dst: AGENT.ip, transform: t.in, nowMs: NOW }),
  };
}

function sealed(sa: ReturnType<typeof agentTunnel>['out'], packet: Uint8Array): Uint8Array {
  const s = sealEsp(sa, packet, NOW);
  assert.ok(typeof s !== 'string', String(s));
  return s;
}

function responder(answer = true): EspResponder {
  const r = new EspResponder([{ address: AGENT.ip, bootId: AGENT.bootId }], KEY_FILE, answer);
  r.set({ address: SYNTH.ip, name: 'sim-00000', bootId: SYNTH.bootId });
  return r;
}

test('a synthetic IPsec peer opens the agent\'s probe with the derived key and acks it under the reverse tunnel\'s key', () => {
  const r = responder();
  const agent = agentTunnel(KEY_FILE, 3);
  for (const seq of [7, 8]) {
    const out = r.receive(SYNTH.ip, sealed(agent.out, probe(`veil-probe control-plane ${seq} 12345`)), FROM_AGENT, NOW);
    assert.equal(out.length, 1);
    assert.deepEqual({ from: out[0]!.from, to: out[0]!.to }, { from: SYNTH.ip, to: FROM_AGENT }, 'from the synthetic address to the agent\'s port 4500');
    const opened = decodeEsp(agent.in, out[0]!.datagram, NOW, newDropCounters());
    assert.ok(opened.ok, 'the agent opens the ack with its inbound SA (its replay window takes it)');
    assertAck(opened.inner, `veil-ack sim-00000 ${seq} 12345`);
  }
  assert.equal(r.counts.probesAnswered, 2);
  assert.deepEqual(r.counts.bySource[AGENT.ip], { initiations: 0, transport: 2 });
});

test('after a rotation the new key id is answered under the new key; a reboot, an unknown key, an unknown address or a replay is dropped', () => {
  const r = responder();
  const rotated = agentTunnel(ROTATED, 4);
  const probe4 = sealed(rotated.out, probe('veil-probe a 1 2'));
  assert.deepEqual(r.receive(SYNTH.ip, probe4, FROM_AGENT, NOW), [], 'key 4 is not the cluster\'s yet');
  assert.equal(r.counts.drops, 1);
  assert.deepEqual(r.setKeys(ROTATED), [3, 4]);
  const [ack] = r.receive(SYNTH.ip, probe4, FROM_AGENT, NOW);
  assert.ok(ack && decodeEsp(rotated.in, ack.datagram, NOW, newDropCounters()).ok, 'answered under key 4');
  assert.deepEqual(r.receive(SYNTH.ip, probe4, FROM_AGENT, NOW), [], 'the same packet again is a replay');
  assert.equal(r.espDrops.replay, 1);

  r.set({ address: SYNTH.ip, name: 'sim-00000', bootId: '33333333-3333-4333-8333-333333333333' }); // rebooted: the agent's keys are stale
  assert.deepEqual(r.receive(SYNTH.ip, sealed(agentTunnel(KEY_FILE, 3).out, probe('veil-probe a 2 2')), FROM_AGENT, NOW), []);
  assert.equal(r.espDrops['auth-failed'], 1, 'the old boot id\'s key does not open');
  const drops = r.counts.drops;
  assert.deepEqual(r.receive('172.18.100.3', probe4, FROM_AGENT, NOW), []);
  assert.equal(r.counts.unknownAddress, 1);
  assert.equal(r.counts.drops, drops);

  const other = agentTunnel(KEY_FILE, 3, { ip: SYNTH.ip, bootId: '33333333-3333-4333-8333-333333333333' });
  assert.deepEqual(r.receive(SYNTH.ip, sealed(other.out, probe('veil-ack a 1 2')), FROM_AGENT, NOW), []);
  assert.equal(r.counts.otherPackets, 1, 'an ack is not answered');
});

test('silent IPsec peers only count; a bad key file is refused and the old keys stay', () => {
  const silent = responder(false);
  assert.deepEqual(silent.receive(SYNTH.ip, sealed(agentTunnel(KEY_FILE, 3).out, probe('veil-probe a 1 2')), FROM_AGENT, NOW), []);
  assert.deepEqual(silent.counts.bySource[AGENT.ip], { initiations: 0, transport: 1 });
  assert.equal(silent.counts.probesAnswered, 0);

  const r = responder();
  assert.throws(() => r.setKeys('3+ rfc4106(gcm(aes)) zz 128\n'));
  assert.equal(r.receive(SYNTH.ip, sealed(agentTunnel(KEY_FILE, 3).out, probe('veil-probe a 1 2')), FROM_AGENT, NOW).length, 1, 'key 3 still answered');
  assert.throws(() => new EspResponder([], KEY_FILE), /at least one real agent/);
});
