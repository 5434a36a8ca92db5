/**
 * The baseline routeshift is measured against: the same migration done
 * with the kernel's own tools — a route on host A flipped to a VXLAN tunnel
 * to host B (the literal "routing table entry" method; VXLAN because this
 * kernel has no ipip, gre, fou or ip6tnl). Host B decapsulates in the
 * kernel and routes to the app through the route the topology gave it.
 */
import type { AppNode, HostNode, Topology } from './topology.js';

const VNI = 4242;
const DEV = 'rsvx0';
const MAC_A = '02:76:78:00:00:01';
const MAC_B = '02:76:78:00:00:02';
const NET_A = '172.31.255.1';
const NET_B = '172.31.255.2';

export class KernelBaseline {
  private constructor(
    private readonly a: HostNode,
    private readonly b: HostNode,
  ) {}

  /** VXLAN between hosts A and B (static neighbours, no learning, no ARP). */
  static setup(topo: Topology, from = 'A', to = 'B'): KernelBaseline {
    const a = topo.host(from);
    const b = topo.host(to);
    for (const [h, peer, mac, addr, peerMac, peerAddr] of [
      [a, b, MAC_A, NET_A, MAC_B, NET_B],
      [b, a, MAC_B, NET_B, MAC_A, NET_A],
    ] as const) {
      h.ns.ipBatch([
        `link add ${DEV} type vxlan id ${VNI} local ${h.addr4} remote ${peer.addr4} dstport 4789 dev ${h.uplink} nolearning`,
        `link set ${DEV} address ${mac}`,
        `addr add ${addr}/30 dev ${DEV}`,
        `link set ${DEV} up`,
        `neigh replace ${peerAddr} lladdr ${peerMac} dev ${DEV} nud permanent`,
      ]);
      void peerMac;
    }
    // Offloads off: checksums complete on the wire, as a real NIC delivers them.
    for (const h of [a, b]) h.ns.exec('ethtool', '-K', DEV, 'tx', 'off', 'rx', 'off');
    return new KernelBaseline(a, b);
  }

  /** The switch: host A routes the app's address into the tunnel. Returns ms taken. */
  switchApp(app: AppNode): number {
    const t0 = performance.now();
    this.a.ns.ip('route', 'replace', `${app.addr4}/32`, 'via', NET_B, 'dev', DEV);
    return performance.now() - t0;
  }

  /** Many switches in one `ip -batch` (the drain baseline). Returns ms taken. */
  switchAll(addrs: readonly string[]): number {
    const t0 = performance.now();
    this.a.ns.ipBatch(addrs.map((addr) => `route replace ${addr}/32 via ${NET_B} dev ${DEV}`));
    return performance.now() - t0;
  }

  /** Back to local delivery on A through the app's veth. */
  switchBack(app: AppNode): void {
    this.a.ns.ip('route', 'replace', `${app.addr4}/32`, 'dev', app.hostDev);
  }

  teardown(): void {
    for (const h of [this.a, this.b]) {
      try {
        h.ns.ip('link', 'del', DEV);
      } catch {
        /* namespace already gone */
      }
    }
  }
}
