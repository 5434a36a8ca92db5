/**
 * What the journals of a state directory say is not finished: interrupted
 * migrations (no `end` record), ones that ended "failed — needs attention",
 * and journals that cannot be trusted (damaged), with what is wrong. `status`
 * lists them so an operator knows what to `--resume`, and what `--resume`
 * would refuse.
 */
import { describeProblems, type JournalProblem } from './journal-format.js';
import { isDamaged, listJournals, plannedApps, type JournalFile } from './journal-files.js';

export interface Unfinished {
  app: string;
  journal: string;
  from: string;
  to: string;
  /** The last state entered (or "rolling back"). */
  state: string;
  /** 'failed' when it ended needing attention; absent when interrupted. */
  outcome?: 'failed';
  /** Written by the previous journal format (no checksums: edits cannot be detected). */
  legacy?: true;
  /** A damaged journal newer than this one: `--resume` refuses until it is moved aside. */
  blockedBy?: string;
}

export interface DamagedJournal {
  journal: string;
  path: string;
  /** "line 4: checksum mismatch…; …" */
  reason: string;
  problems: JournalProblem[];
  /** Apps its valid lines plan (its damaged lines may name others). */
  apps: string[];
}

export interface JournalReport {
  unfinished: Unfinished[];
  damaged: DamagedJournal[];
}

export function journalReport(stateDir: string): JournalReport {
  const damaged: DamagedJournal[] = [];
  // Newest journal per app wins: an older interrupted run that was since resumed is not "unfinished".
  const latest = new Map<string, Unfinished | null>();
  for (const f of listJournals(stateDir)) {
    if (isDamaged(f)) {
      damaged.push({ journal: f.id, path: f.path, reason: describeProblems(f.decoded), problems: f.decoded.problems, apps: plannedApps(f) });
      continue;
    }
    for (const app of plannedApps(f)) {
      if (latest.has(app)) continue;
      const u = unfinishedIn(f, app);
      latest.set(app, u && damaged[0] ? { ...u, blockedBy: damaged[0].journal } : u);
    }
  }
  return { unfinished: [...latest.values()].filter((u): u is Unfinished => u !== null), damaged };
}

export function unfinishedMigrations(stateDir: string): Unfinished[] {
  return journalReport(stateDir).unfinished;
}

/** The app's migration in one (clean) journal, or null when it ended done or rolled back. */
function unfinishedIn(f: JournalFile, app: string): Unfinished | null {
  const records = f.decoded.records;
  const plan = records.find((r) => r.type === 'plan' && r.app === app);
  if (!plan || plan.type !== 'plan') return null;
  const mine = records.filter((x) => x.type !== 'open' && x.app === app);
  const end = [...mine].reverse().find((x) => x.type === 'end');
  if (end && end.type === 'end' && end.outcome !== 'failed') return null;
  const lastEnter = [...mine].reverse().find((x) => x.type === 'enter');
  const rolling = mine.some((x) => x.type === 'rollback');
  return {
    app,
    journal: f.id,
    from: plan.from,
    to: plan.to,
    state: rolling ? 'rolling back' : lastEnter && lastEnter.type === 'enter' ? lastEnter.state : 'not started',
    ...(end ? { outcome: 'failed' as const } : {}),
    ...(f.decoded.legacy ? { legacy: true as const } : {}),
  };
}
