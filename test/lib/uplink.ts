/**
 * bpf/uplink.o loaded fresh (unpinned, small maps) for packet tests: typed
 * maps, a runner that feeds one packet through rs_uplink with
 * BPF_PROG_TEST_RUN, and counter snapshots to compare.
 */
import { join } from 'node:path';
import { BpfObject, XdpAction, inNetns, perCpu, u32, xdpVerdictName, type BpfMap, type Program } from '../../src/bpf/index.js';
import {
  DROP_REASONS,
  EVENTS,
  PROGRAMS,
  STATS,
  appKeyCodec,
  appStatsCodec,
  configCodec,
  counterCodec,
  deliverValueCodec,
  flowKeyCodec,
  flowStatsCodec,
  newFlowCodec,
  nexthopCodec,
  oldFlowCodec,
  sumFlowStats,
  redirectValueCodec,
  sumAppStats,
  sumCounters,
  type AppKey,
  type AppStats,
  type Config,
  type Counter,
  type DeliverValue,
  type DropReason,
  type EventName,
  type FlowKey,
  type FlowStats,
  type NextHop,
  type OldFlow,
  type RedirectValue,
  type Stat,
} from '../../src/datapath/structs.js';

export const UPLINK_OBJECT = join(process.cwd(), 'bpf', 'uplink.o');
export const APP_SLOTS = 64;

/** Counter values as plain numbers: packets per app/stat, per drop, per event. */
export interface Snapshot {
  apps: Record<number, Record<Stat, Counter>>;
  drops: Record<DropReason, Counter>;
  events: Record<EventName, Counter>;
}

/** Packets-only view of a snapshot difference; zero entries omitted. */
export interface CountDelta {
  apps?: Record<number, Partial<Record<Stat, number>>>;
  drops?: Partial<Record<DropReason, number>>;
  events?: Partial<Record<EventName, number>>;
}

export interface RunResult {
  verdict: string;
  retval: number;
  data: Buffer;
}

export class Uplink implements Disposable {
  readonly program: Program;
  readonly redirect: BpfMap<AppKey, RedirectValue>;
  readonly deliver: BpfMap<AppKey, DeliverValue>;
  readonly stats: BpfMap<number, AppStats[]>;
  readonly drops: BpfMap<number, Counter[]>;
  readonly events: BpfMap<number, Counter[]>;
  readonly config: BpfMap<number, Config>;
  readonly nexthop: BpfMap<number, NextHop[]>;
  /** Flow tables of the preserve action (bpf/flows.h). */
  readonly newFlows: BpfMap<FlowKey, number>;
  readonly oldFlows: BpfMap<FlowKey, OldFlow>;
  readonly flowStats: BpfMap<number, FlowStats[]>;
  readonly pass: Program;

  constructor(opts: { redirectEntries?: number; deliverEntries?: number; flowEntries?: number } = {}) {
    using obj = BpfObject.load(UPLINK_OBJECT, {
      maxEntries: {
        rs_redirect: opts.redirectEntries ?? 1024,
        rs_deliver: opts.deliverEntries ?? 1024,
        rs_app_stats: APP_SLOTS,
        rs_flow_stats: APP_SLOTS,
        rs_new_flows: opts.flowEntries ?? 1024,
        rs_old_flows: opts.flowEntries ?? 1024,
      },
    });
    this.program = obj.program('rs_uplink');
    this.pass = obj.program(PROGRAMS.pass);
    this.redirect = obj.map('rs_redirect', appKeyCodec, redirectValueCodec);
    this.deliver = obj.map('rs_deliver', appKeyCodec, deliverValueCodec);
    this.stats = obj.map('rs_app_stats', u32, perCpu(appStatsCodec));
    this.drops = obj.map('rs_drops', u32, perCpu(counterCodec));
    this.events = obj.map('rs_events', u32, perCpu(counterCodec));
    this.config = obj.map('rs_config', u32, configCodec);
    this.nexthop = obj.map('rs_nexthop', u32, perCpu(nexthopCodec));
    this.newFlows = obj.map('rs_new_flows', flowKeyCodec, newFlowCodec);
    this.oldFlows = obj.map('rs_old_flows', flowKeyCodec, oldFlowCodec);
    this.flowStats = obj.map('rs_flow_stats', u32, perCpu(flowStatsCodec));
  }

  /** One app's flow counters, summed over CPUs. */
  flowCounters(appId: number): FlowStats {
    return sumFlowStats(this.flowStats.lookup(appId) ?? []);
  }

  /** Empty every CPU's next-hop cache, so the next FORWARD asks bpf_fib_lookup. */
  flushNexthops(): void {
    this.fillNexthops(EMPTY_NEXTHOP);
  }

  /** Put the same answer in every slot of every CPU's next-hop cache. */
  fillNexthops(nh: NextHop): void {
    const all = Array.from({ length: this.nexthop.info.possibleCpus }, () => nh);
    for (let i = 0; i < this.nexthop.info.maxEntries; i++) this.nexthop.update(i, all);
  }

  /** Every non-empty next-hop cache slot, over all CPUs. */
  cachedNexthops(): NextHop[] {
    const out: NextHop[] = [];
    for (let i = 0; i < this.nexthop.info.maxEntries; i++) {
      for (const nh of this.nexthop.lookup(i) ?? []) if (nh.family !== 0) out.push(nh);
    }
    return out;
  }

  setConfig(c: Partial<Config>): void {
    this.config.update(0, { tunnelAddr4: null, tunnelAddr6: null, mtu: 0, skbCsum: false, uplinkTx: 'xdp-tx', metaCookie: 0, ...c });
  }

  /**
   * Run one packet. `ingress` is the ifindex the packet arrives on (in the
   * namespace `netns`, where bpf_fib_lookup then runs); without it the
   * kernel uses the loopback device.
   */
  run(packet: Buffer, opts: { ingress?: number; netns?: string } = {}): RunResult {
    const go = (): RunResult => {
      const r = this.program.testRun(packet, {
        repeat: 1,
        ...(opts.ingress ? { ctx: xdpCtx(packet.length, opts.ingress) } : {}),
      });
      return { verdict: xdpVerdictName(r.retval), retval: r.retval, data: r.data };
    };
    return opts.netns ? inNetns(opts.netns, go) : go();
  }

  /** Counters for app ids 0..apps-1, drops and events, summed over CPUs. */
  snapshot(apps: readonly number[] = []): Snapshot {
    const s: Snapshot = { apps: {}, drops: {} as Snapshot['drops'], events: {} as Snapshot['events'] };
    for (const id of apps) s.apps[id] = sumAppStats(this.stats.lookup(id) ?? []);
    DROP_REASONS.forEach((r, i) => (s.drops[r] = sumCounters(this.drops.lookup(i) ?? [])));
    EVENTS.forEach((e, i) => (s.events[e] = sumCounters(this.events.lookup(i) ?? [])));
    return s;
  }

  close(): void {
    for (const m of [this.redirect, this.deliver, this.stats, this.drops, this.events, this.config, this.nexthop, this.newFlows, this.oldFlows, this.flowStats]) m.close();
    this.program.close();
    this.pass.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export const EMPTY_NEXTHOP: NextHop = {
  refreshedJiffies: 0n,
  inIfindex: 0,
  outIfindex: 0,
  family: 0,
  tos: 0,
  mtu: 0,
  dst: null,
  dmac: '00:00:00:00:00:00',
  smac: '00:00:00:00:00:00',
};

/**
 * Redirect entries as the agent writes them (src/agent/entries.ts): the
 * whole-address entry of an address that has port entries carries the
 * `ports` flag, and such an address without a whole-address entry gets a
 * 'ports-only' placeholder. An independent restatement of the rule, so the
 * packet tests can use plain entry lists.
 */
export function asAgentWrites(entries: readonly (readonly [AppKey, RedirectValue])[]): [AppKey, RedirectValue][] {
  const out = entries.map(([k, v]) => [k, { ...v }] as [AppKey, RedirectValue]);
  const isWhole = (k: AppKey): boolean => (k.proto === 'any' || k.proto === 0) && k.port === 0;
  const withPorts = new Set(out.filter(([k]) => !isWhole(k)).map(([k]) => k.address));
  for (const address of withPorts) {
    const whole = out.find(([k]) => k.address === address && isWhole(k));
    if (whole) whole[1].ports = true;
    else out.push([{ address, proto: 'any', port: 0 }, { action: 'ports-only', appId: 0xffffffff, ports: true }]);
  }
  return out;
}

/** struct xdp_md for BPF_PROG_TEST_RUN: data 0, data_end len, ingress ifindex. */
export function xdpCtx(len: number, ingressIfindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(0, 0);
  ctx.writeUInt32LE(len, 4);
  ctx.writeUInt32LE(0, 8);
  ctx.writeUInt32LE(ingressIfindex, 12);
  return ctx;
}

/** Packet-count difference b - a (bytes checked separately), zero entries omitted. */
export function delta(a: Snapshot, b: Snapshot): CountDelta {
  const out: CountDelta = {};
  for (const [id, stats] of Object.entries(b.apps)) {
    for (const s of STATS) {
      const d = Number(stats[s].packets - (a.apps[Number(id)]?.[s].packets ?? 0n));
      if (d) ((out.apps ??= {})[Number(id)] ??= {})[s] = d;
    }
  }
  for (const r of DROP_REASONS) {
    const d = Number(b.drops[r].packets - a.drops[r].packets);
    if (d) (out.drops ??= {})[r] = d;
  }
  for (const e of EVENTS) {
    const d = Number(b.events[e].packets - a.events[e].packets);
    if (d) (out.events ??= {})[e] = d;
  }
  return out;
}

/** Total bytes added to every counter between two snapshots. */
export function deltaBytes(a: Snapshot, b: Snapshot): bigint {
  let n = 0n;
  for (const [id, stats] of Object.entries(b.apps)) {
    for (const s of STATS) n += stats[s].bytes - (a.apps[Number(id)]?.[s].bytes ?? 0n);
  }
  for (const r of DROP_REASONS) n += b.drops[r].bytes - a.drops[r].bytes;
  for (const e of EVENTS) n += b.events[e].bytes - a.events[e].bytes;
  return n;
}

export { XdpAction };
