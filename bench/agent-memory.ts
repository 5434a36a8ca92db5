/**
 * agent memory (issues 4 and 7): RSS of a real `routeshift agent`
 * (--capacity 1,048,576) holding 1,000,000 application entries (FORWARD,
 * loaded through POST /v1/batch in chunks), against the same agent idle,
 * in the same run. Goal ≤ 100 MB.
 *
 * The figure is the agent's steady RSS 1 s after the last chunk: after a
 * batch of ≥ 10k ops the agent collects its garbage and trims malloc
 * (src/agent/memory.ts), and it runs with a capped young generation
 * (--max-semi-space-size=2, as the CLI and systemd unit start it). The
 * peak while a 100k-op chunk is staged (VmHWM) is reported beside it.
 *
 * RSS is read from /proc/PID/status. Where the memory goes is read inside
 * the agent by a preloaded probe (bench/mem-probe.ts, NODE_OPTIONS=--import;
 * it adds nothing to the agent but a SIGUSR2 handler): process.memoryUsage()
 * before and after a full GC, and V8's heap spaces. The BPF maps themselves
 * are kernel memory, not in the agent's RSS.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../src/bpf/native.js';
import { HttpAgentClient } from '../src/controller/agent-client.js';
import type { AgentProcess } from '../src/testbed/agent-process.js';
import { AgentRig, benchAddr, postBatch } from './agent-rig.js';
import { rssOf, sleep } from './common.js';
import { ratioRow, type Benchmark, type Row } from './harness.js';

const MB = 1024 * 1024;
const CAPACITY = 1 << 20;

interface Probe {
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  spaces: { name: string; used: number; size: number }[];
}

async function probe(a: AgentProcess, file: string): Promise<Probe> {
  rmSync(file, { force: true });
  process.kill(a.pid, 'SIGUSR2');
  for (let i = 0; i < 200 && !existsSync(file); i++) await sleep(50);
  if (!existsSync(file)) throw new Error('the memory probe in the agent did not answer');
  return JSON.parse(readFileSync(file, 'utf8')) as Probe;
}

const mb = (b: number): number => Math.round((b / MB) * 10) / 10;

export const agentMemory: Benchmark = {
  name: 'agent-memory',
  title: 'agent RSS with 1M entries (batch endpoint, chunks) vs the idle agent; goal ≤ 100 MB',
  async run(ctx): Promise<Row[]> {
    const n = ctx.quick ? 20_000 : 1_000_000;
    const chunk = ctx.quick ? 10_000 : 100_000;
    const probeFile = join(repoRoot(), 'bench', 'out', `mem-probe-${process.pid}.json`);
    const probeModule = pathToFileURL(join(repoRoot(), 'dist', 'bench', 'mem-probe.js')).href;
    const agentArgs = ['--capacity', String(CAPACITY)];
    const agentEnv = {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${probeModule}`.trim(),
      RS_MEM_PROBE_OUT: probeFile,
      ROUTESHIFT_LOG_LEVEL: 'warn', // a million "entry changed" lines would measure the log file
    };
    const rig = await AgentRig.create({ hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }], agentArgs, agentEnv });
    try {
      const a = rig.agent('A');
      await a.request('GET', '/status');
      await sleep(1000);
      const idle = rssOf(a.pid);
      const idleProbe = await probe(a, probeFile);
      const t0 = performance.now();
      for (let i = 0; i < n; i += chunk) {
        const ops = [];
        for (let j = i; j < Math.min(n, i + chunk); j++) {
          ops.push({ op: 'put-app', name: `m${j}`, address: benchAddr(j), dev: 'vx', action: { type: 'forward', tunnel: '10.2.0.2' } });
        }
        await postBatch(a, ops);
      }
      const loadMs = performance.now() - t0;
      const st = (await a.request('GET', '/status')).json as { entries: { apps: number } };
      if (st.entries.apps !== n) throw new Error(`agent holds ${st.entries.apps} apps, not ${n}`);
      await sleep(1000);
      const loaded = rssOf(a.pid);
      const p = await probe(a, probeFile);
      const afterGc = rssOf(a.pid);

      // Every entry listed through the API, as a controller planning a drain does (pages of 10,000).
      const l0 = performance.now();
      const listed = await new HttpAgentClient(a.url, { token: rig.token.token, timeoutMs: 600_000 }).listApps();
      const listMs = performance.now() - l0;
      if (listed.length !== n) throw new Error(`GET /v1/apps listed ${listed.length} apps, not ${n}`);
      await sleep(1000);
      const afterList = rssOf(a.pid);
      ctx.log(`listed all ${n} apps through GET /v1/apps in ${(listMs / 1000).toFixed(1)} s; agent RSS 1 s later ${mb(afterList.rss)} MB`);
      const perEntry = (p.after.heapUsed - idleProbe.after.heapUsed) / n;
      const spaces = Object.fromEntries(p.spaces.filter((s) => s.used > MB).map((s) => [s.name, mb(s.used)]));
      ctx.log(
        `${n} entries loaded in ${(loadMs / 1000).toFixed(1)} s: RSS ${mb(loaded.rss)} MB (anon ${mb(loaded.anon)}; peak ${mb(loaded.peak)} MB while a chunk was staged), after another GC ${mb(afterGc.rss)} MB; idle ${mb(idle.rss)} MB; ` +
          `heap used ${mb(p.before.heapUsed)} → ${mb(p.after.heapUsed)} MB after GC (idle ${mb(idleProbe.after.heapUsed)}), ≈ ${Math.round(perEntry)} B/entry; external ${mb(p.after.external)} MB, arrayBuffers ${mb(p.after.arrayBuffers)} MB; spaces ${JSON.stringify(spaces)}`,
      );

      // The same agent restarted: it adopts the pinned entries (reads each once) before serving.
      await a.stop();
      const r0 = performance.now();
      const again = await rig.startAgent('A', agentArgs, agentEnv);
      const restartMs = performance.now() - r0;
      const adoptedSt = (await again.request('GET', '/status')).json as { entries: { apps: number } };
      if (!again.adopted || adoptedSt.entries.apps !== n) throw new Error(`the restarted agent adopted ${adoptedSt.entries.apps} apps, not ${n}`);
      await sleep(1000);
      const restarted = rssOf(again.pid);
      ctx.log(`restarted with ${n} pinned entries: ready in ${(restartMs / 1000).toFixed(1)} s, RSS ${mb(restarted.rss)} MB 1 s later (peak ${mb(restarted.peak)} MB while adopting)`);
      const label = n >= 1e6 ? `${n / 1e6}M` : `${n / 1000}k`;
      return [
        ratioRow({
          name: `agent RSS, ${label} entries`,
          figure: mb(loaded.rss),
          baseline: mb(idle.rss),
          unit: 'MB',
          baselineName: 'idle agent',
          maxRatio: null,
          also: { ok: loaded.rss <= 100 * MB, goal: '≤ 100 MB' },
          note:
            `real agent (--capacity ${CAPACITY}), ${n} FORWARD entries via POST /v1/batch in chunks of ${chunk} (${(loadMs / 1000).toFixed(1)} s), RSS from /proc 1 s after the last chunk ` +
            `(the agent releases a large batch's memory once it has answered); peak while a chunk was staged ${mb(loaded.peak)} MB. ` +
            `Listing all ${n} through GET /v1/apps (pages of 10,000): ${(listMs / 1000).toFixed(1)} s, RSS ${mb(afterList.rss)} MB 1 s after. ` +
            `In the agent: JS heap used ${mb(p.after.heapUsed)} MB after a full GC (idle ${mb(idleProbe.after.heapUsed)} MB): ≈ ${Math.round(perEntry)} bytes of heap per entry; RSS after that GC ${mb(afterGc.rss)} MB; external ${mb(p.after.external)} MB. BPF maps are kernel memory, not in RSS`,
          extra: {
            entries: n,
            loadMs: Math.round(loadMs),
            rssMB: mb(loaded.rss),
            rssAnonMB: mb(loaded.anon),
            peakRssMB: mb(loaded.peak),
            rssAfterGcMB: mb(afterGc.rss),
            listAllMs: Math.round(listMs),
            rssAfterListMB: mb(afterList.rss),
            idleRssMB: mb(idle.rss),
            heapUsedMB: mb(p.before.heapUsed),
            heapUsedAfterGcMB: mb(p.after.heapUsed),
            heapTotalMB: mb(p.after.heapTotal),
            idleHeapUsedAfterGcMB: mb(idleProbe.after.heapUsed),
            heapBytesPerEntry: Math.round(perEntry),
            externalMB: mb(p.after.external),
            ...Object.fromEntries(Object.entries(spaces).map(([k, v]) => [`space_${k}_MB`, v])),
          },
        }),
        ratioRow({
          name: `agent RSS after restart, ${label} entries`,
          figure: mb(restarted.rss),
          baseline: mb(idle.rss),
          unit: 'MB',
          baselineName: 'idle agent',
          maxRatio: null,
          also: { ok: restarted.rss <= 100 * MB, goal: '≤ 100 MB' },
          note: `the agent above stopped (SIGTERM) and started again on the same pins: it adopts the ${n} entries (ready in ${(restartMs / 1000).toFixed(1)} s; peak ${mb(restarted.peak)} MB while adopting), RSS 1 s after ready`,
          extra: { restartMs: Math.round(restartMs), rssMB: mb(restarted.rss), peakRssMB: mb(restarted.peak) },
        }),
      ];
    } finally {
      await rig.close();
      rmSync(probeFile, { force: true });
    }
  },
};
