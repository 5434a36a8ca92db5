/**
 * The migration journal and the per-application lock.
 *
 * A journal is one file of JSON lines per migration run (one app for
 * `migrate`, every app of a drain), under `<state-dir>/journal/`. Every
 * record is written AND fsync'ed before the step it announces is applied:
 * `append()` resolves only once the line is on disk. Concurrent appends
 * (a drain advancing many apps at once) share one write + one fsync (group
 * commit), so durability does not cost one fsync per line per app.
 *
 * The lock is `<state-dir>/locks/<app>.lock`, created with O_EXCL and
 * holding the holder's PID, its start time and the journal id. A lock whose
 * holder is no longer that same process is stale and is taken over.
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { identify, isAlive } from '../os/process.js';
import type { DriverSpec } from '../workload/driver.js';
import type { App } from './agent-client.js';
import type { AnnounceSpec } from './announce.js';
import type { Step } from './machine.js';

export const DEFAULT_STATE_DIR = '/var/lib/routeshift';

export interface Timing {
  /** READY gives up after this long. */
  readyTimeoutMs: number;
  /** Interval between readiness probes. */
  probeIntervalMs: number;
  /** After SWITCH, before stopping the source app: packets already queued to it are still served. */
  stopGraceMs: number;
  /** After the announce hook, before the source entry is removed: packets still routed to A get forwarded. */
  announceGraceMs: number;
  /** Attempts of a step after SWITCH before giving up with "needs attention". */
  forwardAttempts: number;
}

export const DEFAULT_TIMING: Timing = {
  readyTimeoutMs: 10_000,
  probeIntervalMs: 50,
  stopGraceMs: 500,
  announceGraceMs: 500,
  forwardAttempts: 3,
};

/** What a journal says about the whole run (first line). */
export interface OpenRecord {
  type: 'open';
  journal: string;
  kind: 'migrate' | 'drain';
  pid: number;
  host: string;
  driver: DriverSpec;
  announce: AnnounceSpec;
  timing: Timing;
}

/** One app's migration: where from, where to. */
export interface PlanRecord {
  type: 'plan';
  app: string;
  from: string;
  to: string;
  /** Position of `to` in the destination list (drivers' {index}). */
  toIndex: number;
  destDev: string;
  destMac?: string;
}

/** Facts learned by a step that later steps or a rollback need. */
export interface Facts {
  /** The source entry as it was before the migration (what rollback restores). */
  original?: App;
  /** The destination's tunnel address for this app's address family. */
  tunnel?: string;
}

export type StepRecord =
  /** About to apply `state` (written before anything is done). */
  | { type: 'enter'; app: string; state: Step; attempt?: number }
  /** `state` was applied. */
  | { type: 'done'; app: string; state: Step; ms: number; facts?: Facts }
  /** Rolling back from `from` because of `error`. */
  | { type: 'rollback'; app: string; from: Step; error: string }
  /** About to undo `state`. */
  | { type: 'undo'; app: string; state: Step }
  | { type: 'undone'; app: string; state: Step; ms: number }
  /** The app's migration ended. `direction` says which way a "failed" one was going, for --resume. */
  | { type: 'end'; app: string; outcome: Outcome; direction?: 'forward' | 'back'; error?: string };

export type Outcome = 'done' | 'rolled-back' | 'failed';

export type JournalRecord = OpenRecord | PlanRecord | StepRecord;

/** A record as stored: with sequence number and wall-clock time. */
export type Stored<R extends JournalRecord = JournalRecord> = R & { seq: number; at: string };

export class Journal {
  private handle: FileHandle | undefined;
  private seq = 0;
  private queue: { line: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly id: string,
    readonly path: string,
  ) {}

  /**
   * Create a new journal file (and make its directory entry durable too).
   * Take the app locks with the id first: a refused run must leave no
   * journal behind, or --resume would find it.
   */
  static async create(stateDir: string, id: string): Promise<Journal> {
    const dir = journalDir(stateDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const j = new Journal(id, join(dir, `${id}.jsonl`));
    j.handle = await open(j.path, 'wx', 0o600);
    fsyncDir(dir);
    return j;
  }

  /** Re-open an existing journal to continue it (resume). */
  static async reopen(path: string, id: string, lastSeq: number): Promise<Journal> {
    const j = new Journal(id, path);
    j.seq = lastSeq + 1;
    j.handle = await open(path, 'a');
    return j;
  }

  /** Append one record; resolves once it is durable (fsync'ed). */
  append(rec: JournalRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.path} is closed`));
    const stored = { seq: this.seq++, at: new Date().toISOString(), ...rec };
    return new Promise((resolve, reject) => {
      this.queue.push({ line: JSON.stringify(stored) + '\n', resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length) {
        // Everything queued while the previous fsync ran goes out in one write + one fsync.
        const batch = this.queue;
        this.queue = [];
        try {
          const h = this.handle;
          if (!h) throw new Error('journal not open');
          await h.write(batch.map((b) => b.line).join(''));
          await h.sync();
          for (const b of batch) b.resolve();
        } catch (err) {
          const e = new Error(`cannot write journal ${this.path}: ${(err as Error).message}`);
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    await this.handle?.close();
    this.handle = undefined;
  }
}

/** A journal id: sortable by creation time, unique per process. */
export function newJournalId(label: string): string {
  return `${new Date().toISOString().replace(/[:.]/g, '-')}-${label}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
}

export function journalDir(stateDir: string): string {
  return join(stateDir, 'journal');
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Read a journal file. A torn last line (the controller died mid-write; the
 * record was never acknowledged, so its step was never applied) is ignored;
 * a corrupt line anywhere else is an error.
 */
export function readJournal(path: string): Stored[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: Stored[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Stored);
    } catch {
      const isLast = lines.slice(i + 1).every((l) => !l);
      if (isLast) break;
      throw new Error(`journal ${path} line ${i + 1} is corrupt`);
    }
  }
  return out;
}

/** The newest journal that has a plan for `app`, or undefined. */
export function findJournal(stateDir: string, app: string): { path: string; records: Stored[] } | undefined {
  const dir = journalDir(stateDir);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.jsonl'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // Ids start with an ISO timestamp, so name order is creation order; mtime breaks ties.
  const sorted = names
    .map((n) => ({ n, p: join(dir, n), m: statSync(join(dir, n)).mtimeMs }))
    .sort((a, b) => (a.n < b.n ? 1 : a.n > b.n ? -1 : b.m - a.m));
  for (const f of sorted) {
    const records = readJournal(f.p);
    if (records.some((r) => r.type === 'plan' && r.app === app)) return { path: f.p, records };
  }
  return undefined;
}

// ---------------------------------------------------------------- the lock

interface LockContent {
  pid: number;
  startTime: string;
  host: string;
  journal: string;
  since: string;
}

export class LockHeldError extends Error {
  override readonly name = 'LockHeldError';
  constructor(
    readonly app: string,
    readonly holder: LockContent,
  ) {
    super(
      `${app} is being migrated by another controller: pid ${holder.pid} on ${holder.host} since ${holder.since} (journal ${holder.journal}); ` +
        `wait for it, or if that process is gone run with --resume`,
    );
  }
}

export class AppLock {
  private released = false;
  constructor(
    readonly app: string,
    readonly path: string,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    rmSync(this.path, { force: true });
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

export function lockPath(stateDir: string, app: string): string {
  return join(stateDir, 'locks', `${app}.lock`);
}

/**
 * Take the exclusive lock of one app. Throws LockHeldError naming the holder
 * when another live process has it. A stale lock (holder dead, or its PID
 * now belongs to another process) is taken over — safely against a second
 * controller doing the same at the same moment, see below.
 */
export function acquireLock(stateDir: string, app: string, journalId: string): AppLock {
  const path = lockPath(stateDir, app);
  mkdirSync(join(stateDir, 'locks'), { recursive: true, mode: 0o700 });
  const me = identify(process.pid);
  if (!me) throw new Error('cannot read /proc/self/stat');
  const content: LockContent = { pid: me.pid, startTime: me.startTime, host: hostname(), journal: journalId, since: new Date().toISOString() };
  const text = JSON.stringify(content) + '\n';
  // Write the full content under a private name, then link it into place:
  // link() fails with EEXIST if the lock exists, and the lock never exists
  // half-written. No fsync: a lock only has to survive its holder, not the
  // machine — after a reboot every holder is dead and an unreadable lock is stale.
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(tmp, path);
        return new AppLock(app, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = readLock(path);
      if (holder && holderAlive(holder)) throw new LockHeldError(app, holder);
      // Stale. Move it aside under a unique name; only if what we moved is
      // still the stale lock we judged do we drop it. If another controller
      // replaced it in between, we put it back (link, never overwriting).
      const aside = `${path}.stale.${process.pid}.${attempt}`;
      try {
        renameSync(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const moved = readLock(aside);
      if (moved && holderAlive(moved)) {
        try {
          linkSync(aside, path);
        } catch {
          /* someone holds it again: the next round reports them */
        }
      }
      rmSync(aside, { force: true });
    }
    const holder = readLock(path);
    if (holder) throw new LockHeldError(app, holder);
    throw new Error(`cannot take lock ${path}: contended`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readLock(path: string): LockContent | undefined {
  try {
    const c = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockContent>;
    if (typeof c.pid !== 'number') return undefined;
    return { pid: c.pid, startTime: String(c.startTime ?? ''), host: String(c.host ?? '?'), journal: String(c.journal ?? '?'), since: String(c.since ?? '?') };
  } catch {
    // Unreadable or half-written by an old version: treat as stale.
    return undefined;
  }
}

function holderAlive(c: LockContent): boolean {
  // A lock from another machine (shared state dir) cannot be judged from here: assume alive.
  if (c.host !== hostname()) return true;
  return isAlive({ pid: c.pid, startTime: c.startTime });
}
