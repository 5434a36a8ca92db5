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
 *
 * Hooks are plain data (`AnnounceSpec`) so the journal can rebuild them on resume.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import type { Proto } from './agent-client.js';
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
  | { kind: 'exec'; script: string; timeoutMs?: number };

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
}

export const ANNOUNCE_KINDS = ['none', 'netns-route', 'exec'] as const;

export function createAnnounceHook(spec: AnnounceSpec): AnnounceHook {
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

function ip(args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
