// A PacketBatch's arrays are handed to the addon once (batchBind): the layout is checked there, and
// the batch I/O calls take the handle, refusing anything else and any count beyond the batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch } from '../../src/datapath/packet-batch.js';
import { UdpSocket } from '../../src/datapath/udp-socket.js';
import { native, type NativeBatch, TUN_STAT_COUNT, UDP_STAT_COUNT } from '../../src/native/addon.js';

test('batchBind checks the layout once; batch I/O takes only a batch handle and counts within it', () => {
  const n = native();
  const offs = new Int32Array(4), lens = new Int32Array(4), addrs = new Uint8Array(64), fams = new Uint8Array(4), ports = new Uint16Array(4);
  assert.throws(() => n.batchBind(Buffer.alloc(4000), 2048, 0, 0, 2, offs, lens, addrs, fams, ports), /batchBind layout does not fit/, 'slots beyond the buffer');
  assert.throws(() => n.batchBind(Buffer.alloc(4096), 2048, 2000, 48, 2, offs, lens, addrs, fams, ports), /batchBind layout does not fit/, 'no room between headroom and tailroom');
  assert.throws(() => n.batchBind(Buffer.alloc(4096), 2048, 0, 0, 2, offs, lens, new Uint8Array(0), fams, ports), /batchBind layout does not fit/, 'no address slots');
  assert.throws(() => n.batchBind(Buffer.alloc(4096), 2048, 0, 0, 2, offs, lens, addrs, fams, new Uint8Array(4) as unknown as Uint16Array), /ports must be a Uint16Array/);

  const b = new PacketBatch({ capacity: 4, slotSize: 2048, slots: 2 });
  const sock = UdpSocket.open('127.0.0.1', 0);
  try {
    const stats = new Float64Array(UDP_STAT_COUNT);
    assert.throws(() => n.udpSendBatch(sock.fd, b.handle, 5, 0, stats), /udpSendBatch n exceeds/, 'more packets than descriptors');
    assert.throws(() => n.udpRecvBatch(sock.fd, b.handle, 3, 4, stats), /udpRecvBatch layout/, 'more datagrams than slots');
    assert.throws(() => n.tunReadBatch(sock.fd, b.handle, 3, 0, null, new Float64Array(TUN_STAT_COUNT)), /tunReadBatch layout/, 'more reads than slots');
    for (const notHandle of [b.buf, {}, 7, null]) {
      assert.throws(() => n.udpSendBatch(sock.fd, notHandle as unknown as NativeBatch, 0, 0, stats), /batch must be a batch handle/);
    }
    assert.equal(sock.recvBatch(b), 0, 'an empty queue through the handle');
    assert.equal(sock.sendBatch(b, 0), 0);
  } finally {
    sock.close();
  }
});
