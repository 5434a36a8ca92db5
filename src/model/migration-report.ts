/**
 * The wire contract of migration reports (docs/agent-api.md, "Migration
 * reports"). The controller is a short-lived CLI run that no Prometheus
 * can scrape, so when a migration ends it hands its outcome and phase
 * durations to the source agent (`POST /v1/migrations`), which counts them
 * on its /metrics (`routeshift_migrations_total`,
 * `routeshift_migration_phase_seconds`). A drain reports all its apps in
 * one request.
 */
import { FieldError } from './errors.js';
import { quote } from './address.js';

export const MIGRATION_OUTCOMES = ['done', 'rolled-back', 'failed'] as const;
export type MigrationOutcome = (typeof MIGRATION_OUTCOMES)[number];

/** From a sub-millisecond map update (SWITCH) to a slow app start (READY). */
export const PHASE_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/** Phase names become label values: a short upper-case word each (PREPARE, SWITCH, BATCH_SWITCH…), a few per report. */
const PHASE_RE = /^[A-Z][A-Z_]{0,31}$/;
const MAX_PHASES = 16;
/** A drain of a full host (1,000,000 entries) in one report. */
export const MAX_REPORTED_MIGRATIONS = 1_000_000;
/** A phase longer than a day is a clock gone wrong, not a measurement. */
const MAX_PHASE_MS = 86_400_000;

export interface MigrationReport {
  outcome: MigrationOutcome;
  /** Milliseconds per phase. */
  phasesMs: Record<string, number>;
}

/** `POST /v1/migrations` body. */
export interface MigrationReportBody {
  migrations: MigrationReport[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new FieldError(`${field}.${k}`.replace(/^\./, ''), `unknown field (expected ${allowed.join(', ')})`);
}

export function parseMigrationReportBody(body: unknown): MigrationReportBody {
  if (!isObject(body)) throw new FieldError('body', 'expected a JSON object {"migrations": [{"outcome", "phasesMs"}]}');
  onlyKeys(body, ['migrations'], '');
  const list = body.migrations;
  if (!Array.isArray(list)) throw new FieldError('migrations', `expected a list, got ${quote(list)}`);
  if (list.length > MAX_REPORTED_MIGRATIONS) throw new FieldError('migrations', `at most ${MAX_REPORTED_MIGRATIONS} per report, got ${list.length}`);
  return {
    migrations: list.map((m: unknown, i): MigrationReport => {
      const field = `migrations[${i}]`;
      if (!isObject(m)) throw new FieldError(field, 'expected {"outcome", "phasesMs"}');
      onlyKeys(m, ['outcome', 'phasesMs'], field);
      if (typeof m.outcome !== 'string' || !(MIGRATION_OUTCOMES as readonly string[]).includes(m.outcome)) {
        throw new FieldError(`${field}.outcome`, `expected one of ${MIGRATION_OUTCOMES.join(', ')}, got ${quote(m.outcome)}`);
      }
      if (!isObject(m.phasesMs)) throw new FieldError(`${field}.phasesMs`, 'expected an object {PHASE: milliseconds}');
      const entries = Object.entries(m.phasesMs);
      if (entries.length > MAX_PHASES) throw new FieldError(`${field}.phasesMs`, `at most ${MAX_PHASES} phases`);
      const phasesMs: Record<string, number> = {};
      for (const [phase, ms] of entries) {
        if (!PHASE_RE.test(phase)) throw new FieldError(`${field}.phasesMs.${phase}`, 'a phase is an upper-case name such as SWITCH');
        if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_PHASE_MS) {
          throw new FieldError(`${field}.phasesMs.${phase}`, `expected milliseconds between 0 and ${MAX_PHASE_MS}, got ${quote(ms)}`);
        }
        phasesMs[phase] = ms;
      }
      return { outcome: m.outcome as MigrationOutcome, phasesMs };
    }),
  };
}
