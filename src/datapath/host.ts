/**
 * One host's data plane: bpf/uplink.o loaded with its maps pinned under a
 * pin directory and attached to the uplink by XDP (netlink, so forwarding
 * outlives the agent). A second open with the same pin directory adopts the
 * pinned maps — entries and counters kept — and atomically replaces the
 * previous agent's program on the uplink.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfMap,
  BpfObject,
  MapType,
  Program,
  detachXdp,
  ensureBpffs,
  ifindexOf,
  perCpu,
  queryXdp,
  u32,
  type Codec,
  type XdpMode,
} from '../bpf/index.js';
import { repoRoot } from '../bpf/native.js';
import { metaValueCodec, nameKeyCodec, type MetaValue, type NameKey } from './meta.js';
import {
  DROP_REASONS,
  EVENTS,
  MAPS,
  PROGRAMS,
  STATS,
  appKeyCodec,
  appStatsCodec,
  configCodec,
  counterCodec,
  deliverValueCodec,
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
  type RedirectValue,
} from './structs.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/routeshift';
export const DEFAULT_CAPACITY = 65536;
const META_MAP = 'rs_app_meta';
const NAMES_MAP = 'rs_app_names';

export interface HostDatapathOptions {
  uplink: string;
  /** Where maps are pinned; default /sys/fs/bpf/routeshift/<uplink>. */
  pinDir?: string;
  /** XDP mode for a fresh attach (an adopted attachment keeps its mode). */
  xdpMode?: XdpMode;
  /** Entries per map (apps, deliveries) and application ids. */
  capacity?: number;
  /** Take over an uplink whose XDP program is not routeshift's. */
  replaceForeign?: boolean;
  objectPath?: string;
}

export function defaultPinDir(uplink: string): string {
  return join(DEFAULT_PIN_ROOT, uplink);
}

export function uplinkObjectPath(): string {
  return join(repoRoot(), 'bpf', 'uplink.o');
}

export class HostDatapath implements Disposable {
  readonly redirect: BpfMap<AppKey, RedirectValue>;
  readonly deliver: BpfMap<AppKey, DeliverValue>;
  readonly stats: BpfMap<number, AppStats[]>;
  readonly drops: BpfMap<number, Counter[]>;
  readonly events: BpfMap<number, Counter[]>;
  readonly config: BpfMap<number, Config>;
  readonly meta: BpfMap<number, MetaValue>;
  /** (kind, name) → app id: the agent's name index, pinned beside the rest. */
  readonly names: BpfMap<NameKey, number>;
  /** The uplink program, for ids in /status (and test runs). */
  readonly program: Program;

  private constructor(
    readonly uplink: string,
    readonly ifindex: number,
    readonly pinDir: string,
    readonly capacity: number,
    /** True when the maps were already pinned (a restart or upgrade). */
    readonly adopted: boolean,
    readonly xdpMode: XdpMode,
    obj: BpfObject,
    meta: BpfMap<number, MetaValue>,
    names: BpfMap<NameKey, number>,
  ) {
    this.redirect = obj.map('rs_redirect', appKeyCodec, redirectValueCodec);
    this.deliver = obj.map('rs_deliver', appKeyCodec, deliverValueCodec);
    this.stats = obj.map('rs_app_stats', u32, perCpu(appStatsCodec));
    this.drops = obj.map('rs_drops', u32, perCpu(counterCodec));
    this.events = obj.map('rs_events', u32, perCpu(counterCodec));
    this.config = obj.map('rs_config', u32, configCodec);
    this.program = obj.program(PROGRAMS.uplink);
    this.meta = meta;
    this.names = names;
  }

  static open(opts: HostDatapathOptions): HostDatapath {
    const capacity = opts.capacity ?? DEFAULT_CAPACITY;
    const pinDir = opts.pinDir ?? defaultPinDir(opts.uplink);
    const ifindex = ifindexOf(opts.uplink);
    ensureBpffs();
    mkdirSync(pinDir, { recursive: true });
    const adopted = existsSync(join(pinDir, 'rs_redirect'));

    const pinPaths: Record<string, string> = {};
    for (const name of Object.keys(MAPS)) pinPaths[name] = join(pinDir, name);
    const obj = BpfObject.open(opts.objectPath ?? uplinkObjectPath(), {
      pinPaths,
      maxEntries: { rs_redirect: capacity, rs_deliver: capacity, rs_app_stats: capacity },
    });
    let meta: BpfMap<number, MetaValue> | undefined;
    let names: BpfMap<NameKey, number> | undefined;
    try {
      try {
        obj.load();
      } catch (err) {
        if (adopted && /reuse|EINVAL/.test((err as Error).message)) {
          (err as Error).message +=
            ` (the maps pinned in ${pinDir} do not match this build or --capacity ${capacity};` +
            ' start with the capacity they were made with, or `routeshift agent --cleanup` to start afresh)';
        }
        throw err;
      }
      meta = openOrCreateUserMap(join(pinDir, META_MAP), u32, metaValueCodec, capacity);
      names = openOrCreateUserMap(join(pinDir, NAMES_MAP), nameKeyCodec, u32, capacity);
      const dp = new HostDatapath(opts.uplink, ifindex, pinDir, capacity, adopted, opts.xdpMode ?? 'native', obj, meta, names);
      (dp as { xdpMode: XdpMode }).xdpMode = dp.attach(opts.xdpMode ?? 'native', opts.replaceForeign ?? false);
      return dp;
    } catch (err) {
      meta?.close();
      names?.close();
      if (!adopted) rmSync(pinDir, { recursive: true, force: true }); // leave no half-made state
      throw err;
    } finally {
      obj.close(); // maps and the program are held by their own handles
    }
  }

  /**
   * Attach to the uplink. Replacing routeshift's own earlier program is one
   * atomic netlink update (no packet sees an empty hook); a foreign program
   * is refused unless told otherwise. Returns the mode in effect.
   */
  private attach(mode: XdpMode, replaceForeign: boolean): XdpMode {
    const current = queryXdp(this.ifindex);
    if (current.progId !== 0) {
      const name = programName(current.progId);
      if (name !== PROGRAMS.uplink && !replaceForeign) {
        throw new Error(
          `uplink ${this.uplink} already has XDP program ${name} (id ${current.progId}) that is not routeshift's; ` +
            'detach it or pass --replace',
        );
      }
      const keep: XdpMode = current.mode === 'generic' ? 'generic' : 'native';
      this.program.attachXdp(this.ifindex, { mode: keep, replace: true });
      return keep;
    }
    this.program.attachXdp(this.ifindex, { mode, replace: false });
    return mode;
  }

  /** Id of the program attached to the uplink now (0 if none). */
  attachedProgramId(): number {
    return queryXdp(this.ifindex).progId;
  }

  setConfig(config: Config): void {
    this.config.update(0, config);
  }

  getConfig(): Config {
    return this.config.lookup(0) ?? { tunnelAddr4: null, tunnelAddr6: null, mtu: 0 };
  }

  appStats(appId: number): AppStats {
    return sumAppStats(this.stats.lookup(appId) ?? []);
  }

  /** Zero application ids' counters (ids are reused after delete), in one batched update. */
  resetAppStats(appIds: readonly number[]): void {
    if (!appIds.length) return;
    const zero = Object.fromEntries(STATS.map((s) => [s, { packets: 0n, bytes: 0n }])) as AppStats;
    const perCpuZero = Array.from({ length: this.stats.info.possibleCpus }, () => zero);
    this.stats.updateBatch(appIds.map((id) => [id, perCpuZero] as const));
  }

  dropCounts(): Record<DropReason, Counter> {
    return Object.fromEntries(
      DROP_REASONS.map((r, i) => [r, sumCounters(this.drops.lookup(i) ?? [])]),
    ) as Record<DropReason, Counter>;
  }

  eventCounts(): Record<EventName, Counter> {
    return Object.fromEntries(EVENTS.map((e, i) => [e, sumCounters(this.events.lookup(i) ?? [])])) as Record<
      EventName,
      Counter
    >;
  }

  /** Remove the XDP program from the uplink (forwarding stops). */
  detach(): void {
    if (this.attachedProgramId() === this.program.id) detachXdp(this.ifindex, this.xdpMode);
  }

  close(): void {
    for (const m of [this.redirect, this.deliver, this.stats, this.drops, this.events, this.config, this.meta, this.names]) m.close();
    this.program.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Undo everything an agent made for this uplink: detach routeshift's XDP
   * program and remove the pinned maps. Returns what it removed.
   */
  static cleanup(uplink: string, pinDir: string = defaultPinDir(uplink)): string[] {
    const removed: string[] = [];
    let ifindex = 0;
    try {
      ifindex = ifindexOf(uplink);
    } catch {
      /* interface gone: nothing attached to remove */
    }
    if (ifindex) {
      const q = queryXdp(ifindex);
      if (q.progId && programName(q.progId) === PROGRAMS.uplink) {
        detachXdp(ifindex, q.mode === 'generic' ? 'generic' : 'native');
        removed.push(`XDP program ${q.progId} on ${uplink}`);
      }
    }
    if (existsSync(pinDir)) {
      for (const f of readdirSync(pinDir)) removed.push(join(pinDir, f));
      rmSync(pinDir, { recursive: true, force: true });
    }
    return removed;
  }
}

function programName(id: number): string {
  try {
    using p = Program.fromId(id);
    return p.name;
  } catch {
    return `unknown`;
  }
}

/** A user-space-only map pinned beside the data plane's (the agent's names). */
function openOrCreateUserMap<K, V>(path: string, key: Codec<K>, value: Codec<V>, capacity: number): BpfMap<K, V> {
  if (existsSync(path)) {
    const m = BpfMap.openPinned(path, key, value);
    if (m.info.maxEntries !== capacity) {
      m.close();
      throw new Error(`${path} holds ${m.info.maxEntries} entries, not --capacity ${capacity}`);
    }
    return m;
  }
  const name = path.slice(path.lastIndexOf('/') + 1);
  const m = BpfMap.create({ type: MapType.HASH, name, maxEntries: capacity }, key, value);
  m.pin(path);
  return m;
}
