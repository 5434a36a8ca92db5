/**
 * Migrations whose journal shows no successful end: interrupted ones (no
 * `end` record) and ones that ended "failed — needs attention". `status`
 * lists them so an operator knows what to `--resume`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { journalDir, readJournal, type Stored } from './journal.js';

export interface Unfinished {
  app: string;
  journal: string;
  from: string;
  to: string;
  /** The last state entered (or "rolling back"). */
  state: string;
  /** 'failed' when it ended needing attention; absent when interrupted. */
  outcome?: 'failed';
}

export function unfinishedMigrations(stateDir: string): Unfinished[] {
  let names: string[];
  try {
    names = readdirSync(journalDir(stateDir)).filter((n) => n.endsWith('.jsonl')).sort();
  } catch {
    return [];
  }
  // Newest journal per app wins: an older interrupted run that was since resumed is not "unfinished".
  const latest = new Map<string, Unfinished | null>();
  for (const n of names.reverse()) {
    let records: Stored[];
    try {
      records = readJournal(join(journalDir(stateDir), n));
    } catch {
      continue;
    }
    const id = n.replace(/\.jsonl$/, '');
    for (const r of records) {
      if (r.type !== 'plan' || latest.has(r.app)) continue;
      const mine = records.filter((x) => 'app' in x && x.app === r.app);
      const end = [...mine].reverse().find((x) => x.type === 'end');
      if (end && end.type === 'end' && end.outcome !== 'failed') {
        latest.set(r.app, null);
        continue;
      }
      const lastEnter = [...mine].reverse().find((x) => x.type === 'enter');
      const rolling = mine.some((x) => x.type === 'rollback');
      latest.set(r.app, {
        app: r.app,
        journal: id,
        from: r.from,
        to: r.to,
        state: rolling ? 'rolling back' : lastEnter && lastEnter.type === 'enter' ? lastEnter.state : 'not started',
        ...(end ? { outcome: 'failed' as const } : {}),
      });
    }
  }
  return [...latest.values()].filter((u): u is Unfinished => u !== null);
}
