/**
 * `routeshift status --watch`: live packets/s per app, from the difference
 * of the agents' counters between two refreshes (the counters are the
 * kernel's per-CPU ones, summed by the agent). A refresh that cannot reach
 * an agent says so on that agent's line and keeps the others going.
 */
import type { AgentApi, App, Delivery } from '../controller/agent-client.js';
import { message } from '../controller/machine.js';

export interface RateRow {
  agent: string;
  name: string;
  kind: 'app' | 'delivery';
  /** LOCAL, FORWARD → tunnel, DELIVER. */
  does: string;
  /** Packets/s since the previous refresh, per action; undefined on the first. */
  pps: { local?: number; forward?: number; deliver?: number };
  /** Bytes/s of all actions together. */
  bps?: number;
}

interface Sample {
  at: number;
  packets: Record<string, bigint>;
  bytes: bigint;
}

function sampleOf(counters: Record<string, { packets: string; bytes: string }>, at: number): Sample {
  const packets: Record<string, bigint> = {};
  let bytes = 0n;
  for (const [action, c] of Object.entries(counters)) {
    packets[action] = BigInt(c.packets);
    bytes += BigInt(c.bytes);
  }
  return { at, packets, bytes };
}

/** Per entry, the last counters seen; turns the next ones into rates. */
export class RateTracker {
  readonly #last = new Map<string, Sample>();

  /** Rows for one agent's entries read at `at` (ms); an entry whose counters went back (re-created) starts again. */
  rows(agent: string, apps: readonly App[], deliveries: readonly Delivery[], at: number): RateRow[] {
    const entries: { name: string; kind: 'app' | 'delivery'; does: string; counters: Record<string, { packets: string; bytes: string }> }[] = [
      ...apps.map((a) => ({ name: a.name, kind: 'app' as const, does: a.action.type === 'local' ? 'LOCAL' : `${a.action.type.toUpperCase()} → ${'tunnel' in a.action ? a.action.tunnel : '?'}`, counters: a.counters })),
      ...deliveries.map((d) => ({ name: d.name, kind: 'delivery' as const, does: 'DELIVER', counters: d.counters })),
    ];
    return entries.map((e) => {
      const id = `${agent} ${e.kind} ${e.name}`;
      const now = sampleOf(e.counters, at);
      const before = this.#last.get(id);
      this.#last.set(id, now);
      const row: RateRow = { agent, name: e.name, kind: e.kind, does: e.does, pps: {} };
      const seconds = before ? (now.at - before.at) / 1000 : 0;
      if (!before || seconds <= 0 || now.bytes < before.bytes) return row;
      for (const [action, p] of Object.entries(now.packets)) {
        const was = before.packets[action];
        if (was !== undefined && p >= was) row.pps[action as keyof RateRow['pps']] = Number(p - was) / seconds;
      }
      row.bps = Number(now.bytes - before.bytes) / seconds;
      return row;
    });
  }
}

const rate = (v: number | undefined): string => (v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(1));

function bitsText(bps: number | undefined): string {
  if (bps === undefined) return '-';
  const bits = bps * 8;
  return bits >= 1e9 ? `${(bits / 1e9).toFixed(2)} Gb/s` : bits >= 1e6 ? `${(bits / 1e6).toFixed(2)} Mb/s` : bits >= 1e3 ? `${(bits / 1e3).toFixed(1)} kb/s` : `${bits.toFixed(0)} b/s`;
}

export function ratesText(rows: readonly RateRow[], failures: readonly string[], intervalS: number, at: Date): string {
  const head = ['AGENT', 'NAME', 'ACTION', 'LOCAL pps', 'FORWARD pps', 'DELIVER pps', 'TRAFFIC'];
  const body = rows.map((r) => [r.agent, r.name, r.does, rate(r.pps.local), rate(r.pps.forward), rate(r.pps.deliver), bitsText(r.bps)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [`routeshift status --watch: every ${intervalS} s, ${at.toISOString()}`, line(head), ...body.map(line)];
  if (!rows.length) out.push('no entries');
  for (const f of failures) out.push(f);
  return out.join('\n') + '\n';
}

export interface WatchOptions {
  agents: readonly AgentApi[];
  intervalS: number;
  /** Stop after this many refreshes (undefined: until interrupted). */
  count: number | undefined;
  write: (text: string) => void;
  /** Clear the screen before each refresh (a terminal). */
  clear: boolean;
}

/** Refresh until `count` refreshes were shown or SIGINT/SIGTERM; answers how many refreshes found every agent. */
export async function watchRates(o: WatchOptions): Promise<{ refreshes: number; allAnswered: number }> {
  const tracker = new RateTracker();
  let stop = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => {
    stop = true;
    wake?.();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let refreshes = 0;
  let allAnswered = 0;
  try {
    while (!stop && (o.count === undefined || refreshes < o.count)) {
      const started = Date.now();
      const failures: string[] = [];
      const perAgent = await Promise.all(
        o.agents.map(async (a) => {
          try {
            const [apps, deliveries] = await Promise.all([a.listApps(), a.listDeliveries()]);
            return tracker.rows(a.url, apps, deliveries, Date.now());
          } catch (err) {
            failures.push(`${a.url}: ${message(err)}`);
            return [];
          }
        }),
      );
      refreshes++;
      if (!failures.length) allAnswered++;
      o.write(`${o.clear ? '\x1b[H\x1b[2J' : refreshes > 1 ? '\n' : ''}${ratesText(perAgent.flat(), failures, o.intervalS, new Date())}`);
      if (o.count !== undefined && refreshes >= o.count) break;
      const wait = Math.max(0, o.intervalS * 1000 - (Date.now() - started));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return { refreshes, allAnswered };
}
