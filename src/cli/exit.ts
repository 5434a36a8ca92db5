/**
 * The CLI's exit codes, and the one table from how a command ended to its
 * code. The contract (README.md, "CLI"): 0 done, 1 failed and rolled back,
 * 2 bad usage, 3 failed and needs attention. A command that fails before it
 * changed anything (an agent unreachable, the app locked by another
 * controller, nothing to resume) is 1 too: failed, nothing left to undo.
 * `--resume` refusing a damaged journal changes nothing but leaves a state
 * only an operator can judge: 3.
 */
import { AgentRefusedError } from '../controller/agent-client.js';
import type { DrainResult } from '../controller/drain.js';
import type { Outcome } from '../controller/journal.js';
import { DamagedJournalError } from '../controller/journal-files.js';
import { ResumeRefusedError } from '../controller/refusal.js';
import { ResumeUndecidedError } from '../controller/resume.js';
import { FieldError } from '../model/errors.js';
import { EntryRollbackError, UsageError } from './common.js';

export const ExitCode = {
  Ok: 0,
  /** Failed, and everything was rolled back (or nothing had changed). */
  Failed: 1,
  Usage: 2,
  /** Failed, and the state needs an operator's attention. */
  NeedsAttention: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** How a migration ended, or a drain over all its apps. */
const OUTCOMES: Readonly<Record<Outcome | DrainResult['outcome'], ExitCode>> = {
  done: ExitCode.Ok,
  'rolled-back': ExitCode.Failed,
  // some apps moved, the others rolled back: every app is where it can run
  partial: ExitCode.Failed,
  failed: ExitCode.NeedsAttention,
};

interface ErrorRow {
  matches(err: unknown): boolean;
  code: ExitCode;
}

function row<E extends Error>(cls: abstract new (...args: never[]) => E, code: ExitCode, also: (e: E) => boolean = () => true): ErrorRow {
  return { matches: (err) => err instanceof cls && also(err), code };
}

/** An error that ends a command, by its class: the first row that matches; any other error is 1. */
const ERRORS: readonly ErrorRow[] = [
  // bad flags or arguments (yargs, and every command's own checks)
  row(UsageError, ExitCode.Usage),
  // input the model's rules refuse before it is sent (an app name)
  row(FieldError, ExitCode.Usage),
  // input the agent refuses as malformed, naming the field (`app add` with a --dev or --mac it cannot take)
  row(AgentRefusedError, ExitCode.Usage, (e) => e.status === 400),
  // `--resume` cannot tell which way to go (SWITCH in doubt and the source unreachable…): nothing changed, an operator must look
  row(ResumeUndecidedError, ExitCode.NeedsAttention),
  // `--resume` will not act on a damaged journal (nor fall back to an older one): nothing changed, an operator must look
  row(ResumeRefusedError, ExitCode.NeedsAttention),
  row(DamagedJournalError, ExitCode.NeedsAttention),
  // `app add --announce` could neither announce nor take its entry back: the entry is left as written
  row(EntryRollbackError, ExitCode.NeedsAttention),
];

export function exitCodeOfError(err: unknown): ExitCode {
  return ERRORS.find((r) => r.matches(err))?.code ?? ExitCode.Failed;
}

export function exitCodeOfOutcome(outcome: Outcome | DrainResult['outcome']): ExitCode {
  return OUTCOMES[outcome];
}
