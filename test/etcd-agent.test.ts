/**
 * Fleet mode, first slice: real agents (`routeshift agent --etcd … --host-id …`)
 * on hosts A and B of a namespace topology take their entries from a real
 * etcd (src/testbed/etcd.ts). Shown here: create, update and delete in etcd
 * reach the API and the pinned maps; each agent sees only its host's keys;
 * a bad entry is reported and does not hold back the others; the API's
 * entry writes are refused; etcd killed and restarted while a stream
 * crosses A→B (0 lost, later changes applied); an agent restarted while
 * etcd holds changes for it converges; a watch whose revision was compacted
 * resyncs in full; the status key expires with its agent.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../src/etcd/client.js';
import { KeyLayout } from '../src/etcd/layout.js';
import type { EtcdStatusReport } from '../src/agent/etcd-source.js';
import { readPinnedMaps } from '../src/cli/maps.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { EtcdServer } from '../src/testbed/etcd.js';
import { MIGRATION_APPS, Topology } from '../src/testbed/topology.js';
import { runUdpSender, startUdpReceiver } from '../src/testbed/traffic.js';

const STATUS_TTL = 4;
const etcd = await EtcdServer.start();
const topo = Topology.create({ apps: MIGRATION_APPS, ipv6: false });
const dir = mkdtempSync(join(tmpdir(), 'rs-etcd-agent-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
const pin = (host: string): string => `/sys/fs/bpf/${topo.prefix}-${host}`;
const agents = new Map<string, AgentProcess>();
t.teardown(async () => {
  for (const a of agents.values()) {
    try {
      if (a.pid > 0 && a.child.exitCode === null && a.child.signalCode === null) process.kill(a.pid, 'SIGCONT'); // in case a failure left it stopped
    } catch {
      /* gone */
    }
    await a.stop();
  }
  if (!t.passing()) {
    for (const h of ['A', 'B']) {
      try {
        t.comment(`agent ${h} log (tail):\n${readFileSync(join(dir, `agent-${h}.log`), 'utf8').split('\n').filter((l) => l.includes('"component":"etcd"')).slice(-15).join('\n')}`);
      } catch {
        /* no log */
      }
    }
  }
  topo.destroy();
  for (const h of ['A', 'B']) rmSync(pin(h), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  await etcd.destroy();
});

const kv = new EtcdClient(etcd.url, { timeoutMs: 5_000 });
const layout = new KeyLayout();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startAgent(host: string): Promise<AgentProcess> {
  const a = await AgentProcess.start({
    netns: topo.host(host).ns.name,
    pinDir: pin(host),
    tokenFile,
    logFile: join(dir, `agent-${host}.log`),
    args: ['--etcd', etcd.socketUrl, '--host-id', host, '--etcd-status-ttl', String(STATUS_TTL)],
  });
  agents.set(host, a);
  return a;
}

/** Poll until `check` returns a value (not undefined), or fail naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(50);
  }
}

interface EntryRow {
  name: string;
  address: string;
  dev: string;
  action?: { type: string; tunnel?: string };
}
async function apiApps(a: AgentProcess): Promise<Map<string, EntryRow>> {
  const r = (await a.request('GET', '/v1/apps')).json as { apps: EntryRow[] };
  return new Map(r.apps.map((x) => [x.name, x]));
}
async function apiDeliveries(a: AgentProcess): Promise<Map<string, EntryRow>> {
  const r = (await a.request('GET', '/v1/deliveries')).json as { deliveries: EntryRow[] };
  return new Map(r.deliveries.map((x) => [x.name, x]));
}
/** The names and actions in the pinned rs_redirect map, read from bpffs (not through the agent). */
function mapApps(host: string): Map<string, string> {
  const d = readPinnedMaps(pin(host));
  return new Map(d.redirect.filter((r) => r.name !== null).map((r) => [r.name!, r.action === 'forward' ? `forward ${r.tunnel}` : r.action]));
}
function mapDeliveries(host: string): string[] {
  return readPinnedMaps(pin(host)).deliver.map((r) => r.name ?? '?').sort();
}
async function status(host: string): Promise<EtcdStatusReport | undefined> {
  const v = await kv.get(layout.status(host));
  return v ? (JSON.parse(v.value) as EtcdStatusReport) : undefined;
}
/** The agent's status once it reports having applied `revision`. */
const applied = (host: string, revision: number): Promise<EtcdStatusReport> =>
  until(`${host} reports revision ${revision} applied`, async () => {
    const s = await status(host);
    return s && s.appliedRevision >= revision ? s : undefined;
  });
/** Wait until the agent's apps (API) are exactly `names`. */
const appsAre = (a: AgentProcess, names: string[]): Promise<Map<string, EntryRow>> =>
  until(`apps ${names.join(',') || '(none)'}`, async () => {
    const apps = await apiApps(a);
    return [...apps.keys()].sort().join(',') === [...names].sort().join(',') ? apps : undefined;
  });

const xA = topo.app('x', 'A');
const yA = topo.app('y', 'A');
const xB = topo.app('x', 'B');
const tunnelB = topo.host('B').addr4;
const appKey = (name: string): string => layout.entry('A', 'app', name);
/** An app entry spec for a key that needs no MAC resolution (an address with no app behind it). */
const fakeApp = (last: number): string => JSON.stringify({ address: `10.200.0.${last}`, dev: yA.hostDev, mac: `02:00:00:00:aa:${last.toString(16).padStart(2, '0')}` });

let A = await startAgent('A');
const B = await startAgent('B');

t.test('create, update, delete through etcd reach the API and the maps', async (t) => {
  await kv.put(appKey('x'), JSON.stringify({ address: xA.addr4, dev: xA.hostDev }));
  const rev = await kv.put(appKey('y'), JSON.stringify({ address: yA.addr4, dev: yA.hostDev, action: { type: 'local' } }));
  const apps = await appsAre(A, ['x', 'y']);
  t.equal(apps.get('x')!.action!.type, 'local', 'x created, local');
  t.same([...mapApps('A')].sort(), [['x', 'local'], ['y', 'local']], 'both in the pinned rs_redirect map');
  const s = await applied('A', rev);
  t.equal(s.state, 'ok');
  t.same(s.health.entries, { apps: 2, deliveries: 0 }, 'the status key reports the counts');

  await kv.put(appKey('x'), JSON.stringify({ address: xA.addr4, dev: xA.hostDev, action: { type: 'forward', tunnel: tunnelB } }));
  await until('x forwards', async () => ((await apiApps(A)).get('x')?.action?.type === 'forward' ? true : undefined));
  t.equal(mapApps('A').get('x'), `forward ${tunnelB}`, 'the update is in the map');

  await kv.delete(appKey('y'));
  await appsAre(A, ['x']);
  t.same([...mapApps('A').keys()], ['x'], 'the delete is in the map');
});

t.test('each agent sees only its own host\'s keys', async (t) => {
  const rev = await kv.put(layout.entry('B', 'delivery', 'x'), JSON.stringify({ address: xB.addr4, dev: xB.hostDev }));
  await until('B has delivery x', async () => ((await apiDeliveries(B)).has('x') ? true : undefined));
  t.same(mapDeliveries('B'), ['x'], 'in B\'s rs_deliver map');
  t.equal((await apiApps(B)).size, 0, 'B has none of A\'s apps');
  await applied('B', rev);
  t.equal((await apiDeliveries(A)).size, 0, 'A has none of B\'s deliveries');
  t.same(mapDeliveries('A'), [], 'nor in its maps');
});

t.test('a bad entry is reported (status key, metric) and does not hold back the others', async (t) => {
  // One etcd transaction, so the agent gets all three in one watch response (one batch).
  const txn = await kv.txn([], [
    { put: { key: appKey('bad'), value: JSON.stringify({ address: 'not-an-address', dev: yA.hostDev }) } },
    { put: { key: appKey('dup'), value: JSON.stringify({ address: xA.addr4, dev: xA.hostDev }) } }, // x's key: the store refuses it
    { put: { key: appKey('z'), value: fakeApp(20) } },
  ]);
  await appsAre(A, ['x', 'z']);
  const s = await applied('A', txn.revision);
  t.equal(s.state, 'degraded');
  const byName = new Map(s.errors.map((e) => [e.name, e]));
  t.match(byName.get('bad')?.error, /^address: /, `invalid value: ${byName.get('bad')?.error}`);
  t.match(byName.get('dup')?.error, /10\.200\.0\.10/, `refused by the store: ${byName.get('dup')?.error}`);
  t.equal(s.errorCount, 2);
  const metrics = (await A.request('GET', '/metrics')).text;
  t.match(metrics, /^routeshift_etcd_entry_errors\{[^}]*\} 2$/m, 'counted on /metrics');
  t.match(metrics, /^routeshift_etcd_connected\{[^}]*\} 1$/m);

  await kv.delete(appKey('bad'));
  const rev = (await kv.delete(appKey('dup'))).revision;
  const after = await applied('A', rev);
  t.equal(after.state, 'ok', 'deleting them clears the errors');
  t.equal(after.errorCount, 0);
});

t.test('in etcd mode the API refuses entry writes and keeps serving reads', async (t) => {
  const put = await A.request('PUT', '/v1/apps/q', { address: '10.200.0.30', dev: yA.hostDev, mac: '02:00:00:00:aa:30' });
  t.equal(put.status, 409);
  t.match((put.json as { error: string }).error, `this agent takes its entries from etcd at ${etcd.socketUrl}`, (put.json as { error: string }).error);
  t.match((put.json as { error: string }).error, /write them there/);
  t.equal((await A.request('POST', '/v1/batch', { ops: [{ op: 'delete-app', name: 'x' }] })).status, 409, 'batch refused');
  t.equal((await A.request('POST', '/v1/apps/x/action', { type: 'local' })).status, 409, 'set-action refused');
  t.equal((await B.request('DELETE', '/v1/deliveries/x')).status, 409, 'delete refused');
  t.equal((await A.request('GET', '/v1/apps/x')).status, 200, 'reads answer');
  t.equal((await A.request('GET', '/metrics')).status, 200, '/metrics answers');
  t.equal((await A.request('GET', '/healthz', undefined, null)).status, 200, '/healthz answers');
  t.equal((await A.request('PUT', '/v1/apps/q', { address: '10.200.0.30' }, null)).status, 401, 'the token is still checked first');
  t.same([...(await apiApps(A)).keys()].sort(), ['x', 'z'], 'nothing changed');
});

t.test('etcd killed and restarted mid-stream: forwarding goes on, later changes are applied', async (t) => {
  const COUNT = 12_000;
  const rx = await startUdpReceiver(xB.ns, { port: 9000, expect: COUNT, idleMs: 2000, maxMs: 60_000 });
  const sending = runUdpSender(topo.client.ns, { to: xA.addr4, port: 9000, rate: 2_000, count: COUNT, maxMs: 30_000 });
  await until('packets cross A', async () => {
    const x = (await A.request('GET', '/v1/apps/x')).json as { counters: { forward: { packets: string } } };
    return Number(x.counters.forward.packets) > 500 ? true : undefined;
  });
  await etcd.kill();
  const downAt = Date.now();
  await until('A sees etcd gone', async () => (/^routeshift_etcd_connected\{[^}]*\} 0$/m.test((await A.request('GET', '/metrics')).text) ? true : undefined));
  t.equal((await A.request('GET', '/healthz', undefined, null)).status, 200, 'the agent is healthy without etcd');
  await sleep(Math.max(0, 1500 - (Date.now() - downAt)));
  await etcd.restart();
  const rev = await kv.put(appKey('w'), fakeApp(21));
  await appsAre(A, ['w', 'x', 'z']);
  await applied('A', rev);
  t.ok(mapApps('A').has('w'), 'the change made after etcd returned is in the map');
  const sent = await sending;
  const got = await rx.done;
  t.equal(sent.sent, COUNT);
  t.equal(got.lost, 0, `0 of ${COUNT} lost across the etcd outage (${got.unique} received, max gap ${got.maxGapMs.toFixed(1)} ms)`);
});

t.test('an agent restarted while etcd holds changes for it (and is down at its start) converges', async (t) => {
  await A.stop('SIGKILL');
  await kv.put(appKey('v'), fakeApp(22));
  await kv.delete(appKey('w'));
  const rev = await kv.put(appKey("z"), fakeApp(23));
  t.same([...mapApps('A').keys()].sort(), ['w', 'x', 'z'], 'while the agent is down the maps stay as they were');
  await etcd.kill(); // and etcd is down when the agent starts
  A = await startAgent('A');
  t.equal(A.adopted, true, 'the new agent adopted the pinned maps');
  t.same([...(await apiApps(A)).keys()].sort(), ['w', 'x', 'z'], 'it starts and serves without etcd, keeping what the maps hold');
  await sleep(500);
  t.same([...mapApps('A').keys()].sort(), ['w', 'x', 'z'], 'nothing is removed while etcd cannot be read');
  await etcd.restart();
  const s = await applied('A', rev);
  const apps = await appsAre(A, ['v', 'x', 'z']);
  t.equal(apps.get('z')!.address, '10.200.0.23', 'z moved to its new address');
  t.same([...mapApps('A').keys()].sort(), ['v', 'x', 'z']);
  t.equal(s.state, 'ok');
  t.equal(s.fullSyncs, 1);
  t.equal(s.lastFullSync?.reason, 'start');
});

t.test('a watch whose revision was compacted away: full resync converges', async (t) => {
  if (!(A.pid > 0)) throw new Error('agent A has no pid to stop');
  process.kill(A.pid, 'SIGSTOP'); // the agent cannot read its watch while etcd moves on
  try {
    await etcd.kill();
    await etcd.restart();
    await kv.put(appKey('u'), fakeApp(24));
    await kv.delete(appKey('v'));
    const rev = await kv.put(appKey('x'), JSON.stringify({ address: xA.addr4, dev: xA.hostDev }));
    await kv.compact(rev);
  } finally {
    process.kill(A.pid, 'SIGCONT');
  }
  const apps = await appsAre(A, ['u', 'x', 'z']);
  t.equal(apps.get('x')!.action!.type, 'local', 'x back to local');
  t.equal(mapApps('A').get('x'), 'local');
  const s = await until('A resynced after compaction', async () => {
    const r = await status('A');
    return r?.lastFullSync?.reason === 'compacted' ? r : undefined;
  });
  t.equal(s.fullSyncs, 2, 'one full sync at start, one after the compaction');
  t.equal(s.state, 'ok');
});

t.test('the status key expires with its agent (lease)', async (t) => {
  t.ok(await status('B'), 'B reports');
  await B.stop('SIGKILL');
  const killedAt = Date.now();
  await until('B\'s status key gone', async () => ((await status('B')) === undefined ? true : undefined), (STATUS_TTL + 10) * 1000);
  const s = (Date.now() - killedAt) / 1000;
  t.ok(s <= STATUS_TTL + 10, `gone ${s.toFixed(1)} s after the kill (TTL ${STATUS_TTL} s)`);
  t.same(mapDeliveries('B'), ['x'], 'B\'s maps keep their entries');
  t.ok(await status('A'), 'A still reports');
  await A.stop('SIGTERM');
  t.equal(await status('A'), undefined, 'a stopped agent (SIGTERM) withdraws its report at once (lease revoked)');
  t.same([...mapApps('A').keys()].sort(), ['u', 'x', 'z'], 'and leaves its entries in the maps');
});
