/**
 * switchover (issues 5 and 7): a 20k packets/s stream of sequence-numbered
 * UDP from the client to app x while x moves from host A to host B:
 *
 *  1. kernel baseline: A's route to x flipped into VXLAN to B
 *     (`ip route replace`), B's kernel decapsulates and delivers;
 *  2. routeshift: a real migration by the controller (migrate(), driver
 *     none, announce none) against two real agents: PREPARE … SWITCH (one
 *     map update on A: LOCAL → FORWARD(B)) … ANNOUNCE.
 *
 * Each stream: lost, duplicated (over both hosts), and the largest gap between consecutive
 * packets that overlaps ±50 ms of the switch, against the largest gap
 * elsewhere in the same stream (a 2-core machine shows scheduling gaps at
 * random moments). x runs on both hosts (a receiver on each), so the
 * stream's gaps are each receiver's own (udp-tool keeps the 10 largest with
 * their times) plus the handover: B's first arrival − A's last.
 *
 * Control-plane latency: from the controller seeing READY done to SWITCH
 * done (controller + HTTP + agent + map update), against the wall time of
 * the `ip route replace` of the baseline.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpAgentClient } from '../src/controller/agent-client.js';
import { DEFAULT_TIMING } from '../src/controller/journal.js';
import type { MigrationEvent } from '../src/controller/machine.js';
import { migrate } from '../src/controller/migrate.js';
import { KernelBaseline } from '../src/testbed/kernel-baseline.js';
import { runUdpSender, startUdpReceiver, type SendReport, type SeqReport } from '../src/testbed/traffic.js';
import { AgentRig } from './agent-rig.js';
import { fmtMs, sleep, wallMs } from './common.js';
import { ratioRow, type Benchmark, type Row } from './harness.js';

const RATE = 20_000;
const PORT = 9000;
const WINDOW_MS = 50;

interface StreamResult {
  /** What x received on A (before the switch) and on B (after). */
  onA: SeqReport;
  onB: SeqReport;
  sent: SendReport;
  /** Unique packets received over both hosts, lost, duplicated (within a host, or on both). */
  unique: number;
  lost: number;
  duplicates: number;
  /** Switch interval, wall clock ms. */
  switchFrom: number;
  switchTo: number;
}

interface GapSplit {
  atSwitch: number;
  elsewhere: number;
  /** The gap between the last packet on A and the first on B. */
  handover: number;
}

function splitGaps(r: StreamResult): GapSplit {
  const lo = r.switchFrom - WINDOW_MS;
  const hi = r.switchTo + WINDOW_MS;
  const gaps = [...r.onA.gaps, ...r.onB.gaps];
  // the handover is a gap of the stream too: from the last packet on A to the first on B
  const handover = r.onA.lastAtMs !== null && r.onB.firstAtMs !== null ? r.onB.firstAtMs - r.onA.lastAtMs : Number.POSITIVE_INFINITY;
  if (Number.isFinite(handover)) gaps.push({ seq: -1, atMs: r.onB.firstAtMs!, gapMs: Math.max(0, handover) });
  const overlaps = (g: { atMs: number; gapMs: number }): boolean => g.atMs >= lo && g.atMs - g.gapMs <= hi;
  const at = gaps.filter(overlaps).map((g) => g.gapMs);
  const elsewhere = gaps.filter((g) => !overlaps(g)).map((g) => g.gapMs);
  return { atSwitch: at.length ? Math.max(...at) : 0, elsewhere: elsewhere.length ? Math.max(...elsewhere) : 0, handover };
}

/**
 * One stream to x, with a plain receiver on each placement of x (A before,
 * B after the switch); `doSwitch` runs at mid-stream. Received on both:
 * lost = sent − unique on A − unique on B; a packet received on both hosts
 * shows as unique on A + unique on B > sent (counted as duplicated).
 */
async function stream(rig: AgentRig, seconds: number, doSwitch: () => Promise<{ from: number; to: number }>): Promise<StreamResult> {
  const count = Math.round(RATE * seconds);
  const xA = rig.topo.app('x', 'A');
  const xB = rig.topo.app('x', 'B');
  const maxMs = seconds * 1000 + 10_000;
  const rxA = await startUdpReceiver(xA.ns, { port: PORT, maxMs });
  const rxB = await startUdpReceiver(xB.ns, { port: PORT, maxMs });
  try {
    const sending = runUdpSender(rig.topo.client.ns, { to: xA.addr4, port: PORT, rate: RATE, count, maxMs: seconds * 1000 + 5000 });
    await sleep((seconds * 1000) / 2);
    const sw = await doSwitch();
    const sent = await sending;
    await sleep(300); // the last packets in flight
    const onA = await rxA.stop();
    const onB = await rxB.stop();
    const both = onA.unique + onB.unique;
    return {
      onA,
      onB,
      sent,
      unique: Math.min(both, sent.sent),
      lost: Math.max(0, sent.sent - both),
      duplicates: onA.duplicates + onB.duplicates + Math.max(0, both - sent.sent),
      switchFrom: sw.from,
      switchTo: sw.to,
    };
  } finally {
    await rxA.stop().catch(() => undefined);
    await rxB.stop().catch(() => undefined);
  }
}

export const switchover: Benchmark = {
  name: 'switchover',
  title: 'switchover at 20k pps: gap at SWITCH vs elsewhere, vs kernel route flip + VXLAN; READY→flipped vs ip route replace',
  async run(ctx): Promise<Row[]> {
    const seconds = ctx.quick ? 1.5 : 4;
    const rig = await AgentRig.create({
      hosts: ['A', 'B'],
      apps: [
        { name: 'x', host: 'A', addr4: '10.200.0.10' },
        { name: 'x', host: 'B', addr4: '10.200.0.10', announced: false },
      ],
      startAgents: false,
    });
    const stateDir = mkdtempSync(join(tmpdir(), 'rs-bench-state-'));
    try {
      const xA = rig.topo.app('x', 'A');
      const xB = rig.topo.app('x', 'B');

      // 1. the kernel baseline, before any agent is attached
      const kb = KernelBaseline.setup(rig.topo);
      let flipMs = 0;
      let kernel: StreamResult;
      try {
        kernel = await stream(rig, seconds, async () => {
          const from = wallMs();
          flipMs = kb.switchApp(xA);
          return { from, to: wallMs() };
        });
      } finally {
        kb.switchBack(xA);
        kb.teardown();
      }

      // 2. routeshift: real agents, the controller's migrate()
      for (const h of ['A', 'B']) await rig.startAgent(h, []);
      const connect = (url: string): HttpAgentClient => new HttpAgentClient(url, { token: rig.token.token });
      const a = connect(rig.agent('A').url);
      await a.putApp('x', { address: xA.addr4, dev: xA.hostDev, mac: xA.mac, action: { type: 'local' } });
      const stamps: Partial<Record<string, number>> = {};
      let outcome = '';
      const rs = await stream(rig, seconds, async () => {
        const observe = (e: MigrationEvent): void => {
          if (e.type === 'enter' || e.type === 'done') stamps[`${e.type}:${e.state}`] = wallMs();
        };
        const res = await migrate({
          app: 'x',
          from: rig.agent('A').url,
          to: rig.agent('B').url,
          destDev: xB.hostDev,
          destMac: xB.mac,
          driver: { kind: 'none' },
          announce: { kind: 'none' },
          timing: DEFAULT_TIMING,
          stateDir,
          connect,
          observe,
        });
        outcome = res.outcome;
        if (res.outcome !== 'done') throw new Error(`migration ended ${res.outcome}: ${res.error ?? ''}`);
        return { from: stamps['enter:SWITCH']!, to: stamps['done:SWITCH']! };
      });
      const cpMs = stamps['done:SWITCH']! - stamps['done:READY']!;

      const g = splitGaps(rs);
      const k = splitGaps(kernel);
      const summary = (name: string, r: StreamResult, s: GapSplit): string =>
        `${name}: sent ${r.sent.sent} at ${Math.round(r.sent.ratePps)} pps, received ${r.onA.unique} on A + ${r.onB.unique} on B, lost ${r.lost}, dup ${r.duplicates}, gap at switch ${fmtMs(s.atSwitch)} ms (handover ${fmtMs(s.handover)} ms), elsewhere ${fmtMs(s.elsewhere)} ms`;
      ctx.log(summary('routeshift', rs, g));
      ctx.log(summary('kernel', kernel, k));
      ctx.log(`READY→SWITCH done ${fmtMs(cpMs)} ms (SWITCH request ${fmtMs(rs.switchTo - rs.switchFrom)} ms), ip route replace ${fmtMs(flipMs)} ms; migration ${outcome}`);
      const extra = (r: StreamResult, s: GapSplit) => ({
        sent: r.sent.sent,
        senderPps: Math.round(r.sent.ratePps),
        receivedOnA: r.onA.unique,
        receivedOnB: r.onB.unique,
        lost: r.lost,
        duplicates: r.duplicates,
        gapAtSwitchMs: Math.round(s.atSwitch * 100) / 100,
        handoverMs: Math.round(s.handover * 100) / 100,
        gapElsewhereMs: Math.round(s.elsewhere * 100) / 100,
      });
      const how = `${RATE} pps × ${seconds} s of 64 B sequence-numbered UDP client→x, received by x on A, then on B (udp-tool receivers: each keeps its 10 largest gaps with times; the handover gap is B's first arrival − A's last); switch at mid-stream; window ±${WINDOW_MS} ms around the switch`;
      return [
        ratioRow({
          name: 'switchover gap at SWITCH',
          figure: g.atSwitch,
          baseline: g.elsewhere,
          unit: 'ms',
          baselineName: 'largest gap elsewhere',
          maxRatio: 1,
          also: { ok: rs.lost === 0 && rs.duplicates === 0, goal: '0 lost, 0 dup' },
          note: `routeshift: a real migration (controller migrate(), two real agents, driver none, announce none). ${how}. Lost ${rs.lost}, duplicated ${rs.duplicates}; sender ${Math.round(rs.sent.ratePps)} pps`,
          extra: extra(rs, g),
        }),
        ratioRow({
          name: 'switchover gap vs kernel flip',
          figure: g.atSwitch,
          baseline: k.atSwitch,
          unit: 'ms',
          baselineName: 'kernel route flip + VXLAN',
          maxRatio: null,
          note: `the same stream through the kernel baseline (ip route replace into VXLAN on A, no agent attached yet): lost ${kernel.lost}, duplicated ${kernel.duplicates}, largest gap elsewhere ${fmtMs(k.elsewhere)} ms`,
          extra: extra(kernel, k),
        }),
        ratioRow({
          name: 'switchover READY→flipped',
          figure: cpMs,
          baseline: flipMs,
          unit: 'ms',
          baselineName: 'ip route replace',
          maxRatio: null,
          note: `controller: READY done → SWITCH done (journal fsync, HTTP POST /v1/apps/x/action, agent validation + map update, answer); baseline: the wall time of \`ip route replace\` (a process) in the same run`,
          extra: { switchRequestMs: Math.round((rs.switchTo - rs.switchFrom) * 100) / 100 },
        }),
      ];
    } finally {
      await rig.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  },
};
