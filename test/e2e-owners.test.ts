/**
 * One owner per app, and READY on the destination's copy, against real
 * agents in namespaces under a UDP stream (issue #13, items 3 and 4):
 *
 * - two controllers with different state directories start the same
 *   migration at the same moment, 20 times (x goes A → B → A …): each time
 *   exactly one runs to the end, the other is refused by the agents' leases
 *   before it changes anything, naming the holder (exit code 1), and the
 *   stream through all 20 rounds loses nothing;
 * - the same race through the CLI with `--driver none --probe udp:PORT`
 *   and no app on the destination: the destination agent's probe fails, so
 *   READY fails and the winner rolls back (exit 1); the loser is refused
 *   naming the holder (exit 1); nothing is lost on the source;
 * - with the app running on the destination, the same migration is done.
 */
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { exitCodeOfError } from '../src/cli/exit.js';
import type { AnnounceSpec } from '../src/controller/announce.js';
import type { Timing } from '../src/controller/journal.js';
import { LeaseRefusedError } from '../src/controller/leases.js';
import type { MigrationResult } from '../src/controller/machine.js';
import { migrate } from '../src/controller/migrate.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, DEST, ECHO_EVERY, XHarness, account, cliJson, describeStream, runCli, sleep, startFlows, type AppReport } from './lib/e2e.js';

const PORT = 9100;
const TIMING: Timing = { readyTimeoutMs: 3000, probeIntervalMs: 50, stopGraceMs: 200, announceGraceMs: 200, forwardAttempts: 3 };
const ROUNDS = 20;

const bed = await Bed.create(t, { tag: 'rso', apps: MIGRATION_APPS });
const h = new XHarness(bed, PORT);
const { X, xA, xB } = h;
/** Two controllers: each its own journal and lock directory (the apps' processes are recorded in the bed's). */
const controllers = [join(bed.dir, 'controller-1'), join(bed.dir, 'controller-2')];
const noteCtx = { log: (): void => undefined };

/** Every report the app wrote to its log on one host (one per copy that ran there and was stopped). */
function allReports(host: 'A' | 'B'): AppReport[] {
  const log = h.log(host);
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('{"udp"')).map((l) => JSON.parse(l) as AppReport);
}

function journals(dir: string): number {
  const d = join(dir, 'journal');
  return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.jsonl')).length : 0;
}

/** x from one host to the other, by the library, as controller `i`. */
function migrateX(i: number, from: 'A' | 'B'): Promise<MigrationResult> {
  const to = from === 'A' ? 'B' : 'A';
  const p = bed.topo.prefix;
  return migrate({
    app: 'x',
    from: bed.url(from),
    to: bed.url(to),
    destDev: (to === 'A' ? xA : xB).hostDev,
    driver: bed.driverSpec({ port: PORT, srcNetns: `${p}-{app}${from}`, dstNetns: `${p}-{app}${to}` }),
    announce: bed.announceTo(to),
    timing: TIMING,
    stateDir: controllers[i] as string,
    connect: bed.connect,
  });
}

t.test(`two controllers start the same migration together, ${ROUNDS} times: one runs, the other is refused naming it, 0 lost`, async (t) => {
  await h.reset();
  const flows = await startFlows(bed.topo.client.ns, { flows: [{ to: xA.addr4, port: PORT, rate: 4000, echoEvery: ECHO_EVERY }], maxMs: 150_000, echoWaitMs: 300 });
  const wins = [0, 0];
  let refusedRight = 0;
  try {
    await sleep(300);
    for (let round = 0; round < ROUNDS; round++) {
      const from = round % 2 === 0 ? 'A' : 'B';
      // who asks first alternates: the agents, not the call order, decide who runs
      const first = round % 2;
      const both = first === 0 ? await Promise.allSettled([migrateX(0, from), migrateX(1, from)]) : await Promise.allSettled([migrateX(1, from), migrateX(0, from)]).then((r) => [r[1]!, r[0]!]);
      const done = both.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, r: r.value }] : []));
      const refused = both.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason as Error }] : []));
      if (done.length !== 1 || refused.length !== 1) {
        t.fail(`round ${round}: ${done.length} ran, ${refused.length} refused: ${JSON.stringify(both.map((r) => (r.status === 'fulfilled' ? r.value.outcome + ' ' + (r.value.error ?? '') : String(r.reason))))}`);
        break;
      }
      const winner = done[0]!;
      const loser = refused[0]!;
      if (winner.r.outcome !== 'done') t.fail(`round ${round}: the controller that ran ended ${winner.r.outcome}: ${winner.r.error}`);
      wins[winner.i]!++;
      const named = loser.err instanceof LeaseRefusedError && loser.err.message.includes(`leased by "${winner.r.journal}"`) && exitCodeOfError(loser.err) === 1;
      if (named) refusedRight++;
      else t.fail(`round ${round}: the refusal should name the holder ${winner.r.journal} (exit 1): ${loser.err.name}: ${loser.err.message}`);
      if (round === 0) t.comment(`the refusal: ${loser.err.message}`);
    }
    await sleep(300);
  } finally {
    flows.signal();
  }
  const report = await flows.report;
  await sleep(100);
  await h.driver.stop(X, DEST, noteCtx);
  await h.driver.stop(X, { role: 'source', agentUrl: 'source', index: 0 }, noteCtx);
  const flow = report.flows[0]!;
  const reports = [...allReports('A'), ...allReports('B')];
  const acc = account(flow.sent, reports);
  t.comment(`wins ${JSON.stringify(wins)}; sent ${flow.sent}, received by ${reports.length} copies of x, lost ${acc.lost}, duplicated ${acc.duplicated}, client max echo gap ${flow.echo.maxGapMs.toFixed(1)} ms`);
  t.equal(refusedRight, ROUNDS, `in all ${ROUNDS} rounds one ran and the other was refused, naming it (exit 1)`);
  t.ok(flow.sent > 10_000, `the stream ran through all rounds (${flow.sent} sent)`);
  t.equal(acc.lost, 0, `0 of ${flow.sent} lost${acc.missing.length ? ` (missing ${JSON.stringify(acc.missing)})` : ''}`);
  t.equal(acc.duplicated, 0, '0 duplicated');
  t.equal(journals(controllers[0]!) + journals(controllers[1]!), ROUNDS, 'a refused run left no journal: one per round, the winner\'s');
  const p = await h.placement();
  t.equal(p.source?.action.type, 'local', 'after an even number of moves x is LOCAL on A');
  t.equal(p.dest, undefined, 'B has no entry for x');
  t.equal(p.destDelivery, undefined, 'B has no delivery for x');
  t.equal(p.sourceDelivery, undefined, 'A has no delivery for x');
  t.equal(p.route, bed.topo.host('A').addr4, 'the fabric routes x to A');
  for (const host of ['A', 'B']) t.same(await bed.client(host).listLeases(), [], `no lease left on ${host}`);
});

/** `routeshift migrate x` A → B with `--driver none --probe udp:PORT`, as controller `i` (the CLI, --json). */
function migrateNoneCli(i: number, readyTimeoutMs: number): ReturnType<typeof runCli> {
  const ann = bed.announceTo('B') as Extract<AnnounceSpec, { kind: 'netns-route' }>;
  return runCli([
    'migrate', 'x', '--from', bed.url('A'), '--to', bed.url('B'), '--dest-dev', xB.hostDev,
    '--token-file', bed.tokenFile, '--state-dir', controllers[i] as string,
    '--driver', 'none', '--probe', `udp:${PORT}`,
    '--announce', 'netns-route', '--announce-netns', ann.netns, '--announce-via', ann.via.join(','), ...(ann.dev ? ['--announce-dev', ann.dev] : []),
    '--ready-timeout-ms', String(readyTimeoutMs), '--probe-interval-ms', '50', '--stop-grace-ms', '200', '--announce-grace-ms', '200',
    '--json',
  ]);
}

t.test('--driver none, no app on the destination: READY (the destination agent\'s probe) fails and rolls back; the other CLI is refused; 0 lost', async (t) => {
  const original = await h.reset();
  const s = await h.stream(async () => {
    // READY waits 4 s for nothing: the first CLI holds the lease that long, however late the second one starts up
    const runs = [migrateNoneCli(0, 4000), migrateNoneCli(1, 4000)];
    return Promise.all(runs.map((r) => r.done));
  });
  const outs = s.value;
  t.comment(`stream: ${describeStream(s)}`);
  t.same(outs.map((o) => o.code), [1, 1], 'both exit 1: failed, nothing left to undo');
  const refused = outs.filter((o) => /refused before anything was changed: another migration owns x at agent .*leased by "/.test(o.stderr));
  t.equal(refused.length, 1, `one CLI was refused, naming the holder: ${refused[0]?.stderr.trim() ?? outs.map((o) => o.stderr).join(' | ')}`);
  const ran = outs.find((o) => !refused.includes(o));
  const result = ran ? cliJson<MigrationResult>('migrate', ran) : undefined;
  t.equal(result?.outcome, 'rolled-back', 'the other ran and rolled back');
  t.match(result?.error, /READY: x did not become ready on .* within 4000 ms \(the destination agent's udp:9100 probe: .*10\.200\.0\.10 on /, "READY asked the destination agent, which found nothing answering there");
  if (result) t.ok(refused[0]?.stderr.includes(result.journal), 'the refusal names the run that held the lease');
  h.checkRolledBack(t, await h.placement(), original);
  t.equal(s.x.lost, 0, `0 lost on the source (${describeStream(s)})`);
  t.equal(s.onB, undefined, 'nothing ran on B');
});

t.test('--driver none with the app running on the destination: the destination agent\'s probe passes, done, 0 lost', async (t) => {
  await h.reset();
  await h.driver.start(X, DEST, noteCtx); // the app runs on both hosts, as --driver none expects
  const s = await h.stream(async () => migrateNoneCli(0, 3000).done);
  t.comment(`stream: ${describeStream(s)}`);
  t.equal(s.value.code, 0, 'exit 0');
  const result = cliJson<MigrationResult>('migrate', s.value);
  t.equal(result.outcome, 'done', result.error ?? 'done');
  h.checkMoved(t, await h.placement());
  t.equal(s.x.lost, 0, `0 lost (${describeStream(s)})`);
  t.ok((s.onB?.udp ?? 0) > 0, 'B served x after the switch');
});
