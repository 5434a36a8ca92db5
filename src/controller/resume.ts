/**
 * `migrate --resume`: finish or undo a migration a dead controller left
 * half-way, from what its journal durably says.
 *
 * The decision (`decideResume`) is a pure function of the app's journal
 * records, with the protocol table's committing step (the last one whose
 * failure rolls back) and commit point (the first one whose failure rolls
 * forward) from machine.ts, so every possible last line is tested:
 *
 * | last durable state of the app                        | decision |
 * |------------------------------------------------------|----------|
 * | plan only, or entered only steps before the committing step | roll back (undo entered steps) |
 * | a `rollback` record, no `end`                        | continue the rollback |
 * | entered the committing step, not done                | unknown whether applied: read the source entry — FORWARD(dest) → roll forward from the commit point; LOCAL → roll back |
 * | the committing step done                             | roll forward from the first step not done |
 * | every step done, no `end`                            | write `end done` |
 * | `end` done / rolled-back                             | nothing to do |
 * | `end` failed (needs attention)                       | try again in the direction it was going |
 *
 * Every step and undo is idempotent, so re-running one that had already
 * (partly) happened is harmless.
 */
import { type AgentConnector } from './agent-client.js';
import { type AnnounceHook, type AnnounceSpec, createAnnounceHook } from './announce.js';
import { Journal, acquireLock, findJournal, type Facts, type OpenRecord, type Outcome, type PlanRecord, type Stored } from './journal.js';
import { COMMITTING_STEP, COMMIT_POINT, Migration, STEPS, message, type MigrationObserver, type MigrationResult, type RestoredState, type Step } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { switchState } from './steps.js';
import { createDriver, type DriverSpec, type WorkloadDriver } from '../workload/index.js';

export type ResumeDecision =
  | { kind: 'nothing'; outcome: Outcome }
  | { kind: 'roll-back'; from: Step | undefined; error: string }
  | { kind: 'check-switch' }
  | { kind: 'roll-forward'; from: Step }
  | { kind: 'finish' };

/** Steps entered and done, and facts learned, for one app. */
export function restoreState(records: readonly Stored[], app: string): RestoredState {
  const entered: Step[] = [];
  const done: Step[] = [];
  const facts: Facts = {};
  for (const r of records) {
    if (!('app' in r) || r.app !== app) continue;
    if (r.type === 'enter' && !entered.includes(r.state)) entered.push(r.state);
    if (r.type === 'done') {
      if (!done.includes(r.state)) done.push(r.state);
      if (r.facts) Object.assign(facts, r.facts);
    }
  }
  return { entered, done, facts };
}

export function decideResume(records: readonly Stored[], app: string): ResumeDecision {
  const mine = records.filter((r) => 'app' in r && r.app === app && r.type !== 'plan');
  const { entered, done } = restoreState(records, app);
  const last = mine[mine.length - 1];
  const forward = (): ResumeDecision => {
    const from = STEPS.slice(STEPS.indexOf(COMMIT_POINT)).find((s) => !done.includes(s));
    return from ? { kind: 'roll-forward', from } : { kind: 'finish' };
  };

  if (last?.type === 'end') {
    if (last.outcome !== 'failed') return { kind: 'nothing', outcome: last.outcome };
    if (last.direction === 'back') return { kind: 'roll-back', from: lastRollbackFrom(mine), error: last.error ?? 'previous rollback failed' };
    return forward();
  }
  const rb = mine.find((r) => r.type === 'rollback');
  if (rb && rb.type === 'rollback') return { kind: 'roll-back', from: rb.from, error: rb.error };
  if (done.includes(COMMITTING_STEP)) return forward();
  if (entered.includes(COMMITTING_STEP)) return { kind: 'check-switch' };
  const lastEntered = entered[entered.length - 1];
  return {
    kind: 'roll-back',
    from: lastEntered,
    error: lastEntered ? `controller stopped during ${lastEntered}` : 'controller stopped before the first step',
  };
}

function lastRollbackFrom(mine: readonly Stored[]): Step | undefined {
  for (let i = mine.length - 1; i >= 0; i--) {
    const r = mine[i];
    if (r?.type === 'rollback') return r.from;
  }
  return undefined;
}

export interface ResumeOptions {
  stateDir: string;
  app: string;
  connect: AgentConnector;
  observe?: MigrationObserver;
  metrics?: ControllerMetrics;
  /** Build the driver / hook from the journal's spec (default: the built-ins); tests inject doubles. */
  createDriver?: (spec: DriverSpec) => WorkloadDriver;
  createAnnounceHook?: (spec: AnnounceSpec) => AnnounceHook;
}

export interface ResumeResult extends MigrationResult {
  decision: ResumeDecision['kind'];
  /** When the decision needed the source entry read: what it showed. */
  observed?: string;
}

/** Thrown when resume cannot decide safely (e.g. the source agent is unreachable): nothing was changed; it needs an operator. */
export class ResumeUndecidedError extends Error {
  override readonly name = 'ResumeUndecidedError';
}

export async function resume(opts: ResumeOptions): Promise<ResumeResult> {
  const found = findJournal(opts.stateDir, opts.app);
  if (!found) throw new Error(`no journal of a migration of ${opts.app} in ${opts.stateDir}: nothing to resume`);
  const open = found.records.find((r): r is Stored<OpenRecord> => r.type === 'open');
  const plan = found.records.find((r): r is Stored<PlanRecord> => r.type === 'plan' && r.app === opts.app);
  if (!open || !plan) throw new Error(`journal ${found.path} has no open/plan record for ${opts.app}`);
  const decision = decideResume(found.records, opts.app);

  using _lock = acquireLock(opts.stateDir, opts.app, open.journal);
  const lastSeq = found.records.reduce((n, r) => Math.max(n, r.seq ?? 0), 0);
  const journal = await Journal.reopen(found.path, open.journal, lastSeq);
  try {
    const m = new Migration(
      {
        journalId: open.journal,
        plan: stripStored(plan),
        source: opts.connect(plan.from),
        dest: opts.connect(plan.to),
        driver: (opts.createDriver ?? createDriver)(open.driver),
        announce: (opts.createAnnounceHook ?? createAnnounceHook)(open.announce),
        timing: open.timing,
      },
      journal,
      opts.observe,
      opts.metrics,
      restoreState(found.records, opts.app),
    );
    const facts = m.ctx.facts;
    let observed: string | undefined;
    switch (decision.kind) {
      case 'nothing':
        m.ctx.note(`migration ${open.journal} already ended ${decision.outcome}; nothing to do`);
        return { ...m.result(), outcome: decision.outcome, state: decision.outcome === 'done' ? 'DONE' : 'ROLLED_BACK', decision: decision.kind };
      case 'roll-back':
        await m.rollBack(decision.from ?? (STEPS[0] as Step), `${decision.error} (resumed: rolled back)`);
        break;
      case 'roll-forward':
        await m.advance(decision.from);
        break;
      case 'finish':
        await m.end('done');
        break;
      case 'check-switch': {
        let seen;
        try {
          seen = await switchState(m.ctx);
        } catch (err) {
          throw new ResumeUndecidedError(
            `cannot tell whether ${COMMITTING_STEP} of ${opts.app} was applied: ${message(err)}; nothing changed — run --resume again when ${plan.from} answers`,
          );
        }
        observed = seen.observed;
        if (seen.state === 'switched') {
          m.ctx.note(`${COMMITTING_STEP} had been applied (source forwards to ${facts.tunnel}): rolling forward`);
          await m.complete(COMMITTING_STEP, 0);
          await m.advance(COMMIT_POINT);
        } else if (seen.state === 'local') {
          m.ctx.note(`${COMMITTING_STEP} had not been applied (source entry still LOCAL): rolling back`);
          await m.rollBack(COMMITTING_STEP, `controller stopped during ${COMMITTING_STEP} (resumed: rolled back)`);
        } else {
          throw new ResumeUndecidedError(
            `source entry of ${opts.app} on ${plan.from} is ${observed}, neither LOCAL nor FORWARD(${facts.tunnel ?? '?'}): needs an operator; nothing changed`,
          );
        }
        break;
      }
    }
    return { ...m.result(), decision: decision.kind, ...(observed ? { observed } : {}) };
  } finally {
    await journal.close();
  }
}

function stripStored(p: Stored<PlanRecord>): PlanRecord {
  const { seq: _s, at: _a, ...plan } = p;
  return plan;
}
