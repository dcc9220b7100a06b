// Which failed etcd calls the client makes again: etcd's "revision of auth store is old" (a user or
// role changed between a call's check and its apply; on a 3-member etcd it failed `lab up` once, on
// a fresh machine) is retried as etcd's Go client does, through the same policy every call takes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { faultHandling, isOldAuthRevision } from '../../src/control/etcd/etcd-connection.js';
import { etcd3 } from '../../src/control/etcd/etcd3-lib.js';

/** The error etcd3 makes of etcd's answer (gRPC code 3 and etcd's message). */
const oldRevision = () => new (etcd3().GRPCInvalidArgumentError)('3 INVALID_ARGUMENT: etcdserver: revision of auth store is old');

test('a call refused for an old auth revision is made again and succeeds; another invalid argument is not retried', async () => {
  assert.equal(isOldAuthRevision(oldRevision()), true);
  const policy = faultHandling().global!;
  let calls = 0;
  const answer = await policy.execute(async () => {
    calls++;
    if (calls === 1) throw oldRevision();
    return 'applied';
  });
  assert.equal(answer, 'applied');
  assert.equal(calls, 2);

  let other = 0;
  await assert.rejects(policy.execute(async () => {
    other++;
    throw new (etcd3().GRPCInvalidArgumentError)('3 INVALID_ARGUMENT: etcdserver: key is not provided');
  }), /key is not provided/);
  assert.equal(other, 1);

  let always = 0;
  await assert.rejects(policy.execute(async () => { always++; throw oldRevision(); }), /auth store is old/);
  assert.equal(always, 4, 'the call and at most 3 retries (cockatiel counts retries), then the error as etcd gave it');
});
