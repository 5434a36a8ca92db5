/**
 * Rollback against real agents (issue 5, "Must show": rollback). Every
 * scenario runs `routeshift migrate x` (the CLI, --json) while a 20k pps
 * stream flows to X, and checks the outcome, the exit code, the state of
 * both real agents, the fabric and the app processes, and that the stream
 * lost nothing (accounted over what X received on A and on B):
 *
 * - the destination app never answers its readiness probe → READY times
 *   out → rolled back (exit 1): A's entry exactly as before (LOCAL), B's
 *   delivery entry removed, the app on B stopped, X on A never stopped;
 * - the destination app exits at once → same, without waiting for the timeout;
 * - the destination agent is stopped before the migration → PREPARE
 *   cannot reach it → rolled back, nothing changed anywhere;
 * - the destination URL is wrong (nothing listens) → same;
 * - the destination agent dies during the migration (SIGKILL right after
 *   PREPARE) → DELIVER fails, and so does undoing it: the source was never
 *   switched, so no packet is lost, but B's state is unknown → "needs
 *   attention" (exit 3); once B's agent is back, `--resume` finishes the
 *   rollback (exit 1) and B is clean.
 */
import t from 'tap';
import type { Timing } from '../src/controller/journal.js';
import type { MigrationResult } from '../src/controller/machine.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { APP_MAX_SECONDS, Bed, DEST, SOURCE, XHarness, cliJson, describeStream, runCli } from './lib/e2e.js';

const PORT = 9000;
const TIMING: Timing = { readyTimeoutMs: 1500, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };

const bed = await Bed.create(t, { tag: 'rsr', apps: MIGRATION_APPS });
const h = new XHarness(bed, PORT);
const { X, xB } = h;

interface Run {
  code: number | null;
  /** Wall time of the CLI process. */
  wallMs: number;
  result: MigrationResult;
  stdout: string;
  stderr: string;
  /** Right after the CLI ended: where X runs. */
  onA: boolean;
  onB: boolean;
}

/** `routeshift migrate x … --json` to completion. */
async function migrateCli(o: { to?: string; command?: string } = {}): Promise<Run> {
  const run = runCli([
    'migrate', 'x',
    '--from', bed.url('A'),
    '--to', o.to ?? bed.url('B'),
    '--dest-dev', xB.hostDev,
    ...bed.cliFlags({ port: PORT, timing: TIMING, ...(o.command ? { command: o.command } : {}) }),
    '--json',
  ]);
  const t0 = Date.now();
  const out = await run.done;
  const wallMs = Date.now() - t0;
  const result = cliJson<MigrationResult>('migrate', out);
  return {
    code: out.code,
    wallMs,
    result,
    stdout: out.stdout,
    stderr: out.stderr,
    onA: h.driver.running(X, SOURCE) !== undefined,
    onB: h.driver.running(X, DEST) !== undefined,
  };
}

t.test('destination app never becomes ready → rolled back, A LOCAL as before, 0 lost', async (t) => {
  const original = await h.reset();
  // The app starts on B but listens on the wrong port: the udp:9000 probe never gets an answer.
  const s = await h.stream(() => migrateCli({ command: `perl ${bed.app} 9999 ${APP_MAX_SECONDS}` }));
  const r = s.value;
  t.comment(`${r.result.error}; phases ${JSON.stringify(r.result.phases)}, undo ${JSON.stringify(r.result.rollback)}, total ${r.result.totalMs} ms, CLI ${r.wallMs} ms; stream: ${describeStream(s)}`);
  t.equal(r.code, 1, 'exit 1: failed and rolled back');
  t.equal(r.result.outcome, 'rolled-back');
  t.match(r.result.error, /READY: x did not become ready on .* within 1500 ms/, 'the error says READY timed out');
  t.same(Object.keys(r.result.rollback), ['DELIVER', 'START'], "undone newest first: B's delivery entry, then the app on B");
  t.notOk(r.onB, 'the app on B was stopped');
  t.ok(r.onA, 'X on A was never stopped');
  h.checkRolledBack(t, await h.placement(), original);
  t.equal(s.x.lost, 0, 'stream: 0 lost');
  t.equal(s.x.duplicated, 0, 'stream: 0 duplicated');
  t.equal(s.x.perApp[0], s.flow.sent, 'X on A received every packet');
});

t.test('destination app exits at once → rolled back without waiting for the timeout, 0 lost', async (t) => {
  const original = await h.reset();
  const s = await h.stream(() => migrateCli({ command: "perl -e 'exit 3'" }));
  const r = s.value;
  t.comment(`${r.result.error}; took ${r.result.totalMs} ms; stream: ${describeStream(s)}`);
  t.equal(r.code, 1, 'exit 1');
  t.equal(r.result.outcome, 'rolled-back');
  t.match(r.result.error, /(START|READY): .*x.*(exited at once|is not running any more)/, 'the error says the app exited — not that READY timed out');
  t.ok(r.onA && !r.onB, 'X still runs on A only');
  h.checkRolledBack(t, await h.placement(), original);
  t.equal(s.x.lost, 0, 'stream: 0 lost');
  t.equal(s.x.duplicated, 0, 'stream: 0 duplicated');
});

t.test('destination agent stopped before the migration → rolled back, nothing changed, 0 lost', async (t) => {
  const original = await h.reset();
  const urlB = bed.url('B');
  await bed.agents.B?.stop('SIGTERM');
  try {
    const s = await h.stream(() => migrateCli({ to: urlB }));
    const r = s.value;
    t.comment(`${r.result.error}; stream: ${describeStream(s)}`);
    t.equal(r.code, 1, 'exit 1');
    t.equal(r.result.outcome, 'rolled-back');
    // the first request to the destination is the lease on x (before PREPARE's GET /status)
    t.match(r.result.error, /PREPARE: agent .* unreachable: (GET \/status|POST \/v1\/leases): ECONNREFUSED/, 'the error names the unreachable agent');
    t.same(r.result.rollback, {}, 'nothing needed undoing');
    t.ok(r.onA && !r.onB, 'X still runs on A only; nothing was started on B');
    t.equal(s.x.lost, 0, 'stream: 0 lost');
    t.equal(s.x.duplicated, 0, 'stream: 0 duplicated');
  } finally {
    await bed.startAgent('B');
  }
  h.checkRolledBack(t, await h.placement(), original);
});

t.test('wrong destination URL → rolled back, nothing changed, 0 lost', async (t) => {
  const original = await h.reset();
  const s = await h.stream(() => migrateCli({ to: 'http://127.0.0.1:9' }));
  const r = s.value;
  t.comment(`${r.result.error}; stream: ${describeStream(s)}`);
  t.equal(r.code, 1, 'exit 1');
  t.equal(r.result.outcome, 'rolled-back');
  t.match(r.result.error, /unreachable/);
  t.ok(r.onA && !r.onB, 'X still runs on A only');
  h.checkRolledBack(t, await h.placement(), original);
  t.equal(s.x.lost, 0, 'stream: 0 lost');
});

t.test('destination agent dies mid-migration → needs attention, source never switched, 0 lost; --resume finishes the rollback', async (t) => {
  const original = await h.reset();
  const s = await h.stream(async () => {
    // Progress lines (no --json): right after "✓ PREPARE" the controller starts the app on B,
    // then PUTs the delivery entry — kill B's agent there.
    const run = runCli(['migrate', 'x', '--from', bed.url('A'), '--to', bed.url('B'), '--dest-dev', xB.hostDev, ...bed.cliFlags({ port: PORT, timing: TIMING })]);
    await run.waitLine(/✓ PREPARE/, 20_000);
    await bed.agents.B?.stop('SIGKILL');
    const first = await run.done;
    const duringA = await bed.client('A').getApp('x');
    const onBBeforeResume = h.driver.running(X, DEST) !== undefined;
    await bed.startAgent('B');
    const resumed = await runCli(['migrate', 'x', '--resume', '--json', '--token-file', bed.tokenFile, '--state-dir', bed.stateDir]).done;
    const result = JSON.parse(resumed.stdout) as MigrationResult & { decision: string };
    return { first, duringA, onBBeforeResume, resumed: { code: resumed.code, result }, onB: h.driver.running(X, DEST) !== undefined };
  });
  const { first, duringA, resumed } = s.value;
  t.comment(`first run (exit ${first.code}):\n${first.stdout.trim()}`);
  t.comment(`resume: exit ${resumed.code}, decision ${resumed.result.decision}, undo ${JSON.stringify(resumed.result.rollback)}; stream: ${describeStream(s)}`);
  t.equal(first.code, 3, 'first run: exit 3, needs attention (B unreachable: its state is unknown)');
  t.match(first.stdout, /x NEEDS ATTENTION: .*\n.*routeshift migrate x --resume/, 'the operator is told to --resume');
  if (/DELIVER: agent .* unreachable/.test(first.stdout)) {
    // The kill landed before DELIVER (as aimed): the source was never switched.
    t.match(first.stdout, /DELIVER: agent .* unreachable.*rollback of DELIVER failed/, 'DELIVER failed, and so did undoing it');
    t.equal(duringA?.action.type, 'local', 'A was never switched: x stayed LOCAL');
    t.comment(`before --resume the app the first run started on B was ${s.value.onBBeforeResume ? 'still running (a rollback stops at its first failed undo)' : 'stopped'}`);
    t.equal(resumed.code, 1, 'resume: exit 1, rolled back');
    t.equal(resumed.result.decision, 'roll-back');
    t.equal(resumed.result.outcome, 'rolled-back');
    t.notOk(s.value.onB, 'the resumed rollback stopped the app on B');
    h.checkRolledBack(t, await h.placement(), original);
  } else {
    // A busy host let the controller get past DELIVER before B died: then it failed rolling forward.
    t.comment('the kill of B landed after DELIVER: the migration failed rolling forward instead');
    t.equal(resumed.code, 0, 'resume: exit 0, done');
    t.equal(resumed.result.outcome, 'done');
    h.checkMoved(t, await h.placement());
  }
  t.equal(s.x.lost, 0, 'stream: 0 lost');
  t.equal(s.x.duplicated, 0, 'stream: 0 duplicated');
});
