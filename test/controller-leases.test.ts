/**
 * The controller's side of leases and generations, against in-memory
 * agents (which hold leases with the agent's own LeaseTable): two runs of
 * one app, one refused before it changed anything; a run whose lease is
 * taken away stops and its undo is refused by the new owner; `--resume`
 * holds the journal's leases as its own; a rollback undoes only what its
 * run wrote (the generations), and so do ANNOUNCE's removals; a drain
 * leases all its apps in one request per agent.
 */
import t from 'tap';
import { exitCodeOfError } from '../src/cli/exit.js';
import { readJournal } from '../src/controller/journal.js';
import { LeaseRefusedError } from '../src/controller/leases.js';
import { migrate } from '../src/controller/migrate.js';
import { drain } from '../src/controller/drain.js';
import { resume } from '../src/controller/resume.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir } from './controller-doubles.js';
import { MemoryAgent, failOn } from './lib/memory-agent.js';
import type { App } from '../src/controller/agent-client.js';
import type { Announcement } from '../src/controller/announce.js';
import type { Timing } from '../src/controller/journal.js';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const SLOW_READY: Timing = { ...FAST, readyTimeoutMs: 5000 };

/** Wait (bounded) until the run is in READY: it asked `agent` for a probe (its lease there was taken before). */
async function inReady(agent: MemoryAgent): Promise<void> {
  for (let i = 0; i < 500 && !agent.calls.some((c) => c.method === 'probe'); i++) await sleep(10);
}

/** migrate x from a to b with `--driver none --probe udp:9`: READY asks b's probe (MemoryAgent.probeAnswers). */
function options(env: ReturnType<typeof agents>, dir: string, timing: Timing = FAST) {
  return {
    app: 'x', from: env.a.url, to: env.b.url, destDev: 'vx-b',
    driver: { kind: 'none' as const, probe: { proto: 'udp' as const, port: 9 } }, announce: { kind: 'none' as const }, timing, stateDir: dir, connect: env.connect,
  };
}

function journalOf(dir: string): string {
  return join(dir, 'journal', readdirSync(join(dir, 'journal'))[0] as string);
}

t.test('two runs of one app with different state directories: one runs, the other is refused naming it, having changed nothing', async (t) => {
  const env = agents();
  const dirs = [stateDir(t), stateDir(t)];
  const both = await Promise.allSettled(dirs.map((d) => migrate(options(env, d))));
  const ran = both.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const refused = both.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  t.equal(ran.length, 1, 'one ran');
  t.equal(refused.length, 1, 'one was refused');
  const err = refused[0] as Error;
  t.ok(err instanceof LeaseRefusedError, err?.message);
  t.equal(ran[0]?.outcome, 'done');
  t.match(err.message, new RegExp(`refused before anything was changed: another migration owns x at agent http://a:7000: names\\[0\\]: "x" is leased by "${ran[0]?.journal}"`));
  t.equal(exitCodeOfError(err), 1, 'the CLI exits 1: failed, nothing changed');
  const journals = dirs.map((d) => (existsSync(join(d, 'journal')) ? readdirSync(join(d, 'journal')).length : 0));
  t.same(journals.sort(), [0, 1], 'the refused run left no journal');
  t.same(await env.a.listLeases(), [], 'the winner gave its leases back');
  t.same(await env.b.listLeases(), []);
  const aWrites = env.a.calls.filter((c) => ['putApp', 'setAction', 'deleteApp', 'batch'].includes(c.method)).map((c) => c.method);
  t.same(aWrites, ['setAction'], "A saw one write: the winner's SWITCH");
  t.equal(env.b.calls.filter((c) => c.method === 'probe').length >= 1, true, "READY asked B's agent to probe (driver none with a probe)");
});

t.test('a run whose lease another owner took stops acting; its undo is refused by the new owner: needs attention', async (t) => {
  const env = agents();
  let ready = false;
  env.b.probeAnswers = () => ready;
  const dir = stateDir(t);
  const running = migrate({ ...options(env, dir, SLOW_READY), leaseTtlMs: 300 });
  await inReady(env.b);
  const [lease] = env.b.leases.list();
  t.ok(lease, 'the run holds its lease on B');
  // taken away (as if it had lapsed while the controller stalled, and another run took it)
  env.b.leases.release(lease!.owner);
  env.b.leases.grant({ owner: 'thief', ttlMs: 60_000, names: ['x'] });
  await sleep(300); // renewals every 100 ms find it taken
  ready = true;
  const r = await running;
  t.equal(r.outcome, 'failed', 'FAILED: its undo could not be made');
  t.match(r.error, /SWITCH: the lease at http:\/\/b:7000 was lost: names\[0\]: "x" is leased by "thief"/, 'the step it did not take says the lease was lost, to whom');
  t.match(r.error, /rollback of DELIVER failed: .*"x" is leased by "thief"/, 'its undo was refused by the new owner');
  t.ok(r.notes.some((n) => /was lost.*no further step is taken/.test(n)), 'noted when it was lost');
  t.equal(env.a.apps.get('x')?.action.type, 'local', "A's entry was never switched");
  t.notOk(env.a.calls.some((c) => c.method === 'setAction'), 'no SWITCH was attempted');
});

t.test('a run none of whose renewals an agent answers for a whole TTL stops acting', async (t) => {
  const env = agents();
  let ready = false;
  env.b.probeAnswers = () => ready;
  const running = migrate({ ...options(env, stateDir(t), SLOW_READY), leaseTtlMs: 300 });
  await inReady(env.b);
  env.b.fault = (call) => {
    if (call.method === 'takeLeases') throw new Error('no answer (injected)'); // only renewals go unanswered
  };
  await sleep(450);
  ready = true;
  const r = await running;
  t.equal(r.outcome, 'rolled-back', r.error ?? '');
  t.match(r.error, /SWITCH: no renewal of the lease at http:\/\/b:7000 succeeded for 300 ms \(no answer \(injected\)\): it has lapsed/);
  t.equal(env.a.apps.get('x')?.action.type, 'local', 'never switched');
  t.equal(env.b.deliveries.has('x'), false, "its delivery on B was undone (nobody else holds the name: the lapsed owner's write is taken)");
});

t.test('--resume takes the leases with the journal id: its own, while another run holds them it is refused', async (t) => {
  const env = agents();
  const dir = stateDir(t);
  env.b.probeAnswers = () => false; // READY fails…
  failOn(env.b, 'deleteDelivery', 'unreachable'); // …and so does undoing DELIVER: FAILED, to be resumed
  const first = await migrate(options(env, dir));
  t.equal(first.outcome, 'failed');
  env.b.fault = undefined;
  env.a.leases.grant({ owner: 'other-run', ttlMs: 60_000, names: ['x'] });
  const refused = await resume({ stateDir: dir, app: 'x', connect: env.connect }).catch((e: unknown) => e);
  t.ok(refused instanceof LeaseRefusedError, `resume is refused while another run holds the app: ${(refused as Error).message}`);
  t.equal(exitCodeOfError(refused), 1);
  env.a.leases.release('other-run');
  env.a.leases.grant({ owner: first.journal, ttlMs: 60_000, names: ['x'] }); // the journal's own lease, not lapsed yet
  const r = await resume({ stateDir: dir, app: 'x', connect: env.connect });
  t.equal(r.outcome, 'rolled-back', 'the journal id owns its lease: resume finishes the rollback');
  t.same(env.a.leases.list(), [], 'and gives the leases back');
  t.equal(env.b.deliveries.has('x'), false, "B's delivery is gone");
});

t.test('a rollback undoes only what its run wrote', async (t) => {
  // DELIVER, then someone else rewrites B's delivery (here: straight into the double's map), then READY fails.
  const env = agents();
  const dir = stateDir(t);
  env.b.fault = (call) => {
    if (call.method !== 'putDelivery') return;
    queueMicrotask(() => {
      const d = env.b.deliveries.get('x');
      if (d) env.b.deliveries.set('x', { ...d, dev: 'other', generation: d.generation + 7 });
    });
  };
  env.b.probeAnswers = () => false;
  const r = await migrate(options(env, dir));
  t.equal(r.outcome, 'rolled-back');
  t.ok(r.notes.some((n) => /the delivery of x on http:\/\/b:7000 was written by someone else after DELIVER .*left as it is/.test(n)), 'the undo says why it left it');
  t.equal(env.b.deliveries.get('x')?.dev, 'other', "the other writer's delivery is still there");
  const done = readJournal(journalOf(dir)).find((rec) => rec.type === 'done' && rec.state === 'DELIVER');
  t.match(done, { facts: { generations: { delivery: Number } } }, 'DELIVER journaled the generation it wrote');

  // The source entry rewritten between PREPARE and SWITCH: SWITCH refuses it (412), and the rollback leaves it.
  const env2 = agents();
  const dir2 = stateDir(t);
  env2.b.fault = (call) => {
    if (call.method !== 'probe') return;
    const a = env2.a.apps.get('x') as App;
    if (a.action.type === 'local') env2.a.apps.set('x', { ...a, action: { type: 'forward', tunnel: '192.0.2.99' }, generation: a.generation + 5 });
  };
  const r2 = await migrate(options(env2, dir2));
  t.equal(r2.outcome, 'failed', 'needs attention: the entry is not what either side expects');
  t.match(r2.error, /SWITCH: the source entry of x on http:\/\/a:7000 was written by someone else after PREPARE .*not switched/);
  t.match(r2.error, /rollback of SWITCH failed: the source entry of x .* was written by someone else .*not restored/);
  t.same(env2.a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.99' }, "the other writer's entry is left as it is");
});

t.test("SWITCH whose answer was lost, retried alone, is this run's own: rolled back cleanly", async (t) => {
  const env = agents();
  const dir = stateDir(t);
  failOn(env.a, 'setAction', 'lost-answer', { times: 1 }); // applied, answer lost: SWITCH fails, its undo finds its own write
  const r = await migrate(options(env, dir));
  t.equal(r.outcome, 'rolled-back', r.error ?? '');
  t.equal(env.a.apps.get('x')?.action.type, 'local', "A's entry is LOCAL again");
});

t.test('a drain leases all its apps in one request per agent', async (t) => {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1' });
  const b = new MemoryAgent('http://b:7000', { v4: '192.0.2.2' });
  for (let i = 0; i < 200; i++) {
    await a.putApp(`app${i}`, { address: `10.200.${i >> 8}.${i & 255}`, proto: 'udp', port: 7000, dev: `v${i}`, mac: '02:00:00:00:00:01' });
  }
  const by: Record<string, MemoryAgent> = { [a.url]: a, [b.url]: b };
  const dir = stateDir(t);
  const r = await drain({
    source: a.url, destinations: [b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST,
    stateDir: dir, concurrency: 16, connect: (u) => by[u] as MemoryAgent, createDriver: () => new FakeDriver(), createAnnounceHook: () => new FakeAnnounce(),
  });
  t.equal(r.outcome, 'done');
  for (const agent of [a, b]) {
    const takes = agent.calls.filter((c) => c.method === 'takeLeases');
    t.equal((takes[0]?.body as { names: string[] } | undefined)?.names.length, 200, `${agent.url}: the first lease request names all 200 apps`);
    t.ok(takes.length < 10, `${agent.url}: ${takes.length} lease requests (the take and any renewals), not one per app`);
    t.same(agent.leases.list(), [], `${agent.url}: given back`);
    const batches = agent.calls.filter((c) => c.method === 'batch');
    t.ok(batches.length > 0, `${agent.url}: batched writes`);
  }
});

t.test("ANNOUNCE removes only the entries as its run left them: one rewritten since is someone else's and stays", async (t) => {
  const env = agents();
  const dir = stateDir(t);
  // While the network learns the new place, others write: x's source entry on A is made LOCAL again, y's delivery on B is moved.
  class Interfering extends FakeAnnounce {
    private done = false;
    override async announceAll(l: readonly Announcement[]): Promise<void> {
      await super.announceAll(l);
      if (this.done) return;
      this.done = true;
      const x = env.a.apps.get('x') as App;
      env.a.apps.set('x', { ...x, action: { type: 'local' }, generation: x.generation + 7 });
      const y = env.b.deliveries.get('y');
      if (y) env.b.deliveries.set('y', { ...y, dev: 'other', generation: y.generation + 7 });
    }
  }
  const r = await drain({
    source: env.a.url, destinations: [env.b.url], destDev: '{dev}', driver: { kind: 'none' }, announce: { kind: 'exec', script: '/bin/true' }, timing: FAST,
    stateDir: dir, concurrency: 4, connect: env.connect, createDriver: () => new FakeDriver(), createAnnounceHook: () => new Interfering(),
  });
  t.equal(r.outcome, 'done', 'the drain completes');
  const notes = r.apps.flatMap((a) => a.notes);
  t.same(env.a.apps.get('x')?.action, { type: 'local' }, "x's rewritten source entry is left as it is");
  t.ok(notes.some((n) => /the source entry of x on http:\/\/a:7000 was written by someone else after this migration wrote it .*left as it is/.test(n)), '…and noted');
  t.notOk(env.a.apps.has('y'), "y's source entry, as the drain left it, is removed");
  t.equal(env.b.deliveries.get('y')?.dev, 'other', "y's moved delivery on B is left as it is");
  t.ok(notes.some((n) => /the delivery of y on http:\/\/b:7000 was written by someone else .*left as it is/.test(n)), '…and noted');
  t.notOk(env.b.deliveries.has('x'), "x's delivery, as DELIVER wrote it, is removed");
  const deletes = env.a.calls.filter((c) => c.method === 'batch' || c.method === 'deleteApp');
  t.ok(deletes.length > 0, `the source saw its removals (${deletes.map((c) => c.method).join(', ')})`);
});
