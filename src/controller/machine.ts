/**
 * The migration state machine (docs/architecture.md, "The migration protocol").
 *
 * The TABLE below is the whole protocol, stated once: its rows are the
 * steps in order, each with what it does, how it runs for a group of apps,
 * what undoes it and what a failure in it means. The rest is derived from
 * it: STEPS, the commit point, what `--resume` decides (resume.ts), the
 * --help text.
 *
 * Apps walk the table in a `MigrationGroup`: each step runs for every app of
 * the group still moving, then the next step. A migration is a group of
 * one; a drain is the group of a host's apps, whose map updates go to each
 * agent in one batch and whose per-app steps (drivers, probes) run in
 * parallel. A `Migration` is one app in a group: it writes every transition
 * to the journal (durably) BEFORE applying it, times each phase, reports
 * progress, and on failure either rolls back (undo every entered step,
 * newest first; ROLLED_BACK, or FAILED if an undo fails) or rolls forward
 * (retry, then FAILED — needs attention).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Facts, FlowDrainFacts, Journal, Outcome } from './journal.js';
import { mapLimit } from './limit.js';
import type { ControllerMetrics } from './metrics.js';
import { drainFlows } from './drain-flows.js';
import * as steps from './steps.js';
import type { StepContext, StepGroup } from './steps.js';

/** How a step runs for the apps of a group. */
type Run =
  /** Each app on its own (the workload: drivers, probes); a group runs up to its concurrency of them at once. */
  | { each: (ctx: StepContext) => Promise<void>; all?: undefined }
  /** The whole group at once (map updates: in a drain, one batch per agent); answers each app's facts, in order. */
  | { all: (group: StepGroup) => Promise<readonly Facts[] | void>; each?: undefined };

export type TableRow = Run & {
  /** What the step does (for --help, docs and logs). */
  does: string;
  /** What undoes it, for one app; undefined when the step changes nothing that needs undoing. */
  undo: ((ctx: StepContext) => Promise<void>) | undefined;
  undoes: string;
  /** roll-back: the source still serves the app, return to it. roll-forward: the destination already does, finish. */
  onFailure: 'roll-back' | 'roll-forward';
};

/** The protocol. The order of the rows is the order of the steps. */
export const TABLE = {
  PREPARE: {
    does: "check the source agent's entry exists and is LOCAL; remember it and the destination's tunnel address",
    all: steps.prepare,
    undo: undefined,
    undoes: 'nothing (reads only)',
    onFailure: 'roll-back',
  },
  START: {
    does: 'the workload driver starts the app on the destination',
    each: steps.start,
    undo: steps.stopOnDestination,
    undoes: 'the driver stops the app on the destination',
    onFailure: 'roll-back',
  },
  DELIVER: {
    does: 'PUT the delivery entry on the destination agent (tunnelled packets → the app there)',
    all: steps.deliver,
    undo: steps.removeDelivery,
    undoes: "DELETE the destination's delivery entry",
    onFailure: 'roll-back',
  },
  READY: {
    does: "wait for the driver's ready signal / health probe on the destination, with a timeout",
    each: steps.awaitReady,
    undo: undefined,
    undoes: 'nothing (waits only)',
    onFailure: 'roll-back',
  },
  SWITCH: {
    does: "one atomic update of the source entry to FORWARD(destination's tunnel address); PRESERVE(it) with --preserve-connections",
    all: steps.switchToForward,
    undo: steps.restoreSource,
    undoes: 'the source entry back to LOCAL, exactly as remembered',
    // The source app still runs until STOP: going back is always possible.
    onFailure: 'roll-back',
  },
  DRAIN_FLOWS: {
    does: "--preserve-connections: wait (≤ --max-drain) until the source reports no TCP flow from before SWITCH alive, then its entry becomes FORWARD; otherwise nothing",
    all: drainFlows,
    undo: undefined,
    undoes: 'nothing: new flows already live on the destination',
    // The destination serves every new connection by now: only forward.
    onFailure: 'roll-forward',
  },
  STOP: {
    does: 'after a grace period, the driver stops the app on the source',
    each: steps.stopOnSource,
    undo: undefined,
    undoes: 'cannot be undone: the source app is gone',
    onFailure: 'roll-forward',
  },
  ANNOUNCE: {
    does: 'destination entry LOCAL, announce hook, grace, DELETE source entry, DELETE destination delivery',
    all: steps.announce,
    undo: undefined,
    undoes: 'cannot be undone: the network already routes to the destination',
    onFailure: 'roll-forward',
  },
} satisfies Record<string, TableRow>;

export type Step = keyof typeof TABLE;
const ROWS: Readonly<Record<Step, TableRow>> = TABLE;

/** The steps, in protocol order. */
export const STEPS = Object.keys(TABLE) as readonly Step[];

const commit = STEPS.findIndex((s) => ROWS[s].onFailure === 'roll-forward');
if (commit < 1 || STEPS.slice(commit).some((s) => ROWS[s].onFailure !== 'roll-forward')) {
  throw new Error('the protocol table must roll back in its first steps and forward in all the others');
}
/** The commit point: the first step whose failure rolls forward. Before it the source app still runs, and any failure goes back. */
export const COMMIT_POINT = STEPS[commit] as Step;
/**
 * The step that commits (the last that rolls back): once it is done the
 * migration only goes forward, and the grace before the source app is
 * stopped counts from it. Entered but not known done, only the source
 * entry tells which way to go (resume.ts).
 */
export const COMMITTING_STEP = STEPS[commit - 1] as Step;

export type MigrationState = Step | 'DONE' | 'ROLLING_BACK' | 'ROLLED_BACK' | 'FAILED';

export type MigrationEvent =
  | { type: 'enter'; app: string; state: Step; attempt: number }
  | { type: 'done'; app: string; state: Step; ms: number }
  | { type: 'retry'; app: string; state: Step; attempt: number; error: string }
  | { type: 'rollback'; app: string; from: Step; error: string }
  | { type: 'undo'; app: string; state: Step }
  | { type: 'undone'; app: string; state: Step; ms: number }
  | { type: 'note'; app: string; message: string }
  /** DRAIN_FLOWS: the source's count of old flows still alive changed. */
  | { type: 'flows'; app: string; active: number; elapsedMs: number }
  | { type: 'end'; app: string; outcome: Outcome; error?: string; totalMs: number };

export type MigrationObserver = (e: MigrationEvent) => void;

export interface MigrationResult {
  app: string;
  journal: string;
  from: string;
  to: string;
  outcome: Outcome;
  state: MigrationState;
  /** Milliseconds per step (the last attempt's). */
  phases: Partial<Record<Step, number>>;
  /** Milliseconds per undo, when rolled back. */
  rollback: Partial<Record<Step, number>>;
  totalMs: number;
  error?: string;
  /** --preserve-connections: old flows at DRAIN_FLOWS' start, and cut at its deadline. */
  flows?: FlowDrainFacts;
  /** DRAIN_FLOWS: the old-flow count each time it changed (the first MAX_FLOW_SAMPLES). */
  flowProgress?: { elapsedMs: number; active: number }[];
  notes: string[];
}

/** What a resumed migration already knows (from the journal). */
export interface RestoredState {
  entered: Step[];
  done: Step[];
  facts: Facts;
}

const UNDO_ATTEMPTS = 3;
/** DRAIN_FLOWS progress kept per app for the result (the count falls at most once per poll). */
const MAX_FLOW_SAMPLES = 500;

/** A step for one app on its own: what a migration runs, and a group's apps when their batch failed. */
async function runAlone(row: TableRow, ctx: StepContext): Promise<Facts | undefined> {
  if (row.each) {
    await row.each(ctx);
    return undefined;
  }
  const facts = await row.all({ apps: [ctx], batched: false });
  return facts ? facts[0] : undefined;
}

/** One app's migration, in a group walking the table. */
export class Migration {
  state: MigrationState = 'PREPARE';
  readonly ctx: StepContext;
  private readonly entered: Step[] = [];
  private readonly done = new Set<Step>();
  private readonly phases: Partial<Record<Step, number>> = {};
  private readonly undoMs: Partial<Record<Step, number>> = {};
  private readonly notes: string[] = [];
  private readonly flowProgress: { elapsedMs: number; active: number }[] = [];
  private readonly t0 = performance.now();
  private outcome: Outcome | undefined;
  private error: string | undefined;

  constructor(
    base: Omit<StepContext, 'note' | 'facts' | 'progress'> & { facts?: Facts },
    private readonly journal: Journal,
    private readonly observe: MigrationObserver = () => {},
    private readonly metrics?: ControllerMetrics,
    restored?: RestoredState,
  ) {
    this.ctx = {
      ...base,
      facts: { ...(base.facts ?? {}), ...(restored?.facts ?? {}) },
      note: (message) => {
        this.notes.push(message);
        this.observe({ type: 'note', app: this.app, message });
      },
      progress: (active, elapsedMs) => {
        if (this.flowProgress.length < MAX_FLOW_SAMPLES) this.flowProgress.push({ elapsedMs: round(elapsedMs), active });
        this.observe({ type: 'flows', app: this.app, active, elapsedMs: round(elapsedMs) });
      },
    };
    if (restored) {
      this.entered.push(...restored.entered);
      for (const s of restored.done) this.done.add(s);
    }
  }

  get app(): string {
    return this.ctx.plan.app;
  }

  isEnded(): boolean {
    return this.outcome !== undefined;
  }

  /** Walk the table from `from` to the end, alone: a group of one. */
  async advance(from?: Step): Promise<Outcome> {
    await new MigrationGroup([this], { batched: false, concurrency: 1 }).advance(from);
    return this.outcome as Outcome;
  }

  /**
   * Run one step for this app alone, by the table: journal `enter`
   * (durable), apply, journal `done`. Retries only steps that roll forward.
   * Returns false when the migration ended (rolled back or failed) instead.
   */
  async runStep(step: Step): Promise<boolean> {
    const row = ROWS[step];
    const attempts = row.onFailure === 'roll-forward' ? Math.max(1, this.ctx.timing.forwardAttempts) : 1;
    let lastErr: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        // A run that lost its leases takes no step — not even entered, so nothing of it is undone — and goes back (or stops) by the table.
        this.ctx.leases?.check();
      } catch (err) {
        lastErr = err;
        break;
      }
      await this.enter(step, attempt);
      const t = performance.now();
      try {
        const facts = await runAlone(row, this.ctx);
        await this.complete(step, performance.now() - t, facts);
        return true;
      } catch (err) {
        lastErr = err;
        if (attempt < attempts) {
          this.observe({ type: 'retry', app: this.app, state: step, attempt, error: message(err) });
          await sleep(100 * 2 ** (attempt - 1));
        }
      }
    }
    const error = `${step}: ${message(lastErr)}`;
    if (row.onFailure === 'roll-back') await this.rollBack(step, error);
    else await this.end('failed', error, 'forward');
    return false;
  }

  /** Journal and report entering a step (a group does it for all its apps before a step it runs for all at once). */
  async enter(step: Step, attempt = 1): Promise<void> {
    // DRAIN_FLOWS' wait ends at one deadline, set when the phase first starts and journaled: a retry or a resume keeps it.
    const p = this.ctx.preserve;
    if (step === 'DRAIN_FLOWS' && p) this.ctx.drainDeadline ??= Date.now() + p.maxDrainMs;
    const deadline = step === 'DRAIN_FLOWS' && this.ctx.drainDeadline !== undefined ? { deadline: new Date(this.ctx.drainDeadline).toISOString() } : {};
    await this.journal.append({ type: 'enter', app: this.app, state: step, ...(attempt > 1 ? { attempt } : {}), ...deadline });
    if (!this.entered.includes(step)) this.entered.push(step);
    this.state = step;
    this.observe({ type: 'enter', app: this.app, state: step, attempt });
  }

  /** Journal and report a step as applied. */
  async complete(step: Step, ms: number, facts?: Facts): Promise<void> {
    if (facts) Object.assign(this.ctx.facts, facts);
    if (step === COMMITTING_STEP) this.ctx.switchedAt = performance.now(); // STOP's grace runs from here
    await this.journal.append({ type: 'done', app: this.app, state: step, ms: round(ms), ...(facts ? { facts } : {}) });
    this.done.add(step);
    this.phases[step] = round(ms);
    this.metrics?.phase(step, ms);
    if (facts?.flows) this.metrics?.flows(this.app, facts.flows);
    this.observe({ type: 'done', app: this.app, state: step, ms: round(ms) });
  }

  /**
   * Undo every entered step that has an undo, newest first — so the source
   * entry is LOCAL again before the destination's delivery entry and app go.
   * Each undo is idempotent and retried; if one still fails, the migration
   * is FAILED (needs attention) and `--resume` will continue the rollback.
   */
  async rollBack(from: Step, error: string): Promise<Outcome> {
    this.state = 'ROLLING_BACK';
    this.error = error;
    await this.journal.append({ type: 'rollback', app: this.app, from, error });
    this.observe({ type: 'rollback', app: this.app, from, error });
    for (const step of [...this.entered].reverse()) {
      const undo = ROWS[step].undo;
      if (!undo) continue;
      await this.journal.append({ type: 'undo', app: this.app, state: step });
      this.observe({ type: 'undo', app: this.app, state: step });
      const t = performance.now();
      let undoErr: unknown;
      for (let attempt = 1; attempt <= UNDO_ATTEMPTS; attempt++) {
        try {
          await undo(this.ctx);
          undoErr = undefined;
          break;
        } catch (err) {
          undoErr = err;
          if (attempt < UNDO_ATTEMPTS) await sleep(100 * 2 ** (attempt - 1));
        }
      }
      if (undoErr !== undefined) {
        return this.end('failed', `${error}; then rollback of ${step} failed: ${message(undoErr)}`, 'back');
      }
      const ms = round(performance.now() - t);
      this.undoMs[step] = ms;
      await this.journal.append({ type: 'undone', app: this.app, state: step, ms });
      this.observe({ type: 'undone', app: this.app, state: step, ms });
    }
    return this.end('rolled-back', error);
  }

  /** Write the end record; the migration is over (for this run). */
  async end(outcome: Outcome, error?: string, direction?: 'forward' | 'back'): Promise<Outcome> {
    this.outcome = outcome;
    if (error) this.error = error;
    this.state = outcome === 'done' ? 'DONE' : outcome === 'rolled-back' ? 'ROLLED_BACK' : 'FAILED';
    await this.journal.append({
      type: 'end',
      app: this.app,
      outcome,
      ...(direction ? { direction } : {}),
      ...(this.error && outcome !== 'done' ? { error: this.error } : {}),
    });
    this.metrics?.outcome(outcome);
    this.observe({ type: 'end', app: this.app, outcome, ...(this.error && outcome !== 'done' ? { error: this.error } : {}), totalMs: round(performance.now() - this.t0) });
    return outcome;
  }

  result(): MigrationResult {
    return {
      app: this.app,
      journal: this.ctx.journalId,
      from: this.ctx.plan.from,
      to: this.ctx.plan.to,
      outcome: this.outcome ?? 'failed',
      state: this.state,
      phases: { ...this.phases },
      rollback: { ...this.undoMs },
      totalMs: round(performance.now() - this.t0),
      ...(this.error ? { error: this.error } : {}),
      ...(this.ctx.facts.flows ? { flows: { ...this.ctx.facts.flows } } : {}),
      ...(this.flowProgress.length ? { flowProgress: [...this.flowProgress] } : {}),
      notes: [...this.notes],
    };
  }
}

export interface GroupOptions {
  /** A step the table runs for the whole group sends each agent one batch (a drain); false: one request per app and update (a migration). */
  batched: boolean;
  /** How many apps a per-app step works on at once. */
  concurrency: number;
}

/**
 * Apps walking the table together, step by step: each step runs for every
 * app still moving (one that rolled back or failed drops out, alone).
 */
export class MigrationGroup {
  /** Wall-clock milliseconds of every phase an app reached (journaling included). */
  readonly phaseMs: Partial<Record<Step, number>> = {};
  /** Milliseconds of each step run for the whole group at once (or of its per-app fallback). */
  readonly batchMs: Partial<Record<Step, number>> = {};
  /** How each such step was applied: in one go, or app by app because that failed. */
  readonly appliedAs: Partial<Record<Step, 'batch' | 'per-app'>> = {};

  constructor(
    readonly members: readonly Migration[],
    private readonly opts: GroupOptions,
  ) {}

  /** Walk the table from `from` to the end; every app still moving then is done. */
  async advance(from: Step = STEPS[0] as Step): Promise<void> {
    for (const step of STEPS.slice(STEPS.indexOf(from))) await this.runStep(step);
    await Promise.all(this.live().map((m) => m.end('done')));
  }

  private live(): Migration[] {
    return this.members.filter((m) => !m.isEnded());
  }

  private async runStep(step: Step): Promise<void> {
    const apps = this.live();
    if (!apps.length) return;
    const t0 = performance.now();
    const { all } = ROWS[step];
    if (all && this.opts.batched) await this.together(step, apps, all);
    else await this.alone(step, apps);
    this.phaseMs[step] = round(performance.now() - t0);
  }

  /** Every app runs the step on its own, in parallel up to the concurrency. */
  private async alone(step: Step, apps: readonly Migration[]): Promise<void> {
    await mapLimit(apps, this.opts.concurrency, (m) => m.runStep(step));
  }

  /**
   * One step for all: journal `enter` for each (durable, before anything is
   * applied), one action, journal `done` for each. If the action fails,
   * each app runs the step alone — which retries, rolls back or fails that
   * app by the table — so one bad app rolls back alone instead of taking
   * the others with it: the batch is an optimisation, never a different meaning.
   */
  private async together(step: Step, apps: readonly Migration[], all: (g: StepGroup) => Promise<readonly Facts[] | void>): Promise<void> {
    // leases lost: each app stops alone, by the table, without entering the step
    if (apps.some((m) => m.ctx.leases?.lost !== undefined)) return this.alone(step, apps);
    await Promise.all(apps.map((m) => m.enter(step)));
    const t = performance.now();
    let facts: readonly Facts[] | void;
    try {
      facts = await all({ apps: apps.map((m) => m.ctx), batched: true });
    } catch (err) {
      for (const m of apps) m.ctx.note(`batched ${step} failed (${message(err)}); running it per app`);
      await this.alone(step, apps);
      this.batchMs[step] = round(performance.now() - t);
      this.appliedAs[step] = 'per-app';
      return;
    }
    const ms = performance.now() - t;
    this.batchMs[step] = round(ms);
    this.appliedAs[step] = 'batch';
    await Promise.all(apps.map((m, i) => m.complete(step, ms, facts ? facts[i] : undefined)));
  }
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Milliseconds to two decimals, as results and the journal report them. */
export function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** The table as text (for --help and the README): state, action, next, undo, on failure. */
export function describeTable(): string {
  return STEPS.map((s, i) => {
    const r = ROWS[s];
    return `${s.padEnd(8)} ${r.does}\n${''.padEnd(9)}next ${STEPS[i + 1] ?? 'DONE'}; undo: ${r.undoes}; on failure: ${r.onFailure}`;
  }).join('\n');
}
