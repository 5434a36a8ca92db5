/**
 * Announce hooks: how the network learns that an app now lives on the
 * destination (step 7). Until the hook has run, packets for the app keep
 * arriving at the source, which forwards them; so a migration with no hook
 * (`none`) leaves the source's FORWARD entry in place instead of removing it.
 *
 * * `netns-route`: `ip -n NS route replace ADDR/32|128 via NEXTHOP [dev DEV]`
 *   in one namespace — the fabric router of the demo and tests. A drain
 *   announces all its apps with one `ip -batch`.
 * * `exec`: the operator's script (BGP, ARP, a cloud API…), run directly with
 *   ROUTESHIFT_PHASE=announce, ROUTESHIFT_APP, ROUTESHIFT_ADDRESS,
 *   ROUTESHIFT_PROTO, ROUTESHIFT_PORT, ROUTESHIFT_FROM, ROUTESHIFT_TO (agent
 *   URLs), ROUTESHIFT_TO_INDEX, ROUTESHIFT_TUNNEL (the destination's tunnel
 *   address), ROUTESHIFT_MIGRATION. Exit 0 = announced. It must be idempotent.
 * * `bgp`: the hosts' own BGP speakers (BIRD 2, driven by each host's agent,
 *   src/agent/bgp.ts): the destination's agent announces the app's /32
 *   (/128); a grace period later the source's agent withdraws it. While both
 *   announce, either route delivers (the source still forwards), so the
 *   network may take its time and tie-break as it likes.
 *
 * Hooks are plain data (`AnnounceSpec`) so the journal can rebuild them on resume.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import type { AgentApi, AgentConnector, Proto } from './agent-client.js';
import type { AnnouncementBatchBody } from '../model/announcement.js';
import { describeHookFailure, runHook } from '../workload/run-hook.js';
import { mapLimit } from './limit.js';

export type AnnounceSpec =
  | { kind: 'none' }
  | {
      kind: 'netns-route';
      netns: string;
      /** Next hop per destination, in `--to` order (one entry = same for all). */
      via: string[];
      dev?: string;
    }
  | { kind: 'exec'; script: string; timeoutMs?: number }
  /** The agents announce and withdraw through their hosts' BIRD; nothing to journal but the kind. */
  | { kind: 'bgp' };

export interface Announcement {
  app: string;
  address: string;
  proto: Proto;
  port: number;
  from: string;
  to: string;
  toIndex: number;
  tunnel: string;
  migrationId: string;
}

export interface AnnounceHook {
  readonly kind: AnnounceSpec['kind'];
  /** false when this hook does not move traffic: the source must then keep forwarding. */
  readonly movesTraffic: boolean;
  announce(a: Announcement): Promise<void>;
  /** Many at once (drain): one call where the mechanism allows it. */
  announceAll(list: readonly Announcement[]): Promise<void>;
  /**
   * Mechanisms where the source announced the app too: stop that. Called a
   * grace period after announceAll, while the source still forwards, and
   * followed by another before the source's entries are removed.
   */
  withdrawAll?(list: readonly Announcement[]): Promise<void>;
}

export const ANNOUNCE_KINDS = ['none', 'netns-route', 'exec', 'bgp'] as const;

/** `connect` reaches the agents (the `bgp` hook asks them to announce); other hooks need none. */
export function createAnnounceHook(spec: AnnounceSpec, connect?: AgentConnector): AnnounceHook {
  switch (spec.kind) {
    case 'none':
      return {
        kind: 'none',
        movesTraffic: false,
        announce: async () => {},
        announceAll: async () => {},
      };
    case 'netns-route':
      return new NetnsRouteHook(spec.netns, spec.via, spec.dev);
    case 'exec':
      return new ExecAnnounceHook(spec.script, spec.timeoutMs ?? 30_000);
    case 'bgp':
      if (!connect) throw new Error('the bgp announce hook needs a connector to the agents');
      return new BgpAnnounceHook(connect);
  }
}

const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const DEV_RE = /^[A-Za-z0-9_.@-]{1,15}$/;

export class NetnsRouteHook implements AnnounceHook {
  readonly kind = 'netns-route';
  readonly movesTraffic = true;

  constructor(
    readonly netns: string,
    readonly via: readonly string[],
    readonly dev?: string,
  ) {
    if (!NETNS_RE.test(netns)) throw new Error(`invalid network namespace name ${JSON.stringify(netns)}`);
    if (!via.length) throw new Error('netns-route needs a next hop (--announce-via)');
    for (const v of via) if (!isIP(v)) throw new Error(`invalid next hop ${JSON.stringify(v)}: not an IP address`);
    if (dev !== undefined && !DEV_RE.test(dev)) throw new Error(`invalid device name ${JSON.stringify(dev)}`);
  }

  /** The `ip` command (without `ip -n NS`) that moves one app's route. */
  routeCommand(a: Announcement): string[] {
    const v6 = isIP(a.address) === 6;
    const via = this.via[a.toIndex] ?? this.via[0];
    if (via === undefined || isIP(via) !== (v6 ? 6 : 4)) {
      throw new Error(`next hop for ${a.to} (${via ?? 'none'}) is not an ${v6 ? 'IPv6' : 'IPv4'} address like ${a.app}'s ${a.address}`);
    }
    return [...(v6 ? ['-6'] : []), 'route', 'replace', `${a.address}/${v6 ? 128 : 32}`, 'via', via, ...(this.dev ? ['dev', this.dev] : [])];
  }

  async announce(a: Announcement): Promise<void> {
    await ip(['-n', this.netns, ...this.routeCommand(a)]);
  }

  async announceAll(list: readonly Announcement[]): Promise<void> {
    if (!list.length) return;
    if (list.length === 1) return this.announce(list[0] as Announcement);
    // One process for all routes; -force would hide a failed line, so it is not used.
    const lines = list.map((a) => this.routeCommand(a).join(' ')).join('\n') + '\n';
    await ip(['-n', this.netns, '-batch', '-'], lines);
  }
}

export class ExecAnnounceHook implements AnnounceHook {
  readonly kind = 'exec';
  readonly movesTraffic = true;

  constructor(
    readonly script: string,
    readonly timeoutMs: number,
  ) {}

  async announce(a: Announcement): Promise<void> {
    const r = await runHook(
      this.script,
      {
        ROUTESHIFT_PHASE: 'announce',
        ROUTESHIFT_APP: a.app,
        ROUTESHIFT_ADDRESS: a.address,
        ROUTESHIFT_PROTO: String(a.proto),
        ROUTESHIFT_PORT: String(a.port),
        ROUTESHIFT_FROM: a.from,
        ROUTESHIFT_TO: a.to,
        ROUTESHIFT_TO_INDEX: String(a.toIndex),
        ROUTESHIFT_TUNNEL: a.tunnel,
        ROUTESHIFT_MIGRATION: a.migrationId,
      },
      this.timeoutMs,
    );
    if (r.code !== 0) throw new Error(`announce of ${a.app}: ${describeHookFailure(this.script, r, this.timeoutMs)}`);
  }

  async announceAll(list: readonly Announcement[]): Promise<void> {
    // One run per app: the script's contract is one app per call. Bounded parallelism.
    await mapLimit(list, 8, (a) => this.announce(a));
  }
}

/** What the bgp hook needs of an agent client (HttpAgentClient has it). */
export interface AnnouncementApi {
  readonly url: string;
  changeAnnouncements(batch: AnnouncementBatchBody): Promise<{ announced: number; withdrawn: number }>;
}

export function announcementApi(agent: AgentApi): AgentApi & AnnouncementApi {
  const a = agent as AgentApi & Partial<AnnouncementApi>;
  if (typeof a.changeAnnouncements !== 'function') throw new Error(`the client of agent ${agent.url} cannot ask it for BGP announcements`);
  return a as AgentApi & AnnouncementApi;
}

export class BgpAnnounceHook implements AnnounceHook {
  readonly kind = 'bgp';
  readonly movesTraffic = true;

  constructor(private readonly connect: AgentConnector) {}

  announce(a: Announcement): Promise<void> {
    return this.announceAll([a]);
  }

  /** Each destination's agent announces its apps: one request (one BIRD reconfiguration) per destination. */
  async announceAll(list: readonly Announcement[]): Promise<void> {
    await Promise.all(
      [...group(list, (a) => a.to)].map(async ([url, apps]) => {
        const r = await announcementApi(this.connect(url)).changeAnnouncements({ announce: apps.map((a) => ({ name: a.app, address: a.address })) });
        if (r.announced !== apps.length) throw new Error(`agent ${url} announced ${r.announced} of ${apps.length} apps`);
      }),
    );
  }

  /** Each source's agent withdraws what it announced for these apps (idempotent: nothing announced is no change). */
  async withdrawAll(list: readonly Announcement[]): Promise<void> {
    await Promise.all(
      [...group(list, (a) => a.from)].map(([url, apps]) => announcementApi(this.connect(url)).changeAnnouncements({ withdraw: apps.map((a) => a.app) })),
    );
  }
}

function group(list: readonly Announcement[], by: (a: Announcement) => string): Map<string, Announcement[]> {
  const out = new Map<string, Announcement[]>();
  for (const a of list) {
    const k = by(a);
    const l = out.get(k);
    if (l) l.push(a);
    else out.set(k, [a]);
  }
  return out;
}

function ip(args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
