/**
 * Migrations against agents that take their entries from etcd (issue 15,
 * item 2, first part): real agents (`--etcd … --host-id A|B`) in the netns
 * testbed, a real etcd (src/testbed/etcd.ts), the real controller with the
 * etcd `AgentApi` (src/controller/etcd-agent.ts: writes to the hosts' keys,
 * reads from the agents' HTTP API at the URL their status keys publish).
 *
 * 1. x A → B under a 20k packets/s UDP stream: 0 lost, 0 duplicated; etcd's
 *    keys, the agents' APIs and the pinned maps all say x is LOCAL on B only.
 * 2. two controllers (own journals) start x B → A at the same moment: one
 *    runs to the end, the other is refused naming the holder (its owner
 *    record in etcd) and leaves no journal; no owner record is left.
 * 3. etcd SIGKILLed right after SWITCH and started again 1.5 s later, x
 *    B → A under the stream: the data plane forwards meanwhile (0 lost), the
 *    controller's steps after SWITCH retry until etcd is back and finish.
 * 4. a drain of B through etcd under the stream (SWITCH one batch): 0 lost.
 * 5. writes: generations are the keys' mod_revisions (412 when moved), the
 *    owner rule, an entry the agent cannot apply (refused and taken back out
 *    of etcd), a batch over etcd's txn limit, a host with no agent (bounded
 *    wait, an error naming it).
 * 6. the CLI: `routeshift migrate x --etcd … --from A --to B` (URLs from
 *    the status keys) is done; `--from` with a bad host id is a usage error;
 *    `drain B=URL --etcd … --dry-run` plans x → A.
 */
import t from 'tap';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readPinnedMaps } from '../src/cli/maps.js';
import type { Op } from '../src/controller/agent-client.js';
import type { Timing } from '../src/controller/journal.js';
import { LeaseRefusedError } from '../src/controller/leases.js';
import type { MigrationResult } from '../src/controller/machine.js';
import { drain } from '../src/controller/drain.js';
import { migrate } from '../src/controller/migrate.js';
import { EtcdAgentClient, etcdAgentId, etcdConnector } from '../src/controller/etcd-agent.js';
import { EtcdClient } from '../src/etcd/client.js';
import { KeyLayout } from '../src/etcd/layout.js';
import { EtcdServer } from '../src/testbed/etcd.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, DEST, SOURCE, XHarness, cliJson, describeStream, runCli, sleep, waitForFile, type Asserts } from './lib/e2e.js';

const PORT = 9300;
const TIMING: Timing = { readyTimeoutMs: 5000, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };
const noteCtx = { log: (): void => undefined };

const etcd = await EtcdServer.start();
t.teardown(() => etcd.destroy());
const bed = await Bed.create(t, { tag: 'rse', apps: MIGRATION_APPS, hostAgentArgs: (host) => ['--etcd', etcd.socketUrl, '--host-id', host, '--etcd-status-ttl', '4'] });
const h = new XHarness(bed, PORT);
const { X, xA, xB } = h;
const kv = new EtcdClient(etcd.url);
const layout = new KeyLayout();
const connect = etcdConnector({ etcd: kv, layout, readers: bed.connect, applyTimeoutMs: 20_000 });
const hostOf = (host: 'A' | 'B') => connect(etcdAgentId(host));

/** The host keys of x in etcd: its app and delivery entry on each host (values parsed). */
async function keysOfX(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const host of ['A', 'B']) {
    for (const kind of ['app', 'delivery'] as const) {
      const v = await kv.get(layout.entry(host, kind, 'x'));
      if (v) out[`${host}/${kind}`] = JSON.parse(v.value);
    }
  }
  return out;
}

/** x LOCAL on `host` only: its keys written through etcd, x running there, the fabric's route to it. */
async function placeX(host: 'A' | 'B'): Promise<void> {
  await h.driver.stop(X, DEST, noteCtx);
  await h.driver.stop(X, SOURCE, noteCtx);
  for (const hh of ['A', 'B'] as const) {
    await hostOf(hh).deleteApp('x');
    await hostOf(hh).deleteDelivery('x');
  }
  bed.topo.announce('x', host);
  const node = host === 'A' ? xA : xB;
  await hostOf(host).putApp('x', { address: node.addr4, dev: node.hostDev, action: { type: 'local' } });
  const p = bed.topo.prefix;
  const driver = bed.driver({ port: PORT, srcNetns: `${p}-{app}${host}` });
  for (const hh of ['A', 'B'] as const) rmSync(h.log(hh), { force: true });
  await driver.start(X, SOURCE, noteCtx);
  await waitForFile(h.log(host), /"ready"/);
}

function migrateX(from: 'A' | 'B', stateDir: string): Promise<MigrationResult> {
  const to = from === 'A' ? 'B' : 'A';
  const p = bed.topo.prefix;
  return migrate({
    app: 'x',
    from: etcdAgentId(from),
    to: etcdAgentId(to),
    destDev: (to === 'A' ? xA : xB).hostDev,
    driver: bed.driverSpec({ port: PORT, srcNetns: `${p}-{app}${from}`, dstNetns: `${p}-{app}${to}` }),
    announce: bed.announceTo(to),
    timing: TIMING,
    stateDir,
    connect,
  });
}

/** The names and actions in a host's pinned rs_redirect map, and its delivery names (bpffs, not the agent). */
function maps(host: string): { apps: Record<string, string>; deliveries: string[] } {
  const d = readPinnedMaps(bed.pinDir(host));
  return {
    apps: Object.fromEntries(d.redirect.filter((r) => r.name !== null).map((r) => [r.name!, r.action])),
    deliveries: d.deliver.map((r) => r.name ?? '?').sort(),
  };
}

async function checkOnlyOn(t: Asserts, host: 'A' | 'B'): Promise<void> {
  {
    const other = host === 'A' ? 'B' : 'A';
    const node = host === 'A' ? xA : xB;
    const keys = await keysOfX();
    t.same(Object.keys(keys), [`${host}/app`], `etcd holds x's app entry on ${host} and nothing else of x (${JSON.stringify(keys)})`);
    t.same({ ...(keys[`${host}/app`] as object), proto: undefined, port: undefined }, { address: node.addr4, dev: node.hostDev, action: { type: 'local' }, proto: undefined, port: undefined }, `…LOCAL on x's veth on ${host}`);
    t.equal(maps(host).apps.x, 'local', `${host}'s pinned map has x LOCAL`);
    t.equal(maps(other).apps.x, undefined, `${other}'s pinned map has no entry for x`);
    t.ok(!maps(host).deliveries.includes('x') && !maps(other).deliveries.includes('x'), 'no delivery for x in either map');
    t.equal((await kv.rangeAll(layout.leases())).kvs.length, 0, 'no owner record left in etcd');
  }
}

const journals = (dir: string): number => (existsSync(join(dir, 'journal')) ? readdirSync(join(dir, 'journal')).filter((f) => f.endsWith('.jsonl')).length : 0);

t.test('x A → B through etcd under a 20k pps stream: 0 lost, 0 duplicated; keys and maps agree', async (t) => {
  await placeX('A');
  const r = await h.stream(() => migrateX('A', join(bed.dir, 'c0')));
  t.equal(r.value.outcome, 'done', `migration done in ${r.value.totalMs} ms (${JSON.stringify(r.value.phases)})${r.value.error ? `: ${r.value.error}` : ''}`);
  t.comment(describeStream(r));
  t.ok((r.x.perApp[0] ?? 0) > 0 && (r.x.perApp[1] ?? 0) > 0, 'both copies served part of the stream');
  t.equal(r.x.lost, 0, 'X: 0 lost over the union of what A and B received');
  t.equal(r.x.duplicated, 0, 'X: 0 duplicated');
  h.checkMoved(t, await h.placement());
  await checkOnlyOn(t, 'B');
  const a = (await kv.get(layout.status('A')))!;
  t.match(JSON.parse(a.value), { url: bed.url('A') }, "A's status key publishes its API URL");
});

t.test('two controllers through etcd at once: one runs, the other is refused naming the holder and changes nothing', async (t) => {
  await placeX('B');
  const dirs = [join(bed.dir, 'c1'), join(bed.dir, 'c2')];
  const r = await h.stream(() => Promise.allSettled([migrateX('B', dirs[0]!), migrateX('B', dirs[1]!)]), { rate: 4000 });
  const done = r.value.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
  const refused = r.value.flatMap((x) => (x.status === 'rejected' ? [x.reason as Error] : []));
  t.equal(done.length, 1, 'one controller ran');
  t.equal(refused.length, 1, 'the other was refused');
  const winner = done[0];
  const loser = refused[0];
  if (winner && loser) {
    t.equal(winner.outcome, 'done', `the one that ran is done${winner.error ? `: ${winner.error}` : ''}`);
    t.ok(loser instanceof LeaseRefusedError, `refused with LeaseRefusedError (${loser.name})`);
    t.match(loser.message, `leased by "${winner.journal}"`, `the refusal names the holder: ${loser.message}`);
    t.match(loser.message, layout.lease('x'), '…and its owner record in etcd');
  }
  t.equal(journals(dirs[0]!) + journals(dirs[1]!), 1, 'the refused run left no journal');
  t.comment(describeStream(r));
  t.equal(r.x.lost, 0, '0 lost');
  t.equal(r.x.duplicated, 0, '0 duplicated');
  await checkOnlyOn(t, 'A');
});

t.test('etcd killed right after SWITCH and restarted 1.5 s later: 0 lost, the migration finishes', async (t) => {
  await placeX('B');
  let outage: Promise<number> | undefined;
  const p = bed.topo.prefix;
  const r = await h.stream(() =>
    migrate({
      app: 'x',
      from: etcdAgentId('B'),
      to: etcdAgentId('A'),
      destDev: xA.hostDev,
      driver: bed.driverSpec({ port: PORT, srcNetns: `${p}-{app}B`, dstNetns: `${p}-{app}A` }),
      announce: bed.announceTo('A'),
      // Steps after SWITCH retry with doubling waits: 8 attempts span ~12 s, well past the outage.
      timing: { ...TIMING, forwardAttempts: 8 },
      stateDir: join(bed.dir, 'c3'),
      connect,
      observe: (e) => {
        if (e.type === 'done' && e.state === 'SWITCH' && !outage) {
          outage = (async () => {
            const at = Date.now();
            await etcd.kill();
            await sleep(1500);
            await etcd.restart();
            return Date.now() - at;
          })();
        }
      },
    }),
  );
  const downMs = await outage;
  t.ok(downMs !== undefined, `etcd was down for ${downMs} ms after SWITCH`);
  t.equal(r.value.outcome, 'done', `the migration finished${r.value.error ? `: ${r.value.error}` : ''} (${JSON.stringify(r.value.phases)})`);
  t.comment(describeStream(r));
  t.equal(r.x.lost, 0, '0 lost while etcd was away');
  t.equal(r.x.duplicated, 0, '0 duplicated');
  await checkOnlyOn(t, 'A');
});

t.test('drain B through etcd under a 20k pps stream: batched SWITCH, 0 lost, B left empty', async (t) => {
  await placeX('B');
  const p = bed.topo.prefix;
  const r = await h.stream(() =>
    drain({
      source: etcdAgentId('B'),
      destinations: [etcdAgentId('A')],
      destDev: '{dev}',
      driver: bed.driverSpec({ port: PORT, srcNetns: `${p}-{app}B`, dstNetns: `${p}-{app}A` }),
      announce: bed.announceTo('A'),
      timing: TIMING,
      stateDir: join(bed.dir, 'c4'),
      concurrency: 4,
      connect,
    }),
  );
  t.equal(r.value.outcome, 'done', `drain done (switch: ${r.value.switchMode}, ${JSON.stringify(r.value.batches)})`);
  t.equal(r.value.switchMode, 'batch', 'SWITCH was one batch (one etcd txn)');
  t.same(r.value.leftLocal, [], 'nothing left LOCAL on B');
  t.comment(describeStream(r));
  t.equal(r.x.lost, 0, '0 lost');
  t.equal(r.x.duplicated, 0, '0 duplicated');
  await checkOnlyOn(t, 'A');
});

t.test('writes through etcd: generations, the owner rule, entries the agent cannot apply, a host with no agent', async (t) => {
  const a = hostOf('A');
  const spec = { address: '10.200.0.77', dev: xA.hostDev, mac: '02:00:00:00:aa:77', action: { type: 'local' as const } };
  const put = await a.putApp('w', spec);
  t.equal(put.generation, (await kv.get(layout.entry('A', 'app', 'w')))!.modRevision, "an entry's generation is its key's mod_revision");
  t.equal((await a.getApp('w'))?.generation, put.generation, 'a read answers the same generation');
  await t.rejects(a.setAction('w', { type: 'forward', tunnel: bed.topo.host('B').addr4 }, { ifGeneration: put.generation - 1 }), { name: 'AgentRefusedError', status: 412 }, 'a write on a moved generation: 412');
  const fwd = await a.setAction('w', { type: 'forward', tunnel: bed.topo.host('B').addr4 }, { ifGeneration: put.generation });
  t.equal(fwd.action.type, 'forward', 'the write on the current generation is applied (the API shows it)');
  t.equal(maps('A').apps.w, 'forward', '…and so do the pinned maps');

  await a.takeLeases({ owner: 'op-1', ttlMs: 10_000, names: ['w'] });
  const leases = await hostOf('B').listLeases();
  t.match(leases, [{ name: 'w', owner: 'op-1' }], `the owner record is listed from any host (${JSON.stringify(leases)})`);
  t.ok((leases[0]?.remainingMs ?? 0) > 0 && (leases[0]?.remainingMs ?? 0) <= 10_000, "…with its etcd lease's remaining time");
  await t.rejects(hostOf('B').takeLeases({ owner: 'op-2', ttlMs: 10_000, names: ['w'] }), { status: 409, message: /leased by "op-1"/ }, 'another owner cannot lease the name, at any host');
  await t.rejects(a.deleteApp('w'), { status: 409, message: /leased by "op-1".*without an owner/ }, 'a write without the owner is refused naming the holder');
  await t.rejects(a.deleteApp('w', { owner: 'op-2' }), { status: 409, message: /leased by "op-1"/ }, "…and so is another owner's");
  t.ok(await kv.get(layout.entry('A', 'app', 'w')), '…and the key is still there');
  t.equal(await a.releaseLeases('op-1', ['w']), 1, 'the owner gives the lease back');
  t.equal(await a.deleteApp('w'), true, 'then the write goes through');
  t.equal(await a.deleteApp('w'), false, 'deleting again: nothing to delete');
  t.equal(maps('A').apps.w, undefined, 'the pinned map has no w');

  const err = await a.putApp('v', { ...spec, address: '10.200.0.78', dev: 'rs-no-such-dev' }).then(() => undefined, (e: Error) => e);
  t.match(err, { name: 'AgentRefusedError', status: 409, message: /host A could not apply app "v".*etcd holds the entries as before again/ }, `an entry the agent cannot apply is a refusal naming it: ${err?.message}`);
  t.equal(await kv.get(layout.entry('A', 'app', 'v')), undefined, '…and its key was taken back out of etcd');

  // A batch: one txn (per 64 names, etcd's txn limit), generations answered, nothing written when one op is refused.
  const dels = Array.from({ length: 100 }, (_, i) => ({ op: 'put-delivery' as const, name: `d${i}`, address: `10.201.0.${i + 1}`, dev: xA.hostDev, mac: '02:00:00:00:bb:01' }));
  const refusedBatch: Op[] = [...dels.slice(0, 3), { op: 'set-action', name: 'nope', action: { type: 'local' } }];
  await t.rejects(a.batch(refusedBatch), { name: 'AgentRefusedError', status: 404 }, 'a batch with an op on a missing app is refused');
  t.equal((await kv.rangeAll(`${layout.host('A')}deliveries/`)).kvs.length, 0, '…and wrote nothing');
  const b = await a.batch(dels, { generations: true });
  t.equal(b.generations?.length, 100, 'one generation per op');
  t.equal(new Set(b.generations).size, 2, '100 ops over etcd\'s 128-op txn limit: two txns');
  t.equal((await a.listDeliveries()).filter((d) => /^d\d+$/.test(d.name)).length, 100, 'the agent holds the 100 deliveries');
  t.equal(maps('A').deliveries.filter((n) => /^d\d+$/.test(n)).length, 100, '…in its pinned map');
  await a.batch(dels.map((d) => ({ op: 'delete-delivery' as const, name: d.name })));
  t.equal(maps('A').deliveries.filter((n) => /^d\d+$/.test(n)).length, 0, 'a batch of deletes empties them again');

  const lonely = connect(etcdAgentId('C'));
  const c = new EtcdAgentClient({ etcd: kv, layout, host: 'C', readers: bed.connect, applyTimeoutMs: 600 });
  t.equal(lonely.url, 'etcd:C', 'a host is named etcd:<host-id>');
  const late = await c.putApp('u', spec).then(() => undefined, (e: Error) => e);
  t.match(late, { name: 'AgentUnreachableError', message: /host C: its agent did not apply etcd revision \d+ within 600 ms \(status key \/routeshift\/v1\/hosts\/C\/status absent/ }, `no agent: a bounded wait and an error naming the host: ${late?.message}`);
  await kv.delete(layout.host('C'), { prefix: true });
});

t.test('the CLI: migrate --etcd with host ids; agent URLs from the status keys', async (t) => {
  await placeX('A');
  const p = bed.topo.prefix;
  const spec = bed.driverSpec({ port: PORT });
  const ann = bed.announceTo('B');
  if (ann.kind !== 'netns-route') throw new Error('expected a netns-route hook');
  const common = [
    '--etcd', etcd.url, '--token-file', bed.tokenFile, '--state-dir', bed.stateDir,
    '--driver', 'netns-process', '--src-netns', `${p}-{app}A`, '--dst-netns', `${p}-{app}B`, '--cmd', spec.command, '--probe', `udp:${PORT}`,
    '--announce', 'netns-route', '--announce-netns', ann.netns, '--announce-via', ann.via.join(','), ...(ann.dev ? ['--announce-dev', ann.dev] : []),
    '--ready-timeout-ms', '5000', '--probe-interval-ms', '50', '--stop-grace-ms', '300', '--announce-grace-ms', '300',
  ];
  const bad = await runCli(['migrate', 'x', '--from', 'no/such', '--to', 'B', '--dest-dev', xB.hostDev, ...common]).done;
  t.equal(bad.code, 2, `a bad host id is bad usage (exit 2): ${bad.stderr.trim()}`);
  const run = await runCli(['migrate', 'x', '--from', 'A', '--to', 'B', '--dest-dev', xB.hostDev, ...common], 90_000).done;
  t.equal(run.code, 0, `exit 0: ${run.stdout.trim().split('\n').pop()} ${run.stderr.trim()}`);
  t.match(run.stdout, 'x now runs on etcd:B', 'the summary names the destination host');
  await sleep(100);
  await h.driver.stop(X, DEST, noteCtx);
  await checkOnlyOn(t, 'B');
  const plan = await runCli(['drain', `B=${bed.url('B')}`, '--etcd', etcd.url, '--token-file', bed.tokenFile, '--to', 'A', '--dry-run', '--json']).done;
  const doc = cliJson<{ kind: string; items: { app: string; to: string }[] }>('drain --dry-run', plan);
  t.same(doc.items.map((i) => [i.app, i.to]), [['x', 'etcd:A']], `drain --etcd --dry-run (B's URL given) plans x → A (exit ${plan.code})`);
});
