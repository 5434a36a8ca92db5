/**
 * A run of the protocol from start to end: lock the apps, open the journal,
 * walk the table as one group, close, unlock. `migrate` runs one app (what
 * the CLI's `migrate` calls); `drain` (drain.ts) runs the same for every
 * app of a host, batched.
 */
import { hostname } from 'node:os';
import { type AgentConnector, checkName } from './agent-client.js';
import { type AnnounceHook, type AnnounceSpec, createAnnounceHook } from './announce.js';
import { type AppLock, Journal, acquireLock, newJournalId, type OpenRecord, type PlanRecord, type PreserveOptions, type Timing } from './journal.js';
import { DEFAULT_LEASE_TTL_MS, RunLeases } from './leases.js';
import { Migration, MigrationGroup, type GroupOptions, type MigrationObserver, type MigrationResult } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { createDriver, type DriverSpec, type WorkloadDriver } from '../workload/index.js';

/** What a run is given: the specs are journaled (resume rebuilds the driver and hook from them). */
export interface RunOptions extends GroupOptions {
  kind: OpenRecord['kind'];
  id: string;
  plans: readonly PlanRecord[];
  driver: DriverSpec;
  announce: AnnounceSpec;
  /** Built from the specs before anything is written. */
  workload: WorkloadDriver;
  hook: AnnounceHook;
  timing: Timing;
  /** --preserve-connections (journaled): SWITCH to PRESERVE, then DRAIN_FLOWS. */
  preserve?: PreserveOptions;
  stateDir: string;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
  /** How long the agents' leases on the apps' names run unless renewed (default DEFAULT_LEASE_TTL_MS). */
  leaseTtlMs?: number;
}

/**
 * Run the plans' migrations to their ends as one group. Every app's lock
 * — here, and its lease at the agents, against controllers with another
 * state directory — is taken before the journal is created: a refused run
 * leaves no journal behind, or --resume would find it. The leases are
 * renewed while the group walks the table and given back at its end.
 */
export async function runMigrations(o: RunOptions): Promise<MigrationGroup> {
  const locks: AppLock[] = [];
  try {
    for (const p of o.plans) locks.push(acquireLock(o.stateDir, checkName(p.app), o.id));
    let noteAll: (message: string) => void = () => {};
    const leases = RunLeases.of(o.id, o.plans, o.connect, o.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS, (m) => noteAll(m));
    await leases.take();
    let journal: Journal;
    try {
      journal = await Journal.create(o.stateDir, o.id);
    } catch (err) {
      await leases.release();
      throw err;
    }
    try {
      await journal.append({ type: 'open', journal: o.id, kind: o.kind, pid: process.pid, host: hostname(), driver: o.driver, announce: o.announce, timing: o.timing, ...(o.preserve ? { preserve: o.preserve } : {}) });
      const ms = o.plans.map(
        (plan) =>
          new Migration(
            { journalId: o.id, plan, source: o.connect(plan.from), dest: o.connect(plan.to), driver: o.workload, announce: o.hook, timing: o.timing, leases, ...(o.preserve ? { preserve: o.preserve } : {}) },
            journal,
            o.observe,
            o.metrics,
          ),
      );
      noteAll = (m) => ms.forEach((x) => x.ctx.note(m));
      await Promise.all(o.plans.map((p) => journal.append(p)));
      const group = new MigrationGroup(ms, { batched: o.batched, concurrency: o.concurrency });
      await group.advance();
      return group;
    } finally {
      await leases.release();
      await journal.close();
    }
  } finally {
    for (const l of locks) l.release();
  }
}

export interface MigrateOptions {
  app: string;
  from: string;
  to: string;
  destDev: string;
  destMac?: string;
  driver: DriverSpec;
  announce: AnnounceSpec;
  timing: Timing;
  preserve?: PreserveOptions;
  stateDir: string;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
  /** The agents' lease on the app's name (default DEFAULT_LEASE_TTL_MS). */
  leaseTtlMs?: number;
}

export async function migrate(opts: MigrateOptions): Promise<MigrationResult> {
  checkName(opts.app);
  const source = opts.connect(opts.from);
  const dest = opts.connect(opts.to);
  if (source.url === dest.url) throw new Error(`--from and --to are the same agent (${source.url})`);
  // Build driver and hook before anything is written: bad options fail here, changing nothing.
  const workload = createDriver(opts.driver);
  const hook = createAnnounceHook(opts.announce, opts.connect);
  const plan: PlanRecord = { type: 'plan', app: opts.app, from: source.url, to: dest.url, toIndex: 0, destDev: opts.destDev, ...(opts.destMac ? { destMac: opts.destMac } : {}) };
  const { driver, announce, timing, preserve, stateDir, connect, observe, metrics } = opts;
  const id = newJournalId(opts.app);
  const group = await runMigrations({ kind: 'migrate', id, plans: [plan], driver, announce, workload, hook, timing, ...(preserve ? { preserve } : {}), stateDir, connect, observe, metrics, batched: false, concurrency: 1, ...(opts.leaseTtlMs ? { leaseTtlMs: opts.leaseTtlMs } : {}) });
  return (group.members[0] as Migration).result();
}
