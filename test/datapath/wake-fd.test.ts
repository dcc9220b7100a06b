// The datapath worker's wake-up eventfd (native/wake-fd.c): a signal makes it readable to the
// worker's poll, a drain answers how many signals came and makes it quiet again, and a signal
// from another thread ends a poll of another thread on it (as the host's request wakes the worker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { check, native, waitAnyReadable } from '../../src/native/addon.js';

test('wake fd: signals make it readable, a drain counts them and quiets it', () => {
  const n = native();
  const fd = check(n.wakeFdOpen(), 'wakeFdOpen');
  try {
    const fds = Int32Array.of(fd);
    assert.equal(waitAnyReadable(fds, 1, 0), 0, 'quiet when new');
    assert.equal(n.wakeFdDrain(fd), 0, 'a drain of a quiet fd answers 0 (no block)');
    assert.equal(n.wakeFdSignal(fd), 0);
    assert.equal(n.wakeFdSignal(fd), 0);
    assert.equal(waitAnyReadable(fds, 1, 0), 1, 'readable once signalled');
    assert.equal(n.wakeFdDrain(fd), 2, 'both signals counted');
    assert.equal(waitAnyReadable(fds, 1, 0), 0, 'quiet after the drain');
  } finally {
    n.close(fd);
  }
});

test('wake fd: a signal from the main thread ends a worker thread\'s 60 s poll on it', async () => {
  const n = native();
  const fd = check(n.wakeFdOpen(), 'wakeFdOpen');
  const addon = new URL('../../src/native/addon.js', import.meta.url).href;
  // The worker blocks in poll on the fd for up to 60 s and answers what woke it.
  const w = new Worker(`import('${addon}').then(({ native, waitAnyReadable }) => {
      const { parentPort, workerData } = require('node:worker_threads');
      parentPort.postMessage('waiting');
      const ready = waitAnyReadable(Int32Array.of(workerData), 1, 60000);
      parentPort.postMessage({ ready, drained: native().wakeFdDrain(workerData) });
    });`, { eval: true, workerData: fd });
  try {
    const answer = new Promise<{ ready: number; drained: number }>((resolve, reject) => {
      w.on('message', (m) => { if (m !== 'waiting') resolve(m as { ready: number; drained: number }); else n.wakeFdSignal(fd); });
      w.on('error', reject);
    });
    assert.deepEqual(await answer, { ready: 1, drained: 1 });
  } finally {
    await w.terminate();
    n.close(fd);
  }
});
