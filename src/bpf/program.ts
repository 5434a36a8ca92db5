/**
 * A loaded BPF program: attach to XDP (netlink, so the attachment outlives
 * the process) or TC clsact, and run on packets with BPF_PROG_TEST_RUN.
 */
import type { BpfMap } from './map.js';
import { addon, isErrno, type NativeProgram, type NativeTcAttachment, type NativeTcOptions } from './native.js';

/** XDP attach flags from linux/if_link.h. */
const XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;
const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;
/** BPF_TC_F_REPLACE (libbpf): take over a filter at the same handle and priority. */
const TC_F_REPLACE = 1 << 0;

/** native: in the driver (fast); generic: in the stack, works on any device (slower). */
export type XdpMode = 'native' | 'generic';

/** XDP verdicts (enum xdp_action). */
export const XdpAction = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export type XdpVerdict = keyof typeof XdpAction;
export function xdpVerdictName(retval: number): XdpVerdict | `unknown(${number})` {
  const name = (Object.keys(XdpAction) as XdpVerdict[]).find((k) => XdpAction[k] === retval);
  return name ?? `unknown(${retval})`;
}

/** TC verdicts (TC_ACT_*). */
export const TcAction = { UNSPEC: -1, OK: 0, SHOT: 2, REDIRECT: 7 } as const;

/** BPF_F_TEST_XDP_LIVE_FRAMES: run the program on real frames that XDP_TX/REDIRECT send out. */
export const TEST_XDP_LIVE_FRAMES = 1 << 1;

export interface TestRunOptions {
  /** Times to run; the reported duration is the mean per run. */
  repeat?: number;
  /** Context in (struct xdp_md / __sk_buff bytes). */
  ctx?: Buffer;
  /** Room for the output packet; 0 for none (live frames). Default: input + 512. */
  dataSizeOut?: number;
  flags?: number;
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  data: Buffer;
  durationNs: number;
  ctx?: Buffer;
}

export interface TcAttachment {
  ifindex: number;
  direction: 'ingress' | 'egress';
  handle: number;
  priority: number;
  /** Whether this attach created the clsact qdisc (and so may destroy it). */
  hookCreated: boolean;
}

export class Program implements Disposable {
  readonly name: string;
  readonly id: number;
  readonly type: number;
  #handle: NativeProgram;

  constructor(handle: NativeProgram) {
    this.#handle = handle;
    const info = handle.info();
    this.name = info.name;
    this.id = info.id;
    this.type = info.type;
  }

  static openPinned(path: string): Program {
    return new Program(addon().openPinnedProgram(path));
  }

  static fromId(id: number): Program {
    return new Program(addon().openProgramById(id));
  }

  get fd(): number {
    return this.#handle.fd;
  }

  /**
   * Attach to XDP on `ifindex`. Without `replace`, an interface that already
   * has an XDP program is refused with EBUSY instead of being taken over.
   */
  attachXdp(ifindex: number, opts: { mode?: XdpMode; replace?: boolean } = {}): void {
    const mode = opts.mode ?? 'native';
    let flags = mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    if (!opts.replace) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
    try {
      this.#handle.attachXdp(ifindex, flags);
    } catch (err) {
      if (isErrno(err, 'EBUSY')) err.message += ' (another XDP program is attached; pass replace to take over)';
      throw err;
    }
  }

  /**
   * Attach to TC clsact, creating the qdisc only when it is absent. Without
   * `replace`, a filter already at that handle and priority is refused
   * with EEXIST; with it, this program takes its place.
   */
  attachTc(
    ifindex: number,
    direction: 'ingress' | 'egress',
    opts: { handle?: number; priority?: number; replace?: boolean } = {},
  ): TcAttachment {
    const native: NativeTcOptions = { flags: opts.replace ? TC_F_REPLACE : 0 };
    if (opts.handle !== undefined) native.handle = opts.handle;
    if (opts.priority !== undefined) native.priority = opts.priority;
    const r: NativeTcAttachment = this.#handle.attachTc(ifindex, direction, native);
    return { ifindex, direction, handle: r.handle, priority: r.priority, hookCreated: r.hookCreated };
  }

  /** Ids of the maps the program holds: those its code uses and those bound with bindMap. */
  mapIds(): number[] {
    return this.#handle.info().mapIds;
  }

  /**
   * Make the program hold `map` though its code does not use it: the map
   * then lives as long as the program and is listed in mapIds(), so a
   * restarted agent finds user-space-only maps through the attached
   * program when their bpffs pins are gone. Binding twice is harmless.
   */
  bindMap(map: BpfMap<unknown, unknown>): void {
    this.#handle.bindMap(map.fd);
  }

  testRun(packet: Buffer, opts: TestRunOptions = {}): TestRunResult {
    return this.#handle.testRun(packet, opts);
  }

  pin(path: string): void {
    this.#handle.pin(path);
  }

  close(): void {
    this.#handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Detach whatever XDP program is attached in `mode` on `ifindex`. */
export function detachXdp(ifindex: number, mode: XdpMode = 'native'): void {
  addon().detachXdp(ifindex, mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
}

export interface XdpState {
  /** Id of the program attached in any mode, 0 when none. */
  progId: number;
  mode: 'none' | 'native' | 'generic' | 'offload' | 'multi';
}

export function queryXdp(ifindex: number): XdpState {
  const q = addon().queryXdp(ifindex);
  const modes = ['none', 'native', 'generic', 'offload', 'multi'] as const;
  return { progId: q.progId || q.drvProgId || q.skbProgId, mode: modes[q.attachMode] ?? 'multi' };
}

/** Detach a TC program; destroys the clsact qdisc only if the attach created it. Returns false when absent. */
export function detachTc(att: TcAttachment): boolean {
  const removed = addon().detachTc(att.ifindex, att.direction, { handle: att.handle, priority: att.priority });
  if (att.hookCreated) addon().destroyTcHook(att.ifindex);
  return removed;
}
