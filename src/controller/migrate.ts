/**
 * One application's migration from start to end: lock, journal, walk the
 * state machine, unlock. What the CLI's `migrate` calls.
 */
import { hostname } from 'node:os';
import { type AgentConnector, checkName } from './agent-client.js';
import { type AnnounceSpec, createAnnounceHook } from './announce.js';
import { Journal, acquireLock, newJournalId, type Timing } from './journal.js';
import { Migration, type MigrationObserver, type MigrationResult } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { createDriver, type DriverSpec } from '../workload/index.js';

export interface MigrateOptions {
  app: string;
  from: string;
  to: string;
  destDev: string;
  destMac?: string;
  driver: DriverSpec;
  announce: AnnounceSpec;
  timing: Timing;
  stateDir: string;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
}

export async function migrate(opts: MigrateOptions): Promise<MigrationResult> {
  checkName(opts.app);
  const source = opts.connect(opts.from);
  const dest = opts.connect(opts.to);
  if (source.url === dest.url) throw new Error(`--from and --to are the same agent (${source.url})`);
  // Build driver and hook before anything is written: bad options fail here, changing nothing.
  const driver = createDriver(opts.driver);
  const announce = createAnnounceHook(opts.announce);
  const id = newJournalId(opts.app);
  using _lock = acquireLock(opts.stateDir, opts.app, id);
  const journal = await Journal.create(opts.stateDir, id);
  try {
    await journal.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: hostname(), driver: opts.driver, announce: opts.announce, timing: opts.timing });
    const plan = { type: 'plan', app: opts.app, from: source.url, to: dest.url, toIndex: 0, destDev: opts.destDev, ...(opts.destMac ? { destMac: opts.destMac } : {}) } as const;
    await journal.append(plan);
    const m = new Migration({ journalId: id, plan, source, dest, driver, announce, timing: opts.timing }, journal, opts.observe, opts.metrics);
    await m.advance();
    return m.result();
  } finally {
    await journal.close();
  }
}
