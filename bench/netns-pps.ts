/**
 * netns pps (issue 7): packets/s from the client through host A (FORWARD,
 * IPIP) and host B (decap, delivery) to the application, against the same
 * topology with the kernel baseline (A routes the app into VXLAN, B's
 * kernel decapsulates and routes) — both in one run, rounds interleaved.
 *
 *   client ──► fabric ──► A ──► fabric ──► B ──► app x on B
 *   gen (XDP_TX, live frames)                     TC sink: count + drop
 *
 * The sender: bench_gen (bench/pps.c) run with BPF_PROG_TEST_RUN and
 * BPF_F_TEST_XDP_LIVE_FRAMES on the client's eth0 by bench/out/xdpgen (a
 * libbpf helper run in the client namespace), repeat ≥ 2^20 per call:
 * every frame is really transmitted into the client's veth. Its own rate is
 * measured in the same run with a drop sink on the first hop (the fabric's
 * side of the client veth) instead of the whole path: the "sender" row.
 * The test run transmits and the kernel processes what it transmitted on
 * the same CPU (softirq at the end of each batch), so the path rate is the
 * rate of one core doing all the work of the path. The generator is pinned
 * to one CPU (taskset), and CPU time per delivered packet is that CPU's
 * busy time from /proc/stat over the window: the other figure, which a
 * neighbour's load on the other CPU does not disturb.
 *
 * Both variants run in the same namespaces with the same fabric (kernel
 * routing there in both); only hosts A and B differ: rs_uplink attached on
 * their uplinks with entries written through HostDatapath (routeshift), or
 * detached with A's route to the app pointing into VXLAN (kernel).
 */
import { execFileSync } from 'node:child_process';
import { BpfObject, detachTc, detachXdp, ifindexOf, inNetns, perCpu, rawBytes, u32, u64, type BpfMap, type Program } from '../src/bpf/index.js';
import { HostDatapath } from '../src/datapath/host.js';
import { configOf } from '../src/datapath/structs.js';
import { KernelBaseline } from '../src/testbed/kernel-baseline.js';
import { Topology, type AppNode } from '../src/testbed/topology.js';
import { cpuBusyNs, cpuSoftirqNs, pinDirFor, ppsObjectPath, removePinDir, udp4Frame, xdpgenPath } from './common.js';
import { median, ratioRow, type Benchmark, type Row } from './harness.js';

const FRAME = 64;
const PORT = 9999;
/** The CPU the generator is pinned to: the whole path runs there (softirq of the veths it feeds). */
const GEN_CPU = 1;

/** 64-byte Ethernet + IPv4 + UDP frame from the client to the app (UDP checksum 0: none). */
function clientFrame(topo: Topology, app: AppNode): Buffer {
  // to the fabric's side of the client veth (macOf(0,0,1))
  return udp4Frame({ dstMac: '02:72:73:00:00:01', srcMac: topo.client.mac, src4: topo.client.addr4, dst4: app.addr4, sport: 1024, dport: PORT, bytes: FRAME });
}

interface Round {
  sent: number;
  delivered: number;
  wallNs: number;
  busyNs: number;
  softirqNs: number;
}

class Rig implements Disposable {
  readonly topo: Topology;
  readonly gen: Program;
  readonly sinkTc: Program;
  readonly sinkXdp: Program;
  readonly pass: Program;
  readonly tmpl: BpfMap<number, Buffer>;
  readonly counts: BpfMap<number, bigint[]>;
  readonly dps: HostDatapath[] = [];
  baseline: KernelBaseline | undefined;
  readonly pins: string[] = [];
  readonly frame: Buffer;
  readonly xB: AppNode;
  tcAtt: ReturnType<Program['attachTc']> | undefined;

  constructor() {
    this.topo = Topology.create({
      prepared: true, // the XDP fast path: every peer runs rs_pass
      ipv6: false,
      apps: [
        { name: 'x', host: 'A', addr4: '10.200.0.10' },
        { name: 'x', host: 'B', addr4: '10.200.0.10', announced: false },
      ],
    });
    try {
      using obj = BpfObject.load(ppsObjectPath());
      this.gen = obj.program('bench_gen');
      this.sinkTc = obj.program('bench_sink_tc');
      this.sinkXdp = obj.program('bench_sink_xdp');
      this.pass = obj.program('bench_pass');
      this.tmpl = obj.map('gen_tmpl', u32, rawBytes(64));
      this.counts = obj.map('sink_count', u32, perCpu(u64));
      const xA = this.topo.app('x', 'A');
      this.xB = this.topo.app('x', 'B');
      this.frame = clientFrame(this.topo, xA);
      const t = Buffer.alloc(64);
      this.frame.copy(t);
      this.tmpl.update(0, t);
      // the client's native XDP_TX lands on the fabric's 'cl': it needs an XDP program there
      this.#xdp(this.topo.fabric.name, 'cl', this.pass);
      // the count point: TC ingress of the app's eth0 on B (both variants)
      this.tcAtt = inNetns(this.xB.ns.name, () => this.sinkTc.attachTc(ifindexOf('eth0'), 'ingress'));
      // the kernel baseline: VXLAN A<->B, A routes the app into it
      this.baseline = KernelBaseline.setup(this.topo);
      this.baseline.switchApp(xA);
      // routeshift: FORWARD on A, delivery on B, through HostDatapath
      for (const h of ['A', 'B'] as const) {
        const host = this.topo.host(h);
        const pin = pinDirFor(this.topo.prefix, `p${h}`);
        this.pins.push(pin);
        const dp = inNetns(host.ns.name, () => HostDatapath.open({ uplink: 'eth0', pinDir: pin, capacity: 1024 }));
        this.dps.push(dp);
        dp.setConfig(configOf({ tunnelAddr4: host.addr4 }));
      }
      const key = { address: xA.addr4, proto: 'any' as const, port: 0 };
      this.dps[0]!.redirect.update(key, this.topo.forwardEntry('B', 1));
      this.dps[1]!.deliver.update(key, this.topo.deliverEntry(this.xB, 1));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  #xdp(ns: string, dev: string, prog: Program): void {
    inNetns(ns, () => prog.attachXdp(ifindexOf(dev), { mode: 'native', replace: true }));
  }

  /** 'rs': rs_uplink on A's and B's uplinks; 'kernel': no XDP there, VXLAN + routes do the work. */
  mode(m: 'rs' | 'kernel'): void {
    for (const [i, h] of (['A', 'B'] as const).entries()) {
      const host = this.topo.host(h);
      const dp = this.dps[i]!;
      inNetns(host.ns.name, () => {
        if (m === 'rs') dp.program.attachXdp(host.ifindex, { mode: 'native', replace: true });
        else if (dp.attachedProgramId() !== 0) detachXdp(host.ifindex, 'native');
      });
    }
  }

  count(idx: 0 | 1): number {
    return Number((this.counts.lookup(idx) ?? []).reduce((a, b) => a + b, 0n));
  }

  /** One generator call of `repeat` frames; what arrived at counter `idx`. */
  run(repeat: number, idx: 0 | 1): Round {
    const c0 = this.count(idx);
    const b0 = cpuBusyNs(GEN_CPU);
    const s0 = cpuSoftirqNs(GEN_CPU);
    const out = execFileSync('ip', ['netns', 'exec', this.topo.client.ns.name, 'taskset', '-c', String(GEN_CPU), xdpgenPath(), String(this.gen.id), 'eth0', String(repeat), this.frame.toString('hex')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const r = JSON.parse(out) as { retval: number; wallNs: number; durationNs: number };
    // frames still queued in veth rings are processed within microseconds
    const delivered = this.count(idx) - c0;
    // (live frames report no verdict: retval stays 0; the counters say what arrived)
    return { sent: repeat, delivered, wallNs: r.wallNs, busyNs: cpuBusyNs(GEN_CPU) - b0, softirqNs: cpuSoftirqNs(GEN_CPU) - s0 };
  }

  /** The sender alone: a drop sink on the first hop instead of the whole path. */
  senderOnly<T>(fn: () => T): T {
    this.#xdp(this.topo.fabric.name, 'cl', this.sinkXdp);
    try {
      return fn();
    } finally {
      this.#xdp(this.topo.fabric.name, 'cl', this.pass);
    }
  }

  close(): void {
    for (const dp of this.dps) dp.close();
    this.baseline?.teardown();
    if (this.tcAtt) {
      try {
        inNetns(this.xB.ns.name, () => detachTc(this.tcAtt!));
      } catch {
        /* namespace gone */
      }
    }
    this.topo.destroy();
    for (const p of this.pins) removePinDir(p);
    for (const p of [this.gen, this.sinkTc, this.sinkXdp, this.pass]) p?.close();
    this.tmpl?.close();
    this.counts?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export const netnsPps: Benchmark = {
  name: 'pps',
  title: 'netns pps client→A→B→app: routeshift XDP FORWARD + delivery vs kernel VXLAN + routes, XDP live-frames sender',
  async run(ctx): Promise<Row[]> {
    const repeat = ctx.quick ? 1 << 17 : 1 << 20;
    const rounds = ctx.quick ? 1 : 3;
    using rig = new Rig();
    const rs: Round[] = [];
    const kernel: Round[] = [];
    const sender: Round[] = [];
    // warm up both paths (and prove they deliver) with a short call each
    for (const m of ['rs', 'kernel'] as const) {
      rig.mode(m);
      const w = rig.run(4096, 0);
      if (w.delivered < 4096 * 0.5) throw new Error(`${m} path delivered ${w.delivered} of 4096 warm-up frames: the topology does not forward`);
    }
    for (let i = 0; i < rounds; i++) {
      for (const m of (i % 2 ? ['kernel', 'rs'] : ['rs', 'kernel']) as ('rs' | 'kernel')[]) {
        rig.mode(m);
        (m === 'rs' ? rs : kernel).push(rig.run(repeat, 0));
      }
      sender.push(rig.senderOnly(() => rig.run(repeat, 1)));
    }
    const pps = (r: Round): number => (r.delivered * 1e9) / r.wallNs;
    const sentPps = (r: Round): number => (r.sent * 1e9) / r.wallNs;
    const cpuPerPkt = (r: Round): number => r.busyNs / Math.max(1, r.delivered);
    const rsPps = median(rs.map(pps));
    const kPps = median(kernel.map(pps));
    const senderPps = median(sender.map(sentPps));
    const rsCpu = median(rs.map(cpuPerPkt));
    const kCpu = median(kernel.map(cpuPerPkt));
    const lossOf = (rounds: Round[]): number => rounds.reduce((a, r) => a + (r.sent - r.delivered), 0) / rounds.reduce((a, r) => a + r.sent, 0);
    ctx.log(
      `rs ${Math.round(rsPps)} pps (${rsCpu.toFixed(0)} ns CPU/pkt), kernel ${Math.round(kPps)} pps (${kCpu.toFixed(0)} ns CPU/pkt), sender alone ${Math.round(senderPps)} pps; ` +
        `not delivered: rs ${(lossOf(rs) * 100).toFixed(2)}%, kernel ${(lossOf(kernel) * 100).toFixed(2)}%`,
    );
    const how = `${rounds} interleaved rounds × ${repeat} frames of 64 B (BPF_PROG_TEST_RUN live frames, XDP_TX from the client's eth0), median; counted by a TC sink on the app's eth0`;
    const extra = {
      rsSentPps: Math.round(median(rs.map(sentPps))),
      kernelSentPps: Math.round(median(kernel.map(sentPps))),
      senderAlonePps: Math.round(senderPps),
      rsNotDeliveredPct: Math.round(lossOf(rs) * 10000) / 100,
      kernelNotDeliveredPct: Math.round(lossOf(kernel) * 10000) / 100,
      rsCpuNsPerPkt: Math.round(rsCpu),
      kernelCpuNsPerPkt: Math.round(kCpu),
      rsSoftirqShare: Math.round((median(rs.map((r) => r.softirqNs / Math.max(1, r.busyNs))) * 100)) / 100,
      repeat,
    };
    return [
      ratioRow({
        name: 'netns pps',
        figure: rsPps,
        baseline: kPps,
        unit: 'pps',
        baselineName: 'kernel VXLAN + routes',
        maxRatio: null,
        minRatio: 3,
        note: `${how}. Either this row or the CPU row meeting its goal meets issue 7's goal. The fabric routes in the kernel in both variants (twice per packet), a common cost that dilutes the ratio`,
        extra,
      }),
      ratioRow({
        name: 'netns CPU ns/pkt',
        figure: rsCpu,
        baseline: kCpu,
        unit: 'ns',
        baselineName: 'kernel VXLAN + routes',
        maxRatio: 0.33,
        note: `busy time of the generator's CPU (pinned with taskset; the veths' softirq work runs on the CPU that feeds them) from /proc/stat (user+system+irq+softirq+steal) over the window / packets delivered; includes the sender and the fabric in both. ${how}`,
        extra,
      }),
      ratioRow({
        name: 'netns sender pps',
        figure: senderPps,
        baseline: rsPps,
        unit: 'pps',
        baselineName: 'routeshift path',
        maxRatio: null,
        minRatio: 1.5,
        note: `the generator alone (same frames, XDP drop sink on the fabric's side of the client veth), against the path rate it fed: above 1× the sender is not the bottleneck`,
        extra,
      }),
    ];
  },
};
