/**
 * Delivery on the topologies users have, with the default agent flags —
 * never a silent drop (issue "deliver on the topologies users have",
 * requirement 6).
 *
 * Each case builds a two-host testbed (src/testbed/topology.ts), runs a
 * real `routeshift agent` per host with no flags beyond the testbed's own
 * (no --xdp-mode, no --mac: the agents find paths and MACs themselves),
 * registers x and y on A (each by its IPv4 and its IPv6 address), runs
 * the real apps (test/lib/e2e.ts APP_PL), and sends sequence-numbered UDP
 * from BOTH clients: `client` (veth default offloads: partial checksums)
 * and `remote` (TX checksum offload off: complete checksums), one flow per
 * (client, app, address family). In the middle of the stream x moves
 * A → B (both its addresses, two migrations at once) through the real
 * controller (migrate(), driver netns-process, announce netns-route). Per
 * case it asserts:
 *
 * - 0 lost and 0 duplicated per flow, over what x received on A and on B
 *   (account()), and for y on A;
 * - 0 UDP/TCP checksum errors in every app namespace (/proc/net/snmp{,6});
 * - the agents' counters equal what the apps received: for x, A's LOCAL
 *   count == what x received on A, B's delivery + B's LOCAL counts == what
 *   x received on B, A's FORWARD count == B's delivery count (A's entry and
 *   B's delivery are removed at ANNOUNCE: their last values are read by
 *   polling the views while the migration runs); for y, A's LOCAL count
 *   (the view, and routeshift_app_packets_total) == what y received;
 * - y's entries unchanged (minus counters);
 * - the path each entry took (the view's `path.via`) is the one for the
 *   layout: routed → 'tc-peer', bridge → 'tc', prepared → 'xdp'; FORWARD
 *   leaves by 'tc' where the uplink's peer takes no XDP frames;
 * - which packets actually came by native XDP redirect: each app veth
 *   counts the frames it took by ndo_xdp_xmit (ethtool -S, tx_queue_N_
 *   xdp_xmit). With an XDP fast path that is exactly the packets with a
 *   complete checksum (a partial one takes the slow path, and so does the
 *   one complete checksum in ~65,536 that equals the pseudo-header sum: the
 *   client tool lists those, FlowReport.pseudoOnly); else none;
 * - routeshift_drops_total is 0 for every reason on both agents, and no
 *   packet fell back to the kernel path.
 *
 * Cases: (a) plain routed (the default host), (c) the plain host's uplink
 * (a veth whose peer runs no XDP program: TC transmit, partial checksums
 * checked), (b) apps on a Linux bridge, (d) the prepared testbed (native
 * XDP fast path), and (e) peers that take XDP frames on a host with default
 * offloads: the client's partial checksums by the slow path, the remote's
 * by XDP, in one stream.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import type { Timing } from '../src/controller/journal.js';
import type { MigrationResult } from '../src/controller/machine.js';
import { migrate } from '../src/controller/migrate.js';
import type { Netns } from '../src/testbed/netns.js';
import { MIGRATION_APPS, type AppNode, type Topology } from '../src/testbed/topology.js';
import {
  APP_MAX_SECONDS,
  Bed,
  DEST,
  ECHO_EVERY,
  SOURCE,
  account,
  diagnose,
  lastAppReport,
  sleep,
  startApp,
  startFlows,
  waitForFile,
  workloadApp,
  type Accounting,
  type AppReport,
  type BedOptions,
  type FlowReport,
  type FlowSpec,
  type TestLike,
} from './lib/e2e.js';

const PORT = 9000;
/** Per flow: 8 flows (2 clients × 2 apps × 2 families) ≈ 4.8k packets/s in all. */
const RATE = 600;
/** Flows that reach one app process get disjoint sequence ranges, this far apart. */
const SEQ_STEP = 1_000_000;
const LEAD_MS = 1000;
const TAIL_MS = 1000;
/** Hard cap on each stream (the migration normally takes ~1-2 s). */
const STREAM_MAX_MS = 20_000;
const POLL_MS = 20;
const TIMING: Timing = { readyTimeoutMs: 8000, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 300, forwardAttempts: 3 };
const noteCtx = { log: (): void => undefined };
const FAMILIES = [4, 6] as const;
type Family = (typeof FAMILIES)[number];

t.setTimeout(300_000);

// ----------------------------------------------------------- helpers --

const entryName = (app: string, f: Family): string => (f === 4 ? app : `${app}6`);
const addrOf = (n: AppNode, f: Family): string => (f === 4 ? n.addr4 : n.addr6);

interface CounterView {
  packets: string;
  bytes: string;
}
/** GET /v1/apps/NAME and /v1/deliveries/NAME, as the agent answers (with the path). */
interface EntryView {
  name: string;
  address: string;
  dev: string;
  mac: string | null;
  macSource?: string;
  appId: number;
  action?: { type: 'local' } | { type: 'forward'; tunnel: string };
  path: { via: string; slowVia?: string };
  counters: { local?: CounterView; forward?: CounterView; deliver?: CounterView };
}

async function view(bed: Bed, host: string, kind: 'apps' | 'deliveries', name: string): Promise<EntryView | undefined> {
  const agent = bed.agents[host];
  if (!agent) throw new Error(`no agent on ${host}`);
  const r = await agent.request('GET', `/v1/${kind}/${name}`);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET /v1/${kind}/${name} on ${host}: ${r.status} ${r.text}`);
  return r.json as EntryView;
}

const packets = (c: CounterView | undefined): number => Number(c?.packets ?? 0);
const withoutCounters = (v: EntryView | undefined): unknown => (v ? { ...v, counters: undefined } : v);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The agent's routeshift_* samples from GET /metrics (Prometheus text). */
async function metrics(bed: Bed, host: string): Promise<Sample[]> {
  const r = await bed.agents[host]!.request('GET', '/metrics');
  const out: Sample[] = [];
  for (const line of r.text.split('\n')) {
    const m = /^(routeshift_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1] as string, x[2] as string]));
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of one sample (NaN when absent). */
function sample(m: Sample[], name: string, labels: Record<string, string>): number {
  const hit = m.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hit ? hit.value : NaN;
}

const byLabel = (m: Sample[], name: string, label: string, nonZero = false): Record<string, number> =>
  Object.fromEntries(m.filter((s) => s.name === name && (!nonZero || s.value !== 0)).map((s) => [s.labels[label] ?? '?', s.value]));
const dropsOf = (m: Sample[]): Record<string, number> => byLabel(m, 'routeshift_drops_total', 'reason');
const passedOf = (m: Sample[]): Record<string, number> => byLabel(m, 'routeshift_passed_total', 'event', true);

/** Checksum and receive counters of a namespace's stack (/proc/net/snmp and snmp6). */
interface Snmp {
  UdpInCsumErrors: number;
  Udp6InCsumErrors: number;
  TcpInCsumErrors: number;
  UdpInDatagrams: number;
  Udp6InDatagrams: number;
  UdpRcvbufErrors: number;
  Udp6RcvbufErrors: number;
}

function snmp(ns: { exec(cmd: string, ...args: string[]): string }): Snmp {
  const v4 = ns.exec('cat', '/proc/net/snmp').trim().split('\n');
  const table = (proto: string): Record<string, number> => {
    const [head, vals] = v4.filter((l) => l.startsWith(`${proto}:`));
    const k = head?.split(/\s+/).slice(1) ?? [];
    const v = vals?.split(/\s+/).slice(1) ?? [];
    return Object.fromEntries(k.map((name, i) => [name, Number(v[i])]));
  };
  let six: Record<string, number> = {};
  try {
    six = Object.fromEntries(
      ns
        .exec('cat', '/proc/net/snmp6')
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .map(([k, v]) => [k, Number(v)]),
    );
  } catch {
    /* no IPv6 in this namespace */
  }
  const udp = table('Udp');
  const tcp = table('Tcp');
  return {
    UdpInCsumErrors: udp.InCsumErrors ?? NaN,
    Udp6InCsumErrors: six.Udp6InCsumErrors ?? 0,
    TcpInCsumErrors: tcp.InCsumErrors ?? NaN,
    UdpInDatagrams: udp.InDatagrams ?? NaN,
    Udp6InDatagrams: six.Udp6InDatagrams ?? 0,
    UdpRcvbufErrors: udp.RcvbufErrors ?? NaN,
    Udp6RcvbufErrors: six.Udp6RcvbufErrors ?? 0,
  };
}

const snmpDelta = (a: Snmp, b: Snmp): Snmp => Object.fromEntries(Object.keys(a).map((k) => [k, b[k as keyof Snmp] - a[k as keyof Snmp]])) as unknown as Snmp;

/**
 * Polls entry views while a migration runs: A's entry and B's delivery for
 * x are removed at ANNOUNCE, so their counters are known only from the
 * last time they were seen. Keeps, per entry, the last view, when its
 * counters last changed, and every (action, path) it was seen with.
 */
class ViewPoller {
  readonly last = new Map<string, { v: EntryView; at: number; changedAt: number }>();
  readonly seen = new Map<string, Set<string>>();
  #stop = false;
  readonly #done: Promise<void>;

  constructor(
    private readonly bed: Bed,
    private readonly targets: { host: string; kind: 'apps' | 'deliveries'; name: string }[],
    maxMs: number,
  ) {
    const end = Date.now() + maxMs;
    this.#done = (async () => {
      while (!this.#stop && Date.now() < end) {
        await Promise.all(this.targets.map((tg) => this.#poll(tg)));
        await sleep(POLL_MS);
      }
    })();
  }

  static key(host: string, kind: string, name: string): string {
    return `${host} ${kind} ${name}`;
  }

  async #poll(tg: { host: string; kind: 'apps' | 'deliveries'; name: string }): Promise<void> {
    const v = await view(this.bed, tg.host, tg.kind, tg.name).catch(() => undefined);
    if (!v) return;
    const k = ViewPoller.key(tg.host, tg.kind, tg.name);
    const at = Date.now();
    const prev = this.last.get(k);
    const changed = !prev || JSON.stringify(prev.v.counters) !== JSON.stringify(v.counters);
    this.last.set(k, { v, at, changedAt: changed ? at : prev.changedAt });
    const s = this.seen.get(k) ?? new Set<string>();
    s.add(`${v.action?.type ?? 'delivery'}:${v.path.via}${v.path.slowVia ? `/${v.path.slowVia}` : ''}`);
    this.seen.set(k, s);
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  get(host: string, kind: string, name: string): { v: EntryView; at: number; changedAt: number } | undefined {
    return this.last.get(ViewPoller.key(host, kind, name));
  }

  paths(host: string, kind: string, name: string): string[] {
    return [...(this.seen.get(ViewPoller.key(host, kind, name)) ?? [])];
  }
}

/** Frames a veth took by ndo_xdp_xmit (a native XDP redirect into it), over its queues. */
function xdpXmit(ns: { exec(cmd: string, ...args: string[]): string }, dev: string): number {
  let n = 0;
  for (const m of ns.exec('ethtool', '-S', dev).matchAll(/tx_queue_\d+_xdp_xmit: (\d+)/g)) n += Number(m[1]);
  return n;
}

function ethtoolLine(ns: { exec(cmd: string, ...args: string[]): string }, dev: string): string {
  try {
    return ns
      .exec('ethtool', '-S', dev)
      .split('\n')
      .filter((l) => /drop|xdp|err|fail/.test(l) && !/: 0$/.test(l))
      .join(' ')
      .replace(/\s+/g, ' ');
  } catch (err) {
    return (err as Error).message;
  }
}

/** Where packets may have gone missing: on top of diagnose(), every veth of the path and the agents' status. */
async function diagnoseMore(bed: Bed, t: TestLike, apps: AppNode[]): Promise<void> {
  await diagnose(bed, t, apps);
  const topo = bed.topo;
  for (const h of Object.values(topo.hosts)) {
    t.comment(`${h.ns.name} eth0: ${ethtoolLine(h.ns, 'eth0')}; fabric ${h.fabricDev}: ${ethtoolLine(topo.fabric, h.fabricDev)}`);
    try {
      t.comment(`${h.ns.name} nstat: ${h.ns.exec('nstat', '-az', 'IpInDiscards', 'IpOutNoRoutes', 'UdpInCsumErrors', 'Udp6InCsumErrors', 'IpExtInCsumErrors', 'Ip6InDiscards', 'Ip6InNoRoutes').replace(/\s+/g, ' ')}`);
    } catch {
      /* nstat missing */
    }
    const st = await bed.agents[h.name]?.request('GET', '/status').catch(() => undefined);
    t.comment(`agent ${h.name} /status: ${JSON.stringify(st?.json)}`);
  }
  for (const a of apps) {
    t.comment(`${a.ns.name} eth0: ${ethtoolLine(a.ns, 'eth0')}; ${topo.host(a.host).ns.name} ${a.vethDev}: ${ethtoolLine(topo.host(a.host).ns, a.vethDev)}`);
  }
  t.comment(`agent logs: ${join(bed.dir, 'agent-A.log')}, ${join(bed.dir, 'agent-B.log')} (removed at teardown)`);
}

// ---------------------------------------------------------- the case --

interface Expect {
  /** path.via of LOCAL and delivery entries into the apps' devices. */
  via: string;
  /** path.slowVia, if the fast path is XDP. */
  slowVia?: string;
  /** path.via of A's FORWARD entry: how tunnelled packets leave by the uplink. */
  forwardVia: string;
  families: readonly Family[];
  /**
   * Which packets a native XDP redirect takes into the apps' veths (each
   * veth counts them: tx_queue_N_xdp_xmit): with an XDP fast path, exactly
   * those with a complete checksum — all of a sender without TX checksum
   * offload, none of one with it (partial: the slow path), less the rare
   * complete checksum that looks partial (FlowReport.pseudoOnly); else none.
   */
  xdpFastPath: boolean;
}

interface FlowResult {
  from: 'client' | 'remote';
  app: 'x' | 'y';
  family: Family;
  base: number;
  report: FlowReport;
  acc: Accounting;
}

interface CaseResult {
  results: MigrationResult[];
  flows: FlowResult[];
  poller: ViewPoller;
  xReports: Record<string, { onA: AppReport | undefined; onB: AppReport | undefined }>;
  yReport: AppReport;
  secs: number;
  pps: number;
}

/**
 * The stream, the migration in the middle of it, and every assertion of a
 * case. Leaves x on B, the apps stopped.
 */
async function runCase(t: Test, bed: Bed, ex: Expect): Promise<CaseResult> {
  const topo: Topology = bed.topo;
  const A = bed.client('A');
  const xA = topo.app('x', 'A');
  const xB = topo.app('x', 'B');
  const yA = topo.app('y', 'A');
  const fams = ex.families;

  // --- entries on A: x and y, LOCAL, no MAC given (the agent resolves it)
  for (const f of fams) {
    await A.putApp(entryName('x', f), { address: addrOf(xA, f), dev: xA.hostDev, action: { type: 'local' } });
    await A.putApp(entryName('y', f), { address: addrOf(yA, f), dev: yA.hostDev, action: { type: 'local' } });
  }
  const yBefore: Record<string, EntryView | undefined> = {};
  for (const f of fams) {
    for (const [node, app] of [
      [xA, 'x'],
      [yA, 'y'],
    ] as const) {
      const v = await view(bed, 'A', 'apps', entryName(app, f));
      t.equal(v?.path.via, ex.via, `A: ${entryName(app, f)} (${addrOf(node, f)}) LOCAL via ${ex.via}`);
      if (ex.slowVia) t.equal(v?.path.slowVia, ex.slowVia, `…partial checksums via ${ex.slowVia}`);
      t.equal(v?.macSource, 'resolved', `…its MAC resolved by the agent (${v?.mac})`);
      t.equal(v?.mac, node.mac, "…the app's MAC");
      if (app === 'y') yBefore[entryName(app, f)] = v;
    }
  }

  // --- the apps: x per address through the driver (so that STOP stops it), y dual-stack
  const driverOpts = { port: PORT, srcNetns: xA.ns.name, dstNetns: xB.ns.name, command: `perl ${bed.app} ${PORT} ${APP_MAX_SECONDS} ${ECHO_EVERY} {address}` };
  const driver = bed.driver(driverOpts);
  const log = (name: string, node: AppNode): string => join(bed.stateDir, 'workload', `${node.ns.name}--${name}.log`);
  for (const f of fams) await driver.start(workloadApp(entryName('x', f), addrOf(xA, f)), SOURCE, noteCtx);
  for (const f of fams) await waitForFile(log(entryName('x', f), xA), /"ready"/);
  const y = await startApp(yA.ns, bed.app, PORT, APP_MAX_SECONDS);
  const appsNs = [xA, xB, yA];
  const snmpBefore = appsNs.map((a) => snmp(a.ns));
  // who sends partial checksums: a sender whose eth0 has TX checksum offload on
  const partialSender = {
    client: /tx-checksumming: on/.test(topo.client.ns.exec('ethtool', '-k', 'eth0')),
    remote: /tx-checksumming: on/.test(topo.remote.ns.exec('ethtool', '-k', 'eth0')),
  };
  t.comment(`partial checksums from: ${Object.entries(partialSender).filter(([, v]) => v).map(([k]) => k).join(', ') || 'nobody'}`);
  const vethOf = (a: AppNode): [Netns, string] => [topo.host(a.host).ns, a.vethDev];
  const xmitBefore = appsNs.map((a) => xdpXmit(...vethOf(a)));
  const yMetricsBefore = await metrics(bed, 'A');

  // --- the flows: per client, per app, per family; disjoint sequence ranges per app process
  const specs: { from: 'client' | 'remote'; app: 'x' | 'y'; family: Family; spec: FlowSpec }[] = [];
  for (const from of ['client', 'remote'] as const) {
    for (const f of fams) {
      for (const [app, node] of [
        ['x', xA],
        ['y', yA],
      ] as const) {
        // x: one process per address (2 flows each); y: one dual-stack process (2 × families flows)
        const slot = (from === 'client' ? 0 : 1) + (app === 'y' && f === 6 ? 2 : 0);
        const src = f === 4 ? topo[from].addr4 : topo[from].addr6;
        specs.push({ from, app, family: f, spec: { to: addrOf(node, f), port: PORT, rate: RATE, echoEvery: ECHO_EVERY, seqBase: slot * SEQ_STEP, src } });
      }
    }
  }
  const targets = fams.flatMap((f) => [
    { host: 'A', kind: 'apps' as const, name: entryName('x', f) },
    { host: 'B', kind: 'deliveries' as const, name: entryName('x', f) },
    { host: 'B', kind: 'apps' as const, name: entryName('x', f) },
  ]);
  const tools = await Promise.all(
    (['client', 'remote'] as const).map((from) =>
      startFlows(topo[from].ns, { flows: specs.filter((s) => s.from === from).map((s) => s.spec), maxMs: STREAM_MAX_MS, echoWaitMs: 300 }),
    ),
  );
  const poller = new ViewPoller(bed, targets, STREAM_MAX_MS + 5000);
  t.teardown(() => poller.stop());
  let results: MigrationResult[];
  try {
    await sleep(LEAD_MS);
    // x moves A → B by both its addresses at once: two migrations, each with its own lock and journal.
    results = await Promise.all(
      fams.map((f) =>
        migrate({
          app: entryName('x', f),
          from: bed.url('A'),
          to: bed.url('B'),
          destDev: xB.hostDev,
          driver: bed.driverSpec(driverOpts),
          announce: bed.announceTo('B', f),
          timing: TIMING,
          stateDir: bed.stateDir,
          connect: bed.connect,
        }),
      ),
    );
    await sleep(TAIL_MS);
  } finally {
    for (const tool of tools) tool.signal();
  }
  const reports = await Promise.all(tools.map((tool) => tool.report));
  await sleep(150);
  await poller.stop();
  for (const f of fams) await driver.stop(workloadApp(entryName('x', f), addrOf(xA, f)), DEST, noteCtx);
  for (const f of fams) await driver.stop(workloadApp(entryName('x', f), addrOf(xA, f)), SOURCE, noteCtx);
  y.signal();
  const yReport = await y.report;
  const snmpAfter = appsNs.map((a) => snmp(a.ns));
  const xmit = appsNs.map((a, i) => xdpXmit(...vethOf(a)) - (xmitBefore[i] ?? 0));

  // --- accounting
  const xReports: CaseResult['xReports'] = {};
  for (const f of fams) xReports[entryName('x', f)] = { onA: lastAppReport(log(entryName('x', f), xA)), onB: lastAppReport(log(entryName('x', f), xB)) };
  const flowResults: FlowResult[] = [];
  const byFrom = { client: reports[0]!, remote: reports[1]! };
  for (const from of ['client', 'remote'] as const) {
    const mine = specs.filter((s) => s.from === from);
    mine.forEach((s, i) => {
      const report = byFrom[from].flows[i];
      if (!report) throw new Error(`no report for flow ${i} from ${from}`);
      const base = s.spec.seqBase ?? 0;
      const reps = s.app === 'x' ? [xReports[entryName('x', s.family)]?.onA, xReports[entryName('x', s.family)]?.onB] : [yReport];
      flowResults.push({ from, app: s.app, family: s.family, base, report, acc: account(report.sent, reps, base) });
    });
  }
  const secs = (Math.max(...reports.map((r) => r.stopAtMs)) - Math.min(...reports.map((r) => r.startAtMs))) / 1000;
  const total = flowResults.reduce((n, f) => n + f.report.sent, 0);
  const out: CaseResult = { results, flows: flowResults, poller, xReports, yReport, secs, pps: total / secs };

  results.forEach((r, i) => t.equal(r.outcome, 'done', `migration of ${entryName('x', fams[i]!)} done in ${r.totalMs} ms`));
  for (const fr of flowResults) {
    const where = fr.app === 'x' ? `A ${fr.acc.perApp[0]}, B ${fr.acc.perApp[1]}` : `A ${fr.acc.perApp[0]}`;
    t.comment(`${fr.from} → ${fr.app} IPv${fr.family}: sent ${fr.report.sent}, received ${where}, lost ${fr.acc.lost}, duplicated ${fr.acc.duplicated}${fr.acc.missing.length ? `, missing ${JSON.stringify(fr.acc.missing.map(([a, b]) => [a + fr.base, b + fr.base]))}` : ''}`);
  }
  const anyLost = flowResults.some((f) => f.acc.lost || f.acc.duplicated);
  const lostOrDupe = flowResults.filter((f) => f.acc.lost || f.acc.duplicated).map((f) => `${f.from}→${f.app}/v${f.family}`);

  // every flow: sent at about its rate, all of it received exactly once
  t.equal(lostOrDupe.length, 0, `every flow: 0 lost, 0 duplicated${lostOrDupe.length ? ` (not: ${lostOrDupe.join(', ')})` : ''}`);
  for (const fr of flowResults) {
    const label = `${fr.from} → ${fr.app} IPv${fr.family}`;
    t.equal(fr.report.errors, 0, `${label}: no send errors`);
    t.ok(fr.report.sent > RATE * secs * 0.8, `${label}: ~${RATE} pps sent (${Math.round(fr.report.sent / secs)})`);
    t.ok(fr.report.sent < SEQ_STEP, `${label}: sequence range within its slot`);
    t.equal(fr.acc.lost, 0, `${label}: 0 lost`);
    t.equal(fr.acc.duplicated, 0, `${label}: 0 duplicated`);
    if (fr.app === 'x') t.ok((fr.acc.perApp[0] ?? 0) > 0 && (fr.acc.perApp[1] ?? 0) > 0, `${label}: served on A before SWITCH and on B after`);
  }
  t.equal(yReport.dup, 0, 'y: no datagram received twice');
  for (const [name, r] of Object.entries(xReports)) t.equal((r.onA?.dup ?? 0) + (r.onB?.dup ?? 0), 0, `${name}: no datagram received twice on A or on B`);

  // checksums at the receiving apps
  appsNs.forEach((a, i) => {
    const d = snmpDelta(snmpBefore[i]!, snmpAfter[i]!);
    t.comment(`${a.ns.name}: ${JSON.stringify(d)}`);
    t.equal(d.UdpInCsumErrors, 0, `${a.name} on ${a.host}: 0 UdpInCsumErrors`);
    t.equal(d.Udp6InCsumErrors, 0, `${a.name} on ${a.host}: 0 Udp6InCsumErrors`);
    t.equal(d.TcpInCsumErrors, 0, `${a.name} on ${a.host}: 0 TcpInCsumErrors`);
  });

  // the agents' counters == what the apps received; the paths the entries took
  for (const f of fams) {
    const name = entryName('x', f);
    const rep = xReports[name]!;
    const aLast = poller.get('A', 'apps', name);
    const dLast = poller.get('B', 'deliveries', name);
    const bNow = await view(bed, 'B', 'apps', name);
    const aLocal = packets(aLast?.v.counters.local);
    const aForward = packets(aLast?.v.counters.forward);
    const bDeliver = packets(dLast?.v.counters.deliver);
    const bLocal = packets(bNow?.counters.local);
    const stable = (e: { at: number; changedAt: number } | undefined): string => (e ? `${e.at - e.changedAt} ms` : 'never seen');
    t.comment(
      `${name}: agent A local ${aLocal}, forward ${aForward} (last read unchanged for ${stable(aLast)} before the entry went); ` +
        `agent B deliver ${bDeliver} (unchanged for ${stable(dLast)}), local ${bLocal}; app received on A ${rep.onA?.udp}, on B ${rep.onB?.udp}`,
    );
    t.comment(`${name} paths seen: A ${poller.paths('A', 'apps', name).join(', ')}; B delivery ${poller.paths('B', 'deliveries', name).join(', ')}; B ${poller.paths('B', 'apps', name).join(', ')}`);
    t.ok(rep.onA && rep.onA.netns === xA.ns.name, `${name} on A reported`);
    t.ok(rep.onB && rep.onB.netns === xB.ns.name, `${name} on B reported`);
    t.ok(aLast && aLast.at - aLast.changedAt >= 50, `${name}: A's counters had settled when its entry was last seen`);
    t.ok(dLast && dLast.at - dLast.changedAt >= 50, `${name}: B's delivery counters had settled when it was last seen`);
    t.equal(aLocal, rep.onA?.udp, `${name}: A's LOCAL count == what x received on A (${rep.onA?.udp})`);
    t.equal(bDeliver + bLocal, rep.onB?.udp, `${name}: B's delivery + LOCAL counts == what x received on B (${rep.onB?.udp})`);
    t.equal(aForward, bDeliver, `${name}: every packet A forwarded was delivered by B (${aForward})`);
    t.ok(aForward > 0, `${name}: A forwarded part of the stream (between SWITCH and ANNOUNCE)`);
    t.same(poller.paths('A', 'apps', name), [`local:${ex.via}${ex.slowVia ? `/${ex.slowVia}` : ''}`, `forward:${ex.forwardVia}`], `${name} on A: LOCAL via ${ex.via}, then FORWARD via ${ex.forwardVia}`);
    t.same(poller.paths('B', 'deliveries', name), [`delivery:${ex.via}${ex.slowVia ? `/${ex.slowVia}` : ''}`], `${name}: B's delivery via ${ex.via}`);
    t.equal(bNow?.path.via, ex.via, `${name}: LOCAL on B via ${ex.via}`);
    t.equal(bNow?.mac, xB.mac, `${name}: B resolved x's MAC on B`);
    t.equal(await view(bed, 'A', 'apps', name), undefined, `${name}: A has no entry left`);
    t.equal(bed.fabricRoute(addrOf(xA, f)), f === 4 ? topo.host('B').addr4 : topo.host('B').addr6, `${name}: the fabric routes it to B`);
  }
  const yMetricsAfter = await metrics(bed, 'A');
  for (const f of fams) {
    const name = entryName('y', f);
    const after = await view(bed, 'A', 'apps', name);
    const sent = flowResults.filter((r) => r.app === 'y' && r.family === f).reduce((n, r) => n + r.report.sent, 0);
    const served = flowResults.filter((r) => r.app === 'y' && r.family === f).reduce((n, r) => n + r.acc.served, 0);
    const local = packets(after?.counters.local) - packets(yBefore[name]?.counters.local);
    const key = `routeshift_app_packets_total{app="${name}",action="local"}`;
    const promAt = (m: Sample[]): number => sample(m, 'routeshift_app_packets_total', { app: name, action: 'local' });
    const prom = promAt(yMetricsAfter) - promAt(yMetricsBefore);
    t.comment(`${name}: sent ${sent}, received ${served}; A's LOCAL count ${local}, ${key} +${prom}`);
    t.same(withoutCounters(after), withoutCounters(yBefore[name]), `${name}: its entry on A is unchanged`);
    t.equal(local, served, `${name}: A's LOCAL count == what y received`);
    t.equal(prom, served, `${name}: routeshift_app_packets_total local == what y received`);
    t.equal(served, sent, `${name}: y received every packet sent to it`);
  }

  // which packets took the native XDP redirect into the apps' veths, which the TC path
  const reportsOf = (fr: FlowResult): (AppReport | undefined)[] => (fr.app === 'x' ? [xReports[entryName('x', fr.family)]?.onA, xReports[entryName('x', fr.family)]?.onB] : [yReport]);
  const has = (r: AppReport | undefined, seq: number): boolean => !!r?.ranges.some(([a, b]) => seq >= a && seq <= b);
  const tally = (app: 'x' | 'y', at: 0 | 1): { complete: number; looksPartial: number; partial: number } => {
    const out = { complete: 0, looksPartial: 0, partial: 0 };
    for (const fr of flowResults.filter((r) => r.app === app)) {
      const got = fr.acc.perApp[at] ?? 0;
      if (partialSender[fr.from]) {
        out.partial += got;
        continue;
      }
      const rep = reportsOf(fr)[at];
      const odd = (fr.report.pseudoOnly ?? []).filter((seq) => has(rep, fr.base + seq)).length;
      out.complete += got - odd;
      out.looksPartial += odd;
    }
    return out;
  };
  const places = [['x', 0, 'x on A'], ['x', 1, 'x on B'], ['y', 0, 'y on A']] as const;
  places.forEach(([app, at, label], i) => {
    const n = tally(app, at);
    const wanted = ex.xdpFastPath ? n.complete : 0;
    t.comment(`${label}: ${xmit[i]} frames by native XDP redirect into its veth (xdp_xmit); the app received ${n.complete} with complete checksums, ${n.looksPartial} complete that look partial, ${n.partial} partial`);
    t.equal(
      xmit[i],
      wanted,
      ex.xdpFastPath
        ? `${label}: exactly the packets with complete checksums came by native XDP redirect, the partial ones (and complete ones that look partial) by the slow path`
        : `${label}: no packet came by native XDP redirect`,
    );
  });

  // drops: none, for any reason, on either agent
  for (const h of ['A', 'B']) {
    const m = await metrics(bed, h);
    const drops = dropsOf(m);
    t.comment(`agent ${h}: routeshift_drops_total ${JSON.stringify(drops)}; routeshift_passed_total (non-zero) ${JSON.stringify(passedOf(m))}`);
    t.ok(Object.keys(drops).length > 0, `agent ${h} exports routeshift_drops_total`);
    t.same(Object.entries(drops).filter(([, v]) => v !== 0), [], `agent ${h}: routeshift_drops_total is 0 for every reason`);
    const passed = byLabel(m, 'routeshift_passed_total', 'event');
    t.equal(passed.kernel_path, 0, `agent ${h}: no packet fell back to the kernel path`);
    t.equal(passed.no_neigh, 0, `agent ${h}: no tunnelled packet lacked its next hop`);
  }
  t.comment(`stream: ${flowResults.length} flows, ${flowResults.reduce((n, f) => n + f.report.sent, 0)} packets in ${secs.toFixed(1)} s (${Math.round(out.pps)} pps)`);
  if (anyLost) await diagnoseMore(bed, t, appsNs);
  return out;
}

function bedOptions(tag: string, topology: BedOptions['topology']): BedOptions {
  return { tag, apps: MIGRATION_APPS, topology: { ipv6: true, ...topology } };
}

// ------------------------------------------------------------ the cases --

const started = Date.now();
// The plain host (a, c): one bed for both.
const plain = await Bed.create(t, bedOptions('rst', {}));
let plainCase: CaseResult | undefined;

t.test('plain routed host (the default), IPv4 and IPv6: apps behind a veth with default offloads and no XDP, /32 and /128 via the link address — every packet delivered once via tc-peer, counted, no checksum error, no drop', async (t) => {
  const topo = plain.topo;
  const xA = topo.app('x', 'A');
  t.ok(JSON.parse(topo.host('A').ns.ip('-4', '-j', 'route', 'show', `${xA.addr4}/32`))[0]?.gateway, `A routes ${xA.addr4}/32 via the link address`);
  t.equal(JSON.parse(topo.host('A').ns.ip('-6', '-j', 'route', 'show', `${xA.addr6}/128`))[0]?.gateway, 'fe80::2', `A routes ${xA.addr6}/128 via fe80::2`);
  t.notOk(JSON.parse(xA.ns.ip('-j', 'link', 'show', 'dev', 'eth0'))[0]?.xdp, "no XDP program on x's eth0");
  plainCase = await runCase(t, plain, { via: 'tc-peer', forwardVia: 'tc', families: FAMILIES, xdpFastPath: false });
});

t.test("plain host's uplink is a veth whose peer runs no XDP program: FORWARD leaves by TC, partial checksums are checked, the client's partial checksums arrive intact", async (t) => {
  const topo = plain.topo;
  for (const h of Object.values(topo.hosts)) {
    const [fab] = JSON.parse(topo.fabric.ip('-j', 'link', 'show', 'dev', h.fabricDev)) as { xdp?: unknown; link_type?: string }[];
    t.equal(fab?.xdp, undefined, `fabric side ${h.fabricDev} of ${h.name}'s uplink runs no XDP program`);
    const [up] = JSON.parse(h.ns.ip('-d', '-j', 'link', 'show', 'dev', 'eth0')) as { xdp?: { mode?: number; prog?: { id: number } }; linkinfo?: { info_kind?: string } }[];
    t.equal(up?.linkinfo?.info_kind, 'veth', `${h.name}'s uplink is a veth`);
    t.ok(up?.xdp, `${h.name}'s uplink runs the agent's XDP program`);
    const st = (await plain.agents[h.name]!.request('GET', '/status')).json as { hook: { uplinkTx: string; checksPartialChecksums: boolean; mode: string; attachedProgramId: number } };
    t.comment(`agent ${h.name} hook: ${JSON.stringify(st.hook)}`);
    t.equal(st.hook.mode, 'native', `agent ${h.name}: native XDP (the default)`);
    t.equal(st.hook.uplinkTx, 'tc', `agent ${h.name}: /status hook.uplinkTx 'tc'`);
    t.equal(st.hook.checksPartialChecksums, true, `agent ${h.name}: /status hook.checksPartialChecksums true`);
  }
  const txCsum = (ns: typeof topo.client.ns): string => /tx-checksumming: (\w+)/.exec(ns.exec('ethtool', '-k', 'eth0'))?.[1] ?? '?';
  t.equal(txCsum(topo.client.ns), 'on', 'client: TX checksum offload on (it sends partial checksums)');
  t.equal(txCsum(topo.remote.ns), 'off', 'remote: TX checksum offload off (it sends complete checksums)');
  const c = plainCase;
  t.ok(c, 'the plain routed case ran');
  if (!c) return;
  for (const f of FAMILIES) {
    const name = entryName('x', f);
    t.same(c.poller.paths('A', 'apps', name).filter((p) => p.startsWith('forward:')), ['forward:tc'], `${name}: A's FORWARD entry left by TC`);
    t.ok(packets(c.poller.get('A', 'apps', name)?.v.counters.forward) > 0, `${name}: …and forwarded packets that way`);
    for (const from of ['client', 'remote'] as const) {
      const fr = c.flows.find((r) => r.app === 'x' && r.family === f && r.from === from);
      t.ok(fr && fr.acc.lost === 0 && fr.acc.duplicated === 0 && (fr.acc.perApp[1] ?? 0) > 0, `${from} → ${name}: delivered on A, through the tunnel and on B, none lost`);
    }
  }
});

t.test('apps on a Linux bridge on the host (appLink bridge): every packet delivered once via tc, counted, no checksum error, no drop', async (t) => {
  const bed = await Bed.create(t, bedOptions('rstb', { appLink: 'bridge' }));
  const xA = bed.topo.app('x', 'A');
  t.equal(xA.hostDev, 'rsbr0', 'x on A is reached through the bridge rsbr0');
  const [br] = JSON.parse(bed.topo.host('A').ns.ip('-d', '-j', 'link', 'show', 'dev', 'rsbr0')) as { linkinfo?: { info_kind?: string } }[];
  t.equal(br?.linkinfo?.info_kind, 'bridge', 'rsbr0 is a Linux bridge');
  await runCase(t, bed, { via: 'tc', forwardVia: 'tc', families: FAMILIES, xdpFastPath: false });
});

t.test('prepared testbed (rs_pass on every peer, offloads off, permanent neighbours): the fast path stays native XDP, every packet delivered once, no drop', async (t) => {
  const bed = await Bed.create(t, bedOptions('rstp', { prepared: true }));
  for (const h of Object.values(bed.topo.hosts)) {
    const [fab] = JSON.parse(bed.topo.fabric.ip('-j', 'link', 'show', 'dev', h.fabricDev)) as { xdp?: unknown }[];
    t.ok(fab?.xdp, `fabric side ${h.fabricDev} runs an XDP program (rs_pass)`);
    const st = (await bed.agents[h.name]!.request('GET', '/status')).json as { hook: { uplinkTx: string; checksPartialChecksums: boolean } };
    t.comment(`agent ${h.name} hook: ${JSON.stringify(st.hook)}`);
    t.equal(st.hook.uplinkTx, 'xdp-redirect', `agent ${h.name}: FORWARD leaves by XDP (hook.uplinkTx xdp-redirect)`);
  }
  await runCase(t, bed, { via: 'xdp', slowVia: 'tc-peer', forwardVia: 'xdp-redirect', families: FAMILIES, xdpFastPath: true });
});

t.test("peers that take XDP frames, senders with default offloads (routed, ARP/ND): complete checksums by native XDP, the client's partial checksums by the TC slow path, none corrupted or dropped", async (t) => {
  const bed = await Bed.create(t, bedOptions('rstx', { peerXdp: 'native' }));
  const txCsum = /tx-checksumming: (\w+)/.exec(bed.topo.client.ns.exec('ethtool', '-k', 'eth0'))?.[1];
  t.equal(txCsum, 'on', 'client: TX checksum offload on (partial checksums)');
  await runCase(t, bed, { via: 'xdp', slowVia: 'tc-peer', forwardVia: 'xdp-redirect', families: FAMILIES, xdpFastPath: true });
});

t.teardown(() => {
  console.log(`# e2e-topologies: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
