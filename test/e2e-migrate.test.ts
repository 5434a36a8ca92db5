/**
 * A live migration against real agents (issue 5, "Must show": zero loss and
 * TCP). Topology: client — fabric — host A (x, y) / host B (x's target
 * namespace, same address); a real `routeshift agent` per host (native
 * XDP); the real controller library (`migrate()` over HTTP), driver
 * `netns-process` (starts the app in x@B's namespace, probes it there with
 * `udp:PORT`, stops it on A), announce hook `netns-route` (moves the
 * fabric's route).
 *
 * 1. zero loss: 20k packets/s to X from before PREPARE to after ANNOUNCE.
 *    X records every sequence number it receives — on A until SWITCH, on B
 *    after — and loss is accounted over the union of the two: 0 lost, 0
 *    duplicated (no packet received by both, or twice). X echoes one packet
 *    in ten, so the client reports the largest gap it saw (overall and
 *    around SWITCH). Y on A has its own stream: every packet received, its
 *    entry unchanged, every packet counted by A's LOCAL entry for y.
 * 2. TCP: new connections in a loop during the migration — every one opened
 *    after SWITCH is answered by X on B (the server says its namespace),
 *    none refused; a connection established with X on A before SWITCH and
 *    used again after it, while X on A still runs, is reset (RST from B),
 *    exactly as src/workload/README.md documents.
 */
import t from 'tap';
import { migrate } from '../src/controller/migrate.js';
import type { MigrationEvent } from '../src/controller/machine.js';
import type { Timing } from '../src/controller/journal.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import {
  APP_MAX_SECONDS,
  Bed,
  DEST,
  XHarness,
  ECHO_EVERY,
  account,
  diagnose,
  gapAround,
  lastAppReport,
  sleep,
  startApp,
  startFlows,
  startTcpHold,
  startTcpLoop,
} from './lib/e2e.js';

const PORT = 9000;
const RATE = 20_000;
const Y_RATE = 2_000;
const TIMING: Timing = { readyTimeoutMs: 5000, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };
const noteCtx = { log: () => undefined };

const bed = await Bed.create(t, { tag: 'rsm', apps: MIGRATION_APPS });
const { topo } = bed;
const h = new XHarness(bed, PORT);
const { xA, xB, X, driver } = h;
const yA = topo.app('y', 'A');
await bed.registerLocal(yA);

/** Run the migration of x A → B with the real controller, recording when each step entered/ended. */
async function migrateX(onEvent?: (e: MigrationEvent, at: number) => void, timing: Timing = TIMING) {
  const events: { e: MigrationEvent; at: number }[] = [];
  const result = await migrate({
    app: 'x',
    from: bed.url('A'),
    to: bed.url('B'),
    destDev: xB.hostDev,
    driver: bed.driverSpec({ port: PORT }),
    announce: bed.announceTo('B'),
    timing,
    stateDir: bed.stateDir,
    connect: bed.connect,
    observe: (e) => {
      const at = Date.now();
      events.push({ e, at });
      onEvent?.(e, at);
    },
  });
  const when = (type: MigrationEvent['type'], state: string): number => {
    const hit = events.find((x) => x.e.type === type && 'state' in x.e && x.e.state === state);
    if (!hit) throw new Error(`no ${type} ${state} event`);
    return hit.at;
  };
  return { result, events, when };
}

t.test('zero loss: 20k pps to X during a real migration A → B; Y on A untouched', async (t) => {
  await h.reset();
  const y = await startApp(yA.ns, bed.app, PORT, APP_MAX_SECONDS);
  const yBefore = await bed.client('A').getApp('y');
  const flows = await startFlows(topo.client.ns, {
    flows: [
      { to: xA.addr4, port: PORT, rate: RATE, echoEvery: ECHO_EVERY },
      { to: yA.addr4, port: PORT, rate: Y_RATE, echoEvery: ECHO_EVERY },
    ],
    maxMs: 10_000,
    echoWaitMs: 500,
  });
  await sleep(400);
  const { result, when, events } = await migrateX();
  await sleep(400);
  flows.signal();
  const r = await flows.report;
  // Let the last packets land, then stop X on B and Y so that they report what they received.
  await sleep(100);
  await driver.stop(X, DEST, noteCtx);
  y.signal();
  const yRep = await y.report;
  const [fx, fy] = r.flows;
  if (!fx || !fy) throw new Error('no flow reports');
  const onA = lastAppReport(h.log('A'));
  const onB = lastAppReport(h.log('B'));
  const x = account(fx.sent, [onA, onB]);
  const yAcc = account(fy.sent, [yRep]);

  t.equal(result.outcome, 'done', `migration done in ${result.totalMs} ms (${JSON.stringify(result.phases)})`);
  const switchAt = when('done', 'SWITCH');
  const sw = gapAround(fx, switchAt);
  t.comment(
    `X: sent ${fx.sent} at ${Math.round(r.ratePps)} pps (both flows); received on A ${x.perApp[0]}, on B ${x.perApp[1]}; ` +
      `lost ${x.lost}; duplicated ${x.duplicated}; echoes (1 in ${ECHO_EVERY}) at the client: max gap ${fx.echo.maxGapMs.toFixed(2)} ms, ` +
      `largest within ±50 ms of SWITCH ${sw.listed ? '' : '< '}${sw.gapMs.toFixed(2)} ms`,
  );
  t.comment(`Y: sent ${fy.sent}; received ${yAcc.served}; lost ${yAcc.lost}; duplicated ${yAcc.duplicated}; echo max gap ${fy.echo.maxGapMs.toFixed(2)} ms`);
  if (x.lost || yAcc.lost) {
    const rel = (at: number): string => (at - r.startAtMs).toFixed(1);
    t.comment(`timeline (ms after the stream started): ${events.map((e) => `${e.e.type}${'state' in e.e ? ` ${e.e.state}` : ''}@${rel(e.at)}`).join(', ')}`);
    t.comment(`X missing seq ranges (send time ≈ seq / ${RATE} s): ${JSON.stringify(x.missing)}; Y missing: ${JSON.stringify(yAcc.missing)}`);
    await diagnose(bed, t, [xA, xB, yA]);
  }
  const secs = (r.stopAtMs - r.startAtMs) / 1000;
  t.ok(fx.sent / secs > RATE * 0.85, `the client kept ~${RATE} pps to X (${Math.round(fx.sent / secs)})`);
  t.ok(r.startAtMs < when('enter', 'PREPARE') && r.stopAtMs > when('done', 'ANNOUNCE'), 'the stream covered the whole migration');
  t.equal(fx.errors, 0, 'no send errors');
  t.ok(onA && onA.netns === xA.ns.name && onA.ended === 'signal', `X on A reported (stopped by the driver at STOP)`);
  t.ok(onB && onB.netns === xB.ns.name, 'X on B reported');
  t.ok((x.perApp[0] ?? 0) > 0 && (x.perApp[1] ?? 0) > 0, 'both served part of the stream: A before SWITCH, B after');
  t.equal(x.lost, 0, 'X: 0 lost over the union of what A and B received');
  t.equal(x.duplicated, 0, 'X: 0 duplicated (no packet received on both hosts, or twice)');
  t.equal(yAcc.lost, 0, 'Y: 0 lost');
  t.equal(yAcc.duplicated, 0, 'Y: 0 duplicated');

  const p = await h.placement();
  h.checkMoved(t, p);

  const yAfter = await bed.client('A').getApp('y');
  t.same({ ...yAfter, counters: undefined }, { ...yBefore, counters: undefined }, "Y's entry on A is exactly as before");
  const yLocal = Number(yAfter?.counters.local.packets) - Number(yBefore?.counters.local.packets);
  t.equal(yLocal, fy.sent, `every Y packet went through A's LOCAL entry for y (${yLocal})`);
});

t.test('TCP: connections opened after SWITCH are served by X on B; one established before SWITCH is reset, as documented', async (t) => {
  await h.reset();
  const hold = await startTcpHold(topo.client.ns, { to: xA.addr4, port: PORT, timeoutMs: 3000, maxMs: 30_000 });
  t.equal(hold.first.server, xA.ns.name, 'the long-lived connection was established with X on A');
  const loop = await startTcpLoop(topo.client.ns, { to: xA.addr4, port: PORT, maxConns: 20_000, maxMs: 20_000, timeoutMs: 2000 });
  await sleep(400);
  let stoppedAt = Infinity;
  // X on A keeps running 1.5 s after SWITCH: the old connection is used again in that window.
  const { result, when } = await migrateX(
    (e, at) => {
      if (e.type === 'done' && e.state === 'SWITCH') hold.p.signal('SIGUSR1');
      if (e.type === 'note' && /^stopped x in /.test(e.message)) stoppedAt = at;
    },
    { ...TIMING, stopGraceMs: 1500 },
  );
  await sleep(400);
  loop.signal();
  const { conns } = await loop.report;
  const held = await hold.p.report;
  t.equal(result.outcome, 'done', 'migration done');

  const switchEnter = when('enter', 'SWITCH');
  const switchDone = when('done', 'SWITCH');
  const before = conns.filter((c) => c.endMs < switchEnter);
  const after = conns.filter((c) => c.startMs > switchDone);
  const straddling = conns.filter((c) => !before.includes(c) && !after.includes(c));
  const tally = (cs: typeof conns): string =>
    JSON.stringify(cs.reduce<Record<string, number>>((m, c) => ((m[c.server ?? c.error ?? '?'] = (m[c.server ?? c.error ?? '?'] ?? 0) + 1), m), {}));
  t.comment(`${conns.length} connections: ${before.length} before SWITCH ${tally(before)}, ${straddling.length} straddling ${tally(straddling)}, ${after.length} after ${tally(after)}`);
  t.ok(before.length > 10 && after.length > 10, 'connections were opened before and after SWITCH');
  t.ok(before.every((c) => c.server === xA.ns.name), 'every connection before SWITCH was served by X on A');
  t.ok(after.every((c) => c.server === xB.ns.name), 'every connection opened after SWITCH was served by X on B');
  t.equal(conns.filter((c) => c.error === 'ECONNREFUSED').length, 0, 'no connection was refused');
  t.ok(after.every((c) => !c.error), 'no connection opened after SWITCH failed');

  // The established connection: documented (src/workload/README.md) — forwarded to B, which has no socket for it: RST.
  t.ok(held.second, 'the established connection was used again after SWITCH');
  const second = held.second;
  if (second) {
    t.ok(second.atMs >= switchDone, 'its second use came after SWITCH');
    t.equal(second.error, 'ECONNRESET', `…and got a reset (${second.server ?? second.error})`);
    t.ok(second.endMs < stoppedAt, 'while X on A was still running: the reset came from B, not from A going away');
  }
  await driver.stop(X, DEST, noteCtx);
});

