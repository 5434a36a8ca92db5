/**
 * Keeps the data plane on paths that deliver as the host changes under it.
 *
 * The agent decides a delivery path when an entry is written (links.ts),
 * and again here: at start and then every `intervalMs` (1 s by default) it
 * asks the kernel what each device that entries deliver into is now — its
 * index, MAC and whether it takes XDP frames — and what the uplink is, and
 * rewrites what changed: a veth peer that gained or lost an XDP program or
 * GRO, a device deleted and created again (a restarted container), an
 * uplink whose peer changed. A frame the kernel failed to transmit in
 * between is counted (xmit_failed, bpf/watch.c), never lost silently.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { XDP_FEATURE, linkInfo, xdpFeatures, type XdpMode } from '../bpf/index.js';
import type { HostDatapath } from '../datapath/host.js';
import type { Config, Target } from '../datapath/structs.js';
import type { DeviceView, UplinkTx } from '../model/entry.js';
import type { EntryStore } from './store.js';
import type { DeviceTarget, LinkResolver } from './links.js';

/** What the uplink is, as the data plane needs to know (rs_config flags). */
export interface UplinkFacts {
  skbCsum: boolean;
  uplinkTx: UplinkTx;
  why: string;
}

/**
 * A veth uplink runs native XDP on skbs: their checksums may be partial,
 * and XDP_TX reaches its peer only if the peer runs an XDP program, a
 * redirect to the veth itself if the peer has NAPI (XDP or GRO). A NIC's
 * frames come off the wire, and XDP_TX is its own. Generic XDP keeps skbs
 * whole and transmits them like the stack.
 */
export function uplinkFacts(ifindex: number, mode: XdpMode): UplinkFacts {
  if (mode === 'generic') return { skbCsum: false, uplinkTx: 'xdp-tx', why: 'generic XDP' };
  const info = linkInfo(ifindex);
  if (info.kind !== 'veth') return { skbCsum: false, uplinkTx: 'xdp-tx', why: `${info.kind ?? 'NIC'} uplink` };
  let features = 0;
  try {
    features = xdpFeatures(ifindex);
  } catch {
    /* no netdev netlink: assume the worst */
  }
  return (features & XDP_FEATURE.NDO_XMIT) !== 0
    ? { skbCsum: true, uplinkTx: 'xdp-redirect', why: 'veth uplink whose peer takes XDP frames' }
    : { skbCsum: true, uplinkTx: 'tc', why: 'veth uplink whose peer runs no XDP program and has GRO off' };
}

/** The config with the uplink's facts, and a cookie for TC handovers (kept across restarts: in-flight frames carry it). */
export function withUplinkFacts(config: Config, facts: UplinkFacts): Config {
  return { ...config, skbCsum: facts.skbCsum, uplinkTx: facts.uplinkTx, metaCookie: config.metaCookie || randomInt(1, 0xffffffff) };
}

const signature = (t: Pick<Target, 'ifindex' | 'smac' | 'path' | 'slowPath'>): string => `${t.ifindex} ${t.smac} ${t.path} ${t.slowPath}`;
const deviceSignature = (d: DeviceTarget): string => signature({ ifindex: d.ifindex, smac: d.mac, path: d.path, slowPath: d.slowPath });

export class PathKeeper {
  /** Device → the target signature its entries were last written with. */
  readonly #written = new Map<string, string>();
  /** Device → what the last check found. */
  readonly #seen = new Map<string, { ifindex: number | null; path: string; slowPath?: string; why: string }>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #xmitFailed = 0n;

  constructor(
    private readonly dp: HostDatapath,
    private readonly store: EntryStore,
    private readonly links: LinkResolver,
    private readonly log: Logger,
    readonly intervalMs = 1000,
  ) {}

  /** Check now, then every intervalMs. */
  async start(): Promise<void> {
    this.#learnWritten();
    await this.check();
    this.#timer = setInterval(() => void this.check(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#running ?? Promise.resolve();
  }

  /** One pass (never two at once). */
  check(): Promise<void> {
    this.#running ??= this.#check().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #check(): Promise<void> {
    const cfg = this.dp.getConfig();
    let facts: UplinkFacts;
    try {
      facts = uplinkFacts(this.dp.ifindex, this.dp.xdpMode);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot read the uplink');
      return;
    }
    if (facts.skbCsum !== cfg.skbCsum || facts.uplinkTx !== cfg.uplinkTx) {
      this.dp.setConfig(withUplinkFacts(cfg, facts));
      this.log.info({ before: { skbCsum: cfg.skbCsum, uplinkTx: cfg.uplinkTx }, after: facts }, 'uplink path changed');
    }
    const failed = this.dp.dropCounts().xmit_failed.packets;
    if (failed > this.#xmitFailed) {
      this.log.warn({ frames: Number(failed - this.#xmitFailed) }, 'the kernel failed to transmit frames the data plane sent on (xmit_failed); checking every device');
    }
    this.#xmitFailed = failed;

    for (const dev of this.store.devices().keys()) {
      let target: DeviceTarget;
      try {
        target = this.links.device(dev, 'dev');
      } catch (err) {
        this.#seen.set(dev, { ifindex: null, path: 'none', why: (err as Error).message });
        if (this.#written.get(dev) !== 'missing') {
          this.log.warn({ dev, err: (err as Error).message }, 'a device entries deliver into is gone; they stay until it returns or they are removed');
          this.#written.set(dev, 'missing');
        }
        continue;
      }
      this.#seen.set(dev, { ifindex: target.ifindex, path: target.path, ...(target.path !== target.slowPath ? { slowPath: target.slowPath } : {}), why: target.why });
      const now = deviceSignature(target);
      const before = this.#written.get(dev);
      if (before === now) continue;
      try {
        const n = await this.store.retarget(dev, 'path-keeper');
        this.#written.set(dev, now);
        this.log.info({ dev, entries: n, before: before ?? null, after: now, path: target.path, why: target.why }, 'delivery path of a device set');
      } catch (err) {
        this.log.error({ dev, err: (err as Error).message }, 'could not rewrite the entries of a device that changed');
      }
    }
  }

  /** The devices entries deliver into, as the last check found them (at most `limit`). */
  devices(limit = 1000): Record<string, DeviceView> {
    const out: Record<string, DeviceView> = {};
    let n = 0;
    for (const [dev, entries] of this.store.devices()) {
      if (n++ >= limit) break;
      const seen = this.#seen.get(dev);
      out[dev] = { entries, ifindex: seen?.ifindex ?? null, path: seen?.path ?? 'unchecked', ...(seen?.slowPath ? { slowPath: seen.slowPath } : {}), why: seen?.why ?? '' };
    }
    return out;
  }

  /**
   * What the entries on each device hold now: one scan at start for a
   * LOCAL or delivery entry per device. A device with FORWARD entries only
   * has nothing to rewrite: it is taken as written with what it is now.
   */
  #learnWritten(): void {
    const pending = new Set(this.store.devices().keys());
    if (!pending.size) return;
    for (const [, meta] of this.dp.meta.entries()) {
      if (!pending.has(meta.dev)) continue;
      let target: Target | undefined;
      if (meta.kind === 'delivery') target = this.dp.deliver.lookup(meta.key);
      else {
        const v = this.dp.redirect.lookup(meta.key);
        if (v?.action === 'local' || v?.action === 'preserve') target = v;
      }
      if (!target) continue; // a FORWARD entry says nothing of its device
      this.#written.set(meta.dev, signature(target));
      pending.delete(meta.dev);
      if (!pending.size) break;
    }
    for (const dev of pending) {
      try {
        this.#written.set(dev, deviceSignature(this.links.device(dev, 'dev')));
      } catch {
        /* gone: the check says so */
      }
    }
  }
}
