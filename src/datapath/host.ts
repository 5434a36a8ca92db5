/**
 * One host's data plane: bpf/uplink.o loaded with its maps pinned under a
 * pin directory, attached to the uplink by XDP and TC ingress (netlink, so
 * forwarding outlives the agent), and bpf/watch.o counting the frames the
 * kernel failed to transmit.
 *
 * A second open adopts the state of the first — entries and counters kept —
 * and atomically replaces the previous agent's programs on the uplink. The
 * state is found through the pins when they are there, else through the
 * program attached to the uplink, which holds every map (the agent's own
 * are bound to it): an agent started under `ip netns exec` or in a
 * container pins into a bpffs that goes away with it, and its successor
 * still finds everything.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfMap,
  BpfObject,
  MapType,
  Program,
  detachTc,
  detachXdp,
  ensureBpffs,
  isErrno,
  isOnBpffs,
  ifindexOf,
  netnsInode,
  netnsName,
  perCpu,
  queryXdp,
  rawBytes,
  u32,
  type Codec,
  type TcAttachment,
  type XdpMode,
} from '../bpf/index.js';
import { repoRoot } from '../bpf/native.js';
import { metaValueCodec, nameKeyCodec, ownerCodec, type MetaValue, type NameKey, type Owner } from './meta.js';
import {
  DEFAULT_CAPACITY,
  DEFAULT_FLOW_CAPACITY,
  DROP_REASONS,
  FLOW_STATS,
  EVENTS,
  MAPS,
  PROGRAMS,
  STATS,
  appKeyCodec,
  appStatsCodec,
  configCodec,
  configOf,
  counterCodec,
  deliverValueCodec,
  flowKeyCodec,
  flowStatsCodec,
  newFlowCodec,
  oldFlowCodec,
  redirectValueCodec,
  sumAppStats,
  sumCounters,
  sumFlowStats,
  type FlowStats,
  type OldFlow,
  type AppKey,
  type AppStats,
  type Config,
  type Counter,
  type DeliverValue,
  type DropReason,
  type EventName,
  type RedirectValue,
} from './structs.js';
import { Watcher } from './watch.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/routeshift';
const META_MAP = 'rs_app_meta';
const NAMES_MAP = 'rs_app_names';
const OWNER_MAP = 'rs_owner';
/** The agent's own maps (user space only) are bound to rs_uplink, so they can be found through it. */

/** Where rs_uplink_tc sits on the uplink's TC ingress: first, under a handle of its own ("rs"). */
export const TC_HOOK = { handle: 0x7273, priority: 1 } as const;

export interface HostDatapathOptions {
  uplink: string;
  /** Where maps are pinned; default /sys/fs/bpf/routeshift/<uplink>. */
  pinDir?: string;
  /** XDP mode for a fresh attach (an adopted attachment keeps its mode). */
  xdpMode?: XdpMode;
  /** Entries per map (apps, deliveries) and application ids. */
  capacity?: number;
  /** Entries of each flow table of the preserve action (rs_new_flows, rs_old_flows). */
  flowCapacity?: number;
  /** Take over an uplink whose XDP program is not routeshift's. */
  replaceForeign?: boolean;
  objectPath?: string;
}

/** How the running data plane was come by. */
export type Adoption = 'fresh' | 'pins' | 'program';

/**
 * /sys/fs/bpf/routeshift/<uplink>, or …/netns-<name>/<uplink> for an
 * uplink in a named network namespace (`ip netns`): agents of two
 * namespaces may share one bpffs, and their uplinks may share a name.
 * Asked in the namespace of the uplink.
 */
export function defaultPinDir(uplink: string, netns: string | undefined = netnsName()): string {
  return netns ? join(DEFAULT_PIN_ROOT, `netns-${netns}`, uplink) : join(DEFAULT_PIN_ROOT, uplink);
}

export function uplinkObjectPath(): string {
  return join(repoRoot(), 'bpf', 'uplink.o');
}

/** routeshift's program on the uplink, if that is what is attached. */
interface Attached {
  progId: number;
  mode: XdpMode;
  mapIds: number[];
}

/** Where an agent pins the rs_uplink program it attached (see pinAttachedProgram). */
const PROGRAM_PIN = 'prog_rs_uplink';

/** The attached program cannot be told routeshift's or not without CAP_SYS_ADMIN. */
class AttachedUnknowable extends Error {}

/**
 * Open the program attached to the uplink: through the pin dir when the
 * program pinned there is the one attached (needs only access to the pin,
 * so an agent without CAP_SYS_ADMIN can restart), else by id, which the
 * kernel allows only with CAP_SYS_ADMIN.
 */
function openAttached(progId: number, pinDir: string | undefined): Program {
  const pinned = pinDir ? join(pinDir, PROGRAM_PIN) : undefined;
  if (pinned && existsSync(pinned)) {
    const p = Program.openPinned(pinned);
    if (p.id === progId) return p;
    p.close();
  }
  try {
    return Program.fromId(progId);
  } catch (err) {
    if (isErrno(err, 'EPERM')) {
      throw new AttachedUnknowable(
        `the uplink runs XDP program id ${progId}, not the one pinned in ${pinDir ?? 'the pin dir'}: ` +
          'telling whether it is routeshift\'s means opening it by id, which needs CAP_SYS_ADMIN ' +
          '(start the agent with it once, or `routeshift agent --cleanup` as root)',
      );
    }
    throw err;
  }
}

function attachedRouteshift(ifindex: number, pinDir?: string): Attached | { foreign: string; progId: number } | undefined {
  const q = queryXdp(ifindex);
  if (!q.progId) return undefined;
  let p: Program;
  try {
    p = openAttached(q.progId, pinDir);
  } catch (err) {
    if (err instanceof AttachedUnknowable) throw err;
    return { foreign: 'unknown', progId: q.progId };
  }
  try {
    if (p.name !== PROGRAMS.uplink) return { foreign: p.name, progId: q.progId };
    return { progId: q.progId, mode: q.mode === 'generic' ? 'generic' : 'native', mapIds: p.mapIds() };
  } finally {
    p.close();
  }
}

/** The maps a program holds, by name, as raw handles (the caller closes them). */
function mapsById(ids: readonly number[]): Map<string, BpfMap<Buffer, Buffer>> {
  const out = new Map<string, BpfMap<Buffer, Buffer>>();
  for (const id of ids) {
    const m = BpfMap.fromId(id);
    if (out.has(m.info.name)) m.close();
    else out.set(m.info.name, m);
  }
  return out;
}

export class HostDatapath implements Disposable {
  // The entry tables: the agent's store (src/agent/store.ts) is their one writer.
  readonly redirect: BpfMap<AppKey, RedirectValue>;
  readonly deliver: BpfMap<AppKey, DeliverValue>;
  // The counters and the config are read and written through the methods below only.
  readonly #stats: BpfMap<number, AppStats[]>;
  readonly #drops: BpfMap<number, Counter[]>;
  readonly #events: BpfMap<number, Counter[]>;
  readonly #config: BpfMap<number, Config>;
  // Flow tables of the preserve action, read raw-keyed: only their values are counted.
  readonly #newFlows: BpfMap<Buffer, number>;
  readonly #oldFlows: BpfMap<Buffer, OldFlow>;
  readonly #flowStats: BpfMap<number, FlowStats[]>;
  readonly meta: BpfMap<number, MetaValue>;
  /** (kind, name) → app id: the agent's name index, pinned beside the rest. */
  readonly names: BpfMap<NameKey, number>;
  /** The uplink program, for ids in /status (and test runs). */
  readonly program: Program;
  /** Its TC ingress half (the TC delivery paths). */
  readonly tcProgram: Program;
  readonly tc: TcAttachment;
  #watcher: Watcher | undefined;

  private constructor(
    readonly uplink: string,
    readonly ifindex: number,
    readonly pinDir: string,
    readonly capacity: number,
    /** How the state was found: fresh, through the pins, or through the attached program. */
    readonly adoption: Adoption,
    readonly xdpMode: XdpMode,
    obj: BpfObject,
    meta: BpfMap<number, MetaValue>,
    names: BpfMap<NameKey, number>,
    tc: TcAttachment,
  ) {
    this.redirect = obj.map('rs_redirect', appKeyCodec, redirectValueCodec);
    this.deliver = obj.map('rs_deliver', appKeyCodec, deliverValueCodec);
    this.#stats = obj.map('rs_app_stats', u32, perCpu(appStatsCodec));
    this.#drops = obj.map('rs_drops', u32, perCpu(counterCodec));
    this.#events = obj.map('rs_events', u32, perCpu(counterCodec));
    this.#config = obj.map('rs_config', u32, configCodec);
    this.#newFlows = obj.map('rs_new_flows', rawBytes(flowKeyCodec.size), newFlowCodec);
    this.#oldFlows = obj.map('rs_old_flows', rawBytes(flowKeyCodec.size), oldFlowCodec);
    this.#flowStats = obj.map('rs_flow_stats', u32, perCpu(flowStatsCodec));
    this.program = obj.program(PROGRAMS.uplink);
    this.tcProgram = obj.program(PROGRAMS.tc);
    this.meta = meta;
    this.names = names;
    this.tc = tc;
  }

  /** True when an earlier agent's state was adopted (a restart or upgrade). */
  get adopted(): boolean {
    return this.adoption !== 'fresh';
  }

  static open(opts: HostDatapathOptions): HostDatapath {
    const capacity = opts.capacity ?? DEFAULT_CAPACITY;
    const flowCapacity = opts.flowCapacity ?? DEFAULT_FLOW_CAPACITY;
    const pinDir = opts.pinDir ?? defaultPinDir(opts.uplink);
    const ifindex = ifindexOf(opts.uplink);
    if (!isOnBpffs(pinDir)) ensureBpffs();
    mkdirSync(pinDir, { recursive: true });
    const pinned = existsSync(join(pinDir, 'rs_redirect'));
    const attached = attachedRouteshift(ifindex, pinDir);
    if (attached && 'foreign' in attached && !opts.replaceForeign) {
      throw new Error(
        `uplink ${opts.uplink} already has XDP program ${attached.foreign} (id ${attached.progId}) that is not routeshift's; ` +
          'detach it or pass --replace',
      );
    }
    const ours = attached && !('foreign' in attached) ? attached : undefined;

    // The maps to reuse: pinned ones by path (libbpf), or those the attached program holds, by fd.
    let adoption: Adoption = pinned ? 'pins' : 'fresh';
    let held = new Map<string, BpfMap<Buffer, Buffer>>();
    const me: Owner = { netns: netnsInode(), ifindex, uplink: opts.uplink, pinDir };
    if (pinned) assertOwner(pinDir, me);
    if (pinned && ours) assertSameDataPlane(opts.uplink, pinDir, ours);
    if (!pinned && ours) {
      held = mapsById(ours.mapIds);
      const owner = ownerOf(held.get(OWNER_MAP));
      if (owner && owner.pinDir !== pinDir && existsSync(join(owner.pinDir, 'rs_redirect'))) {
        for (const m of held.values()) m.close();
        throw new Error(
          `uplink ${opts.uplink} is run by the data plane pinned in ${owner.pinDir}, not ${pinDir}: ` +
            `start the agent with --pin-dir ${owner.pinDir} (stop the agent running there first), or \`routeshift agent --cleanup --pin-dir ${owner.pinDir}\``,
        );
      }
      const missing = [...Object.keys(MAPS), META_MAP, NAMES_MAP].filter((n) => !held.has(n));
      if (missing.length) {
        for (const m of held.values()) m.close();
        throw new Error(
          `uplink ${opts.uplink} runs routeshift program id ${ours.progId}, but its maps are not pinned in ${pinDir} ` +
            `and it does not hold ${missing.join(', ')} (an agent from before state was bound to the program, or another pin dir): ` +
            'start with the --pin-dir it used, or `routeshift agent --cleanup` to start afresh',
        );
      }
      adoption = 'program';
    }

    const pinPaths: Record<string, string> = {};
    for (const name of Object.keys(MAPS)) pinPaths[name] = join(pinDir, name);
    const reuseMaps: Record<string, BpfMap<Buffer, Buffer>> = {};
    for (const name of Object.keys(MAPS)) {
      const m = held.get(name);
      if (m) reuseMaps[name] = m;
    }
    let obj: BpfObject | undefined;
    let meta: BpfMap<number, MetaValue> | undefined;
    let names: BpfMap<NameKey, number> | undefined;
    let watcher: Watcher | undefined;
    let dp: HostDatapath | undefined;
    try {
      obj = BpfObject.open(opts.objectPath ?? uplinkObjectPath(), {
        pinPaths,
        reuseMaps,
        maxEntries: { rs_redirect: capacity, rs_deliver: capacity, rs_app_stats: capacity, rs_flow_stats: capacity, rs_new_flows: flowCapacity, rs_old_flows: flowCapacity },
      });
      try {
        obj.load();
      } catch (err) {
        if (adoption !== 'fresh' && /reuse|EINVAL|ENOENT/.test((err as Error).message)) {
          (err as Error).message +=
            ` (the maps of the earlier agent on ${opts.uplink} do not match this build or --capacity ${capacity};` +
            ' start with the capacity (and --flow-capacity) they were made with, or `routeshift agent --cleanup` to start afresh)';
        }
        throw err;
      }
      meta = userMap(pinDir, META_MAP, u32, metaValueCodec, capacity, held.get(META_MAP));
      names = userMap(pinDir, NAMES_MAP, nameKeyCodec, u32, capacity, held.get(NAMES_MAP));
      using owner = userMap(pinDir, OWNER_MAP, u32, ownerCodec, 1, held.get(OWNER_MAP), MapType.ARRAY);
      owner.update(0, me);
      const program = obj.program(PROGRAMS.uplink);
      try {
        // So a successor finds the agent's maps through the attached program when the pins are gone.
        program.bindMap(meta);
        program.bindMap(names);
        program.bindMap(owner);
      } finally {
        program.close();
      }
      const mode = ours?.mode ?? opts.xdpMode ?? 'native';
      const tcProgram = obj.program(PROGRAMS.tc);
      let tc: TcAttachment;
      try {
        tc = tcProgram.attachTc(ifindex, 'ingress', { ...TC_HOOK, replace: true });
      } finally {
        tcProgram.close();
      }
      dp = new HostDatapath(opts.uplink, ifindex, pinDir, capacity, adoption, mode, obj, meta, names, tc);
      dp.#attachXdp(mode, attached !== undefined);
      watcher = Watcher.start(obj, dp.program.id, pinDir);
      dp.#watcher = watcher;
      return dp;
    } catch (err) {
      watcher?.close();
      if (dp) dp.close();
      else {
        meta?.close();
        names?.close();
      }
      if (adoption === 'fresh') {
        // leave no half-made state: what this start attached and pinned goes
        HostDatapath.cleanup(opts.uplink, pinDir);
      }
      throw err;
    } finally {
      obj?.close(); // maps and programs are held by their own handles
      for (const m of held.values()) m.close();
    }
  }

  /**
   * Attach to the uplink. Replacing an earlier program is one atomic
   * netlink update (no packet sees an empty hook).
   */
  #attachXdp(mode: XdpMode, replace: boolean): void {
    this.program.attachXdp(this.ifindex, { mode, replace });
    this.#pinAttachedProgram();
  }

  /**
   * Pin the attached program beside the maps (a new pin, then a rename over
   * the old one: a successor always finds one), so a restarted agent knows
   * the attached program by its pin rather than by id (CAP_SYS_ADMIN).
   */
  #pinAttachedProgram(): void {
    const pin = join(this.pinDir, PROGRAM_PIN);
    const fresh = `${pin}_new`; // bpffs refuses names with dots
    rmSync(fresh, { force: true });
    this.program.pin(fresh);
    renameSync(fresh, pin);
  }

  /** Id of the program attached to the uplink now (0 if none). */
  attachedProgramId(): number {
    return queryXdp(this.ifindex).progId;
  }

  setConfig(config: Config): void {
    this.#config.update(0, config);
  }

  getConfig(): Config {
    return this.#config.lookup(0) ?? configOf({});
  }

  appStats(appId: number): AppStats {
    return sumAppStats(this.#stats.lookup(appId) ?? []);
  }

  /** appStats of many ids, read in one call into the addon (a page of a listing). */
  appStatsMany(appIds: readonly number[]): AppStats[] {
    return this.#stats.lookupMany(appIds).map((v) => sumAppStats(v ?? []));
  }

  /** Zero application ids' counters (ids are reused after delete), in one batched update. */
  resetAppStats(appIds: readonly number[]): void {
    if (!appIds.length) return;
    const zero = Object.fromEntries(STATS.map((s) => [s, { packets: 0n, bytes: 0n }])) as AppStats;
    const perCpuZero = Array.from({ length: this.#stats.info.possibleCpus }, () => zero);
    this.#stats.updateBatch(appIds.map((id) => [id, perCpuZero] as const));
    const flowZero = Object.fromEntries(FLOW_STATS.map((s) => [s, 0n])) as FlowStats;
    const flowPerCpu = Array.from({ length: this.#flowStats.info.possibleCpus }, () => flowZero);
    this.#flowStats.updateBatch(appIds.map((id) => [id, flowPerCpu] as const));
    this.forgetFlows(new Set(appIds));
  }

  /** One application's flow counters of the preserve action (summed over CPUs). */
  flowStats(appId: number): FlowStats {
    return sumFlowStats(this.#flowStats.lookup(appId) ?? []);
  }

  /** Entries of each flow table (rs_new_flows, rs_old_flows). */
  get flowCapacity(): number {
    return this.#newFlows.info.maxEntries;
  }

  /** How many rs_new_flows entries each app holds now (one walk of the table). */
  newFlowCounts(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [, appId] of this.#newFlows.entries()) out.set(appId, (out.get(appId) ?? 0) + 1);
    return out;
  }

  /** Every rs_old_flows entry's value (one walk of the table). */
  *oldFlows(): IterableIterator<OldFlow> {
    for (const [, v] of this.#oldFlows.entries()) yield v;
  }

  /** Forget the flows recorded for these app ids (ids are reused after delete): one walk of each flow table. */
  forgetFlows(appIds: ReadonlySet<number>): number {
    if (!appIds.size) return 0;
    const stale = <V>(m: BpfMap<Buffer, V>, appOf: (v: V) => number): Buffer[] => {
      const keys: Buffer[] = [];
      for (const [k, v] of m.entries()) if (appIds.has(appOf(v))) keys.push(Buffer.from(k));
      return keys;
    };
    let n = 0;
    for (const k of stale(this.#newFlows, (v) => v)) if (this.#newFlows.delete(k)) n++;
    for (const k of stale(this.#oldFlows, (v) => v.appId)) if (this.#oldFlows.delete(k)) n++;
    return n;
  }

  dropCounts(): Record<DropReason, Counter> {
    return Object.fromEntries(
      DROP_REASONS.map((r, i) => [r, sumCounters(this.#drops.lookup(i) ?? [])]),
    ) as Record<DropReason, Counter>;
  }

  eventCounts(): Record<EventName, Counter> {
    return Object.fromEntries(EVENTS.map((e, i) => [e, sumCounters(this.#events.lookup(i) ?? [])])) as Record<
      EventName,
      Counter
    >;
  }

  /** Remove the programs from the uplink (forwarding stops). */
  detach(): void {
    if (this.attachedProgramId() === this.program.id) detachXdp(this.ifindex, this.xdpMode);
    detachTc({ ...this.tc, hookCreated: false });
  }

  close(): void {
    this.#watcher?.close();
    for (const m of [this.redirect, this.deliver, this.#stats, this.#drops, this.#events, this.#config, this.#newFlows, this.#oldFlows, this.#flowStats, this.meta, this.names]) m.close();
    this.program.close();
    this.tcProgram.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Undo everything an agent made for this uplink: detach routeshift's
   * programs and remove the pinned maps and links. Returns what it removed.
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
      const a = attachedRouteshift(ifindex, pinDir);
      // Only the data plane of this pin directory: another agent's program stays.
      if (a && !('foreign' in a) && usesPins(a, pinDir)) {
        detachXdp(ifindex, a.mode);
        removed.push(`XDP program ${a.progId} on ${uplink}`);
        if (detachTc({ ifindex, direction: 'ingress', ...TC_HOOK, hookCreated: false })) {
          removed.push(`TC ingress program on ${uplink}`);
        }
      } else if (a && !('foreign' in a)) {
        removed.push(`(left routeshift program ${a.progId} on ${uplink}: it is not the data plane pinned in ${pinDir})`);
      }
    }
    if (existsSync(pinDir)) {
      for (const f of readdirSync(pinDir)) removed.push(join(pinDir, f));
      rmSync(pinDir, { recursive: true, force: true });
    }
    return removed;
  }
}

/**
 * One data plane per uplink: the routeshift program attached there must be
 * the one using the maps pinned in pinDir, else it belongs to another
 * agent (another pin dir) and taking it over would leave that agent writing
 * entries nothing reads.
 */
function assertSameDataPlane(uplink: string, pinDir: string, attached: Attached): void {
  using pinnedRedirect = BpfMap.openPinned(join(pinDir, 'rs_redirect'), rawBytes(MAPS_KEY_SIZE), rawBytes(MAPS_VALUE_SIZE));
  if (attached.mapIds.includes(pinnedRedirect.info.id)) return;
  throw new Error(
    `uplink ${uplink} runs routeshift program id ${attached.progId}, which uses other maps than those pinned in ${pinDir}: ` +
      'another agent (another --pin-dir) owns this uplink; stop that agent, or remove its data plane with ' +
      '`routeshift agent --cleanup --uplink ' + uplink + ' --pin-dir <its pin dir>` first',
  );
}

/** The owner record among a program's maps. */
function ownerOf(raw: BpfMap<Buffer, Buffer> | undefined): Owner | undefined {
  if (!raw) return undefined;
  try {
    using m = BpfMap.fromId(raw.info.id, u32, ownerCodec);
    return m.lookup(0);
  } catch {
    return undefined; // an owner record of another layout
  }
}

/** Whether the attached program is the data plane of this pin dir: it uses its pinned maps, or (pins gone) says it was made with it. */
function usesPins(attached: Attached, pinDir: string): boolean {
  const pinned = join(pinDir, 'rs_redirect');
  if (existsSync(pinned)) {
    using m = BpfMap.openPinnedRaw(pinned);
    return attached.mapIds.includes(m.info.id);
  }
  const held = mapsById(attached.mapIds);
  try {
    const owner = ownerOf(held.get(OWNER_MAP));
    return owner === undefined || owner.pinDir === pinDir;
  } finally {
    for (const m of held.values()) m.close();
  }
}

/**
 * The pinned maps were made for this uplink in this network namespace (an
 * agent of another namespace, sharing the bpffs, may have used the same
 * pin directory). Pins from before owners were recorded pass.
 */
function assertOwner(pinDir: string, me: Owner): void {
  const path = join(pinDir, OWNER_MAP);
  if (!existsSync(path)) return;
  using m = BpfMap.openPinned(path, u32, ownerCodec);
  const o = m.lookup(0);
  if (!o || o.netns === 0n) return;
  if (o.netns === me.netns && o.uplink === me.uplink) return;
  throw new Error(
    `the maps pinned in ${pinDir} are the data plane of ${o.uplink} in another network namespace (inode ${o.netns}, ` +
      `this one is ${me.netns}): give this agent a --pin-dir of its own, or remove them with \`routeshift agent --cleanup\` where that agent runs`,
  );
}

const MAPS_KEY_SIZE = appKeyCodec.size;
const MAPS_VALUE_SIZE = redirectValueCodec.size;

/**
 * One of the agent's own maps (user space only): the one the attached
 * program held (then pinned here), the pinned one, or a new one.
 */
function userMap<K, V>(
  pinDir: string,
  name: string,
  key: Codec<K>,
  value: Codec<V>,
  capacity: number,
  held: BpfMap<Buffer, Buffer> | undefined,
  type: number = MapType.HASH,
): BpfMap<K, V> {
  const path = join(pinDir, name);
  let m: BpfMap<K, V>;
  if (held) {
    m = BpfMap.fromId(held.info.id, key, value);
    if (!existsSync(path)) m.pin(path);
  } else if (existsSync(path)) {
    m = BpfMap.openPinned(path, key, value);
  } else {
    m = BpfMap.create({ type, name, maxEntries: capacity }, key, value);
    m.pin(path);
    return m;
  }
  if (m.info.maxEntries !== capacity) {
    m.close();
    throw new Error(`${path} holds ${m.info.maxEntries} entries, not --capacity ${capacity}`);
  }
  return m;
}

