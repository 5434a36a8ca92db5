/**
 * The data plane end to end in network namespaces (src/testbed/topology.ts):
 * client → fabric → host A [rs_uplink, native XDP] → fabric → host B
 * [rs_uplink] → app X on B, with the maps written directly through
 * HostDatapath (pinned in a temporary bpffs directory).
 *
 * Proves: a real ping and a real bounded UDP stream reach X on host B
 * through FORWARD on A (IPIP, XDP_TX) and delivery on B (decap, redirect
 * into X's veth), replies come back through the kernel; app Y on host A,
 * which has no entry, keeps receiving through the kernel untouched; the
 * same over IPv6 (IPv6-in-IPv6); and after the fabric announces X on B, B
 * serves X through the kernel and A forwards nothing more.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs, inNetns } from '../src/bpf/index.js';
import { HostDatapath } from '../src/datapath/host.js';
import { configOf, type AppKey } from '../src/datapath/structs.js';
import { uplinkFacts, withUplinkFacts } from '../src/agent/paths.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { MIGRATION_APPS, Topology } from '../src/testbed/topology.js';
import { ping, udpStream } from '../src/testbed/traffic.js';

ensureBpffs();
// the first testbed: every peer runs rs_pass, offloads off (the XDP fast path end to end)
const topo = Topology.create({ prefix: uniquePrefix('rse'), apps: MIGRATION_APPS, prepared: true });
t.teardown(() => topo.destroy());
const pinRoot = mkdtempSync('/sys/fs/bpf/rs-e2e-');
t.teardown(() => rmSync(pinRoot, { recursive: true, force: true }));

const A = topo.host('A');
const B = topo.host('B');
const xA = topo.app('x', 'A');
const xB = topo.app('x', 'B');
const yA = topo.app('y', 'A');
const client = topo.client.ns;

function open(host: typeof A): HostDatapath {
  const dp = inNetns(host.ns.name, () =>
    HostDatapath.open({ uplink: 'eth0', pinDir: join(pinRoot, host.name), capacity: 1024, xdpMode: 'native' }),
  );
  dp.setConfig(inNetns(host.ns.name, () => withUplinkFacts(configOf({ tunnelAddr4: host.addr4, tunnelAddr6: host.addr6 }), uplinkFacts(dp.ifindex, dp.xdpMode))));
  return dp;
}
const dpA = open(A);
t.teardown(() => dpA.close());
const dpB = open(B);
t.teardown(() => dpB.close());

const X_ID = 1;
const keyX: AppKey = { address: xA.addr4, proto: 'any', port: 0 };
const keyX6: AppKey = { address: xA.addr6, proto: 'any', port: 0 };

const packets = (dp: HostDatapath, s: 'local' | 'forward' | 'deliver'): number => Number(dp.appStats(X_ID)[s].packets);
const dropTotal = (dp: HostDatapath): number => Object.values(dp.dropCounts()).reduce((a, c) => a + Number(c.packets), 0);

t.test('both uplinks run rs_uplink in native mode; peers have their XDP_PASS program', async (t) => {
  t.equal(dpA.xdpMode, 'native');
  t.equal(dpB.xdpMode, 'native');
  for (const [host, dp] of [[A, dpA], [B, dpB]] as const) {
    const id = inNetns(host.ns.name, () => dp.attachedProgramId());
    t.ok(id > 0 && id === dp.program.id, `${host.name}: our program on eth0 (id ${id})`);
  }
  t.match(topo.fabric.ip('link', 'show', 'dev', A.fabricDev), /xdp/, 'fabric side of A uplink has XDP');
  t.match(xB.ns.ip('link', 'show', 'dev', 'eth0'), /xdp/, 'app X on B: eth0 has XDP');
});

t.test('before any entry: X on A and Y on A answer through the kernel', async (t) => {
  const px = await ping(client, xA.addr4, { count: 3, interval: 0.02 });
  t.equal(px.received, 3, `ping X: ${px.received}/3`);
  const py = await ping(client, yA.addr4, { count: 3, interval: 0.02 });
  t.equal(py.received, 3, `ping Y: ${py.received}/3`);
  t.ok(Number(dpA.eventCounts().no_entry.packets) >= 6, 'A passed them as no_entry');
});

t.test('PREPARE: X LOCAL on A — ping reaches X on A through the XDP redirect', async (t) => {
  dpA.redirect.update(keyX, topo.localEntry(xA, X_ID));
  const before = packets(dpA, 'local');
  const p = await ping(client, xA.addr4, { count: 5, interval: 0.02 });
  t.equal(p.received, 5, `ping X: ${p.received}/5`);
  t.equal(packets(dpA, 'local') - before, 5, 'A counted 5 LOCAL');
});

t.test('DELIVER + SWITCH: ping to X goes A → IPIP → B → X on B, replies come back', async (t) => {
  dpB.deliver.update(keyX, topo.deliverEntry(xB, X_ID));
  dpA.redirect.update(keyX, topo.forwardEntry('B', X_ID), 'exist');
  const fwd0 = packets(dpA, 'forward');
  const del0 = packets(dpB, 'deliver');
  const p = await ping(client, xA.addr4, { count: 10, interval: 0.01 });
  t.equal(p.received, 10, `ping X: ${p.received}/10 (${p.output.trim().split('\n').pop()})`);
  t.equal(packets(dpA, 'forward') - fwd0, 10, 'A forwarded 10');
  t.equal(packets(dpB, 'deliver') - del0, 10, 'B delivered 10');
  t.equal(dropTotal(dpA) + dropTotal(dpB), 0, 'no drops on either host');
});

t.test('a bounded UDP stream to X arrives on B with 0 loss, 0 duplicates; Y on A untouched meanwhile', async (t) => {
  const fwd0 = packets(dpA, 'forward');
  const del0 = packets(dpB, 'deliver');
  const [toX, toY] = await Promise.all([
    udpStream(client, xB.ns, { addr: xA.addr4, port: 9000, rate: 4000, count: 4000, maxMs: 5000 }),
    udpStream(client, yA.ns, { addr: yA.addr4, port: 9001, rate: 1000, count: 1000, maxMs: 5000 }),
  ]);
  if (toX.receiver.unique !== 4000 || toY.receiver.unique !== 1000) {
    // where did they go: the receiving socket (buffer full while starved of CPU) or the path?
    for (const a of [xB, yA]) {
      t.comment(`${a.name}@${a.host}: ${a.ns.exec('nstat', '-az', 'UdpInDatagrams', 'UdpRcvbufErrors', 'UdpInErrors', 'UdpNoPorts').replace(/\s+/g, ' ')}`);
      t.comment(`${a.name}@${a.host} eth0: ${a.ns.exec('ethtool', '-S', 'eth0').replace(/\s+/g, ' ')}`);
    }
  }
  t.equal(toX.sender.sent, 4000, `sent 4000 to X at ${toX.sender.ratePps.toFixed(0)} pps`);
  t.equal(toX.receiver.unique, 4000, 'X on B received every packet');
  t.equal(toX.receiver.lost, 0, 'lost 0');
  t.equal(toX.receiver.duplicates, 0, 'duplicated 0');
  t.equal(packets(dpA, 'forward') - fwd0, 4000, 'all of them forwarded by A');
  t.equal(packets(dpB, 'deliver') - del0, 4000, 'all of them delivered by B');
  t.equal(toY.receiver.unique, 1000, 'Y on A received every packet through the kernel');
  t.equal(toY.receiver.lost + toY.receiver.duplicates, 0, 'Y: 0 lost, 0 duplicated');
  t.comment(`X stream: max gap ${toX.receiver.maxGapMs.toFixed(2)} ms; Y stream: max gap ${toY.receiver.maxGapMs.toFixed(2)} ms`);
  t.equal(dropTotal(dpA) + dropTotal(dpB), 0, 'no drops on either host');
});

t.test('IPv6: X over IPv6-in-IPv6 to B — ping and a UDP stream', { skip: !topo.ipv6 }, async (t) => {
  dpB.deliver.update(keyX6, topo.deliverEntry(xB, X_ID));
  dpA.redirect.update(keyX6, topo.forwardEntry('B', X_ID, 6));
  const fwd0 = packets(dpA, 'forward');
  const p = await ping(client, xA.addr6, { count: 5, interval: 0.02 });
  t.equal(p.received, 5, `ping6 X: ${p.received}/5`);
  const s = await udpStream(client, xB.ns, { addr: xA.addr6, port: 9002, rate: 2000, count: 1000, maxMs: 5000 });
  t.equal(s.receiver.unique, 1000, 'X on B received every IPv6 packet');
  t.equal(s.receiver.lost + s.receiver.duplicates, 0);
  t.equal(packets(dpA, 'forward') - fwd0, 1005, 'A forwarded 5 pings + 1000 datagrams');
  const py = await ping(client, yA.addr6, { count: 3, interval: 0.02 });
  t.equal(py.received, 3, 'Y answers over IPv6 through the kernel');
});

t.test('ANNOUNCE: the fabric routes X to B; B serves X through the kernel, A forwards nothing', async (t) => {
  topo.announce('x', 'B');
  const fwd0 = packets(dpA, 'forward');
  const p = await ping(client, xA.addr4, { count: 5, interval: 0.02 });
  t.equal(p.received, 5, `ping X after announce: ${p.received}/5`);
  t.equal(packets(dpA, 'forward') - fwd0, 0, 'A saw none of them');
  t.ok(Number(dpB.eventCounts().no_entry.packets) >= 5, 'B passed them (no redirect entry for X on B)');
});
