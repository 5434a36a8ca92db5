/**
 * Katran-style packet fixtures for rs_uplink (bpf/uplink.c) through
 * BPF_PROG_TEST_RUN: each fixture is an input frame, the map entries and
 * config, the expected verdict, the expected output frame byte for byte, and
 * the expected counters afterwards (every other counter unchanged).
 *
 * Every fixture runs inside a namespace made for this file, arriving on its
 * eth0, so bpf_fib_lookup answers deterministically (test/lib/fixture-net.ts):
 * a known neighbour out of eth0 (XDP_TX), one out of eth1 (redirect), an
 * unresolved neighbour (NO_NEIGH) and no route.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { XdpAction } from '../src/bpf/index.js';
import { NEXTHOP_TTL_MS, NEXTHOP_TTL_TICKS, type AppKey, type Config, type DeliverValue, type Path, type RedirectValue } from '../src/datapath/structs.js';
import { createFixtureNet, NET } from './lib/fixture-net.js';
import {
  ETH_P,
  IPPROTO,
  checksumOk,
  decHop6,
  decTtl4,
  encap4,
  encap6,
  eth,
  fold,
  icmp,
  icmp6,
  icmp6Echo,
  icmpEcho,
  ipv4,
  ipv6,
  pattern,
  raw,
  sum16,
  tcp,
  udp,
} from './lib/packets.js';
import { Uplink, asAgentWrites, delta, deltaBytes, type CountDelta } from './lib/uplink.js';

const net = createFixtureNet('rsfx');
t.teardown(() => net.destroy());
const up = new Uplink();
t.teardown(() => up.close());

// ----------------------------------------------------------------- names --

const CLIENT = '198.18.0.2';
const CLIENT6 = '2001:db8:c::2';
const X = '10.200.0.10';
const Y = '10.200.0.11';
const X6 = 'fd00:200::10';
const Y6 = 'fd00:200::11';
const APP_X = 1;
const APP_X_PORT = 2;
const APP_DELIVER = 3;
const X_IF = 42; // the app's interface: any index, the test run does not redirect for real
const X_MAC = '02:00:00:00:10:10';
const X_HOST_MAC = '02:00:00:00:10:01';

const fromRouter = { dst: NET.upMac, src: NET.routerMac };
const cfg4: Partial<Config> = { tunnelAddr4: NET.up4 };
const cfg46: Partial<Config> = { tunnelAddr4: NET.up4, tunnelAddr6: NET.up6 };

const key = (address: string, proto: AppKey['proto'] = 'any', port = 0): AppKey => ({ address, proto, port });
const local = (appId = APP_X, ifindex = X_IF, path: Path = 'xdp', slowPath: Path = 'tc-peer'): RedirectValue => ({
  action: 'local',
  appId,
  ifindex,
  dmac: X_MAC,
  smac: X_HOST_MAC,
  path,
  slowPath,
});
const forward = (tunnel: string, appId = APP_X): RedirectValue => ({ action: 'forward', appId, tunnel });
const deliverTo = (appId = APP_DELIVER, path: Path = 'xdp', slowPath: Path = 'tc-peer'): DeliverValue => ({
  appId,
  ifindex: X_IF,
  dmac: X_MAC,
  smac: X_HOST_MAC,
  path,
  slowPath,
});

/** Client → X, UDP, with a payload of n bytes. */
const udp4 = (dst = X, opts: { ttl?: number; df?: boolean; n?: number; dport?: number; tos?: number } = {}): Buffer =>
  ipv4(
    { src: CLIENT, dst, ttl: opts.ttl ?? 64, df: opts.df ?? true, id: 0x1234, tos: opts.tos ?? 0 },
    udp(40000, opts.dport ?? 5000, pattern(opts.n ?? 32)),
  );
const udp6 = (dst = X6, opts: { hop?: number; n?: number; dport?: number } = {}): Buffer =>
  ipv6({ src: CLIENT6, dst, hopLimit: opts.hop ?? 64, tclass: 0x28, flow: 0x12345 }, udp(40000, opts.dport ?? 5000, pattern(opts.n ?? 32)));

// -------------------------------------------------------------- fixtures --

interface Fixture {
  name: string;
  config?: Partial<Config>;
  redirect?: [AppKey, RedirectValue][];
  /** Write `redirect` as given, without the agent's port flags and placeholders. */
  raw?: boolean;
  deliver?: [AppKey, DeliverValue][];
  input: Buffer;
  verdict: keyof typeof XdpAction;
  /** Expected output frame; 'input' = untouched. */
  output: Buffer | 'input';
  counters: CountDelta;
}

function apps(...pairs: [number, 'local' | 'forward' | 'deliver'][]): CountDelta['apps'] {
  const out: NonNullable<CountDelta['apps']> = {};
  for (const [id, s] of pairs) (out[id] ??= {})[s] = (out[id]![s] ?? 0) + 1;
  return out;
}

const fixtures: Fixture[] = [];
const add = (f: Fixture): void => void fixtures.push(f);

// LOCAL ---------------------------------------------------------------------
{
  const ip = udp4();
  add({
    name: 'v4 LOCAL: new MACs, TTL - 1 with the checksum patched, redirect to the app interface',
    redirect: [[key(X), local()]],
    input: eth(fromRouter, ip),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip)),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: 'v4 LOCAL from a VLAN-tagged frame: output untagged',
    redirect: [[key(X), local()]],
    input: eth({ ...fromRouter, vlan: 7 }, ip),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip)),
    counters: { apps: apps([APP_X, 'local']) },
  });
  const ip6 = udp6();
  add({
    name: 'v6 LOCAL: new MACs, hop limit - 1, redirect',
    redirect: [[key(X6), local()]],
    input: eth(fromRouter, ip6),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decHop6(ip6)),
    counters: { apps: apps([APP_X, 'local']) },
  });
  // a non-first fragment has no ports: it follows the whole-address entry
  const frag = ipv4({ src: CLIENT, dst: X, df: false, fragOffset: 100, id: 9 }, raw(IPPROTO.UDP, pattern(64)));
  add({
    name: 'v4 LOCAL: a non-first fragment follows the whole-address entry, not the port entry',
    redirect: [
      [key(X), local()],
      [key(X, 'udp', 5000), local(APP_X_PORT, X_IF + 1)],
    ],
    input: eth(fromRouter, frag),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(frag)),
    counters: { apps: apps([APP_X, 'local']) },
  });
}

// port-specific beats whole-address -----------------------------------------
{
  const entries: [AppKey, RedirectValue][] = [
    [key(X), forward(NET.peer4)],
    [key(X, 'udp', 5000), local(APP_X_PORT)],
  ];
  const ip = udp4(X, { dport: 5000 });
  add({
    name: 'port-specific entry (udp/5000 LOCAL) beats the whole-address entry (FORWARD)',
    config: cfg4,
    redirect: entries,
    input: eth(fromRouter, ip),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip)),
    counters: { apps: apps([APP_X_PORT, 'local']) },
  });
  const other = udp4(X, { dport: 5001 });
  add({
    name: 'another port of the same address falls back to the whole-address entry',
    config: cfg4,
    redirect: entries,
    input: eth(fromRouter, other),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(other))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  const tcpSameP = ipv4({ src: CLIENT, dst: X }, tcp(40000, 5000));
  add({
    name: 'tcp/5000 does not match a udp/5000 entry: whole-address entry applies',
    config: cfg4,
    redirect: entries,
    input: eth(fromRouter, tcpSameP),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(tcpSameP))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
}

// whole address first: port flag and placeholder -----------------------------
// rs_redirect is looked up by whole address first and by (proto, port) only
// when that entry says the address has port entries; an address with port
// entries only has a 'ports-only' placeholder (what the agent writes).
{
  const portOnly: [AppKey, RedirectValue][] = [[key(X, 'udp', 5000), forward(NET.peer4, APP_X_PORT)]];
  const ip = udp4(X, { dport: 5000 });
  add({
    name: 'port entry only (placeholder for the whole address): its port is forwarded',
    config: cfg4,
    redirect: portOnly,
    input: eth(fromRouter, ip),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip))),
    counters: { apps: apps([APP_X_PORT, 'forward']) },
  });
  add({
    name: 'port entry only: another port hits the placeholder and passes untouched as no_entry',
    config: cfg4,
    redirect: portOnly,
    input: eth(fromRouter, udp4(X, { dport: 5001 })),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  add({
    name: 'port entry only: a TTL-1 packet to another port is not ours (no_entry, not ttl)',
    config: cfg4,
    redirect: portOnly,
    input: eth(fromRouter, udp4(X, { dport: 5001, ttl: 1 })),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  add({
    name: 'a placeholder alone (no port entry left) passes everything as no_entry',
    config: cfg4,
    redirect: [[key(X), { action: 'ports-only', appId: 0xffffffff, ports: true }]],
    raw: true,
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  add({
    name: 'the contract: a port entry whose whole-address entry lacks the ports flag is not looked up',
    config: cfg4,
    redirect: [
      [key(X), forward(NET.peer4)],
      [key(X, 'udp', 5000), local(APP_X_PORT)],
    ],
    raw: true,
    input: eth(fromRouter, ip),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  const icmpX = ipv4({ src: CLIENT, dst: X }, icmpEcho(7, 1));
  add({
    name: 'proto-only entry (icmp) on a flagged address: a ping takes it, udp falls back to the whole address',
    config: cfg4,
    redirect: [
      [key(X), forward(NET.peer4)],
      [key(X, 'icmp'), local(APP_X_PORT)],
    ],
    input: eth(fromRouter, icmpX),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(icmpX)),
    counters: { apps: apps([APP_X_PORT, 'local']) },
  });
}

// no entry ------------------------------------------------------------------
{
  add({
    name: 'no entry: a second application (Y) on the same host passes untouched',
    config: cfg46,
    redirect: [[key(X), forward(NET.peer4)], [key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, udp4(Y)),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  add({
    name: 'no entry, IPv6: Y passes untouched',
    config: cfg46,
    redirect: [[key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, udp6(Y6)),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  const arp = Buffer.concat([Buffer.from('ffffffffffff' + '0200000000fe' + '0806', 'hex'), pattern(28)]);
  add({
    name: 'not IP (ARP): passes, uncounted',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: arp,
    verdict: 'PASS',
    output: 'input',
    counters: {},
  });
}

// FORWARD -------------------------------------------------------------------
{
  const ip = udp4(X, { tos: 0xb8 });
  add({
    name: 'v4 FORWARD: exact IPIP outer header, next hop out of the ingress interface → XDP_TX',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ip),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'v4 FORWARD: next hop out of another interface → redirect, that interface\'s MAC as source',
    config: cfg4,
    redirect: [[key(X), forward(NET.third4)]],
    input: eth(fromRouter, ip),
    verdict: 'REDIRECT',
    output: eth({ dst: NET.thirdMac, src: NET.otherMac }, encap4({ src: NET.up4, dst: NET.third4 }, decTtl4(ip))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'v4 FORWARD over an IPv6 tunnel (IPv4-in-IPv6, next header 4)',
    config: cfg46,
    redirect: [[key(X), forward(NET.peer6)]],
    input: eth(fromRouter, ip),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap6({ src: NET.up6, dst: NET.peer6 }, decTtl4(ip))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'v4 FORWARD, next-hop neighbour unresolved: encapsulated, received MACs kept, passed to the kernel',
    config: cfg4,
    redirect: [[key(X), forward(NET.unresolved4)]],
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: eth(fromRouter, encap4({ src: NET.up4, dst: NET.unresolved4 }, decTtl4(ip))),
    counters: { apps: apps([APP_X, 'forward']), events: { no_neigh: 1 } },
  });
  add({
    name: 'v4 FORWARD, no route to the tunnel endpoint: dropped untouched + no_route',
    config: cfg4,
    redirect: [[key(X), forward(NET.unroutable4)]],
    input: eth(fromRouter, ip),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { no_route: 1 } },
  });
  add({
    name: 'v4 FORWARD without a tunnel address in the config: dropped + bad_entry',
    config: {},
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ip),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { bad_entry: 1 } },
  });
  const ip6 = udp6();
  add({
    name: 'v6 FORWARD: exact IPv6-in-IPv6 outer header (flow label = flow hash) → XDP_TX',
    config: cfg46,
    redirect: [[key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, ip6),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap6({ src: NET.up6, dst: NET.peer6 }, decHop6(ip6))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'v6 FORWARD over an IPv4 tunnel (IPv6-in-IPv4, protocol 41)',
    config: cfg46,
    redirect: [[key(X6), forward(NET.peer4)]],
    input: eth(fromRouter, ip6),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decHop6(ip6))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'v6 FORWARD, no route: dropped + no_route',
    config: cfg46,
    redirect: [[key(X6), forward(NET.unroutable6)]],
    input: eth(fromRouter, ip6),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { no_route: 1 } },
  });
  const echo = ipv4({ src: CLIENT, dst: X }, icmpEcho(7, 1, pattern(56)));
  add({
    name: 'v4 FORWARD of an ICMP echo (ping) — whole-address entry',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, echo),
    verdict: 'TX',
    output: eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(echo))),
    counters: { apps: apps([APP_X, 'forward']) },
  });
}

// TTL -----------------------------------------------------------------------
add({
  name: 'TTL 1: not forwarded by us; passed untouched so the kernel answers time-exceeded, + event ttl',
  config: cfg4,
  redirect: [[key(X), forward(NET.peer4)]],
  input: eth(fromRouter, udp4(X, { ttl: 1 })),
  verdict: 'PASS',
  output: 'input',
  counters: { events: { ttl: 1 } },
});
add({
  name: 'hop limit 1 on LOCAL (v6): passed untouched + event ttl',
  redirect: [[key(X6), local()]],
  input: eth(fromRouter, udp6(X6, { hop: 1 })),
  verdict: 'PASS',
  output: 'input',
  counters: { events: { ttl: 1 } },
});

// too big -------------------------------------------------------------------
/** The ICMP "fragmentation needed" the program must answer with. */
function fragNeeded(orig: Buffer, mtu: number, from: string): Buffer {
  const rest = Buffer.alloc(4);
  rest.writeUInt16BE(mtu, 2);
  return eth(
    { dst: NET.routerMac, src: NET.upMac },
    ipv4({ src: from, dst: CLIENT, tos: 0xc0, ttl: 64, id: 0, df: false }, icmp(3, 4, rest, orig.subarray(0, Math.min(orig.length, 548)))),
  );
}
function packetTooBig(orig: Buffer, mtu: number, from: string): Buffer {
  const rest = Buffer.alloc(4);
  rest.writeUInt32BE(mtu, 0);
  return eth(
    { dst: NET.routerMac, src: NET.upMac },
    ipv6({ src: from, dst: CLIENT6, hopLimit: 64 }, icmp6(2, 0, rest, orig.subarray(0, Math.min(orig.length, 1232)))),
  );
}
{
  const big = udp4(X, { n: 1400 - 28 }); // IP length 1400, outer 1420
  add({
    name: 'v4 too big for config.mtu 1400: ICMP frag-needed (mtu 1380) sent back, 548-byte quote',
    config: { ...cfg4, mtu: 1400 },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, big),
    verdict: 'TX',
    output: fragNeeded(big, 1380, NET.up4),
    counters: { events: { icmp_sent: 1 } },
  });
  const big2 = udp4(X, { n: 1490 - 28 }); // outer 1510 > eth0 MTU 1500
  add({
    name: 'v4 too big for the route MTU (fib lookup FRAG_NEEDED): frag-needed with mtu 1480',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, big2),
    verdict: 'TX',
    output: fragNeeded(big2, 1480, NET.up4),
    counters: { events: { icmp_sent: 1 } },
  });
  const small = udp4(X, { n: 100 });
  add({
    name: 'v4 too big, short packet: the whole packet is quoted',
    config: { ...cfg4, mtu: 120 },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, small),
    verdict: 'TX',
    output: fragNeeded(small, 100, NET.up4),
    counters: { events: { icmp_sent: 1 } },
  });
  add({
    name: 'v4 too big without DF: dropped + fragmentation (XDP cannot fragment; no ICMP per RFC 1191)',
    config: { ...cfg4, mtu: 1400 },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, udp4(X, { n: 1400 - 28, df: false })),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { fragmentation: 1 } },
  });
  const inner = ipv4({ src: X, dst: CLIENT }, udp(5000, 40000, pattern(8)));
  const icmpErr = ipv4({ src: CLIENT, dst: X }, icmp(3, 3, Buffer.alloc(4), Buffer.concat([inner, pattern(1400)])));
  add({
    name: 'v4 too big, but an ICMP error itself: never answered, dropped + too_big',
    config: { ...cfg4, mtu: 1400 },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, icmpErr),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { too_big: 1 } },
  });
  const big6 = udp6(X6, { n: 1500 - 48 }); // IPv6 length 1500
  add({
    name: 'v6 too big for config.mtu 1400 over a v6 tunnel: ICMPv6 packet too big (mtu 1360), 1232-byte quote',
    config: { ...cfg46, mtu: 1400 },
    redirect: [[key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, big6),
    verdict: 'TX',
    output: packetTooBig(big6, 1360, NET.up6),
    counters: { events: { icmp_sent: 1 } },
  });
  const big6b = udp6(X6, { n: 1480 - 48 }); // outer 1520 > 1500
  add({
    name: 'v6 too big for the route MTU: PTB with mtu 1460',
    config: cfg46,
    redirect: [[key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, big6b),
    verdict: 'TX',
    output: packetTooBig(big6b, 1460, NET.up6),
    counters: { events: { icmp_sent: 1 } },
  });
  add({
    name: 'v6 too big below the IPv6 minimum MTU: PTB says 1280',
    config: { ...cfg46, mtu: 1300 },
    redirect: [[key(X6), forward(NET.peer6)]],
    input: eth(fromRouter, big6b),
    verdict: 'TX',
    output: packetTooBig(big6b, 1280, NET.up6),
    counters: { events: { icmp_sent: 1 } },
  });
}

// delivery ------------------------------------------------------------------
{
  const inner = udp4(X, { ttl: 63 });
  const tunnel = ipv4({ src: NET.peer4, dst: NET.up4, ttl: 63, id: 77 }, raw(IPPROTO.IPIP, inner));
  add({
    name: 'delivery v4: IPIP to our tunnel address, decapsulated, inner packet unchanged, redirect to the app',
    config: cfg4,
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, tunnel),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, inner),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });
  add({
    name: 'delivery v4 from a VLAN-tagged frame: output untagged',
    config: cfg4,
    deliver: [[key(X), deliverTo()]],
    input: eth({ ...fromRouter, vlan: 100 }, tunnel),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, inner),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });
  add({
    name: 'delivery: a port-specific delivery entry beats the whole-address one',
    config: cfg4,
    deliver: [
      [key(X), deliverTo()],
      [key(X, 'udp', 5000), deliverTo(APP_X_PORT)],
    ],
    input: eth(fromRouter, tunnel),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, inner),
    counters: { apps: apps([APP_X_PORT, 'deliver']) },
  });
  const inner6 = udp6(X6, { hop: 63 });
  const tunnel6 = ipv6({ src: NET.peer6, dst: NET.up6, hopLimit: 63 }, raw(IPPROTO.IPV6, inner6));
  add({
    name: 'delivery v6: IPv6-in-IPv6 to our tunnel address, decapsulated',
    config: cfg46,
    deliver: [[key(X6), deliverTo()]],
    input: eth(fromRouter, tunnel6),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, inner6),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });
  const tunnel46 = ipv6({ src: NET.peer6, dst: NET.up6 }, raw(IPPROTO.IPIP, inner));
  add({
    name: 'delivery: IPv4 inside an IPv6 tunnel',
    config: cfg46,
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, tunnel46),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, inner),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });
  add({
    name: 'delivery with no entry for the inner destination: dropped + no_delivery',
    config: cfg4,
    deliver: [[key(Y), deliverTo()]],
    input: eth(fromRouter, tunnel),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { no_delivery: 1 } },
  });
  add({
    name: 'IPIP to an address that is not our tunnel address: not ours, passed',
    config: { tunnelAddr4: NET.other4 },
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, tunnel),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { no_entry: 1 } },
  });
  const frag = ipv4({ src: NET.peer4, dst: NET.up4, mf: true, df: false }, raw(IPPROTO.IPIP, inner));
  add({
    name: 'delivery of an outer fragment: dropped + fragmentation (we do not reassemble)',
    config: cfg4,
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, frag),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { fragmentation: 1 } },
  });
}

// malformed -----------------------------------------------------------------
{
  const badInner = Buffer.from(udp4(X));
  badInner[0] = 0x55; // version 5
  add({
    name: 'tunnel packet to us with an unparsable inner header: dropped + malformed',
    config: cfg4,
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, ipv4({ src: NET.peer4, dst: NET.up4 }, raw(IPPROTO.IPIP, badInner))),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { malformed: 1 } },
  });
  const inner = udp4(X);
  const lying = ipv4({ src: NET.peer4, dst: NET.up4 }, raw(IPPROTO.IPIP, inner));
  lying.writeUInt16BE(inner.length + 10, 20 + 2); // inner claims more than the outer carries
  add({
    name: 'tunnel packet whose inner length exceeds the outer: dropped + malformed',
    config: cfg4,
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, lying),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { malformed: 1 } },
  });
  add({
    name: 'IPv4 total length beyond the frame, destination with an entry: dropped + malformed',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ipv4({ src: CLIENT, dst: X, totLen: 200 }, udp(1, 2, pattern(10)))),
    verdict: 'DROP',
    output: 'input',
    counters: { drops: { malformed: 1 } },
  });
  add({
    name: 'IPv4 header length 4 words: unparsable, passed + unparsed',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ipv4({ src: CLIENT, dst: X, ihl: 4 }, udp(1, 2, pattern(10)))),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { unparsed: 1 } },
  });
  add({
    name: 'IP ethertype with an IPv6 header inside: passed + unparsed',
    config: cfg4,
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth({ ...fromRouter, type: ETH_P.IPV4 }, udp6()),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { unparsed: 1 } },
  });
  add({
    name: 'UDP header cut by the IP length, port-only entry: passed + unparsed (only whole-address entries apply)',
    config: cfg4,
    redirect: [[key(X, 'udp', 5000), forward(NET.peer4)]],
    input: eth(fromRouter, ipv4({ src: CLIENT, dst: X, totLen: 24 }, udp(1, 5000))),
    verdict: 'PASS',
    output: 'input',
    counters: { events: { unparsed: 1 } },
  });
}

// delivery paths (enum rs_path) ------------------------------------------------
// A TC path leaves the rewritten frame with a struct rs_meta in front
// (XDP metadata) and passes it: rs_uplink_tc then redirects the skb. The
// test run hands back the metadata in front of the frame.

const COOKIE = 0x5eed1e55;
const cfgTc: Partial<Config> = { ...cfg4, metaCookie: COOKIE };

/** struct rs_meta: the agent's cookie, the target, RS_META_F_PEER. */
function meta(ifindex: number, peer: boolean): Buffer {
  const m = Buffer.alloc(12);
  m.writeUInt32LE(COOKIE, 0);
  m.writeUInt32LE(ifindex, 4);
  m.writeUInt32LE(peer ? 1 : 0, 8);
  return m;
}

/** The packet with its TCP/UDP checksum as a sender with checksum offload leaves it: the pseudo-header sum only. */
function partial(ip: Buffer): Buffer {
  const out = Buffer.from(ip);
  const v6 = (out[0]! >> 4) === 6;
  const hlen = v6 ? 40 : (out[0]! & 15) * 4;
  const proto = v6 ? out[6]! : out[9]!;
  const l4len = out.length - hlen;
  const addrs = v6 ? out.subarray(8, 40) : out.subarray(12, 20);
  const sum = fold(sum16(addrs, proto + l4len));
  out.writeUInt16BE(~sum & 0xffff, hlen + (proto === IPPROTO.TCP ? 16 : 6));
  return out;
}
{
  const ip = udp4();
  add({
    name: 'LOCAL on tc-peer: rewritten as for XDP, passed with rs_meta (peer) for rs_uplink_tc',
    config: cfgTc,
    redirect: [[key(X), local(APP_X, X_IF, 'tc-peer', 'tc-peer')]],
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip))]),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: "LOCAL on tc (a bridge, a same-namespace veth): rs_meta without the peer flag",
    config: cfgTc,
    redirect: [[key(X), local(APP_X, X_IF, 'tc', 'tc')]],
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, false), eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip))]),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: 'LOCAL on kernel: passed untouched for the host to route, counted + event kernel_path',
    config: cfgTc,
    redirect: [[key(X), local(APP_X, X_IF, 'kernel', 'kernel')]],
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: 'input',
    counters: { apps: apps([APP_X, 'local']), events: { kernel_path: 1 } },
  });
  const part = partial(ip);
  add({
    name: 'LOCAL on xdp, a partial UDP checksum on an skb uplink: the slow path keeps the skb (tc-peer)',
    config: { ...cfgTc, skbCsum: true },
    redirect: [[key(X), local()]],
    input: eth(fromRouter, part),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(part))]),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: 'LOCAL on xdp, a complete checksum on an skb uplink: XDP redirect',
    config: { ...cfgTc, skbCsum: true },
    redirect: [[key(X), local()]],
    input: eth(fromRouter, ip),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(ip)),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: 'LOCAL on xdp, a partial checksum but not an skb uplink (a NIC): XDP redirect',
    config: cfgTc,
    redirect: [[key(X), local()]],
    input: eth(fromRouter, part),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(part)),
    counters: { apps: apps([APP_X, 'local']) },
  });
  const tcp4 = ipv4({ src: CLIENT, dst: X, id: 9 }, tcp(40000, 80, { flags: 0x18 }, pattern(40)));
  const tcpPart = partial(tcp4);
  add({
    name: 'LOCAL on xdp, a partial TCP checksum on an skb uplink: slow path',
    config: { ...cfgTc, skbCsum: true },
    redirect: [[key(X), local()]],
    input: eth(fromRouter, tcpPart),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, decTtl4(tcpPart))]),
    counters: { apps: apps([APP_X, 'local']) },
  });
  const ip6 = udp6();
  const part6 = partial(ip6);
  add({
    name: 'LOCAL v6 on xdp, a partial UDP checksum on an skb uplink: slow path',
    config: { ...cfgTc, skbCsum: true },
    redirect: [[key(X6), local()]],
    input: eth(fromRouter, part6),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, decHop6(part6))]),
    counters: { apps: apps([APP_X, 'local']) },
  });
  add({
    name: 'LOCAL v6 on xdp, a complete checksum on an skb uplink: XDP redirect',
    config: { ...cfgTc, skbCsum: true },
    redirect: [[key(X6), local()]],
    input: eth(fromRouter, ip6),
    verdict: 'REDIRECT',
    output: eth({ dst: X_MAC, src: X_HOST_MAC }, decHop6(ip6)),
    counters: { apps: apps([APP_X, 'local']) },
  });

  const inner = udp4(X, { ttl: 63 });
  const tunnel = ipv4({ src: NET.peer4, dst: NET.up4, ttl: 63, id: 77 }, raw(IPPROTO.IPIP, inner));
  add({
    name: 'delivery on tc-peer: decapsulated, passed with rs_meta',
    config: cfgTc,
    deliver: [[key(X), deliverTo(APP_DELIVER, 'tc-peer', 'tc-peer')]],
    input: eth(fromRouter, tunnel),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, inner)]),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });
  add({
    name: 'delivery on kernel: decapsulated, still addressed to this host, passed for the stack to route',
    config: cfgTc,
    deliver: [[key(X), deliverTo(APP_DELIVER, 'kernel', 'kernel')]],
    input: eth(fromRouter, tunnel),
    verdict: 'PASS',
    output: eth(fromRouter, inner),
    counters: { apps: apps([APP_DELIVER, 'deliver']), events: { kernel_path: 1 } },
  });
  const innerPart = partial(inner);
  const tunnelPart = ipv4({ src: NET.peer4, dst: NET.up4, ttl: 63, id: 77 }, raw(IPPROTO.IPIP, innerPart));
  add({
    name: 'delivery on xdp, the inner checksum partial on an skb uplink: slow path',
    config: { ...cfgTc, skbCsum: true },
    deliver: [[key(X), deliverTo()]],
    input: eth(fromRouter, tunnelPart),
    verdict: 'PASS',
    output: Buffer.concat([meta(X_IF, true), eth({ dst: X_MAC, src: X_HOST_MAC }, innerPart)]),
    counters: { apps: apps([APP_DELIVER, 'deliver']) },
  });

  const encapped = eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip)));
  add({
    name: 'FORWARD with uplink tx tc: encapsulated, passed with rs_meta naming the egress device',
    config: { ...cfgTc, uplinkTx: 'tc' },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ip),
    verdict: 'PASS',
    output: Buffer.concat([meta(net.eth0, false), encapped]),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'FORWARD with uplink tx xdp-redirect: an XDP redirect to the uplink instead of XDP_TX',
    config: { ...cfgTc, uplinkTx: 'xdp-redirect' },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, ip),
    verdict: 'REDIRECT',
    output: encapped,
    counters: { apps: apps([APP_X, 'forward']) },
  });
  add({
    name: 'FORWARD of a partial checksum on an skb uplink: through TC, whatever the uplink tx',
    config: { ...cfgTc, skbCsum: true, uplinkTx: 'xdp-redirect' },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, part),
    verdict: 'PASS',
    output: Buffer.concat([meta(net.eth0, false), eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(part)))]),
    counters: { apps: apps([APP_X, 'forward']) },
  });
  const big = udp4(X, { n: 1400 - 28 });
  add({
    name: 'too big with uplink tx tc: the ICMP error goes through TC too',
    config: { ...cfgTc, mtu: 1400, uplinkTx: 'tc' },
    redirect: [[key(X), forward(NET.peer4)]],
    input: eth(fromRouter, big),
    verdict: 'PASS',
    output: Buffer.concat([meta(net.eth0, false), fragNeeded(big, 1380, NET.up4)]),
    counters: { events: { icmp_sent: 1 } },
  });
}

// ------------------------------------------------------------------ runs --

/**
 * Fresh maps for a fixture: its entries as the agent writes them (port
 * flags and placeholders added, see asAgentWrites) unless `raw`, and an
 * empty next-hop cache so every FORWARD fixture asks bpf_fib_lookup.
 */
function setUp(f: { config?: Partial<Config>; redirect?: [AppKey, RedirectValue][]; deliver?: [AppKey, DeliverValue][]; raw?: boolean }): void {
  for (const k of [...up.redirect.keys()]) up.redirect.delete(k);
  for (const k of [...up.deliver.keys()]) up.deliver.delete(k);
  up.setConfig(f.config ?? {});
  up.flushNexthops();
  for (const [k, v] of f.raw ? (f.redirect ?? []) : asAgentWrites(f.redirect ?? [])) up.redirect.update(k, v);
  for (const [k, v] of f.deliver ?? []) up.deliver.update(k, v);
}

const APP_IDS = [0, APP_X, APP_X_PORT, APP_DELIVER];

for (const f of fixtures) {
  t.test(f.name, async (t) => {
    setUp(f);
    const before = up.snapshot(APP_IDS);
    const r = up.run(f.input, { ingress: net.eth0, netns: net.ns.name });
    const after = up.snapshot(APP_IDS);
    t.equal(r.verdict, f.verdict, 'verdict');
    const want = f.output === 'input' ? f.input : f.output;
    t.equal(r.data.toString('hex'), want.toString('hex'), 'output frame byte for byte');
    const d = delta(before, after);
    t.same(d, f.counters, 'counters (all others unchanged)');
    const counted = [...Object.values(d.apps ?? {}).flatMap((s) => Object.values(s)), ...Object.values(d.drops ?? {}), ...Object.values(d.events ?? {})].reduce(
      (a, b) => a + b,
      0,
    );
    t.equal(deltaBytes(before, after), BigInt(counted * f.input.length), 'bytes counted = frame length received');
  });
}

t.test('the ICMP answers carry valid checksums (independent check of the builder)', async (t) => {
  setUp({ config: { ...cfg46, mtu: 1400 }, redirect: [[key(X), forward(NET.peer4)], [key(X6), forward(NET.peer6)]] });
  const r4 = up.run(eth(fromRouter, udp4(X, { n: 1500 })), { ingress: net.eth0, netns: net.ns.name });
  t.equal(r4.verdict, 'TX');
  const ip = r4.data.subarray(14);
  t.ok(checksumOk(ip.subarray(0, 20)), 'IPv4 header checksum');
  t.ok(checksumOk(ip.subarray(20)), 'ICMP checksum');
  t.equal(ip.length, 576, 'error is 576 bytes of IPv4 (RFC 1812)');
  const r6 = up.run(eth(fromRouter, udp6(X6, { n: 1500 })), { ingress: net.eth0, netns: net.ns.name });
  t.equal(r6.verdict, 'TX');
  const ip6 = r6.data.subarray(14);
  t.equal(ip6.length, 1280, 'error is 1280 bytes of IPv6 (RFC 4443)');
  const body = ip6.subarray(40);
  const pseudo = sum16(ip6.subarray(8, 40)) + body.length + IPPROTO.ICMPV6;
  t.ok(checksumOk(body, pseudo), 'ICMPv6 checksum with pseudo-header');
});

t.test('an echo request to a LOCAL app keeps a valid IPv4 checksum for every TTL', async (t) => {
  setUp({ redirect: [[key(X), local()]] });
  for (let ttl = 2; ttl <= 255; ttl++) {
    const ip = ipv4({ src: CLIENT, dst: X, ttl, id: ttl * 257 }, icmpEcho(1, ttl));
    const r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
    if (r.verdict !== 'REDIRECT' || !checksumOk(r.data.subarray(14, 34)) || r.data[14 + 8] !== ttl - 1) {
      t.fail(`ttl ${ttl}: ${r.verdict}, header ${r.data.subarray(14, 34).toString('hex')}`);
      return;
    }
  }
  t.pass('incremental TTL checksum update valid for TTL 2..255');
});

// -------------------------------------------------------- next-hop cache --
// FORWARD caches bpf_fib_lookup's SUCCESS answers per CPU (rs_nexthop) for
// less than NEXTHOP_TTL_TICKS jiffies (at most NEXTHOP_TTL_MS at any HZ).
// The kernel's jiffies, as the program's bpf_jiffies64() reads them, are
// in /proc/timer_list.

const SENTINEL_MAC = '02:00:00:00:5e:17';
const jiffiesNow = (): bigint => {
  const m = /^jiffies: (\d+)$/m.exec(readFileSync('/proc/timer_list', 'utf8'));
  if (!m) throw new Error('/proc/timer_list has no jiffies line');
  return BigInt(m[1]!);
};
const TTL_TICKS = BigInt(NEXTHOP_TTL_TICKS);
const sleep = (n: number): Promise<void> => new Promise((r) => setTimeout(r, n));
/** A cached answer for X's tunnel (peer4 from eth0) that a real lookup would never give. */
const planted = (refreshedJiffies: bigint, mtu: number = NET.mtu): Parameters<typeof up.fillNexthops>[0] => ({
  refreshedJiffies,
  inIfindex: net.eth0,
  outIfindex: net.eth0,
  family: 4,
  tos: 0,
  mtu,
  dst: NET.peer4,
  dmac: SENTINEL_MAC,
  smac: NET.upMac,
});

t.test('next-hop cache: a miss asks bpf_fib_lookup and caches the SUCCESS answer', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.peer4)]] });
  const j0 = jiffiesNow();
  const r = up.run(eth(fromRouter, udp4()), { ingress: net.eth0, netns: net.ns.name });
  const j1 = jiffiesNow();
  t.equal(r.verdict, 'TX');
  const cached = up.cachedNexthops();
  t.equal(cached.length, 1, 'one slot filled, on the CPU that ran the packet');
  t.match(cached[0], { inIfindex: net.eth0, outIfindex: net.eth0, family: 4, tos: 0, mtu: NET.mtu, dst: NET.peer4, dmac: NET.peerMac, smac: NET.upMac });
  const stamp = cached[0]!.refreshedJiffies;
  t.ok(stamp >= j0 && stamp <= j1, `stamped with jiffies (${stamp}, run between ${j0} and ${j1})`);
});

t.test('next-hop cache: a fresh answer is used without a fib lookup, including its MTU', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.peer4)]] });
  const ip = udp4();
  // retried: a tick boundary between planting and the run may let the answer expire
  let r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
  for (let i = 0; i < 10; i++) {
    up.fillNexthops(planted(jiffiesNow()));
    r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
    if (r.data.subarray(0, 6).toString('hex') === SENTINEL_MAC.replaceAll(':', '')) break;
  }
  t.equal(r.verdict, 'TX');
  t.equal(
    r.data.toString('hex'),
    eth({ dst: SENTINEL_MAC, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip))).toString('hex'),
    "the cached next-hop MAC, not the neighbour table's",
  );
  // the cached route MTU decides "too big" on a hit, like FRAG_NEEDED on a miss
  const big = udp4(X, { n: 1400 });
  for (let i = 0; i < 10; i++) {
    up.fillNexthops(planted(jiffiesNow(), 1400));
    r = up.run(eth(fromRouter, big), { ingress: net.eth0, netns: net.ns.name });
    if (r.verdict === 'TX' && r.data.length < big.length) break;
  }
  t.equal(r.verdict, 'TX', 'too big for the cached MTU: ICMP sent back');
  t.equal(r.data.subarray(14 + 20, 14 + 22).toString('hex'), '0304', 'ICMP frag-needed');
  t.equal(r.data.readUInt16BE(14 + 20 + 6), 1380, 'next-hop MTU = cached route MTU 1400 - 20');
});

t.test('next-hop cache: an answer older than the TTL is looked up again and replaced', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.peer4)]] });
  up.fillNexthops(planted(jiffiesNow() - TTL_TICKS));
  const ip = udp4();
  const r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
  t.equal(
    r.data.toString('hex'),
    eth({ dst: NET.peerMac, src: NET.upMac }, encap4({ src: NET.up4, dst: NET.peer4 }, decTtl4(ip))).toString('hex'),
    'the neighbour MAC from a real fib lookup',
  );
  t.equal(up.cachedNexthops().filter((n) => n.dmac === NET.peerMac).length, 1, 'the slot now holds the new answer');
});

t.test('next-hop cache: a neighbour change takes effect within the TTL (+ one tick)', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.peer4)]] });
  const newMac = '02:00:00:00:00:b3';
  t.teardown(() => net.ns.ip('neigh', 'replace', NET.peer4, 'lladdr', NET.peerMac, 'dev', 'eth0', 'nud', 'permanent'));
  const ip = udp4();
  t.equal(up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name }).data.subarray(0, 6).toString('hex'), NET.peerMac.replaceAll(':', ''));
  net.ns.ip('neigh', 'replace', NET.peer4, 'lladdr', newMac, 'dev', 'eth0', 'nud', 'permanent');
  await sleep(NEXTHOP_TTL_MS + 10);
  const r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
  t.equal(r.data.subarray(0, 6).toString('hex'), newMac.replaceAll(':', ''), 'the new MAC after the TTL');
});

t.test('next-hop cache: a route change (another egress interface) takes effect within the TTL', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.peer4)]] });
  const ip = udp4();
  t.equal(up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name }).verdict, 'TX');
  // a host route to the tunnel endpoint through C, out of eth1
  net.ns.ip('route', 'add', `${NET.peer4}/32`, 'via', NET.third4, 'dev', 'eth1');
  t.teardown(() => net.ns.ip('route', 'del', `${NET.peer4}/32`));
  await sleep(NEXTHOP_TTL_MS + 10);
  const r = up.run(eth(fromRouter, ip), { ingress: net.eth0, netns: net.ns.name });
  t.equal(r.verdict, 'REDIRECT', 'redirected out of eth1');
  t.equal(r.data.subarray(0, 12).toString('hex'), (NET.thirdMac + NET.otherMac).replaceAll(':', ''), "C's MAC, eth1's MAC");
});

t.test('next-hop cache: NO_NEIGH and no-route answers are not cached', async (t) => {
  setUp({ config: cfg4, redirect: [[key(X), forward(NET.unresolved4)], [key(Y), forward(NET.unroutable4)]] });
  t.equal(up.run(eth(fromRouter, udp4(X)), { ingress: net.eth0, netns: net.ns.name }).verdict, 'PASS');
  t.equal(up.run(eth(fromRouter, udp4(Y)), { ingress: net.eth0, netns: net.ns.name }).verdict, 'DROP');
  t.same(up.cachedNexthops(), [], 'nothing cached');
});

// ------------------------------------------------------------ truncation --

interface TruncCase {
  name: string;
  setup: Parameters<typeof setUp>[0];
  frame: Buffer;
  /** Offset of the IP header and its length (after which a cut is BAD_L4). */
  l3off: number;
  hlen: number;
  /** Whether a packet with readable addresses is "ours" (whole-address entry or tunnel to us). */
  ours: boolean;
}

const truncCases: TruncCase[] = [
  {
    name: 'v4 UDP to a FORWARD app',
    setup: { config: cfg4, redirect: [[key(X), forward(NET.peer4)]] },
    frame: eth(fromRouter, udp4()),
    l3off: 14,
    hlen: 20,
    ours: true,
  },
  {
    name: 'v4 TCP with IP options, VLAN-tagged, to a LOCAL app',
    setup: { redirect: [[key(X), local()]] },
    frame: eth({ ...fromRouter, vlan: 5 }, ipv4({ src: CLIENT, dst: X, options: Buffer.from([1, 1, 1, 0]) }, tcp(1, 80))),
    l3off: 18,
    hlen: 24,
    ours: true,
  },
  {
    name: 'v6 UDP to a port-only entry',
    setup: { config: cfg46, redirect: [[key(X6, 'udp', 5000), forward(NET.peer6)]] },
    frame: eth(fromRouter, udp6()),
    l3off: 14,
    hlen: 40,
    ours: false,
  },
  {
    name: 'v6 ICMP echo to a FORWARD app',
    setup: { config: cfg46, redirect: [[key(X6), forward(NET.peer6)]] },
    frame: eth(fromRouter, ipv6({ src: CLIENT6, dst: X6 }, icmp6Echo(1, 1, pattern(20)))),
    l3off: 14,
    hlen: 40,
    ours: true,
  },
  {
    name: 'v4 IPIP tunnel packet to us',
    setup: { config: cfg4, deliver: [[key(X), deliverTo()]] },
    frame: eth(fromRouter, ipv4({ src: NET.peer4, dst: NET.up4 }, raw(IPPROTO.IPIP, udp4()))),
    l3off: 14,
    hlen: 20,
    ours: true,
  },
  {
    name: 'v6 IP6IP6 tunnel packet to us',
    setup: { config: cfg46, deliver: [[key(X6), deliverTo()]] },
    frame: eth(fromRouter, ipv6({ src: NET.peer6, dst: NET.up6 }, raw(IPPROTO.IPV6, udp6()))),
    l3off: 14,
    hlen: 40,
    ours: true,
  },
];

t.test('every truncation of a valid packet: PASS untouched or DROP + malformed, never anything else', async (t) => {
  // The kernel refuses test runs shorter than an Ethernet header (EINVAL), so cuts start at 14.
  for (const c of truncCases) {
    setUp(c.setup);
    const problems: string[] = [];
    let drops = 0;
    let passes = 0;
    for (let len = 14; len < c.frame.length; len++) {
      const input = c.frame.subarray(0, len);
      const before = up.snapshot(APP_IDS);
      const r = up.run(input, { ingress: net.eth0, netns: net.ns.name });
      const d = delta(before, up.snapshot(APP_IDS));
      // the exact class: L2 incomplete → PASS uncounted; IP header incomplete →
      // PASS + unparsed; addresses readable → DROP + malformed if ours, else PASS + unparsed
      const l2Complete = len >= c.l3off;
      const l3Complete = len >= c.l3off + c.hlen;
      let want: { verdict: string; counters: CountDelta };
      if (!l2Complete) want = { verdict: 'PASS', counters: {} };
      else if (!l3Complete || !c.ours) want = { verdict: 'PASS', counters: { events: { unparsed: 1 } } };
      else want = { verdict: 'DROP', counters: { drops: { malformed: 1 } } };
      if (r.verdict === 'PASS') passes++;
      if (r.verdict === 'DROP') drops++;
      if (r.verdict !== want.verdict || JSON.stringify(d) !== JSON.stringify(want.counters)) {
        problems.push(`len ${len}: ${r.verdict} ${JSON.stringify(d)}, want ${want.verdict} ${JSON.stringify(want.counters)}`);
      } else if (!r.data.equals(input)) {
        problems.push(`len ${len}: ${r.verdict} but the frame was modified`);
      }
    }
    t.same(problems, [], `${c.name}: ${c.frame.length - 14} cuts (${passes} PASS, ${drops} DROP) as expected`);
  }
});
