/**
 * Controller metrics (prom-client): migrations by outcome and the duration
 * of every phase. A CLI run includes them in its --json output; a future
 * long-lived `routeshift controller` daemon would serve `registry` on /metrics.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import type { FlowDrainFacts, Outcome } from './journal.js';
import type { Step } from './machine.js';

export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly migrations: Counter<'outcome'>;
  private readonly phaseSeconds: Histogram<'phase'>;
  private readonly flowsTotal: Counter<'app' | 'kind'>;

  constructor() {
    this.migrations = new Counter({
      name: 'routeshift_migrations_total',
      help: 'Application migrations by outcome (done, rolled-back, failed = needs attention)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.phaseSeconds = new Histogram({
      name: 'routeshift_migration_phase_seconds',
      help: 'Duration of each migration phase',
      labelNames: ['phase'],
      // From a sub-millisecond map update (SWITCH) to a slow app start (READY).
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.flowsTotal = new Counter({
      name: 'routeshift_migration_flows_total',
      help: '--preserve-connections: old TCP flows per app at DRAIN_FLOWS (kind=old), and those still open at --max-drain (kind=cut)',
      labelNames: ['app', 'kind'],
      registers: [this.registry],
    });
  }

  flows(app: string, f: FlowDrainFacts): void {
    this.flowsTotal.inc({ app, kind: 'old' }, f.atStart);
    this.flowsTotal.inc({ app, kind: 'cut' }, f.cut);
  }

  outcome(o: Outcome): void {
    this.migrations.inc({ outcome: o });
  }

  phase(step: Step | 'BATCH_SWITCH', ms: number): void {
    this.phaseSeconds.observe({ phase: step }, ms / 1000);
  }

  /** The metrics as prom-client's JSON (for --json output). */
  json(): Promise<unknown> {
    return this.registry.getMetricsAsJSON();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
