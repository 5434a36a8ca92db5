/**
 * The migration state machine walking its table against in-memory agents
 * (test/lib/memory-agent.ts: they fail where a test tells them to): the
 * table and the commit point it implies, the happy path and its order of map
 * changes, rollback from a failure in every step before STOP, roll-forward
 * (retry, then needs-attention) after SWITCH, and the journal it leaves.
 */
import t from 'tap';
import type { AnnounceHook } from '../src/controller/announce.js';
import { Journal, acquireLock, newJournalId, readJournal } from '../src/controller/journal.js';
import { COMMITTING_STEP, COMMIT_POINT, Migration, STEPS, TABLE, describeTable, type MigrationEvent, type Step } from '../src/controller/machine.js';
import { failOn } from './lib/memory-agent.js';
import { ControllerMetrics } from '../src/controller/metrics.js';
import { migrate } from '../src/controller/migrate.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir, type Env, type HasTeardown } from './controller-doubles.js';

async function run(t: HasTeardown, setup?: (env: Env) => void, announce = new FakeAnnounce()) {
  const env = { ...agents(), driver: new FakeDriver() };
  setup?.(env);
  const dir = stateDir(t);
  const events: MigrationEvent[] = [];
  const metrics = new ControllerMetrics();
  const result = await migrateWith(env, dir, events, metrics, announce);
  return { ...env, result, events, dir, metrics, announce };
}


/** migrate() with injected driver and hook objects (the CLI builds them from specs). */
async function migrateWith(
  env: Env,
  dir: string,
  events: MigrationEvent[],
  metrics: ControllerMetrics,
  announce: AnnounceHook,
) {
  const id = newJournalId('x');
  using _l = acquireLock(dir, 'x', id);
  const j = await Journal.create(dir, id);
  await j.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST });
  const plan = { type: 'plan' as const, app: 'x', from: env.a.url, to: env.b.url, toIndex: 0, destDev: 'vx-b' };
  await j.append(plan);
  const m = new Migration({ journalId: id, plan, source: env.a, dest: env.b, driver: env.driver, announce, timing: FAST }, j, (e) => events.push(e), metrics);
  await m.advance();
  await j.close();
  return { ...m.result(), journalPath: j.path };
}

t.test('the table names every step once, in protocol order; the commit point follows from it', async (t) => {
  t.same(STEPS, ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'DRAIN_FLOWS', 'STOP', 'ANNOUNCE'], 'the order of the table is the order of the steps');
  t.same(Object.keys(TABLE), [...STEPS]);
  for (const s of ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH'] as Step[]) t.equal(TABLE[s].onFailure, 'roll-back', `${s} rolls back`);
  for (const s of ['DRAIN_FLOWS', 'STOP', 'ANNOUNCE'] as Step[]) t.equal(TABLE[s].onFailure, 'roll-forward', `${s} rolls forward`);
  t.equal(COMMIT_POINT, 'DRAIN_FLOWS', 'the commit point is the first step that rolls forward');
  t.equal(COMMITTING_STEP, 'SWITCH', 'the step that commits is the last that rolls back');
  t.same(
    [...describeTable().matchAll(/^(\w+) .*\n\s+next (\w+);/gm)].map((m) => [m[1], m[2]]),
    [['PREPARE', 'START'], ['START', 'DELIVER'], ['DELIVER', 'READY'], ['READY', 'SWITCH'], ['SWITCH', 'DRAIN_FLOWS'], ['DRAIN_FLOWS', 'STOP'], ['STOP', 'ANNOUNCE'], ['ANNOUNCE', 'DONE']],
    '--help shows each step with the next one',
  );
});

t.test('a migration moves x to b and leaves y untouched, with the map changes in a lossless order', async (t) => {
  const { a, b, driver, result, events, announce } = await run(t);
  t.equal(result.outcome, 'done');
  t.equal(result.state, 'DONE');
  t.same(Object.keys(result.phases), [...STEPS], 'every phase timed');
  t.notOk(a.apps.has('x'), 'source entry removed after the announce');
  t.same(b.apps.get('x')?.action, { type: 'local' }, 'destination owns x');
  t.equal(b.apps.get('x')?.dev, 'vx-b');
  t.notOk(b.deliveries.has('x'), 'delivery entry removed at the end');
  t.same(a.apps.get('y')?.action, { type: 'local' }, 'y untouched');
  t.notOk(a.calls.some((c) => c.name === 'y'), 'no call ever named y');
  t.same(driver.calls, ['start destination', 'stop source']);
  t.equal(announce.announced.length, 1);
  t.equal(announce.announced[0]?.tunnel, '192.0.2.2');

  // Order across both agents: delivery before switch; destination LOCAL before the source entry goes.
  const bCalls = b.calls.map((c) => `${c.method}`);
  t.ok(bCalls.indexOf('putDelivery') < bCalls.indexOf('putApp'));
  const switchCall = a.calls.find((c) => c.method === 'setAction');
  t.same(switchCall?.body, { type: 'forward', tunnel: '192.0.2.2' }, 'SWITCH is one setAction to the destination tunnel');
  t.equal(a.calls.filter((c) => c.method === 'setAction').length, 1, 'exactly one update flips the source');
  const seq = events.filter((e) => e.type === 'enter').map((e) => (e as { state: string }).state);
  t.same(seq, [...STEPS]);
});

t.test('the journal has enter before done for every step, then end done', async (t) => {
  const { result } = await run(t);
  const recs = readJournal((result as unknown as { journalPath: string }).journalPath);
  t.equal(recs[0]?.type, 'open');
  t.equal(recs[1]?.type, 'plan');
  const steps = recs.slice(2, -1).map((r) => `${r.type} ${(r as { state?: string }).state}`);
  t.same(steps, STEPS.flatMap((s) => [`enter ${s}`, `done ${s}`]));
  t.match(recs[recs.length - 1], { type: 'end', outcome: 'done' });
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i), 'sequence numbers are dense and ordered');
  const prep = recs.find((r) => r.type === 'done' && r.state === 'PREPARE') as { facts?: { original?: { name: string }; tunnel?: string } };
  t.equal(prep.facts?.original?.name, 'x', 'the original entry is journaled for rollback');
  t.equal(prep.facts?.tunnel, '192.0.2.2');
});

/** A failure injected in each step before STOP → rolled back: source LOCAL as it was, nothing left on b. */
const rollbackCases: { step: Step; inject: (env: Env) => void; destStopped: boolean }[] = [
  { step: 'PREPARE', inject: ({ b }) => failOn(b, 'status', 'unreachable'), destStopped: false },
  { step: 'START', inject: ({ driver }) => (driver.fail.start = 1), destStopped: true },
  { step: 'DELIVER', inject: ({ b }) => failOn(b, 'putDelivery', 'failed'), destStopped: true },
  { step: 'READY', inject: ({ driver }) => (driver.neverReady = true), destStopped: true },
  { step: 'SWITCH', inject: ({ a }) => failOn(a, 'setAction', 'refused', { times: 1 }), destStopped: true },
];

for (const c of rollbackCases) {
  t.test(`a failure in ${c.step} rolls back: source LOCAL as it was, no delivery on b, app on b stopped`, async (t) => {
    const { a, b, driver, result, events } = await run(t, c.inject);
    t.equal(result.outcome, 'rolled-back');
    t.equal(result.state, 'ROLLED_BACK');
    t.match(result.error, new RegExp(`^${c.step}: `));
    const x = a.apps.get('x');
    t.same(x?.action, { type: 'local' });
    t.equal(x?.dev, 'vx-a');
    t.notOk(b.deliveries.has('x'));
    t.notOk(b.apps.has('x'));
    t.equal(driver.calls.includes('stop destination'), c.destStopped);
    t.notOk(driver.calls.includes('stop source'), 'the source app is never stopped');
    t.ok(events.some((e) => e.type === 'rollback'));
    if (c.step === 'SWITCH') {
      // The SWITCH undo comes first: source LOCAL again before the delivery entry goes.
      const order = events.filter((e) => e.type === 'undo').map((e) => (e as { state: string }).state);
      t.same(order, ['SWITCH', 'DELIVER', 'START']);
    }
  });
}

t.test('destination unreachable → rolled back, source LOCAL', async (t) => {
  const { a, result } = await run(t, ({ b }) => (b.down = true));
  t.equal(result.outcome, 'rolled-back');
  t.match(result.error, /unreachable/);
  t.match(result.error, /http:\/\/b:7000/, 'the error names the agent');
  t.same(a.apps.get('x')?.action, { type: 'local' });
});

t.test('SWITCH applied but its answer lost → rollback still restores LOCAL', async (t) => {
  const { a, result } = await run(t, ({ a }) => failOn(a, 'setAction', 'lost-answer', { times: 1 }));
  t.equal(result.outcome, 'rolled-back');
  t.same(a.apps.get('x')?.action, { type: 'local' });
});

t.test('a failure after SWITCH rolls forward: retried, and completes', async (t) => {
  const { a, b, driver, result, events } = await run(t, ({ driver }) => (driver.fail.stop = 1));
  t.equal(result.outcome, 'done');
  t.ok(events.some((e) => e.type === 'retry' && e.state === 'STOP'));
  t.equal(driver.calls.filter((c) => c === 'stop source').length, 2);
  t.notOk(a.apps.has('x'));
  t.same(b.apps.get('x')?.action, { type: 'local' });
});

t.test('a failure after SWITCH that persists → FAILED (needs attention), never rolled back', async (t) => {
  const { a, result } = await run(t, ({ b }) => failOn(b, 'putApp', 'failed'));
  t.equal(result.outcome, 'failed');
  t.equal(result.state, 'FAILED');
  t.match(result.error, /^ANNOUNCE: /);
  t.same(a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.2' }, 'source keeps forwarding to the destination');
});

t.test('a rollback whose undo fails → FAILED (needs attention) with both errors', async (t) => {
  const { result } = await run(t, ({ driver, b }) => {
    driver.neverReady = true;
    failOn(b, 'deleteDelivery', 'unreachable');
  });
  t.equal(result.outcome, 'failed');
  t.match(result.error, /READY: .*rollback of DELIVER failed/);
});

t.test('with no announce hook the source keeps forwarding and b keeps its delivery entry', async (t) => {
  const { a, b, result } = await run(t, undefined, new FakeAnnounce(false));
  t.equal(result.outcome, 'done');
  t.same(a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.2' });
  t.ok(b.deliveries.has('x'));
  t.ok(result.notes.some((n) => /keeps forwarding/.test(n)));
});

t.test('PREPARE refuses an app that is not LOCAL, and one that does not exist', async (t) => {
  const r1 = await run(t, ({ a }) => (a.apps.get('x')!.action = { type: 'forward', tunnel: '192.0.2.9' }));
  t.equal(r1.result.outcome, 'rolled-back');
  t.match(r1.result.error, /not LOCAL/);
  t.same(r1.a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.9' }, 'left as it was');
  const r2 = await run(t, ({ a }) => a.apps.delete('x'));
  t.match(r2.result.error, /has no app x/);
});

t.test('each phase is timed over its own work', async (t) => {
  const { result } = await run(t, ({ driver }) => {
    const start = driver.start.bind(driver);
    driver.start = async (a, h) => {
      await new Promise((r) => setTimeout(r, 40));
      return start(a, h);
    };
  });
  t.ok((result.phases.START ?? 0) >= 39, `START took ${result.phases.START} ms (the driver took 40)`);
  t.ok((result.phases.DELIVER ?? Infinity) < 39, `DELIVER took ${result.phases.DELIVER} ms`);
});

t.test('metrics count outcomes and time phases', async (t) => {
  const { metrics } = await run(t);
  const text = await metrics.text();
  t.match(text, /routeshift_migrations_total\{outcome="done"\} 1/);
  t.match(text, /routeshift_migration_phase_seconds_count\{phase="SWITCH"\} 1/);
});

t.test('migrate() refuses the same agent as source and destination before writing anything', async (t) => {
  const dir = stateDir(t);
  const { connect } = agents();
  await t.rejects(
    migrate({ app: 'x', from: 'http://a:7000', to: 'http://a:7000', destDev: 'v', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST, stateDir: dir, connect }),
    /same agent/,
  );
});

t.test('migrate() end to end with specs (driver none, no hook)', async (t) => {
  const dir = stateDir(t);
  const { a, b, connect } = agents();
  const r = await migrate({ app: 'x', from: a.url, to: b.url, destDev: 'vx-b', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST, stateDir: dir, connect });
  t.equal(r.outcome, 'done');
  t.same(a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.2' });
});
