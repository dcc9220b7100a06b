// The scale bench's answering synthetic WireGuard peers (bench/scale/wireguard-responder.ts): a
// synthetic peer answers a real initiation from the project's WireGuard core (an agent's Device)
// with its own static key, and a health probe sent through the tunnel comes back as the prober's
// ack, from the probed address, through the tunnel. Deterministic: one clock value, no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device } from '../../src/wireguard/device.js';
import type { Action } from '../../src/wireguard/actions.js';
import type { Peer } from '../../src/wireguard/peer.js';
import { generatePrivateKey } from '../../src/crypto/x25519.js';
import { assertAck, probe, udp } from './probe-packets.js';
import { HEALTH_PORT } from '../../src/agent/health-prober.js';
import { WG_PORT } from '../../src/agent/wireguard-mode.js';
import { WireGuardResponder } from '../../bench/scale/wireguard-responder.js';
import { probeAck, type Outgoing } from '../../bench/scale/synthetic-responder.js';

const AGENT = { address: '172.18.0.2', port: WG_PORT };
const SYNTH = '172.18.100.2';
const NOW = 1_000_000;

function networkOf(actions: readonly Action[]): Uint8Array[] {
  return actions.flatMap((a) => (a.kind === 'network' ? [a.datagram] : []));
}

/** An agent's Device with one synthetic peer, and the responder holding that peer's key. */
function setup(answer = true) {
  const agentKey = generatePrivateKey();
  const synthKey = generatePrivateKey();
  const agent = new Device({ privateKey: agentKey.raw });
  const peer: Peer = agent.addPeer({ publicKey: synthKey.publicKey, endpoint: { address: SYNTH, port: WG_PORT } });
  const responder = new WireGuardResponder([{ publicKey: agentKey.publicKey, endpoint: AGENT }], 0, answer);
  responder.set({ address: SYNTH, name: 'sim-00000', privateKey: synthKey.raw });
  return { agent, peer, responder };
}

test('a synthetic peer answers the agent core\'s initiation with its own key, and acks a health probe through the tunnel', () => {
  const { agent, peer, responder } = setup();
  const probePacket = probe('veil-probe control-plane 7 12345');

  // The probe waits for a session: the agent's core sends an initiation.
  const [initiation] = networkOf(agent.encapsulate(peer, probePacket, NOW));
  assert.ok(initiation);
  const response = responder.receive(SYNTH, initiation, AGENT, NOW);
  assert.equal(response.length, 1);
  assert.deepEqual({ from: response[0]!.from, to: response[0]!.to }, { from: SYNTH, to: AGENT }, 'answered from the synthetic address, to the agent');

  // The response completes the handshake; the staged probe goes out as transport data.
  const afterResponse = agent.decapsulate(response[0]!.datagram, { address: SYNTH, port: WG_PORT }, NOW);
  assert.ok(afterResponse.some((a) => a.kind === 'handshakeComplete'), 'the agent accepted the synthetic peer\'s response');
  const [transport] = networkOf(afterResponse);
  assert.ok(transport, 'the staged probe is sent');

  const acks: Outgoing[] = responder.receive(SYNTH, transport, AGENT, NOW);
  assert.equal(acks.length, 1);
  const back = agent.decapsulate(acks[0]!.datagram, { address: SYNTH, port: WG_PORT }, NOW);
  const tunnel = back.find((a) => a.kind === 'tunnel');
  assert.ok(tunnel && tunnel.kind === 'tunnel', 'the ack decrypts at the agent');
  assertAck(tunnel.packet, 'veil-ack sim-00000 7 12345');

  assert.equal(responder.counts.handshakeResponses, 1);
  assert.equal(responder.counts.probesAnswered, 1);
  assert.deepEqual(responder.counts.bySource[AGENT.address], { initiations: 1, transport: 1 });
});

test('a synthetic peer with a new key refuses initiations to its old one; silent peers and unknown addresses only count', () => {
  const { agent, peer, responder } = setup();
  responder.set({ address: SYNTH, name: 'sim-00000', privateKey: generatePrivateKey().raw }); // a key change the agent has not learnt yet
  const [initiation] = networkOf(agent.encapsulate(peer, probe('veil-probe a 1 2'), NOW));
  assert.deepEqual(responder.receive(SYNTH, initiation!, AGENT, NOW), []);
  assert.equal(responder.counts.drops, 1);
  assert.deepEqual(responder.receive('172.18.100.3', initiation!, AGENT, NOW), []);
  assert.equal(responder.counts.unknownAddress, 1);

  const silent = setup(false);
  const [init2] = networkOf(silent.agent.encapsulate(silent.peer, probe('veil-probe a 1 2'), NOW));
  assert.deepEqual(silent.responder.receive(SYNTH, init2!, AGENT, NOW), []);
  assert.deepEqual(silent.responder.counts.bySource[AGENT.address], { initiations: 1, transport: 0 });
  assert.equal(silent.responder.counts.handshakeResponses, 0);
});

test('only a health probe gets an ack', () => {
  assert.equal(probeAck(udp('10.0.0.1', '10.100.0.1', 5000, 53, 'veil-probe a 1 2'), 'n'), null, 'another port');
  assert.equal(probeAck(udp('10.0.0.1', '10.100.0.1', HEALTH_PORT, HEALTH_PORT, 'veil-ack a 1 2'), 'n'), null, 'an ack is not answered');
  assert.equal(probeAck(udp('10.0.0.1', '10.100.0.1', HEALTH_PORT, HEALTH_PORT, 'veil-probe a 1'), 'n'), null, 'three fields');
  assert.equal(probeAck(new Uint8Array(10), 'n'), null, 'too short');
  assert.throws(() => new WireGuardResponder([]), /at least one real agent/);
});
