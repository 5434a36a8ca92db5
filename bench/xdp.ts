/**
 * What the XDP benchmarks share: a namespace where bpf_fib_lookup succeeds
 * (a route and a permanent neighbour for the tunnel endpoint, forwarding
 * on), rs_uplink and the reference objects loaded with maps of a given
 * size, and a timed BPF_PROG_TEST_RUN through bench_driver (see
 * bench/ref_ipip.c for why a driver is needed for `repeat`).
 *
 * All programs are run from inside the namespace, with the frame arriving
 * on its eth0, so FORWARD answers XDP_TX for rs_uplink exactly like the
 * reference does.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfObject,
  ifindexOf,
  inNetns,
  perCpu,
  rawBytes,
  u32,
  xdpVerdictName,
  type BpfMap,
  type Program,
} from '../src/bpf/index.js';
import { repoRoot } from '../src/bpf/native.js';
import { parseIPv4, parseMac } from '../src/model/address.js';
import { udp4Frame } from './common.js';
import {
  LAYOUT,
  appKeyCodec,
  appStatsCodec,
  configCodec,
  configOf,
  counterCodec,
  redirectValueCodec,
  sumCounters,
  type AppStats,
  type Counter,
} from '../src/datapath/structs.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';

export const NET = {
  upMac: '02:00:00:00:00:01',
  up4: '192.0.2.1',
  peerMac: '02:00:00:00:00:b2',
  peer4: '192.0.2.2',
  routerMac: '02:00:00:00:00:fe',
  client4: '198.18.0.2',
};

export const FRAME_BYTES = 64;
const TMPL_BYTES = 64;

export function benchObjectPath(): string {
  const p = join(repoRoot(), 'bench', 'ref_ipip.o');
  if (!existsSync(p)) throw new Error(`${p} missing: build it with \`make -C bench\``);
  return p;
}

export function uplinkObjectPath(): string {
  return join(repoRoot(), 'bpf', 'uplink.o');
}

/** The i-th benchmark application address: 10.64.0.0 + i (up to 2^22). */
export function appAddr(i: number): Buffer {
  const n = (10 << 24) | (64 << 16) | i;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A 64-byte Ethernet + IPv4 + UDP frame (dport 5000) to `dst`, checksums filled. */
export function frameTo(dst: Buffer): Buffer {
  return udp4Frame({ dstMac: NET.upMac, srcMac: NET.routerMac, src4: NET.client4, dst4: dst, sport: 40000, dport: 5000, bytes: FRAME_BYTES });
}

/** A namespace with eth0 (the ingress) and the tunnel endpoint's neighbour pinned. */
export class BenchNet implements Disposable {
  readonly ns: Netns;
  readonly eth0: number;

  constructor(tag = 'rsb') {
    this.ns = Netns.create(`${uniquePrefix(tag)}-x`);
    try {
      veth({ ns: this.ns, dev: 'eth0', mac: NET.upMac, addrs: [`${NET.up4}/24`] }, { ns: this.ns, dev: 'eth1' });
      this.ns.sysctl('net.ipv4.ip_forward', 1);
      this.ns.ip('neigh', 'replace', NET.peer4, 'lladdr', NET.peerMac, 'dev', 'eth0', 'nud', 'permanent');
      this.eth0 = inNetns(this.ns.name, () => ifindexOf('eth0'));
    } catch (err) {
      this.ns.delete();
      throw err;
    }
  }

  run<T>(fn: () => T): T {
    return inNetns(this.ns.name, fn);
  }

  close(): void {
    this.ns.delete();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** struct xdp_md with data_end and the ingress ifindex. */
export function xdpCtx(len: number, ifindex: number): Buffer {
  const c = Buffer.alloc(24);
  c.writeUInt32LE(len, 4);
  c.writeUInt32LE(ifindex, 12);
  return c;
}

/** bench/ref_ipip.o: the floor, the reference, the driver and its maps. */
export class BenchObject implements Disposable {
  readonly tx: Program;
  readonly ref: Program;
  readonly driver: Program;
  readonly refMap: BpfMap<Buffer, Buffer>;
  readonly tmpl: BpfMap<number, Buffer>;
  readonly keys: BpfMap<number, Buffer>;
  readonly progs: BpfMap<number, number>;
  readonly pos: BpfMap<number, number[]>;

  constructor(entries: number) {
    using obj = BpfObject.load(benchObjectPath(), {
      maxEntries: { ref_map: Math.max(1, entries), bench_keys: Math.max(1, entries) },
    });
    this.tx = obj.program('bench_tx');
    this.ref = obj.program('bench_ref_ipip');
    this.driver = obj.program('bench_driver');
    this.refMap = obj.map('ref_map', rawBytes(20), rawBytes(20));
    this.tmpl = obj.map('bench_tmpl', u32, rawBytes(8 + TMPL_BYTES));
    this.keys = obj.map('bench_keys', u32, rawBytes(4));
    this.progs = obj.map('bench_progs', u32, u32);
    this.pos = obj.map('bench_pos', u32, perCpu(u32));
  }

  /** The frame the driver restores before every run, and how many keys to cycle. */
  setTemplate(frame: Buffer, nkeys: number): void {
    const v = Buffer.alloc(8 + TMPL_BYTES);
    v.writeUInt32LE(frame.length, 0);
    v.writeUInt32LE(nkeys, 4);
    frame.copy(v, 8, 0, TMPL_BYTES);
    this.tmpl.update(0, v);
    this.pos.update(0, new Array<number>(this.pos.valueCodec.size / 8).fill(0));
  }

  /** Destinations for the driver to walk, in this order. */
  setKeys(order: readonly number[]): void {
    for (let i = 0; i < order.length; i += 65536) {
      const chunk = order.slice(i, i + 65536).map((k, j) => [i + j, appAddr(k)] as const);
      this.keys.updateBatch(chunk);
    }
  }

  /** Reference entries for apps 0..n-1, all towards the pinned neighbour. */
  populateRef(n: number): void {
    const value = Buffer.concat([parseMac(NET.peerMac), parseMac(NET.upMac), parseIPv4(NET.up4), parseIPv4(NET.peer4)]);
    for (let i = 0; i < n; i += 65536) {
      const chunk: (readonly [Buffer, Buffer])[] = [];
      for (let j = i; j < Math.min(n, i + 65536); j++) chunk.push([refKey(j), value]);
      this.refMap.updateBatch(chunk);
    }
  }

  close(): void {
    for (const m of [this.refMap, this.tmpl, this.keys, this.progs, this.pos]) m.close();
    for (const p of [this.tx, this.ref, this.driver]) p.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** rs_app_key bytes for app i (IPv4 whole address). */
export function refKey(i: number): Buffer {
  const k = Buffer.alloc(20);
  k[0] = 4;
  k[14] = 0xff;
  k[15] = 0xff;
  appAddr(i).copy(k, 16);
  return k;
}

/** bpf/uplink.o with a redirect map of the given size: FORWARD entries to the pinned neighbour. */
export class UplinkObject implements Disposable {
  static readonly APP_SLOTS = 65536;
  readonly program: Program;
  readonly redirect: BpfMap<Buffer, Buffer>;
  readonly stats: BpfMap<number, AppStats[]>;
  readonly drops: BpfMap<number, Counter[]>;
  readonly events: BpfMap<number, Counter[]>;

  constructor(entries: number) {
    using obj = BpfObject.load(uplinkObjectPath(), {
      maxEntries: { rs_redirect: Math.max(1, entries), rs_deliver: 1, rs_app_stats: UplinkObject.APP_SLOTS },
    });
    this.program = obj.program('rs_uplink');
    this.redirect = obj.map('rs_redirect', rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
    this.stats = obj.map('rs_app_stats', u32, perCpu(appStatsCodec));
    this.drops = obj.map('rs_drops', u32, perCpu(counterCodec));
    this.events = obj.map('rs_events', u32, perCpu(counterCodec));
    using config = obj.map('rs_config', u32, configCodec);
    config.update(0, configOf({ tunnelAddr4: NET.up4 }));
  }

  /** FORWARD entries for apps 0..n-1 (app id i mod 65536, so counters spread like real apps). */
  populate(n: number): void {
    // encode once through the codec, then vary only app_id (at its LAYOUT offset)
    const tmpl = Buffer.alloc(redirectValueCodec.size);
    redirectValueCodec.encode({ action: 'forward', appId: 0, tunnel: NET.peer4 }, tmpl, 0);
    const appIdAt = LAYOUT.rs_redirect_value.fields.app_id.offset;
    for (let i = 0; i < n; i += 65536) {
      const chunk: (readonly [Buffer, Buffer])[] = [];
      for (let j = i; j < Math.min(n, i + 65536); j++) {
        const v = Buffer.from(tmpl);
        v.writeUInt32LE(j % UplinkObject.APP_SLOTS, appIdAt);
        chunk.push([refKey(j), v]);
      }
      this.redirect.updateBatch(chunk);
    }
  }

  /** Packets in every drop reason and pass event (all must stay 0 in a forwarding benchmark). */
  notForwarded(): bigint {
    let n = 0n;
    for (let i = 0; i < this.drops.info.maxEntries; i++) n += sumCounters(this.drops.lookup(i) ?? []).packets;
    for (let i = 0; i < this.events.info.maxEntries; i++) n += sumCounters(this.events.lookup(i) ?? []).packets;
    return n;
  }

  forwarded(appId: number): bigint {
    return (this.stats.lookup(appId) ?? []).reduce((a, s) => a + s.forward.packets, 0n);
  }

  /** FORWARD packets summed over every app id and CPU. */
  forwardedTotal(): bigint {
    let n = 0n;
    for (const [, perCpuStats] of this.stats.entries()) for (const s of perCpuStats) n += s.forward.packets;
    return n;
  }

  close(): void {
    for (const m of [this.redirect, this.stats, this.drops, this.events]) m.close();
    this.program.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Mean ns per packet of `target` run `repeat` times through the driver, in
 * the namespace, arriving on eth0. Throws unless every run ended in XDP_TX
 * (the last verdict is checked here; callers check counters too).
 */
export function timeThroughDriver(net: BenchNet, bench: BenchObject, target: Program, frame: Buffer, repeat: number): number {
  bench.progs.update(0, target.fd);
  bench.pos.update(0, new Array<number>(bench.pos.valueCodec.size / 8).fill(0));
  const r = net.run(() => bench.driver.testRun(frame, { repeat, ctx: xdpCtx(frame.length, net.eth0) }));
  const v = xdpVerdictName(r.retval);
  if (v !== 'TX') throw new Error(`${target.name} through bench_driver ended in ${v}, not TX: the benchmark would measure another path`);
  return r.durationNs;
}

/** Seeded shuffle of 0..n-1 (mulberry32), so runs are comparable. */
export function shuffled(n: number, seed = 0x5eed): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
