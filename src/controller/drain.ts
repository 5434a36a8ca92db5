/**
 * Drain a host (kernel migration): migrate every app that is LOCAL on the
 * source to one or several destinations (round-robin), so the source ends
 * with no LOCAL entries and its kernel can be replaced.
 *
 * A drain is one run of the protocol for all those apps as one group
 * (migrate.ts, machine.ts), in one shared journal — so `migrate APP
 * --resume` works on any of them. The group is batched: every step that
 * changes maps is one call per agent for all apps —
 *
 *   PREPARE   one GET /v1/apps on the source + one GET /status per destination
 *   START     per app, in parallel (concurrency limit)
 *   DELIVER   one POST /v1/batch of put-delivery per destination
 *   READY     per app, in parallel (concurrency limit)
 *   SWITCH    ONE POST /v1/batch of set-action on the source: every app flips in one batched map update
 *   STOP      per app, in parallel (one grace period from the batched SWITCH, overlapped)
 *   ANNOUNCE  batch put-app per destination, one hook call for all, grace,
 *             one batch delete-app on the source, batch delete-delivery per destination
 *
 * — and a batch that fails falls back to the per-app step for each app, so
 * one bad app rolls back alone instead of taking the others with it.
 */
import { type AgentApi, type AgentConnector, type App } from './agent-client.js';
import { type AnnounceHook, type AnnounceSpec, createAnnounceHook } from './announce.js';
import { newJournalId, type Outcome, type PlanRecord, type PreserveOptions, type Timing } from './journal.js';
import { message, round, type MigrationObserver, type MigrationResult, type Step } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { runMigrations } from './migrate.js';
import { createDriver, type DriverSpec, type WorkloadDriver } from '../workload/index.js';
import { expand } from '../workload/template.js';

export interface DrainPlanItem {
  app: string;
  address: string;
  proto: App['proto'];
  port: number;
  sourceDev: string;
  to: string;
  toIndex: number;
  destDev: string;
}

export interface DrainPlan {
  source: string;
  destinations: { url: string; tunnel: { v4?: string | null; v6?: string | null } }[];
  items: DrainPlanItem[];
  /** Entries on the source that are not LOCAL (already forwarding): left as they are. */
  skipped: { app: string; reason: string }[];
}

/**
 * Which app goes where. Apps in name order, destinations round-robin, so the
 * plan is the same every time for the same state. `destDev` is a template:
 * {app}, {dev} (the app's device on the source), {index}.
 */
export async function planDrain(source: AgentApi, destinations: readonly AgentApi[], destDev: string): Promise<DrainPlan> {
  if (!destinations.length) throw new Error('drain needs at least one destination (--to)');
  for (const d of destinations) if (d.url === source.url) throw new Error(`destination ${d.url} is the host being drained`);
  const [apps, statuses] = await Promise.all([source.listApps(), Promise.all(destinations.map((d) => d.status()))]);
  const sorted = [...apps].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const items: DrainPlanItem[] = [];
  const skipped: DrainPlan['skipped'] = [];
  for (const a of sorted) {
    if (a.action.type !== 'local') {
      skipped.push({ app: a.name, reason: `already forwards to ${a.action.tunnel}` });
      continue;
    }
    const toIndex = items.length % destinations.length;
    const dest = destinations[toIndex] as AgentApi;
    const dev = expand(destDev, { app: a.name, dev: a.dev, index: String(toIndex), address: a.address, port: String(a.port), proto: String(a.proto) });
    items.push({ app: a.name, address: a.address, proto: a.proto, port: a.port, sourceDev: a.dev, to: dest.url, toIndex, destDev: dev });
  }
  return {
    source: source.url,
    destinations: destinations.map((d, i) => ({ url: d.url, tunnel: (statuses[i] as { tunnel: DrainPlan['destinations'][number]['tunnel'] }).tunnel })),
    items,
    skipped,
  };
}

export interface DrainOptions {
  source: string;
  destinations: string[];
  destDev: string;
  driver: DriverSpec;
  announce: AnnounceSpec;
  timing: Timing;
  /** --preserve-connections: every app's old TCP flows finish on the source (DRAIN_FLOWS). */
  preserve?: PreserveOptions;
  stateDir: string;
  concurrency: number;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
  /** The agents' leases on the apps' names: one request per agent for the whole batch (default DEFAULT_LEASE_TTL_MS). */
  leaseTtlMs?: number;
  /** Build the driver / hook from their specs (default: the built-ins); tests inject doubles. */
  createDriver?: (spec: DriverSpec) => WorkloadDriver;
  createAnnounceHook?: (spec: AnnounceSpec) => AnnounceHook;
}

export interface DrainResult {
  source: string;
  journal: string;
  plan: DrainPlan;
  outcome: 'done' | 'rolled-back' | 'partial' | 'failed';
  apps: MigrationResult[];
  /** Milliseconds of each batched phase (whole drain), and how SWITCH was applied. */
  batches: Partial<Record<Step, number>>;
  /** Wall-clock milliseconds of every phase, batched or per app (journaling included). */
  phaseMs: Partial<Record<Step, number>>;
  switchMode: 'batch' | 'per-app' | 'none';
  /** Source entries still LOCAL after the drain (should be none). */
  leftLocal: string[];
  totalMs: number;
}

export async function drain(opts: DrainOptions): Promise<DrainResult> {
  const t0 = performance.now();
  const source = opts.connect(opts.source);
  const dests = opts.destinations.map((u) => opts.connect(u));
  const workload = (opts.createDriver ?? createDriver)(opts.driver);
  const hook = opts.createAnnounceHook?.(opts.announce) ?? createAnnounceHook(opts.announce, opts.connect);
  const plan = await planDrain(source, dests, opts.destDev);
  const id = newJournalId('drain');
  const result: DrainResult = { source: source.url, journal: id, plan, outcome: 'done', apps: [], batches: {}, phaseMs: {}, switchMode: 'none', leftLocal: [], totalMs: 0 };
  if (!plan.items.length) {
    result.totalMs = performance.now() - t0;
    return result;
  }
  const plans = plan.items.map((item): PlanRecord => ({ type: 'plan', app: item.app, from: source.url, to: item.to, toIndex: item.toIndex, destDev: item.destDev }));
  const { driver, announce, timing, preserve, stateDir, connect, observe, metrics } = opts;
  const group = await runMigrations({
    kind: 'drain', id, plans, driver, announce, workload, hook, timing, ...(preserve ? { preserve } : {}), stateDir, connect, observe, metrics,
    batched: true,
    concurrency: Math.max(1, opts.concurrency),
    ...(opts.leaseTtlMs ? { leaseTtlMs: opts.leaseTtlMs } : {}),
  });
  result.batches = group.batchMs;
  result.phaseMs = group.phaseMs;
  result.switchMode = group.appliedAs.SWITCH ?? 'none';
  if (result.batches.SWITCH !== undefined) metrics?.phase('BATCH_SWITCH', result.batches.SWITCH);
  result.apps = group.members.map((m) => m.result());
  const outcomes = new Set<Outcome>(result.apps.map((a) => a.outcome));
  result.outcome = outcomes.has('failed') ? 'failed' : outcomes.has('rolled-back') ? (outcomes.has('done') ? 'partial' : 'rolled-back') : 'done';
  try {
    result.leftLocal = (await source.listApps()).filter((a) => a.action.type === 'local').map((a) => a.name);
  } catch (err) {
    for (const m of group.members) m.ctx.note(`could not re-read ${source.url} after the drain: ${message(err)}`);
  }
  result.totalMs = round(performance.now() - t0);
  return result;
}
