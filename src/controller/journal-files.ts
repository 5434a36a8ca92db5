/**
 * The journal files of a state directory: reading one with what is wrong
 * with it, listing them newest first, and finding the one `--resume` of an
 * app must act on — never silently an older one when a newer one cannot be
 * read (it may be that app's last migration).
 */
import { lstatSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { decodeJournal, describeProblems, type DecodedJournal } from './journal-format.js';
import type { Stored } from './journal.js';

export const JOURNAL_SUFFIX = '.jsonl';

export function journalDir(stateDir: string): string {
  return join(stateDir, 'journal');
}

/** One journal file and what reading it found. */
export interface JournalFile {
  path: string;
  /** The journal id (the file name without its suffix). */
  id: string;
  decoded: DecodedJournal;
}

export function isDamaged(f: JournalFile): boolean {
  return f.decoded.problems.length > 0;
}

/** Apps a journal plans, as far as its valid lines tell. */
export function plannedApps(f: JournalFile): string[] {
  return f.decoded.records.flatMap((r) => (r.type === 'plan' ? [r.app] : []));
}

/** A journal that cannot be acted on: names the file and each problem by line. */
export class DamagedJournalError extends Error {
  override readonly name = 'DamagedJournalError';
  constructor(readonly file: JournalFile) {
    super(`journal ${file.path} is damaged: ${describeProblems(file.decoded)}`);
  }
}

function unreadable(path: string, reason: string): JournalFile {
  const id = idOf(path);
  return { path, id, decoded: { records: [], lines: [], problems: [{ line: 0, reason }], moreProblems: 0, keepBytes: 0, legacy: false } };
}

function idOf(path: string): string {
  return basename(path, JOURNAL_SUFFIX);
}

/** Read one journal file; problems (also "not a file", "cannot read") are in the answer, not thrown. */
export function inspectJournal(path: string): JournalFile {
  let bytes: Buffer;
  try {
    const st = lstatSync(path);
    // Never open anything but a regular file: a FIFO would block, a directory cannot be read.
    if (!st.isFile()) {
      const what = st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : 'a special file';
      return unreadable(path, `not a regular file (${what})`);
    }
    bytes = readFileSync(path);
  } catch (err) {
    return unreadable(path, `cannot read it: ${(err as Error).message}`);
  }
  const id = idOf(path);
  return { path, id, decoded: decodeJournal(bytes, id) };
}

/** The records of one journal; throws DamagedJournalError when it has any damage (a torn tail is not). */
export function readJournal(path: string): Stored[] {
  const f = inspectJournal(path);
  if (isDamaged(f)) throw new DamagedJournalError(f);
  return f.decoded.records;
}

/** Every journal of a state directory, newest first (none when there is no journal directory). */
export function listJournals(stateDir: string): JournalFile[] {
  const dir = journalDir(stateDir);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(JOURNAL_SUFFIX));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') throw new Error(`${dir} is not a directory: move it aside so journals can be kept there`);
    throw new Error(`cannot list the journals in ${dir}: ${(err as Error).message}`);
  }
  // Ids start with an ISO timestamp, so name order is creation order; mtime breaks ties.
  const mtime = (p: string): number => {
    try {
      return lstatSync(p).mtimeMs;
    } catch {
      return 0;
    }
  };
  return names
    .map((n) => ({ n, p: join(dir, n), m: mtime(join(dir, n)) }))
    .sort((a, b) => (a.n < b.n ? 1 : a.n > b.n ? -1 : b.m - a.m))
    .map((f) => inspectJournal(f.p));
}

export interface JournalSearch {
  /** The newest journal that reads cleanly and plans the app. */
  found?: JournalFile;
  /** Damaged journals newer than `found` (or than every journal, when none plans the app): any may be the app's. */
  damagedNewer: JournalFile[];
}

/** Where the app's last migration is written, and what stands in the way of trusting that. */
export function searchJournals(stateDir: string, app: string): JournalSearch {
  const damagedNewer: JournalFile[] = [];
  for (const f of listJournals(stateDir)) {
    if (isDamaged(f)) damagedNewer.push(f);
    else if (plannedApps(f).includes(app)) return { found: f, damagedNewer };
  }
  return { damagedNewer };
}

/**
 * The newest journal that plans `app`, or undefined when none does. Throws
 * DamagedJournalError when a damaged journal is newer: which app it was
 * about cannot be trusted, so an older journal cannot be assumed current.
 */
export function findJournal(stateDir: string, app: string): { path: string; records: Stored[]; decoded: DecodedJournal } | undefined {
  const { found, damagedNewer } = searchJournals(stateDir, app);
  if (damagedNewer[0]) throw new DamagedJournalError(damagedNewer[0]);
  return found ? { path: found.path, records: found.decoded.records, decoded: found.decoded } : undefined;
}
