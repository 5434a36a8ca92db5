/**
 * The JSON-gateway etcd client (src/etcd/client.ts) against a real etcd
 * (src/testbed/etcd.ts): kv, txn, leases, watch from a revision, the
 * compaction signal, endpoint failover, and errors that name the endpoint.
 */
import t from 'tap';
import { EtcdClient, EtcdUnavailableError, isCompactedError, parseEndpoints, type WatchEvent } from '../src/etcd/client.js';
import { KeyLayout } from '../src/etcd/layout.js';
import { EtcdServer, freePort } from '../src/testbed/etcd.js';

const etcd = await EtcdServer.start();
t.teardown(() => etcd.destroy());
const client = new EtcdClient(etcd.url, { timeoutMs: 3_000 });

t.test('put, range, prefix paging, delete', async (t) => {
  for (let i = 0; i < 10; i++) await client.put(`/t/kv/k${i}`, `v${i} é`);
  await client.put('/t/kv2', 'outside the prefix');
  const all = await client.range('/t/kv/', { prefix: true });
  t.equal(all.kvs.length, 10, 'the prefix holds exactly its 10 keys');
  t.equal(all.kvs[3]!.value, 'v3 é', 'values round-trip as UTF-8');
  const paged = await client.rangeAll('/t/kv/', 3);
  t.same(paged.kvs.map((k) => k.key), all.kvs.map((k) => k.key), 'paged in 3s: the same keys, in order');
  t.equal(paged.revision, all.revision, 'read at one revision');
  t.equal((await client.get('/t/none')), undefined);
  const del = await client.delete('/t/kv/', { prefix: true });
  t.equal(del.deleted, 10);
  t.equal((await client.get('/t/kv2'))?.value, 'outside the prefix', 'a prefix delete stays inside it');
});

t.test('txn: create only if absent', async (t) => {
  const create = (v: string) => client.txn([{ key: '/t/owner', target: 'VERSION', result: 'EQUAL', version: 0 }], [{ put: { key: '/t/owner', value: v } }], [{ range: { key: '/t/owner' } }]);
  const first = await create('a');
  t.equal(first.succeeded, true);
  const second = await create('b');
  t.equal(second.succeeded, false, 'the second is refused');
  t.equal(second.ranges[0]![0]!.value, 'a', 'and reads who holds it');
});

t.test('leases: a key under a revoked lease is gone, keepalive reports 0', async (t) => {
  const lease = await client.leaseGrant(5);
  t.match(lease.id, /^[0-9]+$/);
  t.ok(lease.ttl >= 3, `granted ttl ${lease.ttl}`);
  await client.put('/t/leased', 'x', { lease: lease.id });
  t.ok((await client.leaseKeepAlive(lease.id)) > 0, 'kept alive');
  t.equal((await client.get('/t/leased'))?.lease, lease.id);
  await client.leaseRevoke(lease.id);
  t.equal(await client.get('/t/leased'), undefined, 'revoking the lease deleted its key');
  t.equal(await client.leaseKeepAlive(lease.id), 0, 'keepalive of a dead lease answers TTL 0');
  await client.leaseRevoke(lease.id); // gone already: not an error
});

t.test('watch from a revision; compaction ends it with compact_revision', async (t) => {
  const start = await client.put('/t/w/a', '1');
  await client.put('/t/w/b', '2');
  await client.delete('/t/w/a');
  const seen: WatchEvent[] = [];
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const w = client.watch({ key: '/t/w/', prefix: true, startRevision: start }, (b) => {
    seen.push(...b.events);
    if (seen.length >= 4) resolveAll();
  });
  await w.created;
  await client.put('/t/w/c', '3'); // after the watch started
  await all;
  t.same(seen.map((e) => `${e.type} ${e.kv.key}`), ['put /t/w/a', 'put /t/w/b', 'delete /t/w/a', 'put /t/w/c'], 'history from the revision, then live, in order');
  w.cancel();
  t.equal((await w.ended).reason, 'canceled');

  const now = await client.put('/t/w/d', '4');
  await client.compact(now);
  const late = client.watch({ key: '/t/w/', prefix: true, startRevision: start }, () => undefined);
  const end = await late.ended;
  t.equal(end.reason, 'compacted', 'a watch from before the compaction is told so');
  t.equal(end.reason === 'compacted' ? end.compactRevision : 0, now, 'with the compacted revision');
  const err = await client.range('/t/w/', { prefix: true, revision: start }).catch((e: unknown) => e);
  t.ok(isCompactedError(err), `a range at a compacted revision is recognised (${(err as Error).message})`);
});

t.test('etcd gone: errors name the endpoint, a watch ends, the next endpoint is tried', async (t) => {
  const deadPort = await freePort();
  const dead = `http://127.0.0.1:${deadPort}`;
  const failover = new EtcdClient([dead, etcd.url], { timeoutMs: 2_000 });
  await failover.put('/t/f', 'via the second');
  t.equal(failover.endpoint, etcd.url, 'moved on from the dead endpoint and kept the live one');

  const w = client.watch({ key: '/t/f' }, () => undefined);
  await w.created;
  await etcd.kill();
  const end = await w.ended;
  t.equal(end.reason, 'error', 'the watch ends when etcd dies');
  const err = await client.put('/t/f', 'x').catch((e: unknown) => e);
  t.ok(err instanceof EtcdUnavailableError, 'unary call: unavailable');
  t.match((err as Error).message, new RegExp(`${etcd.url.replace(/[.:/]/g, '\\$&')}: connection refused`), `names the endpoint: ${(err as Error).message}`);
  await etcd.restart();
  t.equal((await client.get('/t/f'))?.value, 'via the second', 'after a restart the data is there and the client works again');
  const local = new EtcdClient(etcd.socketUrl);
  t.equal((await local.get('/t/f'))?.value, 'via the second', `and over its Unix socket (${etcd.socketUrl})`);
});

t.test('bad endpoints and layout input are refused with clear words', async (t) => {
  t.throws(() => parseEndpoints(''), /no endpoint given/);
  t.throws(() => parseEndpoints('127.0.0.1:2379'), /expected http:\/\/, https:\/\/ or unix|not a URL/);
  t.throws(() => parseEndpoints('unix://relative'), /ABSOLUTE/);
  t.throws(() => parseEndpoints('http://h:2379/v3'), /expected no path/);
  t.same(parseEndpoints('http://a:1, http://b:2'), ['http://a:1', 'http://b:2']);
  const layout = new KeyLayout('/rs/v1');
  t.equal(layout.entry('h1', 'app', 'web'), '/rs/v1/hosts/h1/apps/web');
  t.same(layout.read('h1', '/rs/v1/hosts/h1/deliveries/x'), { type: 'entry', kind: 'delivery', name: 'x' });
  t.same(layout.read('h1', '/rs/v1/hosts/h1/status'), { type: 'status' });
  t.throws(() => layout.host('a/b'), /host id/);
  t.throws(() => new KeyLayout('rs'), /absolute/);
});
