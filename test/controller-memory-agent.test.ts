/**
 * The in-memory agent the controller tests use (test/lib/memory-agent.ts)
 * obeys the model's rules as the real agent does: bodies, names and batch
 * ops validated by src/model/entry.ts (400 naming the field), 404 for an
 * unknown name, 409 for a key another name holds or another key for a
 * name, 400 for FORWARD to its own tunnel address, batches all or nothing.
 */
import t from 'tap';
import type { Op } from '../src/controller/agent-client.js';
import { keyString } from '../src/model/entry.js';
import { MemoryAgent } from './lib/memory-agent.js';

const refused = (status: number, field?: string) => ({ name: 'AgentRefusedError', message: /./, status, ...(field ? { field } : {}) });

t.test('bodies and names are validated by the model: 400 naming the field', async (t) => {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1' });
  await t.rejects(a.putApp('x', { address: '10.0.0.1', proto: 'any', port: 53, dev: 'v0' }), refused(400, 'port'));
  await t.rejects(a.putApp('x', { address: '10.0.0.999', dev: 'v0' }), refused(400, 'address'));
  await t.rejects(a.putApp('x', { address: '10.0.0.1', dev: 'a-device-name-too-long' }), refused(400, 'dev'));
  await t.rejects(a.putApp('bad name', { address: '10.0.0.1', dev: 'v0' }), refused(400, 'name'));
  await t.rejects(a.putDelivery('x', { address: '10.0.0.1', dev: 'v0', mac: 'zz' }), refused(400, 'mac'));
  t.equal(a.apps.size + a.deliveries.size, 0, 'nothing was stored');
  const app = await a.putApp('x', { address: '10.0.0.1', proto: 17, port: 53, dev: 'v0' });
  t.match(app, { name: 'x', address: '10.0.0.1', proto: 'udp', port: 53, action: { type: 'local' } }, 'stored as the model types it');
  await t.rejects(a.setAction('x', { type: 'forward' } as never), refused(400, 'body.tunnel'));
  await t.rejects(a.setAction('nope', { type: 'local' }), refused(404));
});

t.test('a key held by another name is a 409; writes are idempotent by name', async (t) => {
  const a = new MemoryAgent('http://a:7000', {});
  const first = await a.putApp('x', { address: '10.0.0.1', dev: 'v0' });
  const again = await a.putApp('x', { address: '10.0.0.1', dev: 'v0' });
  t.equal(again.appId, first.appId);
  await t.rejects(a.putApp('y', { address: '10.0.0.1', dev: 'v1' }), refused(409));
});

t.test('a batch is validated first and applied all or nothing', async (t) => {
  const a = new MemoryAgent('http://a:7000', {});
  await a.putApp('x', { address: '10.0.0.1', dev: 'v0' });
  const bad: Op[] = [{ op: 'put-app', name: 'y', address: '10.0.0.2', dev: 'v1' }, { op: 'set-action', name: 'x', action: { type: 'forward', tunnel: 'nope' } }];
  await t.rejects(a.batch(bad), refused(400, 'ops[1].action.tunnel'));
  await t.rejects(a.batch([{ op: 'put-app', name: 'y', address: '10.0.0.2', dev: 'v1' }, { op: 'delete-delivery', name: 'none' }]), refused(404));
  t.same([...a.apps.keys()], ['x'], 'a refused batch changed nothing');
  t.same(await a.batch([{ op: 'put-app', name: 'y', address: '10.0.0.2', dev: 'v1' }, { op: 'delete-app', name: 'x' }]), { applied: 2 });
  t.same([...a.apps.keys()], ['y']);
});

t.test("a name keeps its key: another address for an existing name is a 409, as the agent's", async (t) => {
  const a = new MemoryAgent('http://a:7000', {});
  await a.putApp('x', { address: '10.0.0.1', proto: 'udp', port: 53, dev: 'v0' });
  const key = keyString({ address: '10.0.0.1', proto: 'udp', port: 53 });
  await t.rejects(a.putApp('x', { address: '10.0.0.2', proto: 'udp', port: 53, dev: 'v0' }), {
    ...refused(409),
    agentMessage: `address: app "x" is ${key}; delete it before giving the name another address`,
  });
  await t.rejects(a.putApp('x', { address: '10.0.0.1', dev: 'v0' }), refused(409), 'another protocol/port of the same address is another key too');
  await a.putDelivery('d', { address: '10.0.0.5', dev: 'v0' });
  await t.rejects(a.putDelivery('d', { address: '10.0.0.6', dev: 'v0' }), { ...refused(409), agentMessage: /^address: delivery "d" is \S+; delete it before/ });
  const bad: Op[] = [{ op: 'put-app', name: 'y', address: '10.0.0.3', dev: 'v1' }, { op: 'put-app', name: 'x', address: '10.0.0.4', dev: 'v0' }];
  await t.rejects(a.batch(bad), { ...refused(409), agentMessage: `ops[1].address: app "x" is ${key}; delete it before giving the name another address` }, 'in a batch, naming the op');
  t.same([...a.apps.keys()], ['x'], 'the refused batch changed nothing');
  t.equal(a.apps.get('x')?.address, '10.0.0.1', 'x kept its key');
  t.same(await a.batch([{ op: 'delete-app', name: 'x' }, { op: 'put-app', name: 'x', address: '10.0.0.4', dev: 'v0' }]), { applied: 2 }, 'deleted first, the name may take another key (as the agent stages it)');
  t.equal(a.apps.get('x')?.address, '10.0.0.4');
});

t.test("FORWARD to the agent's own tunnel address is a 400 naming action.tunnel, on set-action and put-app", async (t) => {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1', v6: 'fd00:1::1' });
  const x = await a.putApp('x', { address: '10.0.0.1', dev: 'v0' });
  const own = "192.0.2.1 is this host's own tunnel address: forward to another host's";
  await t.rejects(a.setAction('x', { type: 'forward', tunnel: '192.0.2.1' }), { ...refused(400, 'action.tunnel'), agentMessage: own });
  await t.rejects(a.setAction('x', { type: 'preserve', tunnel: 'fd00:1::1' }), refused(400, 'action.tunnel'), 'PRESERVE too, and the IPv6 tunnel address');
  await t.rejects(a.putApp('y', { address: '10.0.0.2', dev: 'v0', action: { type: 'forward', tunnel: '192.0.2.1' } }), refused(400, 'action.tunnel'));
  await t.rejects(a.batch([{ op: 'set-action', name: 'x', action: { type: 'local' } }, { op: 'set-action', name: 'x', action: { type: 'forward', tunnel: '192.0.2.1' } }]), refused(400, 'ops[1].action.tunnel'));
  t.match(a.apps.get('x'), { action: { type: 'local' }, generation: x.generation }, 'x is as it was');
  t.notOk(a.apps.has('y'), 'y was not stored');
  t.match(await a.setAction('x', { type: 'forward', tunnel: '192.0.2.2' }), { action: { type: 'forward', tunnel: '192.0.2.2' } }, "another host's tunnel address is taken");
});
