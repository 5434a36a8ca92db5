/**
 * A one-namespace "host" for packet tests that need bpf_fib_lookup to
 * answer: uplink eth0 and a second interface eth1 (a veth pair inside the
 * namespace), routes, permanent neighbours for some next hops and none for
 * others, forwarding on. Runs of rs_uplink with ingress = eth0 inside it get
 * SUCCESS (TX out of eth0 or redirect to eth1), NO_NEIGH and no route,
 * deterministically.
 */
import { Netns, uniquePrefix, veth } from '../../src/testbed/netns.js';
import { ifindexOf, inNetns } from '../../src/bpf/index.js';

export const NET = {
  /** This host: uplink eth0, its MAC and tunnel addresses. */
  upMac: '02:00:00:00:00:01',
  up4: '192.0.2.1',
  up6: '2001:db8:1::1',
  /** Second interface eth1. */
  otherMac: '02:00:00:00:00:02',
  other4: '198.51.100.1',
  other6: '2001:db8:2::1',
  /** Remote host B out of eth0, neighbour known (permanent). */
  peerMac: '02:00:00:00:00:b2',
  peer4: '192.0.2.2',
  peer6: '2001:db8:1::2',
  /** Remote host C out of eth1, neighbour known. */
  thirdMac: '02:00:00:00:00:c2',
  third4: '198.51.100.2',
  third6: '2001:db8:2::2',
  /** On eth0's subnet, neighbour unknown: fib lookup answers NO_NEIGH. */
  unresolved4: '192.0.2.3',
  unresolved6: '2001:db8:1::3',
  /** No route at all. */
  unroutable4: '203.0.113.9',
  unroutable6: '2001:db8:ffff::9',
  /** The router that sends us packets (source MAC of input frames). */
  routerMac: '02:00:00:00:00:fe',
  mtu: 1500,
} as const;

export interface FixtureNet {
  ns: Netns;
  eth0: number;
  eth1: number;
  destroy(): void;
}

export function createFixtureNet(tag: string): FixtureNet {
  const ns = Netns.create(`${uniquePrefix(tag)}-fx`);
  try {
    ns.sysctl('net.ipv6.conf.all.accept_dad', 0);
    ns.sysctl('net.ipv6.conf.default.accept_dad', 0);
    veth(
      { ns, dev: 'eth0', mac: NET.upMac, addrs: [`${NET.up4}/24`, `${NET.up6}/64`] },
      { ns, dev: 'eth1', mac: NET.otherMac, addrs: [`${NET.other4}/24`, `${NET.other6}/64`] },
    );
    ns.sysctl('net.ipv4.ip_forward', 1);
    ns.sysctl('net.ipv6.conf.all.forwarding', 1);
    ns.ipBatch([
      `neigh replace ${NET.peer4} lladdr ${NET.peerMac} dev eth0 nud permanent`,
      `neigh replace ${NET.peer6} lladdr ${NET.peerMac} dev eth0 nud permanent`,
      `neigh replace ${NET.third4} lladdr ${NET.thirdMac} dev eth1 nud permanent`,
      `neigh replace ${NET.third6} lladdr ${NET.thirdMac} dev eth1 nud permanent`,
    ]);
    const [eth0, eth1] = inNetns(ns.name, () => [ifindexOf('eth0'), ifindexOf('eth1')] as const);
    return { ns, eth0, eth1, destroy: () => ns.delete() };
  } catch (err) {
    ns.delete();
    throw err;
  }
}
