/**
 * `--resume` after a controller dies at every point of a migration.
 *
 * decideResume is checked against every prefix of real journals (a
 * successful run, a rolled-back one, failed ones). Then a controller is
 * "killed" inside every step — frozen in the step's first call, before or
 * after that call took effect, with its journal exactly as durable as a
 * SIGKILL would leave it — and resume() must reach a consistent end state:
 * rolled back (source LOCAL, nothing on the destination) or done.
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import type { AgentApi } from '../src/controller/agent-client.js';
import { exitCodeOfError } from '../src/cli/exit.js';
import { Journal, acquireLock, lockPath, newJournalId, readJournal, type PreserveOptions, type Stored } from '../src/controller/journal.js';
import { Migration, STEPS, type Step } from '../src/controller/machine.js';
import { MemoryAgent, failOn } from './lib/memory-agent.js';
import { decideResume, resume, type ResumeDecision } from '../src/controller/resume.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir, type Env, type HasTeardown } from './controller-doubles.js';

const never = new Promise<never>(() => {});

/** Start a migration of x and return its journal path, without waiting for it. */
async function start(t: HasTeardown, env: Env, source: AgentApi = env.a, dest: AgentApi = env.b, preserve?: PreserveOptions) {
  const dir = stateDir(t);
  const id = newJournalId('x');
  const lock = acquireLock(dir, 'x', id);
  const j = await Journal.create(dir, id);
  await j.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'exec', script: '/bin/true' }, timing: FAST, ...(preserve ? { preserve } : {}) });
  const plan = { type: 'plan' as const, app: 'x', from: env.a.url, to: env.b.url, toIndex: 0, destDev: 'vx-b' };
  await j.append(plan);
  const m = new Migration({ journalId: id, plan, source, dest, driver: env.driver, announce: new FakeAnnounce(), timing: FAST, ...(preserve ? { preserve } : {}) }, j);
  const done = m.advance().finally(() => j.close().then(() => lock.release()));
  return { dir, path: j.path, done };
}

t.test('decideResume: every prefix of a successful journal', async (t) => {
  const env = { ...agents(), driver: new FakeDriver() };
  const { path, done } = await start(t, env);
  await done;
  const recs = readJournal(path);
  const expect = (prefix: Stored[]): ResumeDecision['kind'] => {
    const last = prefix[prefix.length - 1] as Stored & { state?: Step };
    if (last.type === 'end') return 'nothing';
    if (last.type === 'plan') return 'roll-back';
    const i = STEPS.indexOf(last.state as Step);
    if (last.type === 'enter' && last.state === 'SWITCH') return 'check-switch';
    if (i < STEPS.indexOf('SWITCH')) return 'roll-back';
    if (last.type === 'done' && last.state === 'ANNOUNCE') return 'finish';
    return 'roll-forward';
  };
  for (let k = 2; k <= recs.length; k++) {
    const prefix = recs.slice(0, k);
    const last = prefix[k - 1] as Stored & { state?: string };
    const d = decideResume(prefix, 'x');
    t.equal(d.kind, expect(prefix), `last line: ${last.type} ${last.state ?? ''}`);
    if (d.kind === 'roll-forward') {
      const from = last.type === 'done' ? STEPS[STEPS.indexOf(last.state as Step) + 1] : last.state;
      t.equal(d.from, from, `  rolls forward from ${from}`);
    }
  }
});

t.test('decideResume: a rolled-back journal, and failed ones in either direction', async (t) => {
  const env = { ...agents(), driver: new FakeDriver() };
  env.driver.neverReady = true;
  const { path, done } = await start(t, env);
  t.equal(await done, 'rolled-back');
  const recs = readJournal(path);
  const rb = recs.findIndex((r) => r.type === 'rollback');
  for (let k = rb + 1; k < recs.length; k++) {
    t.match(decideResume(recs.slice(0, k), 'x'), { kind: 'roll-back', from: 'READY' }, `mid-rollback after ${recs[k - 1]?.type}`);
  }
  t.same(decideResume(recs, 'x'), { kind: 'nothing', outcome: 'rolled-back' });

  const failedBack = [...recs.slice(0, -1), { ...recs[recs.length - 1], outcome: 'failed', direction: 'back' } as Stored];
  t.match(decideResume(failedBack, 'x'), { kind: 'roll-back', from: 'READY' });

  const env2 = { ...agents(), driver: new FakeDriver() };
  failOn(env2.b, 'putApp', 'failed');
  const r2 = await start(t, env2);
  t.equal(await r2.done, 'failed');
  t.same(decideResume(readJournal(r2.path), 'x'), { kind: 'roll-forward', from: 'ANNOUNCE' });
  t.match(decideResume(readJournal(r2.path), 'other-app'), { kind: 'roll-back', from: undefined }, 'an app with no records rolls back nothing');
});

/** Where each step makes its first call, and how to freeze the controller there. */
type Freeze = (env: Env, afterApply: boolean) => { source?: AgentApi; dest?: AgentApi };

function freezeAgent(agent: MemoryAgent, method: keyof AgentApi, afterApply: boolean, nth = 1): AgentApi {
  let calls = 0;
  return new Proxy(agent, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv) as unknown;
      if (prop !== method || typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        if (++calls < nth) return (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (afterApply) await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        return never;
      };
    },
  });
}

/** DRAIN_FLOWS does something only in a run that preserves connections. */
const PRESERVE_RUN: PreserveOptions = { maxDrainMs: 2000, idleMs: 1000, lingerMs: 100, pollMs: 10 };

const freezes: Record<Step, Freeze> = {
  PREPARE: (env, after) => ({ source: freezeAgent(env.a, 'getApp', after) }),
  START: (env, after) => {
    const orig = env.driver.start.bind(env.driver);
    env.driver.start = async (a, h) => {
      if (after) await orig(a, h);
      return never;
    };
    return {};
  },
  DELIVER: (env, after) => ({ dest: freezeAgent(env.b, 'putDelivery', after) }),
  READY: (env) => {
    env.driver.probe = async () => never;
    return {};
  },
  SWITCH: (env, after) => ({ source: freezeAgent(env.a, 'setAction', after) }),
  // run with --preserve-connections (PRESERVE_RUN): the phase's own write is the second set-action
  DRAIN_FLOWS: (env, after) => ({ source: freezeAgent(env.a, 'setAction', after, 2) }),
  STOP: (env, after) => {
    const orig = env.driver.stop.bind(env.driver);
    env.driver.stop = async (a, h) => {
      if (after) await orig(a, h);
      return never;
    };
    return {};
  },
  ANNOUNCE: (env, after) => ({ dest: freezeAgent(env.b, 'putApp', after) }),
};

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const step of STEPS) {
  for (const afterApply of [false, true]) {
    if (step === 'READY' && afterApply) continue; // READY applies nothing
    t.test(`controller killed in ${step} (${afterApply ? 'after' : 'before'} it took effect) → --resume reaches a consistent end`, async (t) => {
      const env = { ...agents(), driver: new FakeDriver() };
      const freeze = freezes[step](env, afterApply);
      const { dir, path } = await start(t, env, freeze.source, freeze.dest, step === 'DRAIN_FLOWS' ? PRESERVE_RUN : undefined);
      await waitFor(() => {
        const recs = readJournal(path);
        const last = recs[recs.length - 1] as Stored & { state?: string };
        return last.type === 'enter' && last.state === step;
      }, `enter ${step}`);
      await new Promise((r) => setTimeout(r, 20));
      // The frozen controller is "dead": its lock is stale. (In-process its PID is alive, so remove it.)
      rmSync(lockPath(dir, 'x'), { force: true });
      // A fresh driver double that knows what is running (the process table outlives the controller).
      const driver = new FakeDriver();
      driver.running = new Set(env.driver.running);
      const r = await resume({
        stateDir: dir,
        app: 'x',
        connect: (u) => (u === env.a.url ? env.a : env.b),
        createDriver: () => driver,
        createAnnounceHook: () => new FakeAnnounce(),
      });
      const forward = ['DRAIN_FLOWS', 'STOP', 'ANNOUNCE'].includes(step) || (step === 'SWITCH' && afterApply);
      if (forward) {
        t.equal(r.outcome, 'done', 'rolled forward to done');
        t.notOk(env.a.apps.has('x'), 'source entry gone');
        t.same(env.b.apps.get('x')?.action, { type: 'local' }, 'destination owns x');
        t.notOk(driver.running.has('source'), 'source app stopped');
        t.ok(driver.running.has('destination'), 'destination app running');
      } else {
        t.equal(r.outcome, 'rolled-back', 'rolled back');
        t.same(env.a.apps.get('x')?.action, { type: 'local' }, 'source LOCAL');
        t.equal(env.a.apps.get('x')?.dev, 'vx-a');
        t.notOk(env.b.deliveries.has('x'), 'no delivery left on the destination');
        t.notOk(env.b.apps.has('x'), 'no app entry on the destination');
        t.notOk(driver.running.has('destination'), 'nothing left running on the destination');
        t.ok(driver.running.has('source'), 'source app never stopped');
      }
      t.same(env.a.apps.get('y')?.action, { type: 'local' }, 'y untouched');
      if (step === 'SWITCH') t.equal(r.decision, 'check-switch', 'SWITCH in doubt is decided by reading the source entry');
      const recs = readJournal(path);
      t.match(recs[recs.length - 1], { type: 'end', outcome: forward ? 'done' : 'rolled-back' });
      // Resuming again changes nothing.
      const again = await resume({ stateDir: dir, app: 'x', connect: (u) => (u === env.a.url ? env.a : env.b), createDriver: () => driver, createAnnounceHook: () => new FakeAnnounce() });
      t.equal(again.decision, 'nothing');
    });
  }
}

t.test('resume with SWITCH in doubt and the source unreachable changes nothing and says so', async (t) => {
  const env = { ...agents(), driver: new FakeDriver() };
  const { dir, path } = await start(t, env, freezes.SWITCH(env, false).source);
  await waitFor(() => readJournal(path).some((r) => r.type === 'enter' && r.state === 'SWITCH'), 'enter SWITCH');
  rmSync(lockPath(dir, 'x'), { force: true });
  env.a.down = true;
  const before = readJournal(path).length;
  const err = await resume({ stateDir: dir, app: 'x', connect: (u) => (u === env.a.url ? env.a : env.b), createDriver: () => env.driver }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { name: 'ResumeUndecidedError', message: /cannot tell whether SWITCH of x was applied.*nothing changed/ });
  t.equal(exitCodeOfError(err), 3, 'the CLI exits 3: needs attention');
  t.equal(readJournal(path).length, before, 'journal unchanged');
});

t.test('resume without a journal is a clear error', async (t) => {
  const dir = stateDir(t);
  await t.rejects(resume({ stateDir: dir, app: 'x', connect: () => new MemoryAgent('http://z', {}) }), /no journal of a migration of x/);
});

t.test('a resumed DRAIN_FLOWS keeps the deadline journaled when the phase started: past it, it forwards at once', async (t) => {
  const env = { ...agents(), driver: new FakeDriver() };
  env.a.flowCounts.set('x', [5]); // old flows that never close
  const preserve: PreserveOptions = { ...PRESERVE_RUN, maxDrainMs: 600, pollMs: 10 };
  // killed at its first flow count, before the source answered it
  const { dir, path } = await start(t, env, freezeAgent(env.a, 'flows', false), env.b, preserve);
  await waitFor(() => readJournal(path).some((r) => r.type === 'enter' && r.state === 'DRAIN_FLOWS'), 'enter DRAIN_FLOWS');
  const entered = readJournal(path).find((r) => r.type === 'enter' && r.state === 'DRAIN_FLOWS') as Stored & { deadline?: string };
  t.type(entered.deadline, 'string', `the phase journaled its deadline (${entered.deadline})`);
  const deadline = Date.parse(entered.deadline ?? '');
  const at = Date.parse(entered.at);
  t.ok(deadline >= at + 600 - 50 && deadline <= at + 600 + 1000, 'its start plus --max-drain');
  // The controller stays dead past the deadline.
  await waitFor(() => Date.now() > deadline + 20, 'the deadline to pass');
  rmSync(lockPath(dir, 'x'), { force: true });
  const driver = new FakeDriver();
  driver.running = new Set(env.driver.running);
  const r = await resume({ stateDir: dir, app: 'x', connect: (u) => (u === env.a.url ? env.a : env.b), createDriver: () => driver, createAnnounceHook: () => new FakeAnnounce() });
  t.equal(r.outcome, 'done', r.error ?? '');
  const polls = env.a.calls.filter((c) => c.method === 'flows').length;
  t.ok(polls <= 1, `the resumed phase read the flows ${polls} time(s), not for another --max-drain (it polls every 10 ms)`);
  t.ok(r.notes.some((n) => /--max-drain 600 ms reached: 5 old flows of x cut/.test(n)), 'the flows still open are counted as cut');
  const reentered = readJournal(path).filter((rec) => rec.type === 'enter' && rec.state === 'DRAIN_FLOWS') as (Stored & { deadline?: string })[];
  t.equal(reentered.length, 2, 'entered again by the resume…');
  t.equal(reentered[1]?.deadline, entered.deadline, '…with the same deadline');
  t.notOk(env.a.apps.has('x'), 'rolled forward: the source entry is gone');
});
