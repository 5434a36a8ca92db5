/**
 * Leases: one owner per app name at a time (docs/agent-api.md, "Leases").
 * A migration leases its app's name on the source and destination agents
 * (owner = its journal id), renews the lease while it runs and releases it
 * at the end; while the name is leased, a write of the app or delivery
 * entry of that name is taken only from its owner. Unleased names stay
 * writable by anyone, without an owner.
 *
 * Leases live in this process's memory. A restarted agent has forgotten
 * them, so it keeps a note of how long the leases it granted may still run
 * (one small file beside its lock, under /run: it survives an agent
 * restart, not a reboot, which also empties bpffs). Until that moment has
 * passed — the restart grace — it grants renewals (`renew: true`, what a
 * holder's renewal timer sends), refuses new leases, takes writes that
 * carry an owner and refuses writes that carry none on names nobody has
 * leased again. Without such a note (no lease was live) there is no grace.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LeaseHeldError } from '../model/errors.js';
import type { LeaseBody, LeaseGrant, LeaseView } from '../model/entry.js';
import { MAX_LEASE_TTL_MS } from '../model/entry.js';
import { LOCK_DIR, agentLockName } from './lock.js';

/** The restart note of the agent of a pin directory: beside its lock. */
export function leaseNoteFile(pinDir: string, dir: string = LOCK_DIR): string {
  return join(dir, `leases-${agentLockName(pinDir).replace(/[^A-Za-z0-9_.-]/g, '_')}.json`);
}

interface Lease {
  owner: string;
  /** On the monotonic clock (`now`). */
  expiresAt: number;
}

export interface LeaseTableOptions {
  /** The restart note (see above); none: no grace after a restart. */
  noteFile?: string;
  /** Monotonic milliseconds (default performance.now): lease expiry. */
  now?: () => number;
  /** Wall-clock milliseconds (default Date.now): the restart note, read by the next process. */
  wallNow?: () => number;
}

/** What the agent's store asks before it stages an op: may `owner` write `name`? */
export interface NameGuard {
  /** Throws LeaseHeldError (409) naming the holder when not; `field` names the op in the message. */
  checkWrite(name: string, owner: string | undefined, field: string): void;
}

/** Who the restart grace stands for in a refusal: leases the agent no longer knows. */
export const RESTART_HOLDER = '(leases from before the agent restarted)';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export class LeaseTable implements NameGuard {
  readonly #leases = new Map<string, Lease>();
  readonly #now: () => number;
  readonly #wallNow: () => number;
  readonly #noteFile: string | undefined;
  /** Monotonic end of the restart grace (0: none). */
  readonly #graceUntil: number;
  /** Wall-clock end of the leases the note says may run (what the note file holds). */
  #noted = 0;

  constructor(opts: LeaseTableOptions = {}) {
    this.#now = opts.now ?? (() => performance.now());
    this.#wallNow = opts.wallNow ?? (() => Date.now());
    this.#noteFile = opts.noteFile;
    const until = this.#readNote();
    const left = Math.min(MAX_LEASE_TTL_MS, until - this.#wallNow());
    this.#graceUntil = left > 0 ? this.#now() + left : 0;
    if (left > 0) this.#noted = until;
  }

  /** Milliseconds of restart grace left (0: none). */
  get graceMs(): number {
    return Math.max(0, this.#graceUntil - this.#now());
  }

  /** How many names are leased now. */
  get size(): number {
    this.#sweep();
    return this.#leases.size;
  }

  /** Lease every name to the owner for ttlMs, or none of them: 409 naming the first holder in the way. */
  grant(req: LeaseBody): LeaseGrant {
    const now = this.#now();
    const grace = this.graceMs;
    for (const [i, name] of req.names.entries()) {
      const l = this.#live(name, now);
      if (l && l.owner !== req.owner) {
        throw new LeaseHeldError(
          `names[${i}]: ${JSON.stringify(name)} is leased by ${JSON.stringify(l.owner)} for ${seconds(l.expiresAt - now)} more; nothing was leased`,
          { name, owner: l.owner, remainingMs: Math.round(l.expiresAt - now) },
        );
      }
      if (!l && grace > 0 && !req.renew) {
        throw new LeaseHeldError(
          `names[${i}]: ${JSON.stringify(name)} may still be leased by a holder from before this agent restarted: ` +
            `only renewals are granted for ${seconds(grace)} more; nothing was leased`,
          { name, owner: RESTART_HOLDER, remainingMs: Math.round(grace) },
        );
      }
    }
    const expiresAt = now + req.ttlMs;
    for (const name of req.names) this.#leases.set(name, { owner: req.owner, expiresAt });
    this.#note(this.#wallNow() + req.ttlMs);
    return { owner: req.owner, names: req.names.length, ttlMs: req.ttlMs };
  }

  /** Whether `owner` holds a live lease on every one of `names` (a grant would only renew them). */
  holdsAll(owner: string, names: readonly string[]): boolean {
    const now = this.#now();
    return names.every((name) => this.#live(name, now)?.owner === owner);
  }

  /** Give up the owner's leases (of `names`, or all); names it does not hold are left alone. Returns how many went. */
  release(owner: string, names?: readonly string[]): number {
    let n = 0;
    const drop = (name: string): void => {
      const l = this.#leases.get(name);
      if (l?.owner === owner && this.#leases.delete(name)) n++;
    };
    if (names) for (const name of names) drop(name);
    else for (const name of [...this.#leases.keys()]) drop(name);
    this.#sweep();
    if (this.#leases.size === 0 && this.graceMs === 0) this.#clearNote();
    return n;
  }

  list(): LeaseView[] {
    const now = this.#now();
    this.#sweep();
    return [...this.#leases]
      .map(([name, l]) => ({ name, owner: l.owner, remainingMs: Math.round(l.expiresAt - now) }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  checkWrite(name: string, owner: string | undefined, field: string): void {
    if (this.#leases.size === 0 && this.#graceUntil === 0) return; // the usual case: nothing leased
    const now = this.#now();
    const at = field ? `${field}: ` : '';
    const l = this.#live(name, now);
    if (l) {
      if (l.owner === owner) return;
      const who = owner === undefined ? 'a write without an owner' : `a write for ${JSON.stringify(owner)}`;
      throw new LeaseHeldError(`${at}${JSON.stringify(name)} is leased by ${JSON.stringify(l.owner)} for ${seconds(l.expiresAt - now)} more: ${who} is refused; nothing was changed`, {
        name,
        owner: l.owner,
        remainingMs: Math.round(l.expiresAt - now),
      });
    }
    const grace = this.#graceUntil - now;
    if (grace > 0 && owner === undefined) {
      throw new LeaseHeldError(
        `${at}${JSON.stringify(name)} may still be leased by a holder from before this agent restarted: writes without an owner are refused for ${seconds(grace)} more; nothing was changed`,
        { name, owner: RESTART_HOLDER, remainingMs: Math.round(grace) },
      );
    }
  }

  #live(name: string, now: number): Lease | undefined {
    const l = this.#leases.get(name);
    if (l && l.expiresAt <= now) {
      this.#leases.delete(name);
      return undefined;
    }
    return l;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [name, l] of this.#leases) if (l.expiresAt <= now) this.#leases.delete(name);
  }

  #readNote(): number {
    if (!this.#noteFile) return 0;
    try {
      const until = (JSON.parse(readFileSync(this.#noteFile, 'utf8')) as { until?: unknown }).until;
      return typeof until === 'number' && Number.isFinite(until) ? until : 0;
    } catch {
      return 0; // no note (no lease was live), or unreadable: no grace
    }
  }

  /** Note that leases may run until `until` (wall clock), when that is later than noted. */
  #note(until: number): void {
    if (!this.#noteFile || until <= this.#noted) return;
    const tmp = `${this.#noteFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ until }));
    renameSync(tmp, this.#noteFile);
    this.#noted = until;
  }

  #clearNote(): void {
    if (!this.#noteFile || this.#noted === 0) return;
    rmSync(this.#noteFile, { force: true });
    this.#noted = 0;
  }
}
