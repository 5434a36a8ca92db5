/**
 * drain (issues 5 and 7): host A with N applications (1,000; driver none,
 * announce none) drained to host B by the controller's drain() against two
 * real agents: PREPARE (one listing), START/READY per app (driver none:
 * immediate), DELIVER (one batch on B), SWITCH (ONE batched map update on
 * A), STOP, ANNOUNCE (batch put-app on B). Against N route replaces into
 * VXLAN applied with one `ip -batch` on A (the kernel baseline's drain), in
 * the same run. Goals: batched switch ≥ 10× faster than the route replaces;
 * the whole drain < 2 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpAgentClient } from '../src/controller/agent-client.js';
import { DEFAULT_TIMING } from '../src/controller/journal.js';
import { drain } from '../src/controller/drain.js';
import { KernelBaseline } from '../src/testbed/kernel-baseline.js';
import { AgentRig, benchAddr, postBatch } from './agent-rig.js';
import { fmtMs } from './common.js';
import { ratioRow, type Benchmark, type Row } from './harness.js';

export const drainBench: Benchmark = {
  name: 'drain',
  title: 'drain of 1,000 apps (driver none): batched switch and whole drain vs 1,000 route replaces via ip -batch',
  async run(ctx): Promise<Row[]> {
    const n = ctx.quick ? 50 : 1000;
    const rig = await AgentRig.create({
      hosts: ['A', 'B'],
      apps: [
        { name: 'x', host: 'A', addr4: '10.200.0.10' },
        { name: 'x', host: 'B', addr4: '10.200.0.10', announced: false },
      ],
    });
    const stateDir = mkdtempSync(join(tmpdir(), 'rs-bench-state-'));
    try {
      const xA = rig.topo.app('x', 'A');
      const xB = rig.topo.app('x', 'B');
      const addrs = Array.from({ length: n }, (_, i) => benchAddr(i));
      // N apps LOCAL on A behind x's veth (MAC given), and B knows their neighbours (deliveries resolve them)
      await postBatch(
        rig.agent('A'),
        addrs.map((address, i) => ({ op: 'put-app', name: `d${i}`, address, dev: xA.hostDev, mac: xA.mac, action: { type: 'local' } })),
      );
      rig.topo.host('B').ns.ipBatch(addrs.map((a) => `neigh replace ${a} lladdr ${xB.mac} dev ${xB.hostDev} nud permanent`));

      const connect = (url: string): HttpAgentClient => new HttpAgentClient(url, { token: rig.token.token, timeoutMs: 120_000 });
      const res = await drain({
        source: rig.agent('A').url,
        destinations: [rig.agent('B').url],
        destDev: xB.hostDev,
        driver: { kind: 'none' },
        announce: { kind: 'none' },
        timing: DEFAULT_TIMING,
        stateDir,
        concurrency: 16,
        connect,
      });
      if (res.outcome !== 'done' || res.switchMode !== 'batch' || res.plan.items.length !== n || res.leftLocal.length) {
        throw new Error(`drain ended ${res.outcome}, switch ${res.switchMode}, ${res.plan.items.length} planned, ${res.leftLocal.length} left LOCAL`);
      }
      const switchMs = res.batches.SWITCH!;

      // the baseline: N route replaces into VXLAN in one ip -batch on A
      const kb = KernelBaseline.setup(rig.topo);
      let ipMs: number;
      try {
        ipMs = kb.switchAll(addrs);
      } finally {
        kb.teardown();
      }
      const phases = Object.fromEntries(Object.entries(res.batches).map(([k, v]) => [`${k}ms`, v ?? 0]));
      ctx.log(`${n} apps: batched SWITCH ${fmtMs(switchMs)} ms, whole drain ${fmtMs(res.totalMs)} ms (batched phases ${JSON.stringify(res.batches)}; every phase, wall ${JSON.stringify(res.phaseMs)}), ip -batch ${fmtMs(ipMs)} ms`);
      return [
        ratioRow({
          name: `drain ${n} apps: batched switch`,
          figure: switchMs,
          baseline: ipMs,
          unit: 'ms',
          baselineName: `${n} route replaces, ip -batch`,
          maxRatio: 0.1,
          note: `SWITCH of every app: one POST /v1/batch of ${n} set-action ops to agent A (one batched map update), as the controller timed it; baseline: ${n} \`route replace ADDR/32 via … dev vxlan\` in one \`ip -batch\` (a process) in the same run. ≤ 0.1× = ≥ 10× faster`,
          extra: phases,
        }),
        ratioRow({
          name: `drain ${n} apps: whole drain`,
          figure: res.totalMs,
          baseline: ipMs,
          unit: 'ms',
          baselineName: `${n} route replaces, ip -batch`,
          maxRatio: null,
          also: { ok: res.totalMs < 2000, goal: '< 2 s' },
          note: `drain() from plan to end (driver none, announce none, default timing: ${DEFAULT_TIMING.stopGraceMs} ms stop grace); batched phases (ms): ${Object.entries(res.batches).map(([k, v]) => `${k} ${fmtMs(v ?? 0)}`).join(', ')}`,
          extra: phases,
        }),
      ];
    } finally {
      await rig.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  },
};
