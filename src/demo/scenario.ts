/**
 * The demo: two hosts in network namespaces, two applications on host A
 * under live UDP streams; the real controller live-migrates X to host B,
 * then drains host A (Y moves too) — every packet counted at the client —
 * and the same migration is done once more the kernel's way (route flip into
 * VXLAN) for comparison.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../bpf/native.js';
import { HttpAgentClient, type AgentConnector } from '../controller/agent-client.js';
import { drain } from '../controller/drain.js';
import { DEFAULT_TIMING } from '../controller/journal.js';
import type { MigrationEvent, Step } from '../controller/machine.js';
import { migrate } from '../controller/migrate.js';
import type { DriverSpec } from '../workload/driver.js';
import { NetnsProcessDriver, killRecordedApps } from '../workload/netns-process.js';
import { AgentProcess } from '../testbed/agent-process.js';
import { KernelBaseline } from '../testbed/kernel-baseline.js';
import { Topology, type AppPlacement } from '../testbed/topology.js';
import { runUdpSender, startUdpReceiver, type SendReport, type UdpReceiver } from '../testbed/traffic.js';
import { RateMonitor, type RateSample } from './monitor.js';
import { renderSvg, type Marker } from './plot.js';

export interface DemoOptions {
  /** Seconds of traffic in the routeshift run. */
  durationS: number;
  /** Packets per second per application stream. */
  ratePps: number;
  /** Leave the namespaces and agents up for inspection. */
  keep: boolean;
  /** Directory for the plot and the JSON result. */
  outDir: string;
  /** Progress lines (already formatted); the CLI prints or suppresses them. */
  log: (line: string) => void;
  /** A live rates line; called often, for a terminal to redraw in place. */
  live?: (line: string) => void;
}

export interface StreamResult {
  app: string;
  sent: number;
  received: number;
  lost: number;
  duplicated: number;
  maxGapMs: number;
  senderPps: number;
}

export interface StepTiming {
  app: string;
  step: string;
  ms: number;
  atS: number;
}

export interface DemoResult {
  /** Name prefix of every namespace and pin directory of the run. */
  prefix: string;
  routeshift: {
    streams: StreamResult[];
    migration: { outcome: string; totalMs: number; steps: StepTiming[] };
    drain: { outcome: string; totalMs: number; switchMode: string; leftLocal: string[] };
    hostAEntriesAfter: { local: number; forward: number };
  };
  kernelBaseline: { streams: StreamResult[]; switchMs: number };
  plot: string;
  resultFile: string;
  kept?: {
    prefix: string;
    namespaces: string[];
    agents: { host: string; url: string; pid: number; pinDir: string }[];
    tokenFile: string;
    workDir: string;
  };
}

const PORT = 9000;
const APPS: AppPlacement[] = [
  { name: 'x', host: 'A', addr4: '10.200.0.10' },
  { name: 'y', host: 'A', addr4: '10.200.0.11' },
  { name: 'x', host: 'B', addr4: '10.200.0.10' },
  { name: 'y', host: 'B', addr4: '10.200.0.11' },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Loss and duplicates counted where the packets arrive: over the union of
 * the sequence numbers the app received on each host (files written by the
 * receivers), not from the echoes, which a busy client can drop from its
 * own socket buffer. The gap is the client's view (echoes).
 */
function streamResult(app: string, r: SendReport, seqFiles: readonly string[]): StreamResult {
  const seen = seqFiles.filter((f) => existsSync(f)).map((f) => readFileSync(f));
  let received = 0;
  let duplicated = 0;
  for (let seq = 0; seq < r.sent; seq++) {
    const copies = seen.reduce((n, s) => n + (s[seq] ?? 0), 0);
    if (copies > 0) received++;
    if (copies > 1) duplicated += copies - 1;
  }
  return {
    app,
    sent: r.sent,
    received,
    lost: r.sent - received,
    duplicated,
    maxGapMs: Math.round((r.echo?.maxGapMs ?? 0) * 100) / 100,
    senderPps: Math.round(r.ratePps),
  };
}

function echoCommand(maxMs: number, seqFile: string): string {
  const tool = join(repoRoot(), 'dist', 'src', 'testbed', 'udp-tool.js');
  return `${process.execPath} ${tool} recv '${JSON.stringify({ port: PORT, echo: true, maxMs, seqFile })}'`;
}

/** A pps line for the terminal: per host, per app and action. */
function ratesLine(s: RateSample): string {
  const parts = Object.entries(s.pps)
    .filter(([, v]) => v >= 1)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${Math.round(v)}/s`);
  return `t=${s.t.toFixed(1)}s  ${parts.join(' | ') || '(no traffic)'}`;
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const outDir = resolve(opts.outDir);
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'routeshift-demo-'));
  const tokenFile = join(work, 'token');
  writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const stateDir = join(work, 'state');
  const durationMs = opts.durationS * 1000;
  const seqFile = (app: string, host: string): string => join(work, `seq-${app}-${host}.bin`);
  const count = Math.round(opts.ratePps * opts.durationS);

  opts.log('building the network: client, fabric, host A, host B, apps x and y (namespaces)');
  const topo = Topology.create({ apps: APPS, ipv6: false });
  const pinDirs = ['A', 'B'].map((h) => `/sys/fs/bpf/${topo.prefix}-${h}`);
  const agents: AgentProcess[] = [];
  const echoes: UdpReceiver[] = [];
  let kept = false;
  const cleanup = async (): Promise<void> => {
    for (const e of echoes) await e.stop().catch(() => undefined);
    if (kept) return;
    killRecordedApps(join(stateDir, 'driver'));
    for (const a of agents) await a.stop().catch(() => undefined);
    topo.destroy();
    for (const d of pinDirs) rmSync(d, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  };
  try {
    opts.log('starting one agent per host (XDP on each uplink, API on loopback)');
    for (const [i, h] of ['A', 'B'].entries()) {
      agents.push(await AgentProcess.start({ netns: topo.host(h).ns.name, pinDir: pinDirs[i]!, tokenFile }));
    }
    const [agentA, agentB] = agents as [AgentProcess, AgentProcess];
    const token = agentA.token;
    const connect: AgentConnector = (url) => new HttpAgentClient(url, { token });
    const clientA = connect(agentA.url);
    for (const name of ['x', 'y']) {
      const app = topo.app(name, 'A');
      await clientA.putApp(name, { address: app.addr4, dev: app.hostDev });
      echoes.push(await startUdpReceiver(app.ns, { port: PORT, echo: true, maxMs: durationMs + 60_000, seqFile: seqFile(name, 'A') }));
    }
    opts.log(`apps x (${topo.app('x').addr4}) and y (${topo.app('y').addr4}) run on host A; their entries on A are LOCAL`);

    const monitor = new RateMonitor(
      [
        { host: 'A', url: agentA.url, token },
        { host: 'B', url: agentB.url, token },
      ],
      500,
      (s) => opts.live?.(ratesLine(s)),
    );
    await monitor.start();
    const markers: Marker[] = [];
    const steps: StepTiming[] = [];
    const observe = (e: MigrationEvent): void => {
      if (e.type === 'done') {
        const atS = monitor.now();
        steps.push({ app: e.app, step: e.state, ms: Math.round(e.ms * 10) / 10, atS });
        opts.log(`  ${e.app}: ${e.state.padEnd(8)} ${e.ms.toFixed(1).padStart(7)} ms`);
        if (e.state === 'SWITCH' || e.state === 'ANNOUNCE') markers.push({ t: atS, label: `${e.app} ${e.state}` });
      } else if (e.type === 'rollback') {
        opts.log(`  ${e.app}: rolling back from ${e.from}: ${e.error}`);
      }
    };
    const driver: DriverSpec = {
      kind: 'netns-process',
      sourceNetns: `${topo.prefix}-{app}A`,
      destNetns: `${topo.prefix}-{app}B`,
      command: echoCommand(durationMs + 60_000, join(work, 'seq-{app}-B.bin')),
      probe: { proto: 'udp', port: PORT, netns: `${topo.prefix}-{app}B`, timeoutMs: 200 },
      stateDir: join(stateDir, 'driver'),
    };
    const announce = { kind: 'netns-route' as const, netns: topo.fabric.name, via: [topo.host('B').addr4] };
    const timing = { ...DEFAULT_TIMING, stopGraceMs: 300, announceGraceMs: 300 };

    opts.log(`streams: ${opts.ratePps} packets/s to each app for ${opts.durationS} s, echoed back and counted at the client`);
    const streams = ['x', 'y'].map((name) =>
      runUdpSender(topo.client.ns, {
        to: topo.app(name).addr4,
        port: PORT,
        rate: opts.ratePps,
        count,
        maxMs: durationMs + 5000,
        echoWaitMs: 1000,
      }),
    );

    await sleep(durationMs * 0.25);
    opts.log('live migration of x from host A to host B (the patent\'s steps):');
    markers.push({ t: monitor.now(), label: 'migrate x' });
    const m = await migrate({
      app: 'x', from: agentA.url, to: agentB.url, destDev: topo.app('x', 'B').hostDev, driver, announce, timing, stateDir, connect, observe,
    });
    opts.log(`x: ${m.outcome} in ${m.totalMs.toFixed(0)} ms`);

    await sleep(Math.max(0, durationMs * 0.6 - monitor.now() * 1000));
    opts.log('draining host A (kernel migration): every app left on A moves to B');
    markers.push({ t: monitor.now(), label: 'drain A' });
    const d = await drain({
      source: agentA.url, destinations: [agentB.url], destDev: '{dev}', driver, announce, timing, stateDir, concurrency: 8, connect, observe,
    });
    opts.log(`drain: ${d.outcome} in ${d.totalMs.toFixed(0)} ms (switch applied as ${d.switchMode})`);

    const reports = await Promise.all(streams);
    monitor.stop();
    // The receivers write what they got when they stop: ours on A, the driver's on B.
    for (const e of echoes.splice(0)) await e.stop().catch(() => undefined);
    const destDriver = new NetnsProcessDriver(driver);
    for (const name of ['x', 'y']) {
      const app = { name, address: topo.app(name).addr4, proto: 'udp' as const, port: PORT, migrationId: 'demo' };
      await destDriver.stop(app, { role: 'destination', agentUrl: agentB.url, index: 0 }, { log: () => undefined });
    }
    const appsOnA = await clientA.listApps();
    const hostAEntriesAfter = {
      local: appsOnA.filter((a) => a.action.type === 'local').length,
      forward: appsOnA.filter((a) => a.action.type === 'forward').length,
    };
    opts.log(`host A now has ${hostAEntriesAfter.local} LOCAL entries and ${hostAEntriesAfter.forward} forwarding entries`);

    const plot = join(outDir, 'routeshift-demo.svg');
    writeFileSync(plot, renderSvg('routeshift demo: packets/s per host, app and action', monitor.samples, markers));

    opts.log('the same migration the kernel way: route on A flipped into a VXLAN tunnel to B');
    const baseline = await kernelBaselineRun(opts, Math.min(opts.durationS, 6), work);

    const result: DemoResult = {
      prefix: topo.prefix,
      routeshift: {
        streams: reports.map((r, i) => {
          const name = ['x', 'y'][i]!;
          return streamResult(name, r, [seqFile(name, 'A'), seqFile(name, 'B')]);
        }),
        migration: { outcome: m.outcome, totalMs: Math.round(m.totalMs), steps: steps.filter((s) => s.app === 'x') },
        drain: { outcome: d.outcome, totalMs: Math.round(d.totalMs), switchMode: d.switchMode, leftLocal: d.leftLocal },
        hostAEntriesAfter,
      },
      kernelBaseline: baseline,
      plot,
      resultFile: join(outDir, 'routeshift-demo.json'),
    };
    if (opts.keep) {
      kept = true;
      topo.keep();
      for (const a of agents) a.disown();
      result.kept = {
        prefix: topo.prefix,
        namespaces: topo.namespaceNames(),
        workDir: work,
        agents: agents.map((a, i) => ({ host: ['A', 'B'][i]!, url: a.url, pid: a.pid, pinDir: pinDirs[i]! })),
        tokenFile,
      };
    }
    writeFileSync(result.resultFile, `${JSON.stringify(result, null, 2)}\n`);
    return result;
  } finally {
    await cleanup();
  }
}

/** The kernel's way, in a fresh network: x's route on A replaced by a route into VXLAN. */
async function kernelBaselineRun(opts: DemoOptions, seconds: number, work: string): Promise<DemoResult['kernelBaseline']> {
  const topo = Topology.create({ apps: APPS, ipv6: false, peerXdp: 'none' });
  const echoes: UdpReceiver[] = [];
  try {
    const kb = KernelBaseline.setup(topo);
    const files = ['A', 'B'].map((h) => join(work, `kseq-x-${h}.bin`));
    for (const [i, h] of ['A', 'B'].entries()) {
      echoes.push(await startUdpReceiver(topo.app('x', h).ns, { port: PORT, echo: true, maxMs: seconds * 1000 + 30_000, seqFile: files[i]! }));
    }
    const count = Math.round(opts.ratePps * seconds);
    const stream = runUdpSender(topo.client.ns, { to: topo.app('x').addr4, port: PORT, rate: opts.ratePps, count, maxMs: seconds * 1000 + 5000, echoWaitMs: 1000 });
    await sleep(seconds * 1000 * 0.3);
    const switchMs = kb.switchApp(topo.app('x', 'A'));
    opts.log(`  kernel: ip route replace … dev vxlan took ${switchMs.toFixed(1)} ms`);
    await sleep(300);
    topo.announce('x', 'B');
    const r = await stream;
    for (const e of echoes.splice(0)) await e.stop().catch(() => undefined);
    return { streams: [streamResult('x', r, files)], switchMs: Math.round(switchMs * 10) / 10 };
  } finally {
    for (const e of echoes) await e.stop().catch(() => undefined);
    topo.destroy();
  }
}

export type { Step };
