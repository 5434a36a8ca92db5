/**
 * Prometheus metrics of one agent. Forwarding counters are read from the
 * per-CPU maps when Prometheus scrapes (collect callbacks), never polled, so
 * a scrape always shows the kernel's numbers at that moment.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HostDatapath } from '../datapath/host.js';
import { DROP_REASONS, EVENTS } from '../datapath/structs.js';
import type { EntryStore } from './store.js';

export interface AgentMetrics {
  readonly contentType: string;
  render(): Promise<string>;
  readonly registry: Registry;
}

/** Default cap on entries with their own series. */
export const DEFAULT_METRICS_APP_LIMIT = 10_000;

export function createMetrics(dp: HostDatapath, store: EntryStore, perAppLimit = DEFAULT_METRICS_APP_LIMIT): AgentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ uplink: dp.uplink });
  collectDefaultMetrics({ register: registry, prefix: 'routeshift_agent_' });
  // These three are gauges named *_total, which promtool rightly flags.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(`routeshift_agent_${name}`);
  }

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
    },
  });
  return {
    registry,
    contentType: registry.contentType,
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
