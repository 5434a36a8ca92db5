/**
 * --preserve-connections in the controller, against in-memory agents:
 * SWITCH sets PRESERVE, DRAIN_FLOWS polls the source's old-flow count
 * until it is 0 (progress events as it falls) or until --max-drain (the
 * rest counted as cut), then the entry becomes FORWARD; all journaled.
 * Without the flag the phase does nothing. A drain does the same with one
 * batch per agent.
 */
import t from 'tap';
import { drain } from '../src/controller/drain.js';
import { readJournal, type PreserveOptions } from '../src/controller/journal.js';
import type { MigrationEvent } from '../src/controller/machine.js';
import { migrate } from '../src/controller/migrate.js';
import { ControllerMetrics } from '../src/controller/metrics.js';
import type { App } from '../src/controller/agent-client.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir } from './controller-doubles.js';
import { MemoryAgent } from './lib/memory-agent.js';

const PRESERVE: PreserveOptions = { maxDrainMs: 5000, idleMs: 1000, lingerMs: 100, pollMs: 5 };
const hook = { kind: 'exec' as const, script: '/bin/true' };

function run(env: ReturnType<typeof agents>, dir: string, preserve: PreserveOptions | undefined, events: MigrationEvent[] = [], metrics?: ControllerMetrics) {
  const driver = new FakeDriver();
  return migrate({
    app: 'x',
    from: env.a.url,
    to: env.b.url,
    destDev: 'vx-b',
    driver: { kind: 'none' },
    announce: hook,
    timing: FAST,
    ...(preserve ? { preserve } : {}),
    stateDir: dir,
    connect: env.connect,
    observe: (e) => events.push(e),
    ...(metrics ? { metrics } : {}),
  }).then((r) => ({ r, driver }));
}

/** The actions x's source entry was given, in order. */
function actionsSet(a: MemoryAgent): string[] {
  return a.calls.filter((c) => c.method === 'setAction').map((c) => (c.body as { type: string }).type);
}

t.test('the old-flow count falls to 0: PRESERVE at SWITCH, progress as it falls, FORWARD, then STOP', async (t) => {
  const env = agents();
  env.a.flowCounts.set('x', [3, 3, 2, 1, 0]);
  const dir = stateDir(t);
  const events: MigrationEvent[] = [];
  const { r } = await run(env, dir, PRESERVE, events);
  t.equal(r.outcome, 'done', r.error ?? '');
  t.same(actionsSet(env.a), ['preserve', 'forward'], 'SWITCH preserved, DRAIN_FLOWS forwarded');
  t.same(events.flatMap((e) => (e.type === 'flows' ? [e.active] : [])), [3, 2, 1, 0], 'a progress event each time the count changed');
  t.equal(env.a.calls.filter((c) => c.method === 'flows').length, 5, 'polled until 0');
  t.same(r.flowProgress?.map((p) => p.active), [3, 2, 1, 0], 'and in the result (--json)');
  t.same(r.flows, { atStart: 3, cut: 0, waitedMs: r.flows?.waitedMs }, 'nothing cut');
  const recs = readJournal(`${dir}/journal/${r.journal}.jsonl`);
  const done = recs.find((x) => x.type === 'done' && x.state === 'DRAIN_FLOWS');
  t.match(done, { facts: { flows: { atStart: 3, cut: 0 } } }, 'journaled with the step');
  const order = recs.flatMap((x) => (x.type === 'done' ? [x.state] : []));
  t.same(order, ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'DRAIN_FLOWS', 'STOP', 'ANNOUNCE']);
  const query = env.a.calls.find((c) => c.method === 'flows')?.body;
  t.same(query, { idleMs: PRESERVE.idleMs, lingerMs: PRESERVE.lingerMs }, 'the idle and linger bounds go to the agent');
});

t.test('at --max-drain the phase ends: the flows still open are counted as cut, the entry is FORWARD', async (t) => {
  const env = agents();
  env.a.flowCounts.set('x', [4]);
  const t0 = Date.now();
  const metrics = new ControllerMetrics();
  const { r } = await run(env, stateDir(t), { ...PRESERVE, maxDrainMs: 150 }, [], metrics);
  t.match(await metrics.text(), /routeshift_migration_flows_total\{app="x",kind="cut"\} 4/, 'the cut flows are a controller metric');
  t.equal(r.outcome, 'done');
  t.ok(Date.now() - t0 >= 150, 'waited the whole --max-drain');
  t.match(r.flows, { atStart: 4, cut: 4 });
  t.ok(r.notes.some((n) => /--max-drain 150 ms reached: 4 old flows of x cut/.test(n)), 'the cut is noted');
  t.equal(env.a.apps.has('x'), false, 'announced: the source entry is gone');
});

t.test('an agent that cannot count flows is waited for until --max-drain, then forwarded', async (t) => {
  const env = agents();
  const bare = new Proxy(env.a, { get: (o, p, r) => (p === 'flows' ? undefined : Reflect.get(o, p, r)) });
  const connect = (u: string) => (u === env.a.url ? bare : env.connect(u));
  const { r } = await run({ ...env, connect }, stateDir(t), { ...PRESERVE, maxDrainMs: 100 });
  t.equal(r.outcome, 'done');
  t.ok(r.notes.some((n) => /cannot report flows/.test(n)), 'noted once');
  t.ok(r.notes.some((n) => /without a flow count/.test(n)));
  t.same(actionsSet(env.a), ['preserve', 'forward']);
});

t.test('without the flag DRAIN_FLOWS does nothing: SWITCH forwards, no flow is read', async (t) => {
  const env = agents();
  const { r } = await run(env, stateDir(t), undefined);
  t.equal(r.outcome, 'done');
  t.same(actionsSet(env.a), ['forward']);
  t.equal(env.a.calls.filter((c) => c.method === 'flows').length, 0);
  t.notOk(r.flows);
  t.type(r.phases.DRAIN_FLOWS, 'number', 'the step is still journaled and timed');
});

t.test('a drain with the flag: one PRESERVE batch at SWITCH, polls per app, one FORWARD batch', async (t) => {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1' });
  const b = new MemoryAgent('http://b:7000', { v4: '192.0.2.2' });
  for (let i = 0; i < 3; i++) {
    const app: App = {
      name: `app${i}`, address: `10.200.0.${10 + i}`, proto: 'tcp', port: 80, dev: `v${i}`, mac: '02:00:00:00:00:01', macSource: 'given',
      path: { via: 'xdp' }, action: { type: 'local' }, appId: i + 1, generation: i + 1, counters: { local: { packets: '0', bytes: '0' }, forward: { packets: '0', bytes: '0' } },
    };
    a.apps.set(app.name, app);
  }
  a.flowCounts.set('app0', [2, 1, 0]);
  a.flowCounts.set('app2', [1, 0]);
  const by: Record<string, MemoryAgent> = { [a.url]: a, [b.url]: b };
  const r = await drain({
    source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, createAnnounceHook: () => new FakeAnnounce(),
    timing: FAST, preserve: PRESERVE, stateDir: stateDir(t), concurrency: 4, connect: (u) => by[u] as MemoryAgent,
  });
  t.equal(r.outcome, 'done');
  const batches = a.calls.filter((c) => c.method === 'batch').map((c) => (c.body as { op: string; action?: { type: string } }[]).map((o) => o.action?.type ?? o.op));
  t.same(batches.slice(0, 2), [['preserve', 'preserve', 'preserve'], ['forward', 'forward', 'forward']], 'one batch each');
  t.same(r.apps.map((x) => x.flows?.atStart), [2, 0, 1]);
  t.ok(r.apps.every((x) => x.flows?.cut === 0));
  t.equal(a.apps.size, 0, 'the source is empty');
});
