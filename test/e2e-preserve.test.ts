/**
 * Connection-preserving migration against real agents (issue 14), in
 * namespaces, with real TCP: x moves from A to B with
 * `--preserve-connections` (the controller library, driver netns-process,
 * announce netns-route) while a client holds 8 TCP connections to it, each
 * asking and getting an answer every 5 ms.
 *
 *  - with the flag (IPv4 and IPv6): every connection established before
 *    SWITCH goes on with x on A — no reset, every request answered, every
 *    byte accounted — until the client closes it; connections opened after
 *    SWITCH are served by x on B; DRAIN_FLOWS reports the old flows falling
 *    to 0, and x on A is stopped only after the last of them closed; a UDP
 *    stream to x loses nothing throughout; A's flow counters and /metrics
 *    show the pinned and the sent flows.
 *  - without it (IPv4): the same connections are reset at SWITCH (B has no
 *    socket for them) — the difference is measured.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import type { MigrationEvent } from '../src/controller/machine.js';
import type { PreserveOptions, Timing } from '../src/controller/journal.js';
import { migrate } from '../src/controller/migrate.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { BpfMap } from '../src/bpf/index.js';
import { flowKeyCodec, oldFlowCodec } from '../src/datapath/structs.js';
import { join } from 'node:path';
import { Bed, DEST, ECHO_EVERY, SOURCE, XHarness, account, lastAppReport, sleep, startFlows, startTcpLoop, waitForFile, workloadApp, type TcpConn } from './lib/e2e.js';
import { drain } from '../src/controller/drain.js';
import { startSessions, type SessionsReport } from './lib/tcp-sessions.js';

const PORT = 9000;
const CONNS = 8;
const UDP_RATE = 2000;
const TIMING: Timing = { readyTimeoutMs: 5000, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };
const PRESERVE: PreserveOptions = { maxDrainMs: 20_000, idleMs: 4000, lingerMs: 300, pollMs: 100 };
/** How long the old connections go on after SWITCH before the client closes them. */
const OLD_FOR_MS = 1500;
const noteCtx = { log: (): void => undefined };

// y gets a place on B too, for the drain of A
const bed = await Bed.create(t, { tag: 'rspc', apps: [...MIGRATION_APPS, { name: 'y', host: 'B', addr4: '10.200.0.11' }], topology: { ipv6: true } });
const h = new XHarness(bed, PORT);
const { xA, xB, X, driver } = h;

/** x on A only, registered by its address of `family`, the fabric routing it to A. */
async function reset(family: 4 | 6): Promise<void> {
  await bed.client('A').deleteApp('x'); // h.reset registers the IPv4 address
  await h.reset();
  if (family === 6) {
    await bed.client('A').deleteApp('x');
    await bed.registerLocal(xA, 'x', 6);
  }
}

async function metricsText(host: string): Promise<string> {
  const res = await fetch(`${bed.url(host)}/metrics`, { headers: { authorization: `Bearer ${readFileSync(bed.tokenFile, 'utf8').trim()}` } });
  return res.text();
}

interface Run {
  outcome: string;
  result: Awaited<ReturnType<typeof migrate>>;
  events: { e: MigrationEvent; at: number }[];
  sessions: SessionsReport;
  conns: { conns: TcpConn[] };
  switchDone: number;
  stoppedAt: number;
  udp?: { sent: number; lost: number; duplicated: number; onA: number; onB: number };
  midFlows?: { view: unknown; metrics: string };
}

/** Migrate x A → B (preserving or not) under 8 sessions, a loop of new connections and (optionally) a UDP stream. */
async function scenario(family: 4 | 6, preserve: PreserveOptions | undefined, o: { udp: boolean }): Promise<Run> {
  await reset(family);
  const to = family === 4 ? xA.addr4 : xA.addr6;
  const udp = o.udp
    ? await startFlows(bed.topo.client.ns, { flows: [{ to, port: PORT, rate: UDP_RATE, echoEvery: ECHO_EVERY }], maxMs: 60_000, echoWaitMs: 300 })
    : undefined;
  const sessions = await startSessions(bed.topo.client.ns, { to, port: PORT, conns: CONNS, intervalMs: 5, timeoutMs: 3000, maxMs: 60_000 });
  const loop = await startTcpLoop(bed.topo.client.ns, { to, port: PORT, maxConns: 20_000, maxMs: 60_000, timeoutMs: 2000 });
  await sleep(300);
  const events: { e: MigrationEvent; at: number }[] = [];
  let switchDone = 0;
  let stoppedAt = Infinity;
  let closing: Promise<SessionsReport> | undefined;
  let mid: Promise<{ view: unknown; metrics: string }> | undefined;
  const result = await migrate({
    app: 'x',
    from: bed.url('A'),
    to: bed.url('B'),
    destDev: xB.hostDev,
    driver: bed.driverSpec({ port: PORT }),
    announce: bed.announceTo('B', family),
    // without the flag the source copy keeps running a while, so that a reset is B's, not A going away
    timing: preserve ? TIMING : { ...TIMING, stopGraceMs: OLD_FOR_MS + 500 },
    ...(preserve ? { preserve } : {}),
    stateDir: bed.stateDir,
    connect: bed.connect,
    observe: (e) => {
      const at = Date.now();
      events.push({ e, at });
      if (e.type === 'done' && e.state === 'SWITCH') {
        switchDone = at;
        sessions.mark();
        // the old connections go on for a while, then the client closes them
        closing = sleep(OLD_FOR_MS).then(() => sessions.close());
      }
      if (e.type === 'flows' && !mid) {
        const client = bed.client('A');
        mid = Promise.all([client.flows?.('x', { idleMs: PRESERVE.idleMs, lingerMs: PRESERVE.lingerMs }), metricsText('A')]).then(([view, metrics]) => ({ view, metrics }));
      }
      if (e.type === 'note' && /^stopped x in /.test(e.message)) stoppedAt = at;
    },
  });
  await sleep(300);
  loop.signal();
  const conns = await loop.report;
  const report = await (closing ?? sessions.close());
  const run: Run = { outcome: result.outcome, result, events, sessions: report, conns, switchDone, stoppedAt, ...(mid ? { midFlows: await mid } : {}) };
  if (udp) {
    udp.signal();
    const r = await udp.report;
    await sleep(100);
    await driver.stop(X, SOURCE, noteCtx);
    await driver.stop(X, DEST, noteCtx);
    const f = r.flows[0];
    if (!f) throw new Error('no UDP flow report');
    const acc = account(f.sent, [lastAppReport(h.log('A')), lastAppReport(h.log('B'))]);
    run.udp = { sent: f.sent, lost: acc.lost, duplicated: acc.duplicated, onA: acc.perApp[0] ?? 0, onB: acc.perApp[1] ?? 0 };
  } else {
    await driver.stop(X, DEST, noteCtx);
  }
  return run;
}

function checkPreserved(t: Test, family: 4 | 6, r: Run): void {
  const { sessions } = r.sessions;
  t.equal(r.outcome, 'done', `migration done in ${r.result.totalMs} ms (${JSON.stringify(r.result.phases)})${r.result.error ? `: ${r.result.error}; ${r.result.notes.join('; ')}` : ''}`);
  t.ok(r.result.phases.DRAIN_FLOWS !== undefined, 'DRAIN_FLOWS ran');
  t.equal(sessions.length, CONNS);
  const lastClose = Math.max(...sessions.map((s) => s.closedMs ?? Infinity));
  const afterSwitch = sessions.reduce((n, s) => n + s.requestsAfter, 0);
  t.comment(
    `IPv${family}: ${CONNS} sessions, ${sessions.reduce((n, s) => n + s.requests, 0)} requests (${afterSwitch} after SWITCH), ` +
      `closed ${lastClose - r.switchDone} ms after SWITCH; x on A stopped ${r.stoppedAt - lastClose} ms after the last close; ` +
      `flows ${JSON.stringify(r.result.flows)}`,
  );
  for (const s of sessions) {
    t.equal(s.error, undefined, `session ${s.i} (port ${s.sport}): no reset, no error`);
    t.equal(s.answers, s.requests, `session ${s.i}: every request answered (${s.requests})`);
    t.same(Object.keys(s.servers), [xA.ns.name], `session ${s.i}: every answer from x on A`);
    t.ok(s.requestsAfter > 10, `session ${s.i}: used after SWITCH (${s.requestsAfter} requests)`);
    t.equal(s.bytesReceived, s.bytesAnswered, `session ${s.i}: no lost or extra byte (${s.bytesReceived} received, ${s.bytesSent} sent)`);
    t.ok(s.closedMs !== undefined, `session ${s.i}: closed by the client`);
  }
  const after = r.conns.conns.filter((c) => c.startMs > r.switchDone);
  t.ok(after.length > 10, `new connections were opened after SWITCH (${after.length})`);
  t.ok(after.every((c) => c.server === xB.ns.name), `every connection opened after SWITCH was served by x on B (${JSON.stringify(tally(after))})`);
  t.ok(r.stoppedAt > lastClose, 'x on A was stopped only after the last old connection closed');
  const drainDone = r.events.find((x) => x.e.type === 'done' && x.e.state === 'DRAIN_FLOWS')?.at ?? 0;
  t.ok(drainDone >= lastClose, 'DRAIN_FLOWS ended after the last old connection closed');
  const counts = r.events.flatMap((x) => (x.e.type === 'flows' ? [x.e.active] : []));
  t.ok(counts.length >= 2 && counts[0]! >= CONNS && counts[counts.length - 1] === 0, `the old-flow count fell to 0: ${counts.join(' → ')}`);
  t.ok((r.result.flows?.atStart ?? 0) >= CONNS && r.result.flows?.cut === 0, `journaled: ${JSON.stringify(r.result.flows)}`);
  t.comment(`A's old flows now: ${oldFlowsOfA()}`);
  const view = r.midFlows?.view as { action?: string; pinned?: string; sent?: string } | undefined;
  t.equal(view?.action, 'preserve', "A's entry preserved during DRAIN_FLOWS");
  t.ok(Number(view?.pinned) >= CONNS, `A pinned the ${CONNS} old flows (${view?.pinned})`);
  t.ok(Number(view?.sent) > 0, `A sent new flows to B (${view?.sent})`);
  t.match(r.midFlows?.metrics ?? '', /routeshift_app_flows_total\{[^}]*app="x"[^}]*kind="pinned"[^}]*\} [1-9]/, '/metrics shows x\'s pinned flows');
  if (r.udp) {
    t.comment(`UDP: sent ${r.udp.sent}; received on A ${r.udp.onA}, on B ${r.udp.onB}; lost ${r.udp.lost}; duplicated ${r.udp.duplicated}`);
    t.equal(r.udp.lost, 0, 'the UDP stream lost nothing');
    t.equal(r.udp.duplicated, 0, 'and duplicated nothing');
    t.ok(r.udp.onB > 0, 'datagrams went to B from SWITCH on');
  }
}

/** What A's rs_old_flows holds (for the record when DRAIN_FLOWS had to wait for idle flows). */
function oldFlowsOfA(): string {
  let m: BpfMap<ReturnType<typeof flowKeyCodec.decode>, ReturnType<typeof oldFlowCodec.decode>>;
  try {
    m = BpfMap.openPinned(join(bed.pinDir('A'), 'rs_old_flows'), flowKeyCodec, oldFlowCodec);
  } catch (err) {
    return `(not readable here: ${(err as Error).message})`;
  }
  using _m = m;
  const now = process.hrtime.bigint();
  return [...m.entries()].map(([k, v]) => `${k.sport}${v.fin ? ' FIN' : ''}${v.rst ? ' RST' : ''} quiet ${Number((now - v.lastNs) / 1_000_000n)} ms`).join(', ');
}

function tally(cs: readonly { server?: string; error?: string }[]): Record<string, number> {
  return cs.reduce<Record<string, number>>((m, c) => ((m[c.server ?? c.error ?? '?'] = (m[c.server ?? c.error ?? '?'] ?? 0) + 1), m), {});
}

const measured: Record<string, number> = {};

t.test('GET /v1/apps/:name/flows: counts of a LOCAL entry, and clear refusals', async (t) => {
  await reset(4);
  const token = readFileSync(bed.tokenFile, 'utf8').trim();
  const get = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${bed.url('A')}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const ok = await get('/v1/apps/x/flows');
  t.equal(ok.status, 200);
  t.match(ok.body, { app: 'x', action: 'local', active: 0, pinned: '0', sent: '0', idleMs: 30_000, lingerMs: 1000, capacity: 65_536 });
  t.match(await get('/v1/apps/x/flows?idleMs=0'), { status: 400, body: { field: 'idleMs' } }, 'idleMs must be ≥ 1');
  t.match(await get('/v1/apps/x/flows?lingerMs=soon'), { status: 400, body: { field: 'lingerMs' } });
  t.match(await get('/v1/apps/x/flows?every=1'), { status: 400, body: { field: 'every' } }, 'unknown parameters are refused');
  t.match(await get('/v1/apps/nope/flows'), { status: 404 });
});

t.test('IPv4 with --preserve-connections: old connections finish on A, new ones on B, UDP loses nothing', async (t) => {
  const r = await scenario(4, PRESERVE, { udp: true });
  checkPreserved(t, 4, r);
  measured.preserved = r.sessions.sessions.filter((s) => s.error === undefined).length;
});

t.test('IPv6 with --preserve-connections: the same', async (t) => {
  const r = await scenario(6, PRESERVE, { udp: true });
  checkPreserved(t, 6, r);
});

t.test('IPv4 without the flag: the same connections are reset at SWITCH (what the flag changes)', async (t) => {
  const r = await scenario(4, undefined, { udp: false });
  t.equal(r.outcome, 'done');
  t.equal(r.result.phases.DRAIN_FLOWS !== undefined, true, 'DRAIN_FLOWS is a no-op step');
  const { sessions } = r.sessions;
  const reset = sessions.filter((s) => s.error === 'ECONNRESET');
  t.comment(`without the flag: ${reset.length}/${CONNS} sessions reset (${JSON.stringify(tally(sessions.map((s) => ({ error: s.error ?? 'ok' }))))}); with it: ${measured.preserved ?? '?'}/${CONNS} went on`);
  t.equal(reset.length, CONNS, 'every old connection is reset');
  const switchEnter = r.events.find((x) => x.e.type === 'enter' && x.e.state === 'SWITCH')?.at ?? 0;
  t.ok(reset.every((s) => (s.errorAtMs ?? 0) >= switchEnter && (s.errorAtMs ?? Infinity) < r.stoppedAt), 'reset from SWITCH on, while x on A still ran: by B');
  t.notOk(r.result.flows, 'nothing journaled for flows');
});

t.test('drain of A with --preserve-connections: x and y keep their old connections on A until they close, then A is empty', async (t) => {
  await reset(4);
  const yA = bed.topo.app('y', 'A');
  const yB = bed.topo.app('y', 'B');
  const Y = workloadApp('y', yA.addr4);
  const yLog = join(bed.stateDir, 'workload', `${yA.ns.name}--y.log`);
  await driver.stop(Y, SOURCE, noteCtx);
  await bed.client('A').deleteApp('y');
  await bed.registerLocal(yA);
  await driver.start(Y, SOURCE, noteCtx);
  await waitForFile(yLog, /"ready"/);
  t.equal(xA.hostDev, xB.hostDev, 'the apps have the same device name on both hosts ({dev})');
  t.equal(yA.hostDev, yB.hostDev);
  const opts = { port: PORT, conns: 4, intervalMs: 5, timeoutMs: 3000, maxMs: 60_000 };
  const sx = await startSessions(bed.topo.client.ns, { ...opts, to: xA.addr4 });
  const sy = await startSessions(bed.topo.client.ns, { ...opts, to: yA.addr4 });
  let closing: Promise<SessionsReport[]> | undefined;
  const stopped: Record<string, number> = {};
  const progress: string[] = [];
  const r = await drain({
    source: bed.url('A'),
    destinations: [bed.url('B')],
    destDev: '{dev}',
    driver: bed.driverSpec({ port: PORT }),
    announce: bed.announceTo('B'),
    timing: TIMING,
    preserve: PRESERVE,
    stateDir: bed.stateDir,
    concurrency: 2,
    connect: bed.connect,
    observe: (e) => {
      if (e.type === 'done' && e.state === 'SWITCH' && !closing) {
        sx.mark();
        sy.mark();
        closing = sleep(OLD_FOR_MS).then(() => Promise.all([sx.close(), sy.close()]));
      }
      if (e.type === 'flows') progress.push(`${e.app}:${e.active}@${e.elapsedMs}`);
      const m = e.type === 'note' ? /^stopped (\w+) in /.exec(e.message) : null;
      if (m?.[1]) stopped[m[1]] = Date.now();
    },
  });
  const [rx, ry] = await (closing ?? Promise.all([sx.close(), sy.close()]));
  t.equal(r.outcome, 'done', `drain done in ${r.totalMs} ms (batches ${JSON.stringify(r.batches)})`);
  t.same(r.apps.map((a) => a.app), ['x', 'y']);
  for (const [app, rep, node] of [['x', rx, xA], ['y', ry, yA]] as const) {
    const sessions = rep?.sessions ?? [];
    const lastClose = Math.max(...sessions.map((s) => s.closedMs ?? Infinity));
    const res = r.apps.find((a) => a.app === app);
    t.comment(`${app}: ${sessions.reduce((n, s) => n + s.requestsAfter, 0)} requests after SWITCH on ${sessions.length} old connections; flows ${JSON.stringify(res?.flows)}; stopped ${(stopped[app] ?? Infinity) - lastClose} ms after the last close`);
    t.ok(sessions.length === 4 && sessions.every((s) => s.error === undefined && s.answers === s.requests && s.requestsAfter > 10), `${app}: every old connection went on, no reset, every request answered`);
    t.ok(sessions.every((s) => Object.keys(s.servers).join() === node.ns.name && s.bytesReceived === s.bytesAnswered), `${app}: all answers from the copy on A, no byte lost`);
    t.ok((res?.flows?.atStart ?? 0) >= 4 && res?.flows?.cut === 0, `${app}: DRAIN_FLOWS saw its old flows end, none cut`);
    t.ok((stopped[app] ?? 0) > lastClose, `${app} on A stopped after its last old connection closed`);
  }
  t.comment(`flow counts as they fell: ${progress.join(' ')}; A's old flows now: ${oldFlowsOfA()}`);
  t.same((await bed.client('A').listApps()).map((a) => a.name), [], 'A has no entry left');
  t.same(r.leftLocal, []);
  await driver.stop(X, DEST, noteCtx);
  await driver.stop(Y, DEST, noteCtx);
});
