/**
 * The host's BGP announcements, through the host's BIRD: the agent owns one
 * include file of BIRD's configuration holding two static protocols (one
 * per address family) with a blackhole /32 (/128) route per announced
 * address, and after every change rewrites it and asks BIRD to reload its
 * configuration over the control socket. BIRD's BGP sessions, filters and
 * peers are the operator's; they export these protocols' routes
 * (`export where proto = "routeshift4"`), and must not export them to the
 * kernel (the blackhole is only what BGP announces, never a route here).
 *
 * The file is the state: the agent reads what is announced back from it at
 * start, so a restarted agent (or one whose host rebooted) knows what BIRD
 * announces. A change is applied only when BIRD took it — the new
 * configuration loaded and the routes in its table as written — otherwise
 * the previous file is put back and the request fails, naming BIRD's reason.
 * Changes are serialized; each is one rewrite and one reconfiguration, so a
 * drain of many apps costs one.
 */
import { readFileSync } from 'node:fs';
import { writeFileDurably } from '../os/files.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { canonicalAddress } from '../model/address.js';
import { type AnnouncementBatch, type AnnouncementList, type AnnouncementView, prefixOf } from '../model/announcement.js';
import { parseName } from '../model/entry.js';
import { NotFoundError } from '../model/errors.js';
import { BirdControl, BirdError } from './bird-control.js';

export interface BgpOptions {
  /** BIRD's control socket. */
  socket: string;
  /** The file of BIRD's configuration this agent owns (BIRD's config includes it). */
  include: string;
  /** Name stem of the static protocols: STEM4 and STEM6. */
  protocol: string;
  /** How long BIRD may take to show a change in its table (default 5000 ms). */
  settleMs?: number;
}

export const DEFAULT_BIRD_PROTOCOL = 'routeshift';
const PROTOCOL_RE = /^[A-Za-z_][A-Za-z0-9_]{0,30}$/;
const HEADER = '# routeshift agent: the apps this host announces over BGP. Rewritten by the agent on every change; do not edit.';
const STATE_RE = /^# announce (\S+) (\S+)$/;

export class BgpAnnouncer {
  readonly #bird: BirdControl;
  readonly #protocols: { v4: string; v6: string };
  /** name → canonical address, as in the file. */
  #state: Map<string, string>;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly options: BgpOptions,
    state: Map<string, string>,
    private readonly log: Logger,
  ) {
    this.#bird = new BirdControl(options.socket);
    this.#protocols = { v4: `${options.protocol}4`, v6: `${options.protocol}6` };
    this.#state = state;
  }

  /**
   * Read the include file (create it, empty, when absent, so that BIRD's
   * `include` finds it). BIRD is not needed yet: it may start after the agent.
   */
  static open(options: BgpOptions, log: Logger): BgpAnnouncer {
    if (!PROTOCOL_RE.test(options.protocol)) {
      throw new Error(`--bird-protocol ${JSON.stringify(options.protocol)}: a BIRD symbol (letters, digits, _; at most 31 characters, not starting with a digit)`);
    }
    let text: string | undefined;
    try {
      text = readFileSync(options.include, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`--bird-include ${options.include}: ${(err as Error).message}`);
    }
    const state = text === undefined ? new Map<string, string>() : parseState(text, options.include);
    const a = new BgpAnnouncer(options, state, log);
    if (text === undefined) a.#write(a.#render(state));
    return a;
  }

  list(): AnnouncementList {
    return {
      announcements: [...this.#state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, address]) => view(name, address)),
      bird: { socket: this.options.socket, include: this.options.include, protocols: this.#protocols },
    };
  }

  get(name: string): AnnouncementView {
    const address = this.#state.get(name);
    if (address === undefined) throw new NotFoundError(`no announcement ${name}`);
    return view(name, address);
  }

  /** Announce and withdraw in one reconfiguration; withdrawing what is not announced is no change. */
  apply(batch: AnnouncementBatch): Promise<{ announced: number; withdrawn: number }> {
    const run = this.#queue.then(() => this.#apply(batch));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #apply(batch: AnnouncementBatch): Promise<{ announced: number; withdrawn: number }> {
    const started = performance.now();
    const next = new Map(this.#state);
    let withdrawn = 0;
    for (const name of batch.withdraw) if (next.delete(name)) withdrawn++;
    for (const { name, address } of batch.announce) next.set(name, address);
    const before = this.#render(this.#state);
    const after = this.#render(next);
    // A request that changes nothing touches nothing (a retried announce, a withdraw of what is not announced).
    if (after === before) return { announced: batch.announce.length, withdrawn };
    this.#write(after);
    try {
      await this.#reconfigure(next);
    } catch (err) {
      // Back to the previous file, and BIRD to it if it loaded the new one (best effort: BIRD may be down).
      this.#write(before);
      await this.#bird.command('configure').catch(() => undefined);
      throw err;
    }
    this.#state = next;
    this.log.info(
      { announce: batch.announce.length, withdraw: batch.withdraw.length, names: next.size, ms: Math.round(performance.now() - started) },
      'BGP announcements changed (BIRD reloaded, its tables checked)',
    );
    return { announced: batch.announce.length, withdrawn };
  }

  /** `configure`, then wait (bounded) until BIRD's tables hold exactly the file's routes. */
  async #reconfigure(state: Map<string, string>): Promise<void> {
    const reply = await this.#bird.command('configure');
    // 0003 reconfigured, 0004 in progress, 0005 queued: BIRD has read the file either way.
    if (![3, 4, 5].includes(reply.code)) {
      throw new BirdError(`BIRD (${this.options.socket}) answered \`configure\` with ${reply.code} ${reply.lines.map((l) => l.text).join(' | ')}`, reply.code);
    }
    const want = { v4: new Set<string>(), v6: new Set<string>() };
    for (const address of state.values()) want[address.includes(':') ? 'v6' : 'v4'].add(prefixOf(address));
    const deadline = Date.now() + (this.options.settleMs ?? 5000);
    for (;;) {
      const have = { v4: await this.#tableRoutes('v4'), v6: await this.#tableRoutes('v6') };
      const missing = (['v4', 'v6'] as const).flatMap((f) => [...want[f]].filter((p) => !have[f].has(p)));
      const extra = (['v4', 'v6'] as const).flatMap((f) => [...have[f]].filter((p) => !want[f].has(p)));
      if (!missing.length && !extra.length) return;
      if (Date.now() > deadline) {
        throw new BirdError(
          `BIRD (${this.options.socket}) reloaded ${this.options.include} but its tables do not show it after ${this.options.settleMs ?? 5000} ms` +
            `${missing.length ? `; missing ${missing.slice(0, 5).join(', ')}` : ''}${extra.length ? `; still there ${extra.slice(0, 5).join(', ')}` : ''}` +
            ` (does BIRD's configuration include this file? are protocols ${this.#protocols.v4}/${this.#protocols.v6} up? see \`birdc -s ${this.options.socket} show protocols\`)`,
        );
      }
      await sleep(20);
    }
  }

  /** The prefixes BIRD's table holds from our static protocol of one family. */
  async #tableRoutes(family: 'v4' | 'v6'): Promise<Set<string>> {
    const table = family === 'v4' ? 'master4' : 'master6';
    const out = new Set<string>();
    try {
      const reply = await this.#bird.command(`show route table ${table} protocol ${this.#protocols[family]}`);
      // Route lines (code 1007) start with the prefix; more routes of one prefix start with blanks.
      for (const l of reply.lines) {
        const m = l.code === 1007 ? /^([0-9A-Fa-f:.]+\/\d+)\s/.exec(l.text) : null;
        if (m?.[1]) out.add(m[1]);
      }
    } catch (err) {
      // 8001: no route; 8003: the protocol does not exist (yet): no routes either.
      if (!(err instanceof BirdError && (err.code === 8001 || err.code === 8003))) throw err;
    }
    return out;
  }

  #render(state: Map<string, string>): string {
    // One route per prefix, however many names announce it (sets keep the order of first appearance).
    const byFamily = { v4: new Set<string>(), v6: new Set<string>() };
    const names = [...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [, address] of names) byFamily[address.includes(':') ? 'v6' : 'v4'].add(`  route ${prefixOf(address)} blackhole;`);
    return [
      HEADER,
      ...names.map(([name, address]) => `# announce ${name} ${address}`),
      `protocol static ${this.#protocols.v4} {`,
      '  ipv4;',
      ...byFamily.v4,
      '}',
      `protocol static ${this.#protocols.v6} {`,
      '  ipv6;',
      ...byFamily.v6,
      '}',
      '',
    ].join('\n');
  }

  /** Replace the file whole (write beside it, fsync, rename): BIRD never reads half of one. */
  #write(text: string): void {
    const path = this.options.include;
    try {
      writeFileDurably(path, text);
    } catch (err) {
      throw new Error(`cannot write BIRD include file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
}

function view(name: string, address: string): AnnouncementView {
  return { name, address, prefix: prefixOf(address) };
}

/** The announcements a file written by #render records; anything else in it is refused (it is not ours). */
function parseState(text: string, path: string): Map<string, string> {
  const state = new Map<string, string>();
  if (text.trim() === '') return state;
  if (!text.startsWith(HEADER)) {
    throw new Error(`--bird-include ${path} exists and was not written by routeshift: give the agent a file of its own (BIRD's configuration includes it)`);
  }
  for (const line of text.split('\n')) {
    const m = STATE_RE.exec(line);
    if (!m) continue;
    try {
      state.set(parseName(m[1]), canonicalAddress(m[2] as string));
    } catch (err) {
      throw new Error(`--bird-include ${path}: bad line ${JSON.stringify(line)}: ${(err as Error).message}`);
    }
  }
  return state;
}
