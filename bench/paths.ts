/**
 * paths (issue 7): packets/s and CPU ns per packet of each LOCAL delivery
 * path of rs_uplink on host A's uplink (enum rs_path, bpf/routeshift.h and
 * bpf/out.h), against two baselines measured in the same run, in the same
 * topology, rounds interleaved:
 *
 *   fabric (gen) ──► A's eth0 ──► vx ═ x's eth0   veth, rs_pass on x's eth0 (prepared)
 *    XDP_TX live frames       ├─► vy ═ y's eth0   veth, no XDP on y's eth0
 *                             └─► rsbr0 ─ vz ═ z's eth0   Linux bridge (docker0-like)
 *                                                 TC sink on each app's eth0: count + drop
 *
 * rows, each app's own figures against
 *  - the kernel route: nothing on A's uplink (no XDP, no TC), A's stack
 *    routes to the app (on-link /32 into vx / vy, the bridge's subnet for z);
 *  - ref_local (bench/ref_local.c): the least XDP code that does the job —
 *    parse, one lookup, MACs, TTL, bpf_redirect — into the prepared veth vx
 *    (the only device a native XDP redirect delivers into; for the TC rows
 *    it is "what the fastest XDP delivery costs");
 * and the paths:
 *  - xdp      rs_uplink bpf_redirect into vx (x's eth0 runs rs_pass);
 *  - tc-peer  rs_uplink rewrites and passes with struct rs_meta, rs_uplink_tc
 *             bpf_redirect_peer into y's namespace;
 *  - tc       the same with bpf_redirect to the egress of rsbr0 (vz is a port);
 *  - kernel   rs_uplink attached, the entry's path 'kernel': XDP_PASS, A's
 *             stack routes to y (what rs_uplink costs on that path).
 * Which path each app gets is what the agent would choose (SystemLinks,
 * src/agent/links.ts) and the benchmark checks it; the config is the
 * agent's (withUplinkFacts, src/agent/paths.ts). Entries are written
 * through HostDatapath, no agent process runs (see bench/README.md).
 *
 * Traffic: bench_gen (bench/pps.c) run by bench/out/xdpgen with
 * BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES on the fabric's side of A's
 * uplink, so every frame arrives at A's eth0 as from a wire (no router in
 * front: the fabric's kernel routing would be a common cost diluting the
 * ratios). A veth receives native XDP frames only with NAPI on: XDP on A's
 * eth0 in every row but the kernel route, so GRO is turned on on A's eth0
 * for the whole run (GRO is skipped while an XDP program is attached, so
 * it changes only the kernel route, where it is what a NIC does by
 * default). The generator is pinned to one CPU; the veths' softirq work runs
 * inline in its test run there. CPU ns/pkt: the generator process's CPU
 * time over the call (xdpgen, CLOCK_PROCESS_CPUTIME_ID: this kernel charges
 * the inline softirq work to the task) plus ksoftirqd's on that CPU, /
 * packets delivered — not /proc/stat (ticks, and every other task that gets
 * the CPU). pps: packets / wall time of the stream at the sink, which times
 * its first and every 64th arrival (a test run call also spends 20–40 ms
 * off-CPU in setup and teardown whatever its count), over the rounds in
 * which the CPU was the work's. The "sender" row runs the generator into an
 * XDP drop sink on A's eth0: its own rate.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfObject,
  detachTc,
  detachXdp,
  ifindexOf,
  inNetns,
  perCpu,
  queryXdp,
  rawBytes,
  u32,
  u64,
  type BpfMap,
  type Program,
  type TcAttachment,
} from '../src/bpf/index.js';
import { repoRoot } from '../src/bpf/native.js';
import { SystemLinks } from '../src/agent/links.js';
import { uplinkFacts, withUplinkFacts } from '../src/agent/paths.js';
import { parseMac } from '../src/model/address.js';
import { HostDatapath, TC_HOOK } from '../src/datapath/host.js';
import { appKeyCodec, configOf, type AppKey, type Path, type RedirectValue } from '../src/datapath/structs.js';
import { Netns, veth } from '../src/testbed/netns.js';
import { Topology, macOf, type HostNode } from '../src/testbed/topology.js';
import { cpuBusyNs, cpuSoftirqNs, ksoftirqdPid, pinDirFor, ppsObjectPath, removePinDir, taskRuntimeNs, udp4Frame, xdpgenPath } from './common.js';
import { median, ratioRow, type Benchmark, type Row } from './harness.js';

const FRAME = 64;
const PORT = 9999;
/** The CPU the generator is pinned to: the whole path runs there (softirq of the veths it feeds). */
const GEN_CPU = 1;
/** The bridged app's subnet: its own, beside the routed apps' /32s. */
const BR = { dev: 'rsbr0', mac: macOf(1, 0x20, 1), addr4: '10.210.0.1', prefix: 24 } as const;

export function refLocalObjectPath(): string {
  const p = join(repoRoot(), 'bench', 'ref_local.o');
  if (!existsSync(p)) throw new Error(`${p} missing: build it with \`make -C bench\``);
  return p;
}

/** A 64-byte Ethernet + IPv4 + UDP frame as the fabric sends it to A for `addr4` (UDP checksum 0: none). */
function frameTo(host: HostNode, src4: string, addr4: string): Buffer {
  return udp4Frame({ dstMac: host.mac, srcMac: host.fabricMac, src4, dst4: addr4, sport: 1024, dport: PORT, bytes: FRAME });
}

/** One delivery target: an app on A and how it hangs off A. */
interface Dest {
  name: 'x' | 'y' | 'z';
  addr4: string;
  ns: string;
  key: AppKey;
  frame: Buffer;
  /** The entry the agent would write (path as SystemLinks chose it). */
  entry: RedirectValue & { action: 'local' };
}

/** What A's uplink runs in a variant. */
type Uplink = 'bare' | 'ref' | 'rs' | 'sink';

interface Variant {
  id: 'kernel-x' | 'kernel-y' | 'kernel-z' | 'ref' | 'xdp' | 'tc-peer' | 'tc' | 'rs-kernel' | 'sender';
  uplink: Uplink;
  dest: Dest['name'];
  /** The path y's entry takes in this variant (rs-kernel rewrites it). */
  yPath?: Path;
  /** sink_count slot: 0 = the TC sinks on the apps' eth0, 1 = the XDP sink (sender). */
  count: 0 | 1;
}

const VARIANTS: readonly Variant[] = [
  { id: 'kernel-x', uplink: 'bare', dest: 'x', count: 0 },
  { id: 'kernel-y', uplink: 'bare', dest: 'y', count: 0 },
  { id: 'kernel-z', uplink: 'bare', dest: 'z', count: 0 },
  { id: 'ref', uplink: 'ref', dest: 'x', count: 0 },
  { id: 'xdp', uplink: 'rs', dest: 'x', count: 0 },
  { id: 'tc-peer', uplink: 'rs', dest: 'y', count: 0 },
  { id: 'tc', uplink: 'rs', dest: 'z', count: 0 },
  { id: 'rs-kernel', uplink: 'rs', dest: 'y', yPath: 'kernel', count: 0 },
  { id: 'sender', uplink: 'sink', dest: 'x', count: 1 },
];

interface Round {
  sent: number;
  delivered: number;
  /** The test run call, setup and teardown included (≈ 20–40 ms of it off-CPU, whatever the count). */
  wallNs: number;
  /** The stream at the sink: packets from its first arrival to its last timed one, and that time. */
  streamPkts: number;
  streamNs: number;
  /** CPU time of the work: the generator process (with the softirq work it ran inline) + ksoftirqd on its CPU. */
  cpuNs: number;
  /** Of which ksoftirqd (softirq work the kernel deferred). */
  ksoftirqdNs: number;
  /** The generator CPU's busy time from /proc/stat (ticks; other tasks on that CPU included). */
  busyNs: number;
  softirqNs: number;
  /** The kernel's mean per repetition of the test run (bpf_test_timer: the generator and the softirq work it ran inline). */
  runNs: number;
  /** rs_uplink's drop counters moved by. */
  rsDrops: number;
  /** The destination app's LOCAL counter moved by, and the kernel_path event (rs_uplink counts both). */
  rsLocal: number;
  rsKernelPath: number;
}

class Rig implements Disposable {
  readonly topo: Topology;
  readonly host: HostNode;
  readonly dests = new Map<Dest['name'], Dest>();
  readonly gen: Program;
  readonly sinkTc: Program;
  readonly sinkXdp: Program;
  readonly ref: Program;
  readonly tmpl: BpfMap<number, Buffer>;
  readonly counts: BpfMap<number, bigint[]>;
  readonly times: BpfMap<number, Buffer[]>;
  readonly refMap: BpfMap<AppKey, Buffer>;
  readonly dp: HostDatapath;
  readonly pin: string;
  /** The bridged app's namespace: ours (the Topology knows only its own). */
  zNs: Netns | undefined;
  readonly sinks: { ns: string; att: TcAttachment }[] = [];
  #uplink: Uplink | undefined;
  #yPath: Path | undefined;
  #tmplFor: Dest['name'] | undefined;
  readonly #ksoftirqd = ksoftirqdPid(GEN_CPU);

  constructor() {
    this.topo = Topology.create({
      prepared: true, // rs_pass on every app's eth0, offloads off, permanent neighbours, on-link /32s
      ipv6: false,
      hosts: ['A'],
      apps: [
        { name: 'x', host: 'A', addr4: '10.200.0.10' },
        { name: 'y', host: 'A', addr4: '10.200.0.11' },
      ],
    });
    try {
      this.host = this.topo.host('A');
      const hostNs = this.host.ns.name;
      const x = this.topo.app('x');
      const y = this.topo.app('y');
      // y: a veth whose peer runs no XDP program (it takes no XDP frames)
      inNetns(y.ns.name, () => detachXdp(ifindexOf('eth0'), 'native'));
      // z: on a bridge in A, built here (appLink is per topology)
      const z = this.#bridgedApp('z', '10.210.0.10');
      // GRO on A's uplink: NAPI for the generator's XDP frames when no XDP program runs there
      this.host.ns.exec('ethtool', '-K', 'eth0', 'gro', 'on');

      using ppsObj = BpfObject.load(ppsObjectPath());
      this.gen = ppsObj.program('bench_gen');
      this.sinkTc = ppsObj.program('bench_sink_tc');
      this.sinkXdp = ppsObj.program('bench_sink_xdp');
      this.tmpl = ppsObj.map('gen_tmpl', u32, rawBytes(64));
      this.counts = ppsObj.map('sink_count', u32, perCpu(u64));
      this.times = ppsObj.map('sink_time', u32, perCpu(rawBytes(32)));
      using refObj = BpfObject.load(refLocalObjectPath());
      this.ref = refObj.program('bench_ref_local');
      this.refMap = refObj.map('ref_local_map', appKeyCodec, rawBytes(16));

      // the count point: TC ingress of each app's eth0
      for (const ns of [x.ns.name, y.ns.name, z.ns]) {
        this.sinks.push({ ns, att: inNetns(ns, () => this.sinkTc.attachTc(ifindexOf('eth0'), 'ingress')) });
      }

      // routeshift's data plane on A, written as the agent writes it
      this.pin = pinDirFor(this.topo.prefix, 'pA');
      this.dp = inNetns(hostNs, () => HostDatapath.open({ uplink: 'eth0', pinDir: this.pin, capacity: 1024 }));
      const links = new SystemLinks('native');
      const apps = [
        { name: 'x' as const, addr4: x.addr4, ns: x.ns.name, dev: x.vethDev, mac: x.mac, want: 'xdp' },
        { name: 'y' as const, addr4: y.addr4, ns: y.ns.name, dev: y.vethDev, mac: y.mac, want: 'tc-peer' },
        { name: 'z' as const, addr4: z.addr4, ns: z.ns, dev: BR.dev, mac: z.mac, want: 'tc' },
      ];
      inNetns(hostNs, () => {
        this.dp.setConfig(withUplinkFacts(configOf({ tunnelAddr4: this.host.addr4 }), uplinkFacts(this.host.ifindex, 'native')));
        apps.forEach((a, i) => {
          const t = links.device(a.dev, 'dev');
          if (t.path !== a.want) throw new Error(`the agent would deliver into ${a.dev} by '${t.path}' (${t.why}), not '${a.want}': the layout is not what the ${a.name} rows measure`);
          const key: AppKey = { address: a.addr4, proto: 'any', port: 0 };
          const entry = { action: 'local' as const, appId: i + 1, ifindex: t.ifindex, dmac: a.mac, smac: t.mac, path: t.path, slowPath: t.slowPath };
          this.dests.set(a.name, { name: a.name, addr4: a.addr4, ns: a.ns, key, frame: frameTo(this.host, this.topo.client.addr4, a.addr4), entry });
          this.dp.redirect.update(key, entry);
        });
      });
      // ref_local: x only (the prepared veth)
      const xd = this.dests.get('x')!;
      const v = Buffer.alloc(16);
      v.writeUInt32LE(xd.entry.ifindex, 0);
      parseMac(xd.entry.dmac).copy(v, 4);
      parseMac(xd.entry.smac).copy(v, 10);
      this.refMap.update(xd.key, v);
      this.#uplink = 'rs';
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** An app on a Linux bridge of A (like docker0): z's namespace, vz a port of rsbr0, the bridge its gateway. */
  #bridgedApp(name: string, addr4: string): { ns: string; addr4: string; mac: string } {
    const h = this.topo.host('A');
    const mac = macOf(h.index, 0x20, 2);
    const ns = Netns.create(`${this.topo.prefix}-${name}A`);
    this.zNs = ns;
    ns.exec('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    h.ns.ipBatch([`link add ${BR.dev} address ${BR.mac} type bridge`, `addr add ${BR.addr4}/${BR.prefix} dev ${BR.dev}`, `link set ${BR.dev} up`]);
    veth({ ns: h.ns, dev: `v${name}`, mac: macOf(h.index, 0x20, 1) }, { ns, dev: 'eth0', mac, addrs: [`${addr4}/${BR.prefix}`] }, { offloads: 'off' });
    h.ns.ipBatch([`link set v${name} master ${BR.dev}`, `neigh replace ${addr4} lladdr ${mac} dev ${BR.dev} nud permanent`]);
    // the bridge knows where z is (a running app would have sent something)
    h.ns.exec('bridge', 'fdb', 'replace', mac, 'dev', `v${name}`, 'master', 'static');
    ns.ipBatch([`neigh replace ${BR.addr4} lladdr ${BR.mac} dev eth0 nud permanent`, `route add default via ${BR.addr4} dev eth0`]);
    return { ns: ns.name, addr4, mac };
  }

  /** Put A's uplink in a variant's state: what runs on it, y's entry path, the generator's frame. */
  set(v: Variant): void {
    const d = this.dests.get(v.dest)!;
    inNetns(this.host.ns.name, () => {
      if (v.uplink !== this.#uplink) {
        const ifindex = this.host.ifindex;
        if (v.uplink === 'rs') {
          this.dp.program.attachXdp(ifindex, { mode: 'native', replace: true });
          this.dp.tcProgram.attachTc(ifindex, 'ingress', { ...TC_HOOK, replace: true });
        } else {
          detachTc({ ifindex, direction: 'ingress', ...TC_HOOK, hookCreated: false });
          if (v.uplink === 'ref') this.ref.attachXdp(ifindex, { mode: 'native', replace: true });
          else if (v.uplink === 'sink') this.sinkXdp.attachXdp(ifindex, { mode: 'native', replace: true });
          else if (queryXdp(ifindex).progId) detachXdp(ifindex, 'native');
        }
        this.#uplink = v.uplink;
      }
    });
    const yPath = v.yPath ?? this.dests.get('y')!.entry.path;
    if (yPath !== this.#yPath) {
      const y = this.dests.get('y')!;
      this.dp.redirect.update(y.key, { ...y.entry, path: yPath, slowPath: yPath === 'kernel' ? 'kernel' : y.entry.slowPath });
      this.#yPath = yPath;
    }
    if (this.#tmplFor !== d.name) {
      const t = Buffer.alloc(64);
      d.frame.copy(t);
      this.tmpl.update(0, t);
      this.#tmplFor = d.name;
    }
  }

  count(idx: 0 | 1): number {
    return Number((this.counts.lookup(idx) ?? []).reduce((a, b) => a + b, 0n));
  }

  /** Start timing the stream at sink `idx` afresh (struct sink_time, bench/pps.c). */
  resetStream(idx: 0 | 1): void {
    this.times.update(idx, Array.from({ length: this.times.info.possibleCpus }, () => Buffer.alloc(32)));
  }

  /** The stream the sink saw since resetStream: packets between its first arrival and its last timed one, and that time. */
  stream(idx: 0 | 1): { pkts: number; ns: number } {
    let first = Infinity;
    let last = 0;
    let pkts = 0;
    for (const b of this.times.lookup(idx) ?? []) {
      const n = Number(b.readBigUInt64LE(0));
      if (!n) continue;
      first = Math.min(first, Number(b.readBigUInt64LE(8)));
      last = Math.max(last, Number(b.readBigUInt64LE(16)));
      pkts += Math.max(0, Number(b.readBigUInt64LE(24)) - 1);
    }
    return pkts > 0 && last > first ? { pkts, ns: last - first } : { pkts: 0, ns: 0 };
  }

  /** rs_uplink's counters: every drop, the LOCAL packets of `dest`, the kernel_path event. */
  rsCounters(dest: Dest): { drops: number; local: number; kernelPath: number } {
    return {
      drops: Object.values(this.dp.dropCounts()).reduce((a, c) => a + Number(c.packets), 0),
      local: Number(this.dp.appStats(dest.entry.appId).local.packets),
      kernelPath: Number(this.dp.eventCounts().kernel_path.packets),
    };
  }

  /** One generator call of `repeat` frames in variant v. */
  run(v: Variant, repeat: number): Round {
    this.set(v);
    const dest = this.dests.get(v.dest)!;
    const c0 = this.count(v.count);
    const r0 = this.rsCounters(dest);
    this.resetStream(v.count);
    const b0 = cpuBusyNs(GEN_CPU);
    const s0 = cpuSoftirqNs(GEN_CPU);
    const k0 = taskRuntimeNs(this.#ksoftirqd);
    const out = execFileSync(
      'ip',
      ['netns', 'exec', this.topo.fabric.name, 'taskset', '-c', String(GEN_CPU), xdpgenPath(), String(this.gen.id), this.host.fabricDev, String(repeat), dest.frame.toString('hex')],
      { encoding: 'utf8', timeout: 30_000 },
    );
    const busyNs = cpuBusyNs(GEN_CPU) - b0;
    const softirqNs = cpuSoftirqNs(GEN_CPU) - s0;
    const ksoftirqdNs = taskRuntimeNs(this.#ksoftirqd) - k0;
    const r = JSON.parse(out) as { wallNs: number; durationNs: number; cpuNs?: number };
    if (r.cpuNs === undefined) throw new Error('bench/out/xdpgen reports no cpuNs: rebuild it with `make -C bench`');
    // (the softirq work runs inline, before the call returns: nothing arrives later; the sink also counts
    // what the hosts send by themselves, such as an IGMP report after a link came up: a packet or two)
    const delivered = this.count(v.count) - c0;
    const r1 = this.rsCounters(dest);
    const st = this.stream(v.count);
    return {
      sent: repeat,
      delivered,
      wallNs: r.wallNs,
      streamPkts: st.pkts,
      streamNs: st.ns,
      cpuNs: r.cpuNs + ksoftirqdNs,
      ksoftirqdNs,
      busyNs,
      softirqNs,
      runNs: r.durationNs,
      rsDrops: r1.drops - r0.drops,
      rsLocal: r1.local - r0.local,
      rsKernelPath: r1.kernelPath - r0.kernelPath,
    };
  }

  close(): void {
    this.dp?.close();
    for (const s of this.sinks) {
      try {
        inNetns(s.ns, () => detachTc(s.att));
      } catch {
        /* namespace gone */
      }
    }
    this.zNs?.delete();
    this.topo.destroy();
    if (this.pin) removePinDir(this.pin);
    for (const p of [this.gen, this.sinkTc, this.sinkXdp, this.ref]) p?.close();
    for (const m of [this.tmpl, this.counts, this.times, this.refMap]) m?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Delivered packets per second of the stream at the count point (per second of the whole call if too short to time). */
const pps = (r: Round): number => (r.streamPkts >= 64 ? (r.streamPkts * 1e9) / r.streamNs : (r.delivered * 1e9) / r.wallNs);
/** The share of the stream's wall time the work had its CPU (the rest went to other tasks on it). */
const cpuShare = (r: Round): number => (r.streamPkts >= 64 ? (r.cpuNs * r.streamPkts) / r.delivered / r.streamNs : r.cpuNs / r.wallNs);
/**
 * Rounds whose wall time is the work's: the CPU was ours for ≥ 90 % of the
 * stream. On a shared machine another task on the pinned CPU stretches the
 * stream's wall time (not its CPU time); pps is the median of these rounds
 * (of all when none is).
 */
const CLEAN_SHARE = 0.9;
const cleanRounds = (rs: Round[]): Round[] => {
  const clean = rs.filter((r) => cpuShare(r) >= CLEAN_SHARE);
  return clean.length ? clean : rs;
};
const cpuPerPkt = (r: Round): number => r.cpuNs / Math.max(1, r.delivered);
const busyPerPkt = (r: Round): number => r.busyNs / Math.max(1, r.delivered);
const lossPct = (rs: Round[]): number => Math.round((rs.reduce((a, r) => a + r.sent - r.delivered, 0) / rs.reduce((a, r) => a + r.sent, 0)) * 10000) / 100;

export const pathsBench: Benchmark = {
  name: 'paths',
  title: 'LOCAL delivery on A: rs_uplink paths xdp / tc-peer / tc (bridge) / kernel vs the kernel route and ref_local, XDP live-frames sender',
  async run(ctx): Promise<Row[]> {
    const repeat = ctx.quick ? 1 << 16 : 1 << 18;
    const rounds = ctx.quick ? 1 : 8;
    using rig = new Rig();
    const got = new Map<Variant['id'], Round[]>(VARIANTS.map((v) => [v.id, []]));
    // warm up every variant (and prove it delivers) with a short call each
    for (const v of VARIANTS) {
      const w = rig.run(v, 4096);
      if (w.delivered < 4096 * 0.5) throw new Error(`variant ${v.id} delivered ${w.delivered} of 4096 warm-up frames: the topology does not deliver on that path`);
      // the frames took the path the row names: rs_uplink counted them as LOCAL (and as kernel_path on that path)
      if (v.uplink === 'rs' && w.rsLocal < w.sent * 0.99) throw new Error(`variant ${v.id}: rs_uplink counted ${w.rsLocal} of ${w.sent} frames as LOCAL`);
      if (v.id === 'rs-kernel' && w.rsKernelPath < w.sent * 0.99) throw new Error(`variant rs-kernel: only ${w.rsKernelPath} of ${w.sent} frames took the kernel path`);
    }
    for (let i = 0; i < rounds; i++) {
      // rotate the order each round, so no variant always runs first or after the same one
      const order = VARIANTS.map((_, j) => VARIANTS[(j + i * 2) % VARIANTS.length]!);
      for (const v of order) got.get(v.id)!.push(rig.run(v, repeat));
    }
    const m = (id: Variant['id']) => {
      const rs = got.get(id)!;
      const clean = cleanRounds(rs);
      return {
        pps: median(clean.map(pps)),
        ppsRounds: clean === rs ? rs.filter((r) => cpuShare(r) >= CLEAN_SHARE).length : clean.length,
        cpuShare: Math.round(median(rs.map(cpuShare)) * 100) / 100,
        cpu: median(rs.map(cpuPerPkt)),
        busy: median(rs.map(busyPerPkt)),
        runNs: median(rs.map((r) => r.runNs)),
        loss: lossPct(rs),
        ksoftirqd: Math.round(median(rs.map((r) => r.ksoftirqdNs / Math.max(1, r.cpuNs))) * 100) / 100,
        drops: rs.reduce((a, r) => a + r.rsDrops, 0),
      };
    };
    const R = Object.fromEntries(VARIANTS.map((v) => [v.id, m(v.id)])) as Record<Variant['id'], ReturnType<typeof m>>;
    ctx.log(
      VARIANTS.map(
        (v) =>
          `${v.id} ${Math.round(R[v.id].pps)} pps [${got.get(v.id)!.map((r) => `${Math.round(pps(r) / 1000)}k@${cpuShare(r).toFixed(2)}`).join(' ')}] ` +
          `${R[v.id].cpu.toFixed(0)} ns [${got.get(v.id)!.map((r) => cpuPerPkt(r).toFixed(0)).join(' ')}] (not delivered ${R[v.id].loss}%)`,
      ).join('; '),
    );
    const rsDrops = VARIANTS.reduce((a, v) => a + R[v.id].drops, 0);
    const how =
      `${rounds} interleaved rounds × ${repeat} frames of 64 B per variant (BPF_PROG_TEST_RUN live frames, XDP_TX from the fabric's side of A's uplink into it), median; counted by a TC sink on the app's eth0. ` +
      `pps = packets / wall time of the stream at the sink (first arrival to the last timed one: not the test run's setup and teardown), median of the rounds in which the work had its CPU ≥ ${CLEAN_SHARE * 100} % of that time (ppsRounds of them; all when none)`;
    const cpuHow =
      `CPU time of the generator process over the call (CLOCK_PROCESS_CPUTIME_ID: the veths' softirq work runs inline in it, on the CPU it is pinned to) plus ksoftirqd's on that CPU, / packets delivered; ` +
      `includes the generator's own cost (the sender row) in every row; procStatNs: the CPU's busy time from /proc/stat instead (ticks, other tasks on that CPU included)`;
    const KERNEL = {
      x: { id: 'kernel-x', name: 'kernel route, veth with XDP peer' },
      y: { id: 'kernel-y', name: 'kernel route, veth' },
      z: { id: 'kernel-z', name: 'kernel route, bridge' },
    } as const;
    const REF = 'ref_local XDP redirect';
    const net = (id: Variant['id']): number => Math.round(R[id].cpu - R.sender.cpu);
    /** What a row's figure and baseline were measured with, beyond the two numbers. */
    const extraOf = (id: Variant['id'], base: Variant['id']): Record<string, number> => ({
      notDeliveredPct: R[id].loss,
      baselineNotDeliveredPct: R[base].loss,
      netOfSenderNs: net(id),
      baselineNetOfSenderNs: net(base),
      netRatio: Math.round((net(id) / Math.max(1, net(base))) * 100) / 100,
      testRunNs: R[id].runNs,
      baselineTestRunNs: R[base].runNs,
      procStatNs: Math.round(R[id].busy),
      cpuShare: R[id].cpuShare,
      ppsRounds: R[id].ppsRounds,
      ksoftirqdShare: R[id].ksoftirqd,
      rsDrops,
    });
    const rows: Row[] = [];
    const pair = (label: string, id: Variant['id'], base: Variant['id'], baseName: string, what: string): void => {
      const e = extraOf(id, base);
      rows.push(
        ratioRow({ name: `paths ${label} pps`, figure: R[id].pps, baseline: R[base].pps, unit: 'pps', baselineName: baseName, maxRatio: null, note: `${what}. ${how}`, extra: e }),
        ratioRow({ name: `paths ${label} CPU ns/pkt`, figure: R[id].cpu, baseline: R[base].cpu, unit: 'ns', baselineName: baseName, maxRatio: null, note: `${what}; ${cpuHow} (netOfSenderNs: without it). ${how}`, extra: e }),
      );
    };
    const PATHS = [
      { label: 'xdp', id: 'xdp', dest: 'x', what: "rs_uplink LOCAL, path 'xdp': bpf_redirect into vx, whose peer (x's eth0) runs rs_pass" },
      { label: 'tc-peer', id: 'tc-peer', dest: 'y', what: "rs_uplink LOCAL, path 'tc-peer': rewritten in XDP, passed with rs_meta, rs_uplink_tc bpf_redirect_peer into y's namespace (no XDP on y's eth0)" },
      { label: 'tc bridge', id: 'tc', dest: 'z', what: "rs_uplink LOCAL, path 'tc': rewritten in XDP, passed with rs_meta, rs_uplink_tc bpf_redirect to the egress of the bridge rsbr0, z's veth a port of it" },
    ] as const;
    for (const p of PATHS) {
      const k = KERNEL[p.dest];
      pair(p.label, p.id, k.id, k.name, `${p.what}; against the kernel route to the same app (nothing on A's uplink but GRO)`);
      pair(`${p.label} vs ref`, p.id, 'ref', REF, `${p.what}; against bench/ref_local.c redirecting into the prepared veth vx (parse, one lookup, MACs, TTL, bpf_redirect)`);
    }
    pair('kernel path', 'rs-kernel', 'kernel-y', KERNEL.y.name, "rs_uplink and rs_uplink_tc attached, y's entry with path 'kernel': XDP_PASS untouched, A's stack routes to y; against the kernel route to y with nothing on the uplink");
    pair('ref_local', 'ref', 'kernel-x', KERNEL.x.name, "bench/ref_local.c on A's uplink redirecting into vx, against the kernel route to x");
    const fastest = VARIANTS.filter((v) => v.id !== 'sender').reduce((a, v) => (R[v.id].pps > R[a.id].pps ? v : a));
    rows.push(
      ratioRow({
        name: 'paths sender pps',
        figure: R.sender.pps,
        baseline: R[fastest.id].pps,
        unit: 'pps',
        baselineName: `fastest row (${fastest.id})`,
        maxRatio: null,
        minRatio: 1.5,
        note: `the generator alone (same frames, an XDP drop sink on A's eth0 instead of a path), against the fastest path it fed: above 1× the sender is not what limits the rows. Extra: every variant's median pps, CPU ns/pkt, the same net of the sender, the test run's own ns per frame, the /proc/stat busy ns per packet, and what was not delivered`,
        extra: {
          ...Object.fromEntries(
            VARIANTS.flatMap((v) => [
              [`${v.id}Pps`, Math.round(R[v.id].pps)],
              [`${v.id}CpuNs`, Math.round(R[v.id].cpu)],
              ...(v.id === 'sender' ? [] : [[`${v.id}NetNs`, net(v.id)]]),
              [`${v.id}TestRunNs`, R[v.id].runNs],
              [`${v.id}ProcStatNs`, Math.round(R[v.id].busy)],
              [`${v.id}CpuShare`, R[v.id].cpuShare],
              [`${v.id}PpsRounds`, R[v.id].ppsRounds],
              [`${v.id}NotDeliveredPct`, R[v.id].loss],
            ]),
          ),
          rsDrops,
          repeat,
          rounds,
        },
      }),
    );
    return rows;
  },
};
