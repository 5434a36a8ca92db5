/**
 * Packet fixtures of the PRESERVE action (bpf/flows.h) through
 * BPF_PROG_TEST_RUN: which packets of a migrating app stay on the source
 * (LOCAL: a TCP flow from before SWITCH) and which are forwarded (a new
 * flow's SYN and its later packets, datagrams, fragments), what the flow
 * tables and per-app flow counters hold afterwards, and what a full
 * new-flow table does (LRU eviction: the evicted flow's packets look old).
 *
 * Runs in a namespace of its own so bpf_fib_lookup answers (the forwarded
 * frames leave by XDP_TX towards a known neighbour).
 */
import t from 'tap';
import type { AppKey, FlowKey, Path, RedirectValue } from '../src/datapath/structs.js';
import { createFixtureNet, NET } from './lib/fixture-net.js';
import { IPPROTO, decHop6, decTtl4, encap4, encap6, eth, ipv4, ipv6, pattern, raw, tcp, udp } from './lib/packets.js';
import { Uplink, delta } from './lib/uplink.js';

const net = createFixtureNet('rspv');
t.teardown(() => net.destroy());

const CLIENT = '198.18.0.2';
const CLIENT6 = '2001:db8:c::2';
const X = '10.200.0.10';
const X6 = 'fd00:200::10';
const APP = 1;
const X_IF = 42;
const X_MAC = '02:00:00:00:10:10';
const X_HOST_MAC = '02:00:00:00:10:01';
const fromRouter = { dst: NET.upMac, src: NET.routerMac };
const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

const key = (address: string): AppKey => ({ address, proto: 'any', port: 0 });
const preserve = (tunnel: string, path: Path = 'xdp'): RedirectValue => ({
  action: 'preserve',
  appId: APP,
  tunnel,
  ifindex: X_IF,
  dmac: X_MAC,
  smac: X_HOST_MAC,
  path,
  slowPath: 'tc-peer',
});

const seg4 = (sport: number, flags: number, n = 16): Buffer => ipv4({ src: CLIENT, dst: X }, tcp(sport, 80, { flags, seq: 7, ack: flags & TCP.ACK ? 9 : 0 }, pattern(n)));
const seg6 = (sport: number, flags: number, n = 16): Buffer => ipv6({ src: CLIENT6, dst: X6 }, tcp(sport, 80, { flags, seq: 7, ack: flags & TCP.ACK ? 9 : 0 }, pattern(n)));
const flow4 = (sport: number): FlowKey => ({ source: CLIENT, destination: X, sport, dport: 80 });
const flow6 = (sport: number): FlowKey => ({ source: CLIENT6, destination: X6, sport, dport: 80 });

/** What LOCAL makes of an IPv4 / IPv6 packet, and what FORWARD makes of it. */
const asLocal4 = (ip: Buffer): Buffer => eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip));
const asLocal6 = (ip: Buffer): Buffer => eth({ dst: X_MAC, src: X_HOST_MAC }, decHop6(ip));
const asForward4 = (ip: Buffer): Buffer => eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip)));
const asForward6 = (ip: Buffer): Buffer => eth({ dst: NET.peerMac, src: NET.upMac }, encap6({ src: NET.up6, dst: NET.peer6 }, decHop6(ip)));

function fresh(flowEntries?: number): Uplink {
  const up = new Uplink(flowEntries ? { flowEntries } : {});
  up.setConfig({ tunnelAddr4: NET.up4, tunnelAddr6: NET.up6 });
  up.redirect.update(key(X), preserve(NET.peer4));
  up.redirect.update(key(X6), preserve(NET.peer6));
  return up;
}

function send(up: Uplink, ip: Buffer): { verdict: string; data: Buffer; local: number; forward: number } {
  const before = up.snapshot([APP]);
  const r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
  const d = delta(before, up.snapshot([APP]));
  return { verdict: r.verdict, data: r.data, local: d.apps?.[APP]?.local ?? 0, forward: d.apps?.[APP]?.forward ?? 0 };
}

t.test('TCP: a SYN is a new flow (forwarded, recorded); its later packets follow it; other flows are old (local)', async (t) => {
  using up = fresh();
  const syn = seg4(40001, TCP.SYN);
  let r = send(up, syn);
  t.equal(r.verdict, 'TX', 'SYN forwarded');
  t.equal(r.data.toString('hex'), asForward4(syn).toString('hex'), 'encapsulated to the destination, byte for byte');
  t.equal(r.forward, 1, 'counted as forward');
  t.equal(up.newFlows.lookup(flow4(40001)), APP, 'the new flow is recorded with its app');
  t.same(up.flowCounters(APP), { pinned: 0n, sent: 1n, refused: 0n });

  r = send(up, syn);
  t.equal(r.verdict, 'TX', 'a retransmitted SYN is forwarded too');
  t.equal(up.flowCounters(APP).sent, 1n, 'and not counted again');

  const ack = seg4(40001, TCP.ACK | TCP.PSH);
  r = send(up, ack);
  t.equal(r.verdict, 'TX', 'the new flow\'s data segment is forwarded');
  t.equal(r.data.toString('hex'), asForward4(ack).toString('hex'));
  t.notOk(up.oldFlows.lookup(flow4(40001)), 'a new flow is never taken for an old one');

  const old = seg4(40002, TCP.ACK | TCP.PSH);
  r = send(up, old);
  t.equal(r.verdict, 'REDIRECT', 'a segment of an unknown flow (from before SWITCH) stays on this host');
  t.equal(r.data.toString('hex'), asLocal4(old).toString('hex'), 'LOCAL rewrite, byte for byte');
  t.equal(r.local, 1, 'counted as local');
  const seen = up.oldFlows.lookup(flow4(40002));
  t.ok(seen && seen.lastNs > 0n && seen.appId === APP && !seen.fin && !seen.rst, 'recorded as an old flow of the app, open');
  t.same(up.flowCounters(APP), { pinned: 1n, sent: 1n, refused: 0n });

  r = send(up, old);
  t.equal(r.verdict, 'REDIRECT');
  t.equal(up.flowCounters(APP).pinned, 1n, 'a flow is pinned once, however many packets it has');
  t.ok((up.oldFlows.lookup(flow4(40002))?.lastNs ?? 0n) >= (seen?.lastNs ?? 0n), 'its last-seen time moves on');

  const synAck = seg4(40003, TCP.SYN | TCP.ACK);
  t.equal(send(up, synAck).verdict, 'REDIRECT', 'SYN+ACK is no connection opening from a client: old');
});

t.test('TCP: FIN and RST of an old flow are delivered and recorded', async (t) => {
  using up = fresh();
  t.equal(send(up, seg4(41000, TCP.ACK)).verdict, 'REDIRECT');
  t.equal(send(up, seg4(41000, TCP.FIN | TCP.ACK, 0)).verdict, 'REDIRECT', 'FIN goes to the source copy');
  t.match(up.oldFlows.lookup(flow4(41000)), { fin: true, rst: false }, 'FIN seen');
  t.equal(send(up, seg4(41001, TCP.RST, 0)).verdict, 'REDIRECT', 'RST of an unknown flow goes to the source copy');
  t.match(up.oldFlows.lookup(flow4(41001)), { fin: false, rst: true }, 'RST seen');
  t.equal(up.flowCounters(APP).pinned, 2n);
});

t.test('IPv6: the same rule', async (t) => {
  using up = fresh();
  const syn = seg6(42000, TCP.SYN);
  let r = send(up, syn);
  t.equal(r.verdict, 'TX');
  t.equal(r.data.toString('hex'), asForward6(syn).toString('hex'), 'SYN encapsulated IPv6-in-IPv6');
  t.equal(up.newFlows.lookup(flow6(42000)), APP);
  t.equal(send(up, seg6(42000, TCP.ACK)).verdict, 'TX', 'its later segment follows');
  const old = seg6(42001, TCP.ACK);
  r = send(up, old);
  t.equal(r.verdict, 'REDIRECT');
  t.equal(r.data.toString('hex'), asLocal6(old).toString('hex'), 'an old flow stays, byte for byte');
  t.equal(up.oldFlows.lookup(flow6(42001))?.appId, APP);
});

t.test('datagrams and fragments carry no connection: forwarded, nothing recorded', async (t) => {
  using up = fresh();
  const dgram = ipv4({ src: CLIENT, dst: X }, udp(40000, 5000, pattern(32)));
  const r = send(up, dgram);
  t.equal(r.verdict, 'TX');
  t.equal(r.data.toString('hex'), asForward4(dgram).toString('hex'), 'UDP forwarded');
  const frag = ipv4({ src: CLIENT, dst: X, df: false, fragOffset: 10, id: 5 }, raw(IPPROTO.TCP, pattern(64)));
  t.equal(send(up, frag).verdict, 'TX', 'a TCP fragment (no ports to classify) is forwarded');
  t.equal(up.newFlows.count() + up.oldFlows.count(), 0, 'no flow recorded');
  t.same(up.flowCounters(APP), { pinned: 0n, sent: 0n, refused: 0n });
});

t.test('a full new-flow table evicts its oldest flows (LRU): their later packets look old and stay here', async (t) => {
  const capacity = 256;
  using up = fresh(capacity);
  const n = capacity * 3;
  let forwarded = 0;
  for (let i = 0; i < n; i++) if (send(up, seg4(20000 + i, TCP.SYN)).verdict === 'TX') forwarded++;
  t.equal(forwarded, n, `all ${n} SYNs forwarded`);
  const held = up.newFlows.count();
  t.ok(held <= capacity, `the table holds at most its ${capacity} entries (${held})`);
  t.equal(up.flowCounters(APP).sent, BigInt(n), 'every SYN was recorded and sent');
  t.ok(n - held >= n - capacity, `evictions = sent − held = ${n - held}`);
  // which flows the LRU kept is its own choice (per-CPU free lists): ask the table
  const ports = Array.from({ length: n }, (_, i) => 20000 + i);
  const kept = ports.filter((p) => up.newFlows.lookup(flow4(p)) !== undefined);
  const evicted = ports.filter((p) => !kept.includes(p));
  t.equal(evicted.length, n - held, 'the flows not held are the evicted ones');
  t.equal(send(up, seg4(kept[kept.length - 1]!, TCP.ACK)).verdict, 'TX', 'a new flow still held goes to the destination');
  t.equal(send(up, seg4(evicted[0]!, TCP.ACK)).verdict, 'REDIRECT', 'an evicted one now looks old: delivered here (the source copy resets it)');
  t.equal(up.flowCounters(APP).pinned, 1n, 'and is counted as pinned');
});
