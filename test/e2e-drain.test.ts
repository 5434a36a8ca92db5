/**
 * Drain (kernel migration) against real agents (issue 5, "Must show": drain).
 *
 * 1. Host A runs 50 apps (perl UDP responders, each bound to its own
 *    address, each with a LOCAL entry on A's agent); B has the same
 *    addresses, no app yet. (The 50 addresses share one app namespace and
 *    veth per host: the data plane sees 50 entries either way, and 100
 *    namespaces would cost ~20 s of set-up.) While every app receives its own sequence-numbered
 *    stream, `routeshift drain A --to B` (the CLI, driver netns-process,
 *    announce netns-route) starts all 50 on B, delivers, probes, switches
 *    them in ONE batched map update on A, stops them on A, announces: every
 *    app moved, A has no entry left, and no stream lost or duplicated a
 *    packet (accounted over what each app received on A and on B).
 * 2. 1,000 entries (driver none, entries only, no traffic) drained from A
 *    to B: completes, A ends empty; the time is reported.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Op } from '../src/controller/agent-client.js';
import type { DrainResult } from '../src/controller/drain.js';
import type { Timing } from '../src/controller/journal.js';
import { APP_MAX_SECONDS, Bed, DEST, ECHO_EVERY, SOURCE, account, cliJson, lastAppReport, runCli, sleep, startFlows, workloadApp } from './lib/e2e.js';

const N = 50;
const PORT = 9000;
const RATE = 200; // per app: 50 × 200 = 10k packets/s in all
const ENTRIES = 1000;
const TIMING: Timing = { readyTimeoutMs: 30_000, probeIntervalMs: 100, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };

const names = Array.from({ length: N }, (_, i) => `a${i}`);
const addr = (i: number): string => `10.200.1.${10 + i}`;

// One namespace per host holds the 50 apps' addresses (one veth `vapps` to the host, a /32 per app):
// 100 namespaces would cost ~20 s of `ip` runs to build; the data plane sees 50 entries either way.
const t0 = Date.now();
const bed = await Bed.create(t, {
  tag: 'rsd',
  apps: [
    { name: 'apps', host: 'A', addr4: addr(0) },
    { name: 'apps', host: 'B', addr4: addr(0), announced: false },
  ],
});
const { topo } = bed;
for (const host of ['A', 'B'] as const) {
  const node = topo.app('apps', host);
  const extra = names.slice(1).map((_, k) => addr(k + 1));
  node.ns.ipBatch(extra.map((a) => `addr add ${a}/32 dev eth0`));
  topo.host(host).ns.ipBatch(extra.flatMap((a) => [`route add ${a}/32 dev ${node.hostDev}`, `neigh replace ${a} lladdr ${node.mac} dev ${node.hostDev} nud permanent`]));
}
topo.fabric.ipBatch(names.slice(1).map((_, k) => `route replace ${addr(k + 1)}/32 via ${topo.host('A').addr4} dev ${topo.host('A').fabricDev}`));
t.comment(`topology (${N} app addresses per host) and two agents up in ${Date.now() - t0} ms`);

const appsA = topo.app('apps', 'A');
const appsB = topo.app('apps', 'B');
const driverOpts = { port: PORT, srcNetns: appsA.ns.name, dstNetns: appsB.ns.name, command: `perl ${bed.app} ${PORT} ${APP_MAX_SECONDS} ${ECHO_EVERY} {address}` };
const driver = bed.driver(driverOpts);
const log = (name: string, host: 'A' | 'B'): string => join(bed.stateDir, 'workload', `${(host === 'A' ? appsA : appsB).ns.name}--${name}.log`);
const noteCtx = { log: () => undefined };
const tail = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ').slice(0, 300) : 'no log');

t.test(`drain of ${N} apps while each receives traffic: every app moves, no loss`, async (t) => {
  const A = bed.client('A');
  await A.batch(names.map((name, i): Op => ({ op: 'put-app', name, address: addr(i), dev: appsA.hostDev, action: { type: 'local' } })));
  await Promise.all(names.map((name, i) => driver.start(workloadApp(name, addr(i)), SOURCE, noteCtx)));
  for (let round = 0; round < 100; round++) {
    if (names.every((n) => existsSync(log(n, 'A')) && readFileSync(log(n, 'A'), 'utf8').includes('"ready"'))) break;
    await sleep(50);
  }
  const flows = await startFlows(topo.client.ns, {
    flows: names.map((_, i) => ({ to: addr(i), port: PORT, rate: RATE, echoEvery: ECHO_EVERY })),
    maxMs: 120_000,
    echoWaitMs: 300,
  });
  await sleep(300);
  const run = runCli(['drain', bed.url('A'), '--to', bed.url('B'), '--dest-dev', '{dev}', '--concurrency', '16', '--json', ...bed.cliFlags({ ...driverOpts, timing: TIMING })], 120_000);
  const out = await run.done;
  await sleep(300);
  flows.signal();
  const report = await flows.report;
  await sleep(100);
  await Promise.all(names.map((name, i) => driver.stop(workloadApp(name, addr(i)), DEST, noteCtx)));

  const r = cliJson<DrainResult>('drain', out);
  t.equal(out.code, 0, 'exit 0');
  t.equal(r.outcome, 'done', 'drain done');
  t.equal(r.apps.length, N, `${N} apps in the plan`);
  const notDone = r.apps.filter((a) => a.outcome !== 'done');
  t.equal(notDone.length, 0, 'every app moved');
  for (const a of notDone.slice(0, 5)) t.comment(`${a.app}: ${a.outcome} ${a.error ?? ''} ${a.notes.join('; ')}`);
  t.equal(r.switchMode, 'batch', 'all switched in ONE batched update on A');
  t.same(r.leftLocal, [], 'A has no LOCAL entry left');
  t.same(await bed.client('A').listApps(), [], "A's agent holds no app at all");
  const onB = await bed.client('B').listApps();
  t.equal(onB.filter((a) => a.action.type === 'local').length, N, `B has all ${N} apps LOCAL`);
  t.same(await bed.client('B').listDeliveries(), [], 'B has no delivery entries left');
  const routes = JSON.parse(topo.fabric.ip('-j', 'route', 'show')) as { dst: string; gateway?: string }[];
  t.equal(names.filter((_, i) => routes.find((x) => x.dst === addr(i))?.gateway === topo.host('B').addr4).length, N, 'the fabric routes every app to B');

  let lost = 0;
  let dup = 0;
  let sent = 0;
  let movedBoth = 0;
  const bad: string[] = [];
  report.flows.forEach((f, i) => {
    const name = names[i] as string;
    const acc = account(f.sent, [lastAppReport(log(name, 'A')), lastAppReport(log(name, 'B'))]);
    sent += f.sent;
    lost += acc.lost;
    dup += acc.duplicated;
    if ((acc.perApp[0] ?? 0) > 0 && (acc.perApp[1] ?? 0) > 0) movedBoth++;
    if (acc.lost || acc.duplicated) bad.push(`${name}: sent ${f.sent}, A ${acc.perApp[0]}, B ${acc.perApp[1]}, lost ${acc.lost}, dup ${acc.duplicated}, missing ${JSON.stringify(acc.missing.slice(0, 3))}; A log: ${tail(log(name, 'A'))}; B log: ${tail(log(name, 'B'))}`);
  });
  const perApp = r.apps.map((a) => Object.values(a.phases).reduce((x, v) => x + v, 0));
  t.comment(
    `drain of ${N}: ${r.totalMs} ms in all, batched phases ${JSON.stringify(r.batches)}; ` +
      `per-app step time median ${median(perApp).toFixed(0)} ms, max ${Math.max(...perApp).toFixed(0)} ms`,
  );
  t.comment(`traffic: ${sent} packets to ${N} apps at ${Math.round(report.ratePps)} pps; lost ${lost}; duplicated ${dup}; client-side max echo gap ${Math.max(...report.flows.map((f) => f.echo.maxGapMs)).toFixed(1)} ms`);
  if (bad.length) t.comment(bad.slice(0, 5).join('\n'));
  t.equal(movedBoth, N, 'every app received traffic on A before and on B after');
  t.equal(lost, 0, 'no app lost a packet');
  t.equal(dup, 0, 'no packet was duplicated');
});

t.test(`drain of ${ENTRIES} entries (driver none, entries only) completes`, async (t) => {
  // Entries only: addresses nobody sends to, all on one veth of each host, with their MACs known on B.
  const a0A = appsA;
  const a0B = appsB;
  const entry = (i: number): string => `10.201.${i >> 8}.${i & 255}`;
  topo.host('B').ns.ipBatch(Array.from({ length: ENTRIES }, (_, i) => `neigh replace ${entry(i)} lladdr ${a0B.mac} dev ${a0B.hostDev} nud permanent`));
  const tPut = Date.now();
  await bed.client('A').batch(
    Array.from({ length: ENTRIES }, (_, i): Op => ({ op: 'put-app', name: `e${i}`, address: entry(i), dev: a0A.hostDev, mac: a0A.mac, action: { type: 'local' } })),
  );
  t.comment(`${ENTRIES} entries put on A in one batch in ${Date.now() - tPut} ms`);
  const tDrain = Date.now();
  const out = await runCli(
    [
      'drain', bed.url('A'), '--to', bed.url('B'), '--json',
      '--token-file', bed.tokenFile, '--state-dir', bed.stateDir,
      '--driver', 'none',
      '--announce', 'netns-route', '--announce-netns', topo.fabric.name, '--announce-via', topo.host('B').addr4, '--announce-dev', topo.host('B').fabricDev,
      '--stop-grace-ms', '0', '--announce-grace-ms', '200',
    ],
    180_000,
  ).done;
  const wall = Date.now() - tDrain;
  const r = cliJson<DrainResult>('drain', out);
  t.comment(`drain of ${ENTRIES} entries: ${r.totalMs} ms (CLI process ${wall} ms); batched phases ${JSON.stringify(r.batches)}; switch ${r.switchMode}`);
  t.equal(out.code, 0, 'exit 0');
  t.equal(r.outcome, 'done');
  t.equal(r.apps.filter((a) => a.outcome === 'done').length, ENTRIES, `all ${ENTRIES} moved`);
  t.equal(r.switchMode, 'batch', 'one batched SWITCH');
  t.same(r.leftLocal, [], 'no LOCAL entry left on A');
  t.equal((await bed.client('A').listApps()).length, 0, 'A is empty');
  t.equal((await bed.client('B').listApps()).filter((a) => a.name.startsWith('e')).length, ENTRIES, `B holds the ${ENTRIES} entries, LOCAL`);
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}
