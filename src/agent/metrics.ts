/**
 * Prometheus metrics of one agent. Forwarding counters are read from the
 * per-CPU maps when Prometheus scrapes (collect callbacks), never polled, so
 * a scrape always shows the kernel's numbers at that moment.
 */
import { hostname, release } from 'node:os';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HostDatapath } from '../datapath/host.js';
import { DROP_REASONS, EVENTS } from '../datapath/structs.js';
import { MIGRATION_OUTCOMES, PHASE_SECONDS_BUCKETS, type MigrationReportBody } from '../model/migration-report.js';
import { buildInfo } from '../model/version.js';
import type { EntryStore } from './store.js';
import { FlowCensus } from './flows.js';

export interface AgentMetrics {
  readonly contentType: string;
  render(): Promise<string>;
  /** Count migrations a controller reports (POST /v1/migrations): this agent was their source. */
  recordMigrations(report: MigrationReportBody): void;
  readonly registry: Registry;
}

/** Default cap on entries with their own series. */
export const DEFAULT_METRICS_APP_LIMIT = 10_000;

export function createMetrics(dp: HostDatapath, store: EntryStore, perAppLimit = DEFAULT_METRICS_APP_LIMIT): AgentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ uplink: dp.uplink });
  // The standard names (process_cpu_seconds_total, process_resident_memory_bytes, nodejs_*), so stock
  // Node.js and process dashboards match an agent as they are.
  collectDefaultMetrics({ register: registry });
  // These three are gauges named *_total, which promtool rightly flags.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const build = buildInfo();
  new Gauge({
    name: 'routeshift_build_info',
    help: 'Always 1; the labels say which routeshift runs where (version, commit when built from a checkout, node name, kernel release).',
    labelNames: ['version', 'commit', 'node', 'kernel'],
    registers: [registry],
  }).set({ version: build.version, ...(build.commit ? { commit: build.commit } : {}), node: hostname(), kernel: release() }, 1);

  const perApp = (values: (set: (labels: Record<string, string>, v: bigint) => void) => void) =>
    function (this: Counter) {
      this.reset();
      values((labels, v) => this.inc(labels, Number(v)));
    };

  // One series per entry and action, up to a limit: a host with a million
  // entries must not make every scrape a million-line answer.
  // The counters are read once per scrape for both metrics (10k per-CPU lookups, not 20k).
  type EntryCounters = ReturnType<EntryStore['counters']> extends Iterable<infer T> ? T : never;
  let scrape: EntryCounters[] | undefined;
  const eachEntryCounter = (field: 'packets' | 'bytes') => (set: (labels: Record<string, string>, v: bigint) => void) => {
    for (const e of scrape ?? store.counters(perAppLimit)) {
      if (e.kind === 'app') {
        set({ app: e.name, action: 'local' }, e.stats.local[field]);
        set({ app: e.name, action: 'forward' }, e.stats.forward[field]);
      } else {
        set({ app: e.name, action: 'deliver' }, e.stats.deliver[field]);
      }
    }
  };

  new Counter({
    name: 'routeshift_app_packets_total',
    help: 'Packets handled per application and action (local: delivered on this host, forward: tunnelled to another host, deliver: received through the tunnel).',
    labelNames: ['app', 'action'],
    registers: [registry],
    collect: perApp(eachEntryCounter('packets')),
  });
  new Counter({
    name: 'routeshift_app_bytes_total',
    help: 'Bytes (frame length as received) per application and action.',
    labelNames: ['app', 'action'],
    registers: [registry],
    collect: perApp(eachEntryCounter('bytes')),
  });
  new Counter({
    name: 'routeshift_drops_total',
    help: 'Packets the data plane did not forward, by reason (see bpf/routeshift.h enum rs_drop).',
    labelNames: ['reason'],
    registers: [registry],
    collect: perApp((set) => {
      const d = dp.dropCounts();
      for (const r of DROP_REASONS) set({ reason: r }, d[r].packets);
    }),
  });
  new Counter({
    name: 'routeshift_passed_total',
    help: 'Packets handed to the kernel untouched, by event (no_entry: not an application of ours).',
    labelNames: ['event'],
    registers: [registry],
    collect: perApp((set) => {
      const e = dp.eventCounts();
      for (const n of EVENTS) set({ event: n }, e[n].packets);
    }),
  });
  // Flows of the preserve action: only apps with flows recorded have series.
  const census = new FlowCensus(dp);
  new Counter({
    name: 'routeshift_app_flows_total',
    help: 'TCP flows of --preserve-connections migrations per application: pinned (from before SWITCH, kept on this host), sent (new, forwarded), refused (new, the flow table could not record it: kept here), evicted (new, its table entry evicted: later packets reach this host and are reset).',
    labelNames: ['app', 'kind'],
    registers: [registry],
    collect: perApp((set) => {
      for (const a of census.counters(perAppLimit)) {
        set({ app: a.name, kind: 'pinned' }, a.stats.pinned);
        set({ app: a.name, kind: 'sent' }, a.stats.sent);
        set({ app: a.name, kind: 'refused' }, a.stats.refused);
        set({ app: a.name, kind: 'evicted' }, a.evicted);
      }
    }),
  });
  new Gauge({
    name: 'routeshift_delivery_path',
    help: 'How each entry\'s packets go now (1 per entry): xdp, tc-peer, tc or kernel into its device; forward-xdp-tx, forward-xdp-redirect or forward-tc out of the uplink.',
    labelNames: ['app', 'kind', 'path'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of store.paths(perAppLimit)) this.set({ app: e.name, kind: e.kind, path: e.path }, 1);
    },
  });
  new Gauge({
    name: 'routeshift_entries',
    help: 'Entries in the agent maps.',
    labelNames: ['map'],
    registers: [registry],
    collect() {
      const c = store.counts;
      this.set({ map: 'redirect' }, c.apps);
      this.set({ map: 'deliver' }, c.deliveries);
    },
  });
  new Gauge({
    name: 'routeshift_map_capacity',
    help: 'Maximum entries of each agent map.',
    labelNames: ['map'],
    registers: [registry],
    collect() {
      this.set({ map: 'redirect' }, dp.redirect.info.maxEntries);
      this.set({ map: 'deliver' }, dp.deliver.info.maxEntries);
      this.set({ map: 'flows' }, dp.flowCapacity);
    },
  });
  // Reported by controllers (a CLI run cannot be scraped): the migrations that started on this host.
  const migrations = new Counter({
    name: 'routeshift_migrations_total',
    help: 'Migrations away from this host, by outcome (done, rolled-back, failed = needs attention), as their controller reported them.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const outcome of MIGRATION_OUTCOMES) migrations.inc({ outcome }, 0);
  const phaseSeconds = new Histogram({
    name: 'routeshift_migration_phase_seconds',
    help: 'Duration of each phase of the migrations away from this host (PREPARE … ANNOUNCE; BATCH_SWITCH for a drain), as their controller reported them.',
    labelNames: ['phase'],
    buckets: [...PHASE_SECONDS_BUCKETS],
    registers: [registry],
  });
  return {
    registry,
    contentType: registry.contentType,
    recordMigrations(report) {
      for (const m of report.migrations) {
        migrations.inc({ outcome: m.outcome });
        for (const [phase, ms] of Object.entries(m.phasesMs)) phaseSeconds.observe({ phase }, ms / 1000);
      }
    },
    async render() {
      scrape = [...store.counters(perAppLimit)];
      try {
        return await registry.metrics();
      } finally {
        scrape = undefined;
      }
    },
  };
}
