/**
 * etcd → map latency (issue 15, first slice): the time from a desired-state
 * write to the map update on the agent, against the HTTP path in the same
 * run. Host A's agent takes its entries from a real etcd (--etcd); host B's
 * is a plain agent. Each round alternates one app entry between LOCAL and
 * FORWARD: on A by a put of its etcd key, on B by PUT /v1/apps/NAME; the
 * clock stops when this process reads the new action from the pinned
 * rs_redirect map (polled about every millisecond; so the figures carry up
 * to ~1 ms of polling).
 *
 *   node dist/bench/etcd-latency.js [--puts N] [--json]
 *
 * Prints one line per path (median, p99, max) and, with --json, the samples'
 * summary as JSON. Not part of `routeshift bench` yet.
 */
import { join } from 'node:path';
import { BpfMap } from '../src/bpf/index.js';
import { appKeyCodec, redirectValueCodec, type RedirectValue } from '../src/datapath/structs.js';
import { EtcdClient } from '../src/etcd/client.js';
import { KeyLayout } from '../src/etcd/layout.js';
import { EtcdServer } from '../src/testbed/etcd.js';
import { AgentRig } from './agent-rig.js';
import { sleep } from './common.js';
import { median } from './harness.js';

const ADDRESS = '10.64.0.1';
const TUNNEL = '10.9.0.2';

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Time from `write` starting until the map shows `want` for the bench key. */
async function timeToMap(map: BpfMap<{ address: string; proto: 'any'; port: number }, RedirectValue>, want: 'local' | 'forward', write: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await write();
  const deadline = t0 + 10_000;
  for (;;) {
    if (map.lookup({ address: ADDRESS, proto: 'any', port: 0 })?.action === want) return performance.now() - t0;
    if (performance.now() > deadline) throw new Error(`the map did not show ${want} within 10 s`);
    await sleep(1);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const puts = Number(args[args.indexOf('--puts') + 1] ?? 200) || 200;
  const json = args.includes('--json');
  const etcd = await EtcdServer.start();
  const rig = await AgentRig.create({ hosts: ['A', 'B'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }, { name: 'x', host: 'B', addr4: '10.200.0.10' }], startAgents: false });
  try {
    const a = await rig.startAgent('A', ['--etcd', etcd.socketUrl, '--host-id', 'A']);
    const b = await rig.startAgent('B', []);
    const kv = new EtcdClient(etcd.url);
    const key = new KeyLayout().entry('A', 'app', 'bench');
    const spec = (forward: boolean): Record<string, unknown> => ({
      address: ADDRESS,
      dev: 'vx',
      mac: '02:00:00:00:bb:01',
      action: forward ? { type: 'forward', tunnel: TUNNEL } : { type: 'local' },
    });
    const mapOf = (host: string): BpfMap<{ address: string; proto: 'any'; port: number }, RedirectValue> =>
      BpfMap.openPinned(join(rig.pinDir(host), 'rs_redirect'), appKeyCodec, redirectValueCodec) as never;
    // The first put creates the entry; then the maps exist to poll.
    await kv.put(key, JSON.stringify(spec(false)));
    if ((await b.request('PUT', '/v1/apps/bench', spec(false))).status !== 201) throw new Error('B refused the bench entry');
    const mapA = mapOf('A');
    const mapB = mapOf('B');
    await timeToMap(mapA, 'local', async () => undefined);
    const viaEtcd: number[] = [];
    const viaHttp: number[] = [];
    for (let i = 1; i <= puts; i++) {
      const forward = i % 2 === 1;
      viaEtcd.push(await timeToMap(mapA, forward ? 'forward' : 'local', async () => void (await kv.put(key, JSON.stringify(spec(forward))))));
      viaHttp.push(
        await timeToMap(mapB, forward ? 'forward' : 'local', async () => {
          const r = await b.request('PUT', '/v1/apps/bench', spec(forward));
          if (r.status !== 200) throw new Error(`PUT → ${r.status}: ${r.text}`);
        }),
      );
    }
    mapA.close();
    mapB.close();
    const summary = (xs: number[]) => ({ medianMs: +median(xs).toFixed(2), p99Ms: +percentile(xs, 99).toFixed(2), maxMs: +Math.max(...xs).toFixed(2), n: xs.length });
    const result = { etcd: summary(viaEtcd), http: summary(viaHttp), agent: a.url };
    const line = (name: string, s: ReturnType<typeof summary>): string => `${name}: median ${s.medianMs} ms, p99 ${s.p99Ms} ms, max ${s.maxMs} ms over ${s.n} writes`;
    process.stdout.write(`${line('etcd put → map (agent --etcd)', result.etcd)}\n${line('HTTP PUT → map (same run)   ', result.http)}\n`);
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await rig.close();
    await etcd.destroy();
  }
}

await main();
