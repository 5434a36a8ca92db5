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
 *
 * It acts only on a journal it can trust (journal-format.ts): the newest
 * one that plans the app, read without damage. A torn last line (the
 * controller died writing it; never acted on) is dropped and cut off. When
 * a damaged journal is newer than that one — it may be this app's last
 * migration — resume refuses (ResumeRefusedError), naming the file, each
 * problem by line, and the safe choices (`refusal.ts`); it never falls back
 * to an older journal on its own.
 */
import { type AgentConnector } from './agent-client.js';
import { type AnnounceHook, type AnnounceSpec, createAnnounceHook } from './announce.js';
import { Journal, acquireLock, type Facts, type OpenRecord, type Outcome, type PlanRecord, type Stored } from './journal.js';
import { inspectJournal, isDamaged, searchJournals } from './journal-files.js';
import { ResumeRefusedError, refusalText } from './refusal.js';
import { COMMITTING_STEP, COMMIT_POINT, Migration, STEPS, message, type MigrationObserver, type MigrationResult, type RestoredState, type Step } from './machine.js';
import type { ControllerMetrics } from './metrics.js';
import { switchState } from './steps.js';
import { DEFAULT_LEASE_TTL_MS, RunLeases } from './leases.js';
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
  /** The agents' lease on the app's name while resuming (default DEFAULT_LEASE_TTL_MS). */
  leaseTtlMs?: number;
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
  const search = searchJournals(opts.stateDir, opts.app);
  if (search.damagedNewer.length) throw new ResumeRefusedError(refusalText(opts.app, opts.stateDir, search));
  if (!search.found) throw new Error(`no journal of a migration of ${opts.app} in ${opts.stateDir}: nothing to resume`);
  const candidate = search.found;
  const first = candidate.decoded.records[0];
  if (first?.type !== 'open') throw new Error(`journal ${candidate.path} has no open record`); // decodeJournal already refuses this

  using _lock = acquireLock(opts.stateDir, opts.app, first.journal);
  // Read again under the lock: another controller may have resumed it in between.
  const file = inspectJournal(candidate.path);
  if (isDamaged(file)) throw new ResumeRefusedError(refusalText(opts.app, opts.stateDir, { damagedNewer: [file] }));
  if (!file.decoded.records.some((r) => r.type === 'plan' && r.app === opts.app)) throw new Error(`journal ${file.path} changed while it was read: run --resume again`);
  const records = file.decoded.records;
  const open = records[0] as Stored<OpenRecord>;
  const plan = records.find((r): r is Stored<PlanRecord> => r.type === 'plan' && r.app === opts.app) as Stored<PlanRecord>;
  const decision = decideResume(records, opts.app);
  const lastSeq = records.reduce((n, r) => Math.max(n, r.seq), 0);
  const journal = await Journal.reopen(file.path, open.journal, lastSeq, file.decoded.keepBytes);
  let leases: RunLeases | undefined;
  try {
    const m = new Migration(
      {
        journalId: open.journal,
        plan: stripStored(plan),
        source: opts.connect(plan.from),
        dest: opts.connect(plan.to),
        driver: (opts.createDriver ?? createDriver)(open.driver),
        announce: opts.createAnnounceHook?.(open.announce) ?? createAnnounceHook(open.announce, opts.connect),
        timing: open.timing,
        ...(open.preserve ? { preserve: open.preserve } : {}),
      },
      journal,
      opts.observe,
      opts.metrics,
      restoreState(records, opts.app),
    );
    const drainDeadline = journaledDrainDeadline(records, opts.app);
    if (drainDeadline !== undefined) m.ctx.drainDeadline = drainDeadline; // DRAIN_FLOWS waits only for what is left of it
    if (file.decoded.torn) {
      m.ctx.note(`journal ${file.path} line ${file.decoded.torn.line} was torn (the controller stopped while writing it; it was never acted on): cut off`);
    }
    if (file.decoded.legacy) {
      m.ctx.note(`journal ${file.path} is in the previous format (no checksums): its records were checked against the schema, edits cannot be detected`);
    }
    // The journal's id owns the app's leases: held by us before, ours again now (refused if another run holds
    // them). Taken before the first change, after the reads that decide or guard it (reads need no lease): a
    // resume refused by a guard has taken nothing.
    const takeLeases = async (): Promise<void> => {
      leases = RunLeases.of(open.journal, [plan], opts.connect, opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS, (msg) => m.ctx.note(msg));
      try {
        await leases.take({ renew: true }); // LeaseRefusedError: another run owns the app; nothing changed, exit 1
      } catch (err) {
        leases = undefined; // it holds nothing to give back
        throw err;
      }
      if (leases.lost !== undefined) {
        // an agent did not answer: resuming without the lease could undo another run's writes
        throw new ResumeUndecidedError(`cannot take the lease on ${opts.app} at its agents: ${leases.lost}; nothing changed — run --resume again when they answer`);
      }
      m.ctx.leases = leases;
    };
    if (decision.kind === 'roll-forward' || decision.kind === 'finish') await takeLeases();
    const facts = m.ctx.facts;
    let observed: string | undefined;
    switch (decision.kind) {
      case 'nothing':
        m.ctx.note(`migration ${open.journal} already ended ${decision.outcome}; nothing to do`);
        return { ...m.result(), outcome: decision.outcome, state: decision.outcome === 'done' ? 'DONE' : 'ROLLED_BACK', decision: decision.kind };
      case 'roll-back': {
        const restored = restoreState(records, opts.app);
        if (!restored.entered.includes(COMMITTING_STEP) && facts.original) observed = await sourceStillLocal(m, opts.app, plan);
        await takeLeases();
        await m.rollBack(decision.from ?? (STEPS[0] as Step), `${decision.error} (resumed: rolled back)`);
        break;
      }
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
        await takeLeases();
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
    await leases?.release();
    await journal.close();
  }
}

/**
 * Before undoing a migration the journal says never reached SWITCH, check
 * that the source still says so: its entry must be LOCAL, as PREPARE found
 * it. If it forwards, or is gone, the journal is behind what happened
 * (records lost, say a file cut at a line boundary, which no checksum
 * shows): rolling back would stop the only running copy. Refuse instead.
 */
async function sourceStillLocal(m: Migration, app: string, plan: PlanRecord): Promise<string> {
  let seen;
  try {
    seen = await switchState(m.ctx);
  } catch (err) {
    throw new ResumeUndecidedError(`cannot confirm that the source entry of ${app} on ${plan.from} is still LOCAL before rolling back: ${message(err)}; nothing changed — run --resume again when ${plan.from} answers`);
  }
  if (seen.state !== 'local') {
    throw new ResumeUndecidedError(
      `the journal says ${COMMITTING_STEP} of ${app} never began, but its source entry on ${plan.from} is ${seen.observed}: the journal is behind what happened (records lost?); ` +
        `nothing changed — check with routeshift status ${plan.from} ${plan.to} and finish by hand`,
    );
  }
  return seen.observed;
}

/** The deadline DRAIN_FLOWS journaled when it first started for this app (epoch ms), if it did. */
function journaledDrainDeadline(records: readonly Stored[], app: string): number | undefined {
  const enter = records.find((r) => r.type === 'enter' && r.app === app && r.state === 'DRAIN_FLOWS' && r.deadline !== undefined);
  return enter?.type === 'enter' && enter.deadline !== undefined ? Date.parse(enter.deadline) : undefined;
}

function stripStored(p: Stored<PlanRecord>): PlanRecord {
  const { seq: _s, at: _a, ...plan } = p;
  return plan;
}
