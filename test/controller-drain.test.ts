/**
 * Drain (kernel migration) against in-memory agents: the plan (round-robin,
 * skipped entries, dry run changes nothing), 50 apps moved with ONE batched
 * SWITCH on the source, an app that fails alone rolls back alone, a failed
 * batch falls back to per-app steps, and 1,000 apps complete.
 */
import t from 'tap';
import { AgentRefusedError, type App } from '../src/controller/agent-client.js';
import { drain, planDrain } from '../src/controller/drain.js';
import { readJournal } from '../src/controller/journal.js';
import { mapLimit } from '../src/controller/limit.js';
import { MemoryAgent, failOn } from './lib/memory-agent.js';
import { decideResume } from '../src/controller/resume.js';
import { FAST, FakeAnnounce, stateDir } from './controller-doubles.js';

function hostWith(n: number): { a: MemoryAgent; b: MemoryAgent; c: MemoryAgent; connect: (u: string) => MemoryAgent } {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1' });
  const b = new MemoryAgent('http://b:7000', { v4: '192.0.2.2' });
  const c = new MemoryAgent('http://c:7000', { v4: '192.0.2.3', v6: '2001:db8::3' });
  for (let i = 0; i < n; i++) {
    const name = `app${String(i).padStart(4, '0')}`;
    const app: App = {
      name, address: `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, proto: 'udp', port: 7000, dev: `v${i}`, mac: '02:00:00:00:00:01',
      macSource: 'given', path: { via: 'xdp' }, action: { type: 'local' }, appId: i + 1, generation: i + 1, counters: { local: { packets: '0', bytes: '0' }, forward: { packets: '0', bytes: '0' } },
    };
    a.apps.set(name, app);
  }
  const by: Record<string, MemoryAgent> = { [a.url]: a, [b.url]: b, [c.url]: c };
  return { a, b, c, connect: (u) => by[u] as MemoryAgent };
}

const hook = { kind: 'exec' as const, script: '/bin/true' };
/** The exec spec is journaled; the hook that runs is a double (no process per app in unit tests). */
const fakes = { createAnnounceHook: () => new FakeAnnounce() };

t.test('plan: apps in name order, round-robin over destinations, forwarding entries skipped', async (t) => {
  const { a, b, c } = hostWith(5);
  a.apps.get('app0002')!.action = { type: 'forward', tunnel: '192.0.2.9' };
  const plan = await planDrain(a, [b, c], 'd-{app}-{dev}-{index}');
  t.same(plan.items.map((i) => [i.app, i.to, i.destDev]), [
    ['app0000', b.url, 'd-app0000-v0-0'],
    ['app0001', c.url, 'd-app0001-v1-1'],
    ['app0003', b.url, 'd-app0003-v3-0'],
    ['app0004', c.url, 'd-app0004-v4-1'],
  ]);
  t.same(plan.skipped, [{ app: 'app0002', reason: 'already forwards to 192.0.2.9' }]);
  t.equal(a.calls.filter((x) => x.method !== 'listApps').length, 0, 'planning only reads');
  await t.rejects(planDrain(a, [a], '{dev}'), /is the host being drained/);
  await t.rejects(planDrain(a, [b], '{nope}'), /unknown placeholder \{nope\}/);
});

t.test('drain of 50 apps over two destinations: all move, one batched switch, source has no LOCAL entry left', async (t) => {
  const { a, b, c, connect } = hostWith(50);
  const dir = stateDir(t);
  const r = await drain({ source: a.url, destinations: [b.url, c.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, ...fakes, timing: FAST, stateDir: dir, concurrency: 8, connect });
  t.equal(r.outcome, 'done');
  t.equal(r.apps.length, 50);
  t.ok(r.apps.every((x) => x.outcome === 'done'));
  t.same(r.leftLocal, []);
  t.equal(a.apps.size, 0, 'source is empty');
  t.equal(b.apps.size + c.apps.size, 50);
  t.equal(b.deliveries.size + c.deliveries.size, 0);
  t.equal(r.switchMode, 'batch');
  const switches = a.calls.filter((x) => x.method === 'batch' && (x.body as { op: string }[]).some((o) => o.op === 'set-action'));
  t.equal(switches.length, 1, 'exactly one batch switched everything');
  t.equal((switches[0]?.body as unknown[]).length, 50);
  t.equal(a.calls.filter((x) => x.method === 'setAction').length, 0, 'no per-app switch');
  t.type(r.batches.SWITCH, 'number');
  for (const x of r.apps) t.same(Object.keys(x.phases), ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'DRAIN_FLOWS', 'STOP', 'ANNOUNCE'], `${x.app} timed per phase`);
  // The journal lets --resume treat any app as an ordinary migration.
  const recs = readJournal(`${dir}/journal/${r.journal}.jsonl`);
  t.same(decideResume(recs, 'app0007'), { kind: 'nothing', outcome: 'done' });
});

t.test('an app the destination refuses rolls back alone; the others move', async (t) => {
  const { a, b, connect } = hostWith(6);
  const dir = stateDir(t);
  // A destination refusing one delivery makes the batched DELIVER fail → per-app fallback.
  b.fault = (call) => {
    const ops = call.method === 'batch' ? (call.body as { op: string; name: string }[]) : [];
    if ((call.method === 'putDelivery' && call.name === 'app0003') || ops.some((o) => o.op === 'put-delivery' && o.name === 'app0003')) {
      throw new AgentRefusedError(b.url, call.method, 409, 'app0003 conflicts', undefined);
    }
  };
  const r = await drain({ source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, ...fakes, timing: FAST, stateDir: dir, concurrency: 4, connect });
  t.equal(r.outcome, 'partial');
  const bad = r.apps.find((x) => x.app === 'app0003');
  t.equal(bad?.outcome, 'rolled-back');
  t.same(a.apps.get('app0003')?.action, { type: 'local' }, 'it stays LOCAL on the source');
  t.same(r.leftLocal, ['app0003']);
  t.equal(r.apps.filter((x) => x.outcome === 'done').length, 5);
  t.equal(r.switchMode, 'batch');
});

t.test('a refused batched SWITCH falls back to per-app switches with the same result', async (t) => {
  const { a, b, connect } = hostWith(4);
  const dir = stateDir(t);
  failOn(a, 'batch', 'failed', { times: 1 });
  // The first batch on the source is PREPARE-free (PREPARE is a listing), so the first source batch is SWITCH.
  const r = await drain({ source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, ...fakes, timing: FAST, stateDir: dir, concurrency: 4, connect });
  t.equal(r.switchMode, 'per-app');
  t.equal(r.outcome, 'done');
  t.equal(a.apps.size, 0);
});

t.test('drain with no announce hook leaves only FORWARD entries on the source', async (t) => {
  const { a, b, connect } = hostWith(3);
  const r = await drain({ source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST, stateDir: stateDir(t), concurrency: 4, connect });
  t.equal(r.outcome, 'done');
  t.same(r.leftLocal, []);
  t.ok([...a.apps.values()].every((x) => x.action.type === 'forward'));
});

t.test('drain of 1,000 apps (driver none) completes, batched, in bounded time', async (t) => {
  const { a, b, c, connect } = hostWith(1000);
  const t0 = performance.now();
  const r = await drain({ source: a.url, destinations: [b.url, c.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, ...fakes, timing: { ...FAST, announceGraceMs: 0 }, stateDir: stateDir(t), concurrency: 64, connect });
  const ms = performance.now() - t0;
  t.equal(r.outcome, 'done');
  t.equal(a.apps.size, 0);
  t.equal(b.apps.size + c.apps.size, 1000);
  t.ok(ms < 10_000, `took ${ms.toFixed(0)} ms`);
  t.equal(a.calls.filter((x) => x.method === 'batch').length, 2, 'source: one SWITCH batch + one delete batch');
});

t.test('STOP grace periods run together from the one SWITCH, not one after another', async (t) => {
  // 120 apps stopped 4 at a time with a 300 ms grace: one after another that is 30 graces (9 s).
  const { a, b, connect } = hostWith(120);
  const grace = 300;
  const dir = stateDir(t);
  const r = await drain({ source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: hook, ...fakes, timing: { ...FAST, stopGraceMs: grace, announceGraceMs: 0 }, stateDir: dir, concurrency: 4, connect });
  t.equal(r.outcome, 'done');
  const stops = r.apps.map((x) => x.phases.STOP ?? NaN);
  // Every app was stopped at least one grace after the SWITCH (journal times, ms resolution).
  const doneAt = (state: string): Map<string, number> =>
    new Map(
      readJournal(`${dir}/journal/${r.journal}.jsonl`)
        .filter((x) => x.type === 'done' && (x as { state?: string }).state === state)
        .map((x) => [(x as { app: string }).app, Date.parse((x as { at: string }).at)]),
    );
  const switched = doneAt('SWITCH');
  const stopped = doneAt('STOP');
  const shortest = Math.min(...[...stopped].map(([app, at]) => at - (switched.get(app) ?? Infinity)));
  t.ok(shortest >= grace - 1, `every app stopped ≥ ${grace} ms after its SWITCH (shortest ${shortest} ms)`);
  const totalStop = stops.reduce((x, y) => x + y, 0);
  t.ok(totalStop < 4 * grace * 2, `STOP phases sum to ${totalStop.toFixed(0)} ms: about one grace per concurrent slot, not one per app`);
  t.ok(r.totalMs < 10 * grace, `whole drain ${r.totalMs} ms < ${10 * grace} ms`);
});

t.test('mapLimit never runs more than the limit at once and keeps order', async (t) => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([...Array(30).keys()], 4, async (i) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 2));
    running--;
    return i * 2;
  });
  t.equal(peak, 4);
  t.same(out, [...Array(30).keys()].map((i) => i * 2));
});
