/**
 * The agent keeps each entry on a delivery path that delivers while the
 * host changes under it, and a frame lost in between is counted, never
 * dropped silently:
 *  - an app veth whose peer runs an XDP program takes XDP frames: 'xdp';
 *  - the peer loses its program mid-stream: redirects fail (EOPNOTSUPP),
 *    the watcher counts every such frame as xmit_failed and takes it back
 *    from the app's counter, and within the agent's re-check (1 s) the
 *    entry moves to 'tc-peer' and every packet arrives again;
 *  - GRO turned on at the peer makes it a redirect target again: 'xdp'.
 * Sent from the `remote` client (complete checksums): a partial one would
 * take the TC slow path anyway.
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import { detachXdp, ifindexOf, inNetns } from '../src/bpf/index.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { Topology } from '../src/testbed/topology.js';
import { startUdpReceiver, runUdpSender } from '../src/testbed/traffic.js';

const topo = Topology.create({ prefix: uniquePrefix('rsp'), hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }], ipv6: false, peerXdp: 'native' });
t.teardown(() => topo.destroy());
const host = topo.host('A');
const x = topo.app('x');
const pinDir = `/sys/fs/bpf/${topo.prefix}-A`;
const agent = await AgentProcess.start({ netns: host.ns.name, pinDir });
t.teardown(async () => {
  await agent.stop();
  rmSync(pinDir, { recursive: true, force: true });
});

interface AppView {
  path: { via: string; slowVia?: string };
  counters: { local: { packets: string } };
}
const view = async (): Promise<AppView> => (await agent.request('GET', '/v1/apps/x')).json as AppView;
const xmitFailed = async (): Promise<number> => {
  const m = (await agent.request('GET', '/metrics')).text;
  const line = m.split('\n').find((l) => l.startsWith('routeshift_drops_total') && l.includes('reason="xmit_failed"'));
  return Number(line?.split(' ').pop() ?? 'NaN');
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) until the entry's path is `want`; returns how long it took. */
async function pathBecomes(want: string, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if ((await view()).path.via === want) return Date.now() - t0;
    await sleep(50);
  }
  return Infinity;
}

/** A 3 s stream remote → x at 2000 pps, with `during` run 1 s in. */
async function stream(port: number, during: () => void | Promise<void>): Promise<{ sent: number; received: number }> {
  const rx = await startUdpReceiver(x.ns, { port, family: 4, expect: 6000, idleMs: 800, maxMs: 10_000 });
  const tx = runUdpSender(topo.remote.ns, { to: x.addr4, port, rate: 2000, count: 6000, maxMs: 6000 });
  await sleep(1000);
  await during();
  const sent = (await tx).sent;
  const received = (await rx.done).received;
  return { sent, received };
}

t.test('an app veth whose peer runs an XDP program: xdp, with tc-peer for partial checksums', async (t) => {
  const r = await agent.request('PUT', '/v1/apps/x', { address: x.addr4, dev: x.hostDev });
  t.equal(r.status, 201, JSON.stringify(r.json));
  t.same((await view()).path, { via: 'xdp', slowVia: 'tc-peer' });
});

t.test('the peer loses its XDP program mid-stream: every frame lost meanwhile is counted, the entry moves to tc-peer', async (t) => {
  const failedBefore = await xmitFailed();
  const localBefore = Number((await view()).counters.local.packets);
  let moveMs = Infinity;
  const r = await stream(5600, async () => {
    inNetns(x.ns.name, () => detachXdp(ifindexOf('eth0'), 'native'));
    moveMs = await pathBecomes('tc-peer', 3000);
  });
  const failed = (await xmitFailed()) - failedBefore;
  const local = Number((await view()).counters.local.packets) - localBefore;
  t.comment(`sent ${r.sent}, received ${r.received}, xmit_failed ${failed}, moved to tc-peer ${moveMs} ms after the detach`);
  t.ok(moveMs <= 2000, `the agent moved the entry to tc-peer within its re-check (${moveMs} ms)`);
  t.ok(failed > 0, 'frames were lost while the entry still said xdp');
  t.equal(r.received + failed, r.sent, 'received + counted as xmit_failed = sent: nothing lost uncounted');
  t.equal(local, r.received, "the app's local counter counts packets delivered, not attempts");
});

t.test('GRO on at the peer (no XDP program): it takes XDP frames again, the entry goes back to xdp, nothing lost', async (t) => {
  const failedBefore = await xmitFailed();
  x.ns.exec('ethtool', '-K', 'eth0', 'gro', 'on');
  const ms = await pathBecomes('xdp', 3000);
  t.ok(ms <= 2000, `back on xdp within ${ms} ms`);
  const r = await stream(5601, () => undefined);
  t.equal(r.received, r.sent, `${r.received}/${r.sent} delivered`);
  t.equal((await xmitFailed()) - failedBefore, 0, 'no failed transmit');
});
