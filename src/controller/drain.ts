/**
 * Drain a host (kernel migration): migrate every app that is LOCAL on the
 * source to one or several destinations (round-robin), so the source ends
 * with no LOCAL entries and its kernel can be replaced.
 *
 * Every app is an ordinary migration walking the same table, in one shared
 * journal (so `migrate APP --resume` works on any of them). What a drain adds
 * is batching, where one call can do the work of many:
 *
 *   PREPARE   one GET /v1/apps on the source + one GET /status per destination
 *   START     per app, in parallel (concurrency limit)
 *   DELIVER   one POST /v1/batch of put-delivery per destination
 *   READY     per app, in parallel (concurrency limit)
 *   SWITCH    ONE POST /v1/batch of set-action on the source: every app flips in one batched map update
 *   STOP      per app, in parallel (one grace period, overlapped)
 *   ANNOUNCE  batch put-app per destination, one hook call for all, grace,
 *             one batch delete-app on the source, batch delete-delivery per destination
 *
 * A batch that fails falls back to the per-app step for each app (the
 * batch is an optimisation, never a different meaning), so one bad app
 * rolls back alone instead of taking the others with it.
 */
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { type AgentApi, type AgentConnector, type App, type Op, checkName } from './agent-client.js';
import { type AnnounceHook, type AnnounceSpec, createAnnounceHook } from './announce.js';
import { AppLock, Journal, acquireLock, newJournalId, type Facts, type Outcome, type PlanRecord, type Step, type Timing } from './journal.js';
import { Migration, message, round, type MigrationObserver, type MigrationResult } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { announcement, original, sleep } from './steps.js';
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
  stateDir: string;
  concurrency: number;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
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

/** Run `fn` over `items`, at most `limit` at a time. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}

export async function drain(opts: DrainOptions): Promise<DrainResult> {
  const t0 = performance.now();
  const source = opts.connect(opts.source);
  const dests = opts.destinations.map((u) => opts.connect(u));
  const driver = (opts.createDriver ?? createDriver)(opts.driver);
  const announce = (opts.createAnnounceHook ?? createAnnounceHook)(opts.announce);
  const plan = await planDrain(source, dests, opts.destDev);
  const id = newJournalId('drain');
  const result: DrainResult = { source: source.url, journal: id, plan, outcome: 'done', apps: [], batches: {}, phaseMs: {}, switchMode: 'none', leftLocal: [], totalMs: 0 };
  if (!plan.items.length) {
    result.totalMs = performance.now() - t0;
    return result;
  }

  const locks: AppLock[] = [];
  try {
    for (const item of plan.items) locks.push(acquireLock(opts.stateDir, checkName(item.app), id));
  } catch (err) {
    for (const l of locks) l.release();
    throw err;
  }
  const journal = await Journal.create(opts.stateDir, id);
  try {
    await journal.append({ type: 'open', journal: id, kind: 'drain', pid: process.pid, host: hostname(), driver: opts.driver, announce: opts.announce, timing: opts.timing });
    const destByUrl = new Map(dests.map((d) => [d.url, d]));
    const ms = plan.items.map((item) => {
      const p: PlanRecord = { type: 'plan', app: item.app, from: source.url, to: item.to, toIndex: item.toIndex, destDev: item.destDev };
      return new Migration({ journalId: id, plan: p, source, dest: destByUrl.get(item.to) as AgentApi, driver, announce, timing: opts.timing }, journal, opts.observe, opts.metrics);
    });
    await Promise.all(ms.map((m) => journal.append(m.plan)));
    const limit = Math.max(1, opts.concurrency);
    const live = () => ms.filter((m) => !m.isEnded());

    // PREPARE for all: one fresh listing (the plan's may be seconds old) and the tunnels the plan read.
    await batched(result, 'PREPARE', live(), limit, async (group) => {
      const byName = new Map((await source.listApps()).map((a) => [a.name, a]));
      const facts = new Map<Migration, Facts>();
      for (const m of group) {
        const entry = byName.get(m.app);
        if (!entry || entry.action.type !== 'local') throw new Error(`${m.app} changed on ${source.url} since the plan`);
        const dest = plan.destinations.find((d) => d.url === m.plan.to);
        const tunnel = isIP(entry.address) === 6 ? dest?.tunnel.v6 : dest?.tunnel.v4;
        if (!tunnel) throw new Error(`${m.plan.to} has no tunnel address for ${entry.address}`);
        facts.set(m, { original: entry, tunnel });
      }
      return (m) => facts.get(m) ?? {};
    });

    await perApp(result, 'START', live(), limit);

    await batched(result, 'DELIVER', live(), limit, async (group) => {
      await Promise.all(
        groupBy(group, (m) => m.plan.to).map(([to, g]) =>
          (destByUrl.get(to) as AgentApi).batch(
            g.map((m): Op => {
              const o = original(m.ctx);
              return { op: 'put-delivery', name: o.name, address: o.address, proto: o.proto, port: o.port, dev: m.plan.destDev };
            }),
          ),
        ),
      );
    });

    await perApp(result, 'READY', live(), limit);

    // SWITCH: every ready app flips in ONE batched map update on the source.
    const toSwitch = live();
    if (toSwitch.length) {
      const mode = await batched(result, 'SWITCH', toSwitch, limit, async (group) => {
        await source.batch(group.map((m): Op => ({ op: 'set-action', name: m.app, action: { type: 'forward', tunnel: m.ctx.facts.tunnel as string } })));
      });
      result.switchMode = mode;
      if (result.batches.SWITCH !== undefined) opts.metrics?.phase('BATCH_SWITCH', result.batches.SWITCH);
    }

    await perApp(result, 'STOP', live(), limit);

    await batched(result, 'ANNOUNCE', live(), limit, async (group) => {
      const byDest = groupBy(group, (m) => m.plan.to);
      await Promise.all(
        byDest.map(([to, g]) =>
          (destByUrl.get(to) as AgentApi).batch(
            g.map((m): Op => {
              const o = original(m.ctx);
              return { op: 'put-app', name: o.name, address: o.address, proto: o.proto, port: o.port, dev: m.plan.destDev, action: { type: 'local' } };
            }),
          ),
        ),
      );
      await announce.announceAll(group.map((m) => announcement(m.ctx)));
      if (!announce.movesTraffic) {
        for (const m of group) m.ctx.note(`no announce hook: ${source.url} keeps forwarding ${m.app}`);
        return;
      }
      await sleep(opts.timing.announceGraceMs);
      await source.batch(group.map((m): Op => ({ op: 'delete-app', name: m.app })));
      await sleep(Math.min(opts.timing.announceGraceMs, 200));
      await Promise.all(byDest.map(([to, g]) => (destByUrl.get(to) as AgentApi).batch(g.map((m): Op => ({ op: 'delete-delivery', name: m.app })))));
    });

    await Promise.all(live().map((m) => m.end('done')));
    result.apps = ms.map((m) => m.result());
    const outcomes = new Set<Outcome>(result.apps.map((a) => a.outcome));
    result.outcome = outcomes.has('failed') ? 'failed' : outcomes.has('rolled-back') ? (outcomes.has('done') ? 'partial' : 'rolled-back') : 'done';
    try {
      result.leftLocal = (await source.listApps()).filter((a) => a.action.type === 'local').map((a) => a.name);
    } catch (err) {
      for (const m of ms) m.ctx.note(`could not re-read ${source.url} after the drain: ${message(err)}`);
    }
  } finally {
    await journal.close();
    for (const l of locks) l.release();
  }
  result.totalMs = round(performance.now() - t0);
  return result;
}

/** Every app runs the step alone (drivers, probes), in parallel up to the limit. */
async function perApp(result: DrainResult, step: Step, group: Migration[], limit: number): Promise<void> {
  const t = performance.now();
  await mapLimit(group, limit, (m) => m.runStep(step));
  result.phaseMs[step] = round(performance.now() - t);
}

/**
 * One step for a whole group: journal `enter` for each (durable, before
 * anything is applied), one batched action, journal `done` for each. If the
 * batch fails, each app runs the step alone — which retries, rolls back or
 * fails that app by the table. Returns how the step was applied.
 */
async function batched(
  result: DrainResult,
  step: Step,
  group: Migration[],
  limit: number,
  action: (group: Migration[]) => Promise<void | ((m: Migration) => Facts)>,
): Promise<'batch' | 'per-app' | 'none'> {
  if (!group.length) return 'none';
  const t0 = performance.now();
  try {
    return await batchedSteps(result, step, group, limit, action);
  } finally {
    result.phaseMs[step] = round(performance.now() - t0);
  }
}

async function batchedSteps(
  result: DrainResult,
  step: Step,
  group: Migration[],
  limit: number,
  action: (group: Migration[]) => Promise<void | ((m: Migration) => Facts)>,
): Promise<'batch' | 'per-app'> {
  await Promise.all(group.map((m) => m.enter(step)));
  const t = performance.now();
  let factsOf: void | ((m: Migration) => Facts);
  try {
    factsOf = await action(group);
  } catch (err) {
    for (const m of group) m.ctx.note(`batched ${step} failed (${message(err)}); running it per app`);
    await mapLimit(group, limit, (m) => m.runStep(step));
    result.batches[step] = round(performance.now() - t);
    return 'per-app';
  }
  const ms = performance.now() - t;
  result.batches[step] = round(ms);
  await Promise.all(group.map((m) => m.complete(step, ms, factsOf ? factsOf(m) : undefined)));
  return 'batch';
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): [string, T[]][] {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const l = m.get(k);
    if (l) l.push(it);
    else m.set(k, [it]);
  }
  return [...m];
}
