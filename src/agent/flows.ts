/**
 * The preserve action's flows as the agent reports them: how many of an
 * app's old flows (TCP connections from before SWITCH, still served by this
 * host's copy) are alive, and the per-app flow counters for /metrics.
 *
 * Liveness is read from rs_old_flows (bpf/flows.h), which holds each old
 * flow's last packet time and whether the client sent FIN or RST. Only the
 * client's direction crosses the uplink, so an old flow is
 *   - closed:  RST seen, or FIN seen and nothing since for `lingerMs` (the
 *              client's last ACKs of a close have gone by);
 *   - closing: FIN seen, a packet within `lingerMs` (a half-closed flow the
 *              app is still sending on keeps ACKing, so it stays here);
 *   - idle:    no FIN/RST, nothing for `idleMs`: taken as gone;
 *   - active:  the rest.
 * The controller's DRAIN_FLOWS phase waits until active + closing is 0.
 */
import type { HostDatapath } from '../datapath/host.js';
import type { FlowStats, OldFlow } from '../datapath/structs.js';
import { FieldError } from '../model/errors.js';
import type { Action, FlowsView } from '../model/entry.js';

export type { FlowsView } from '../model/entry.js';

export const DEFAULT_IDLE_MS = 30_000;
export const DEFAULT_LINGER_MS = 1_000;
const MAX_WAIT_MS = 24 * 3600 * 1000;

export interface FlowQuery {
  idleMs: number;
  lingerMs: number;
}

/** The optional ?idleMs=&lingerMs= of the flows endpoint. */
export function parseFlowQuery(query: unknown): FlowQuery {
  const q = (query ?? {}) as Record<string, unknown>;
  const one = (name: keyof FlowQuery, dflt: number): number => {
    const raw = q[name];
    if (raw === undefined) return dflt;
    const n = typeof raw === 'string' && /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > MAX_WAIT_MS) throw new FieldError(name, `expected milliseconds in 1..${MAX_WAIT_MS}, got ${JSON.stringify(raw)}`);
    return n;
  };
  for (const k of Object.keys(q)) if (k !== 'idleMs' && k !== 'lingerMs') throw new FieldError(k, 'unknown query parameter (expected idleMs, lingerMs)');
  return { idleMs: one('idleMs', DEFAULT_IDLE_MS), lingerMs: one('lingerMs', DEFAULT_LINGER_MS) };
}

interface Liveness {
  active: number;
  closing: number;
  closed: number;
  idle: number;
}

/** CLOCK_MONOTONIC now, the clock bpf_ktime_get_coarse_ns() reads (coarse: within a tick). */
function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** One walk of both flow tables, grouped by app id. */
interface Snapshot {
  atMs: number;
  old: Map<number, OldFlow[]>;
  held: Map<number, number>;
}

/**
 * A walk of the flow tables serves every request within this long: a drain
 * polls each of its apps every few hundred ms, and each poll would
 * otherwise walk both tables (up to --flow-capacity entries each).
 */
const SNAPSHOT_MS = 50;

export class FlowCensus {
  #snap: Snapshot | undefined;

  constructor(private readonly dp: HostDatapath) {}

  #snapshot(): Snapshot {
    const now = performance.now();
    if (this.#snap && now - this.#snap.atMs < SNAPSHOT_MS) return this.#snap;
    const old = new Map<number, OldFlow[]>();
    for (const f of this.dp.oldFlows()) {
      const list = old.get(f.appId);
      if (list) list.push(f);
      else old.set(f.appId, [f]);
    }
    this.#snap = { atMs: now, old, held: this.dp.newFlowCounts() };
    return this.#snap;
  }

  /** One app's old flows, by liveness, and its counters. */
  view(app: { name: string; appId: number; action: Action }, q: FlowQuery): FlowsView {
    const live: Liveness = { active: 0, closing: 0, closed: 0, idle: 0 };
    const snap = this.#snapshot();
    const now = monotonicNs();
    const idleNs = BigInt(q.idleMs) * 1_000_000n;
    const lingerNs = BigInt(q.lingerMs) * 1_000_000n;
    for (const f of snap.old.get(app.appId) ?? []) {
      const quiet = now > f.lastNs ? now - f.lastNs : 0n;
      if (f.rst || (f.fin && quiet >= lingerNs)) live.closed++;
      else if (f.fin) live.closing++;
      else if (quiet >= idleNs) live.idle++;
      else live.active++;
    }
    const stats = this.dp.flowStats(app.appId);
    return {
      app: app.name,
      action: app.action.type,
      active: live.active + live.closing,
      closing: live.closing,
      closed: live.closed,
      idle: live.idle,
      pinned: String(stats.pinned),
      sent: String(stats.sent),
      refused: String(stats.refused),
      evicted: String(evicted(stats, snap.held.get(app.appId) ?? 0)),
      idleMs: q.idleMs,
      lingerMs: q.lingerMs,
      capacity: this.dp.flowCapacity,
    };
  }

  /**
   * Flow counters of every app that has flows recorded (for /metrics): one
   * walk of each flow table, so apps that never preserved cost nothing.
   */
  counters(limit: number): { name: string; stats: FlowStats; evicted: bigint }[] {
    const snap = this.#snapshot();
    const ids = new Set([...snap.held.keys(), ...snap.old.keys()]);
    const out: { name: string; stats: FlowStats; evicted: bigint }[] = [];
    for (const appId of ids) {
      if (out.length >= limit) break;
      const meta = this.dp.meta.lookup(appId);
      if (!meta || meta.kind !== 'app') continue;
      const stats = this.dp.flowStats(appId);
      out.push({ name: meta.name, stats, evicted: evicted(stats, snap.held.get(appId) ?? 0) });
    }
    return out;
  }
}

/** New flows sent minus entries still held: the program never deletes them, so the rest were evicted. */
function evicted(stats: FlowStats, held: number): bigint {
  const e = stats.sent - BigInt(held);
  return e > 0n ? e : 0n;
}
