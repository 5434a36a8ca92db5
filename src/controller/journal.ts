/**
 * The migration journal and the per-application lock.
 *
 * A journal is one file of records per migration run (one app for
 * `migrate`, every app of a drain), under `<state-dir>/journal/`: one line
 * each, JSON behind a checksum (journal-format.ts), every record type and
 * its fields in one table (journal-schema.ts); reading them back is
 * journal-files.ts. A record reading back would refuse is never written.
 * Every record is written AND fsync'ed before the step it announces is applied:
 * `append()` resolves only once the line is on disk. Concurrent appends
 * (a drain advancing many apps at once) share one write + one fsync (group
 * commit), so durability does not cost one fsync per line per app.
 *
 * The lock is `<state-dir>/locks/<app>.lock`, created with O_EXCL and
 * holding the holder's PID, its start time and the journal id. A lock whose
 * holder is no longer that same process is stale and is taken over.
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { identify, isAlive } from '../os/process.js';
import { journalDir } from './journal-files.js';
import { encodeLine } from './journal-format.js';
import { recordProblem } from './journal-schema.js';
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

/**
 * --preserve-connections: at SWITCH the source entry becomes PRESERVE (TCP
 * flows from before stay on the source copy, new ones go to the
 * destination), and DRAIN_FLOWS waits for those old flows to end.
 */
export interface PreserveOptions {
  /** DRAIN_FLOWS gives up waiting after this long: STOP proceeds, the flows still alive are cut. */
  maxDrainMs: number;
  /** An old flow silent this long is taken as gone. */
  idleMs: number;
  /** After the client's FIN, a flow quiet this long is closed. */
  lingerMs: number;
  /** Time between two reads of the source's flow count. */
  pollMs: number;
}

export const DEFAULT_PRESERVE: PreserveOptions = { maxDrainMs: 60_000, idleMs: 30_000, lingerMs: 1_000, pollMs: 200 };

/** What DRAIN_FLOWS found (journaled with its `done`). */
export interface FlowDrainFacts {
  /** Old flows alive when the phase began. */
  atStart: number;
  /** Old flows still alive at the deadline: cut when the source copy stops. */
  cut: number;
  /** How long the phase waited. */
  waitedMs: number;
}

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
  /** Present when the run preserves connections (--preserve-connections). */
  preserve?: PreserveOptions;
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
  /** The entry generations this run wrote (DELIVER on the destination, SWITCH on the source): its rollback undoes only those. */
  generations?: { delivery?: number; switched?: number };
  /** DRAIN_FLOWS with --preserve-connections: old flows at its start and cut at its deadline. */
  flows?: FlowDrainFacts;
}

export type StepRecord =
  /**
   * About to apply `state` (written before anything is done). DRAIN_FLOWS with
   * --preserve-connections carries its `deadline` (ISO time: its first start
   * plus --max-drain), which a retry or a resume keeps.
   */
  | { type: 'enter'; app: string; state: Step; attempt?: number; deadline?: string }
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

  /**
   * Re-open an existing journal to continue it (resume). `keepBytes` is the
   * length of its complete lines: a torn tail beyond it is cut off (durably)
   * first, or the next record would be glued to it and damage the journal.
   */
  static async reopen(path: string, id: string, lastSeq: number, keepBytes?: number): Promise<Journal> {
    const j = new Journal(id, path);
    j.seq = lastSeq + 1;
    j.handle = await open(path, 'a');
    if (keepBytes !== undefined && (await j.handle.stat()).size > keepBytes) {
      await j.handle.truncate(keepBytes);
      await j.handle.sync();
    }
    return j;
  }

  /** Append one record; resolves once it is durable (fsync'ed). */
  append(rec: JournalRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.path} is closed`));
    const stored: Stored = { seq: this.seq, at: new Date().toISOString(), ...rec };
    const line = encodeLine(stored);
    // Never write what reading back would refuse (resume would then refuse a journal of ours): checked as it will be read.
    const problem = recordProblem(JSON.parse(line.slice(line.indexOf(' ') + 1)));
    if (problem) return Promise.reject(new Error(`not journaling a ${rec.type} record that could not be read back: ${problem}`));
    this.seq++;
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
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

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// Reading journals back lives in journal-files.ts; these are re-exported for the callers that only need them.
export { DamagedJournalError, findJournal, journalDir, readJournal } from './journal-files.js';

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
