/**
 * The leases a run of the protocol holds on its apps' names at their
 * agents (docs/agent-api.md, "Leases"): taken before anything is changed,
 * all or none, one agent after the other in URL order — another
 * controller's run of the same app is refused there, naming the holder —,
 * renewed on a timer while the run goes on, given back when it ends. The owner is the run's journal id, so `--resume` holds them
 * as its own. One request per agent for all the names it holds, whatever
 * their number (a drain of a thousand apps is one request per agent).
 *
 * When a renewal is refused (another owner took a name: the lease had
 * lapsed), or no renewal of an agent succeeded for a whole TTL, the leases
 * are lost: the run takes no step after that (`check()`), and its undo
 * writes are refused by the agent if another owner holds the name now.
 */
import { AgentRefusedError, type AgentApi, type AgentConnector } from './agent-client.js';
import { message } from './machine.js';

/** How long a lease runs unless renewed (`--lease-ttl-ms`). */
export const DEFAULT_LEASE_TTL_MS = 15_000;
/** Renewals per TTL: two may fail before a lease lapses. */
const RENEWALS_PER_TTL = 3;

/** Another owner holds a name (or the agent's restart grace refuses a new lease): nothing was changed. */
export class LeaseRefusedError extends Error {
  override readonly name = 'LeaseRefusedError';
}

/** The leases were lost while the run went on: it takes no further step. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

interface Holding {
  agent: AgentApi;
  names: string[];
  /** performance.now() of the last grant or renewal this agent answered. */
  renewedAt: number;
}

export class RunLeases {
  readonly #holdings: Holding[];
  #timer: NodeJS.Timeout | undefined;
  #lost: string | undefined;
  #renewing: Promise<void> | undefined;

  private constructor(
    readonly owner: string,
    holdings: { agent: AgentApi; names: string[] }[],
    readonly ttlMs: number,
    private readonly note: (message: string) => void,
  ) {
    this.#holdings = holdings.map((h) => ({ ...h, renewedAt: 0 }));
  }

  /** The names of `apps`, on their source and destination agents (one holding per agent). */
  static of(
    owner: string,
    apps: readonly { app: string; from: string; to: string }[],
    connect: AgentConnector,
    ttlMs: number = DEFAULT_LEASE_TTL_MS,
    note: (message: string) => void = () => {},
  ): RunLeases {
    const byUrl = new Map<string, { agent: AgentApi; names: Set<string> }>();
    for (const a of apps) {
      for (const url of [a.from, a.to]) {
        const agent = connect(url);
        let h = byUrl.get(agent.url);
        if (!h) byUrl.set(agent.url, (h = { agent, names: new Set() }));
        h.names.add(a.app);
      }
    }
    return new RunLeases(owner, [...byUrl.values()].map((h) => ({ agent: h.agent, names: [...h.names] })), ttlMs, note);
  }

  /**
   * Take every lease, all or none, then keep them renewed. `renew`: the
   * owner held them before (a resumed run), which an agent that restarted
   * meanwhile honours during its restart grace. Throws LeaseRefusedError
   * when another owner holds one; when an agent does not answer, none is
   * held and `lost` says why (the run's first step fails with it).
   */
  async take(o: { renew?: boolean } = {}): Promise<void> {
    // One agent after the other, in URL order: two runs racing for the same apps meet at the same
    // agent first, so exactly one of them is refused there (taken in parallel, each could win one
    // agent and both be refused).
    const order = [...this.#holdings].sort((a, b) => (a.agent.url < b.agent.url ? -1 : a.agent.url > b.agent.url ? 1 : 0));
    const taken: Holding[] = [];
    for (const h of order) {
      const what = h.names.length === 1 ? h.names[0] : `${h.names.length} apps`;
      try {
        await this.#grant(h, o.renew === true);
        taken.push(h);
      } catch (err) {
        await this.#giveBack(taken);
        if (err instanceof AgentRefusedError && err.status === 409) {
          throw new LeaseRefusedError(`refused before anything was changed: another migration owns ${what} at agent ${h.agent.url}: ${err.agentMessage ?? err.message}`);
        }
        // No answer (or another failure): the run cannot hold the app, so it takes no step — its
        // first one fails with this (a journaled rollback with nothing to undo, as an agent
        // unreachable at PREPARE always was).
        this.#lost = `${message(err)} (taking the lease on ${what})`;
        return;
      }
    }
    const every = Math.max(50, Math.floor(this.ttlMs / RENEWALS_PER_TTL));
    this.#timer = setInterval(() => {
      this.#renewing ??= this.#renewAll().finally(() => (this.#renewing = undefined));
    }, every);
    this.#timer.unref(); // the run's own work keeps the process alive, not this
  }

  /** Throws once the leases were lost (a step must not be taken). */
  check(): void {
    if (this.#lost) throw new LeaseLostError(this.#lost);
  }

  get lost(): string | undefined {
    return this.#lost;
  }

  /** Stop renewing and give every lease back (best effort: an agent that does not answer lets them lapse). */
  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#renewing;
    await this.#giveBack(this.#holdings);
  }

  async #grant(h: Holding, renew: boolean): Promise<void> {
    const t = performance.now();
    await h.agent.takeLeases({ owner: this.owner, ttlMs: this.ttlMs, names: h.names, ...(renew ? { renew: true } : {}) });
    h.renewedAt = t;
  }

  async #renewAll(): Promise<void> {
    if (this.#lost) return;
    await Promise.all(
      this.#holdings.map(async (h) => {
        try {
          await this.#grant(h, true);
        } catch (err) {
          if (err instanceof AgentRefusedError && err.status === 409) {
            this.#lose(`the lease at ${h.agent.url} was lost: ${err.agentMessage ?? err.message}`);
          } else if (performance.now() - h.renewedAt >= this.ttlMs) {
            this.#lose(`no renewal of the lease at ${h.agent.url} succeeded for ${this.ttlMs} ms (${message(err)}): it has lapsed`);
          }
        }
      }),
    );
  }

  #lose(why: string): void {
    if (this.#lost) return;
    this.#lost = why;
    this.note(`${why}: no further step is taken`);
  }

  async #giveBack(holdings: readonly Holding[]): Promise<void> {
    await Promise.all(
      holdings.map(async (h) => {
        try {
          await h.agent.releaseLeases(this.owner, h.names);
        } catch (err) {
          this.note(`could not give back the lease at ${h.agent.url} (${message(err)}): it lapses within ${this.ttlMs} ms`);
        }
      }),
    );
  }
}
