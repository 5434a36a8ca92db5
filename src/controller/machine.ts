/**
 * The migration state machine (docs/architecture.md, "The migration protocol").
 *
 * The TABLE below is the whole protocol: for each step, what it does, where
 * it goes next, what undoes it, and what a failure in it means. The
 * `Migration` class only walks the table: it writes every transition to the
 * journal (durably) BEFORE applying it, times each phase, reports progress,
 * and on failure either rolls back (undo every entered step, newest first)
 * or rolls forward (retry, then FAILED — needs attention).
 *
 *   PREPARE → START → DELIVER → READY → SWITCH → STOP → ANNOUNCE → DONE
 *      \________ failure: ROLLING_BACK → ROLLED_BACK ___/ (or FAILED if an undo fails)
 *                                          failure after SWITCH: retry → FAILED
 */
import type { Facts, Journal, Outcome, PlanRecord, Step, Timing } from './journal.js';
import { STEPS } from './journal.js';
import type { ControllerMetrics } from './metrics.js';
import * as steps from './steps.js';
import type { StepContext } from './steps.js';

export type MigrationState = Step | 'DONE' | 'ROLLING_BACK' | 'ROLLED_BACK' | 'FAILED';

export interface TableRow {
  /** What the step does (for --help, docs and logs). */
  does: string;
  run: (ctx: StepContext) => Promise<Facts | void>;
  next: Step | 'DONE';
  /** What undoes it; undefined when the step changes nothing that needs undoing. */
  undo: ((ctx: StepContext) => Promise<void>) | undefined;
  undoes: string;
  /** roll-back: the source still serves the app, return to it. roll-forward: the destination already does, finish. */
  onFailure: 'roll-back' | 'roll-forward';
}

export const TABLE: Readonly<Record<Step, TableRow>> = {
  PREPARE: {
    does: "check the source agent's entry exists and is LOCAL; remember it and the destination's tunnel address",
    run: steps.prepare,
    next: 'START',
    undo: undefined,
    undoes: 'nothing (reads only)',
    onFailure: 'roll-back',
  },
  START: {
    does: 'the workload driver starts the app on the destination',
    run: steps.start,
    next: 'DELIVER',
    undo: steps.stopOnDestination,
    undoes: 'the driver stops the app on the destination',
    onFailure: 'roll-back',
  },
  DELIVER: {
    does: 'PUT the delivery entry on the destination agent (tunnelled packets → the app there)',
    run: steps.deliver,
    next: 'READY',
    undo: steps.removeDelivery,
    undoes: "DELETE the destination's delivery entry",
    onFailure: 'roll-back',
  },
  READY: {
    does: "wait for the driver's ready signal / health probe on the destination, with a timeout",
    run: steps.awaitReady,
    next: 'SWITCH',
    undo: undefined,
    undoes: 'nothing (waits only)',
    onFailure: 'roll-back',
  },
  SWITCH: {
    does: "one atomic update of the source entry to FORWARD(destination's tunnel address)",
    run: steps.switchToForward,
    next: 'STOP',
    undo: steps.restoreSource,
    undoes: 'the source entry back to LOCAL, exactly as remembered',
    // The source app still runs until STOP: going back is always possible.
    onFailure: 'roll-back',
  },
  STOP: {
    does: 'after a grace period, the driver stops the app on the source',
    run: steps.stopOnSource,
    next: 'ANNOUNCE',
    undo: undefined,
    undoes: 'cannot be undone: the source app is gone',
    onFailure: 'roll-forward',
  },
  ANNOUNCE: {
    does: 'destination entry LOCAL, announce hook, grace, DELETE source entry, DELETE destination delivery',
    run: steps.announce,
    next: 'DONE',
    undo: undefined,
    undoes: 'cannot be undone: the network already routes to the destination',
    onFailure: 'roll-forward',
  },
};

export type MigrationEvent =
  | { type: 'enter'; app: string; state: Step; attempt: number }
  | { type: 'done'; app: string; state: Step; ms: number }
  | { type: 'retry'; app: string; state: Step; attempt: number; error: string }
  | { type: 'rollback'; app: string; from: Step; error: string }
  | { type: 'undo'; app: string; state: Step }
  | { type: 'undone'; app: string; state: Step; ms: number }
  | { type: 'note'; app: string; message: string }
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
  notes: string[];
}

/** What a resumed migration already knows (from the journal). */
export interface RestoredState {
  entered: Step[];
  done: Step[];
  facts: Facts;
}

const UNDO_ATTEMPTS = 3;

export function nextStep(s: Step): Step | undefined {
  const n = TABLE[s].next;
  return n === 'DONE' ? undefined : n;
}

/** One app's migration walking the table. */
export class Migration {
  state: MigrationState = 'PREPARE';
  readonly ctx: StepContext;
  private readonly entered: Step[] = [];
  private readonly done = new Set<Step>();
  private readonly phases: Partial<Record<Step, number>> = {};
  private readonly undoMs: Partial<Record<Step, number>> = {};
  private readonly notes: string[] = [];
  private readonly t0 = performance.now();
  private outcome: Outcome | undefined;
  private error: string | undefined;

  constructor(
    base: Omit<StepContext, 'note' | 'facts'> & { facts?: Facts },
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
    };
    if (restored) {
      this.entered.push(...restored.entered);
      for (const s of restored.done) this.done.add(s);
    }
  }

  get app(): string {
    return this.ctx.plan.app;
  }

  get plan(): PlanRecord {
    return this.ctx.plan;
  }

  get timing(): Timing {
    return this.ctx.timing;
  }

  isEnded(): boolean {
    return this.outcome !== undefined;
  }

  /** Run from `from` to the end (or through `through`, for a drain that switches in a batch). */
  async advance(from: Step = 'PREPARE', through: Step = 'ANNOUNCE'): Promise<Outcome | 'paused'> {
    for (let s: Step | undefined = from; s; s = nextStep(s)) {
      const ok = await this.runStep(s);
      if (!ok) return this.outcome as Outcome;
      if (s === through) return s === 'ANNOUNCE' ? this.end('done') : 'paused';
    }
    return this.end('done');
  }

  /**
   * Run one step by the table: journal `enter` (durable), apply, journal
   * `done`. Retries only steps that roll forward. Returns false when the
   * migration ended (rolled back or failed) instead.
   */
  async runStep(step: Step): Promise<boolean> {
    const row = TABLE[step];
    const attempts = row.onFailure === 'roll-forward' ? Math.max(1, this.ctx.timing.forwardAttempts) : 1;
    let lastErr: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      await this.enter(step, attempt);
      const t = performance.now();
      try {
        const facts = await row.run(this.ctx);
        await this.complete(step, performance.now() - t, facts ?? undefined);
        return true;
      } catch (err) {
        lastErr = err;
        if (attempt < attempts) {
          this.observe({ type: 'retry', app: this.app, state: step, attempt, error: message(err) });
          await steps.sleep(100 * 2 ** (attempt - 1));
        }
      }
    }
    const error = `${step}: ${message(lastErr)}`;
    if (row.onFailure === 'roll-back') await this.rollBack(step, error);
    else await this.end('failed', error, 'forward');
    return false;
  }

  /** Journal and report entering a step (used directly by drain for batched steps). */
  async enter(step: Step, attempt = 1): Promise<void> {
    await this.journal.append({ type: 'enter', app: this.app, state: step, ...(attempt > 1 ? { attempt } : {}) });
    if (!this.entered.includes(step)) this.entered.push(step);
    this.state = step;
    this.observe({ type: 'enter', app: this.app, state: step, attempt });
  }

  /** Journal and report a step as applied (used directly by drain for batched steps). */
  async complete(step: Step, ms: number, facts?: Facts): Promise<void> {
    if (facts) Object.assign(this.ctx.facts, facts);
    if (step === 'SWITCH') this.ctx.switchedAt = performance.now(); // STOP's grace runs from here
    await this.journal.append({ type: 'done', app: this.app, state: step, ms: round(ms), ...(facts ? { facts } : {}) });
    this.done.add(step);
    this.phases[step] = round(ms);
    this.metrics?.phase(step, ms);
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
      const undo = TABLE[step].undo;
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
          if (attempt < UNDO_ATTEMPTS) await steps.sleep(100 * 2 ** (attempt - 1));
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
      from: this.plan.from,
      to: this.plan.to,
      outcome: this.outcome ?? 'failed',
      state: this.state,
      phases: { ...this.phases },
      rollback: { ...this.undoMs },
      totalMs: round(performance.now() - this.t0),
      ...(this.error ? { error: this.error } : {}),
      notes: [...this.notes],
    };
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
  return STEPS.map((s) => {
    const r = TABLE[s];
    return `${s.padEnd(8)} ${r.does}\n${''.padEnd(9)}next ${r.next}; undo: ${r.undoes}; on failure: ${r.onFailure}`;
  }).join('\n');
}
