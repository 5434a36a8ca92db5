/**
 * What the commands that talk to agents share: their options (credentials,
 * token, CA, client certificate, timeouts; for `migrate` and `drain` also driver, announce hook, timing and
 * state directory), turning those options into the journal-able specs, and
 * the agent connector. Kept here so the commands cannot drift apart.
 */
import { DEFAULT_LEASE_TTL_MS } from '../controller/leases.js';
import { MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../model/entry.js';
import { accessSync, constants } from 'node:fs';
import { isIP } from 'node:net';
import type { Argv } from 'yargs';
import { type AgentApi, type AgentConnector, HttpAgentClient, normaliseAgentUrl } from '../controller/agent-client.js';
import { ANNOUNCE_KINDS, NetnsRouteHook, type AnnounceSpec } from '../controller/announce.js';
import { CredentialsError, credentialsPath, loadCredentials, resolveCredentials, type CredentialsOverrides } from '../controller/credentials.js';
import { DEFAULT_PRESERVE, DEFAULT_STATE_DIR, DEFAULT_TIMING, type PreserveOptions, type Timing } from '../controller/journal.js';
import { DRIVER_KINDS, netnsProcessProblem, type DriverSpec, type NetnsProcessProblem, type ProbeSpec } from '../workload/index.js';
import { UsageError } from './common.js';
import { EtcdClient } from '../etcd/client.js';
import { DEFAULT_ETCD_PREFIX, KeyLayout, parseHostId } from '../etcd/layout.js';
import { DEFAULT_APPLY_TIMEOUT_MS, etcdAgentId, etcdConnector, etcdHostOf } from '../controller/etcd-agent.js';

/** How a command reaches its agents (connectionOptions). */
export interface ConnectionArgs {
  credentials?: string;
  'token-file'?: string;
  'ca-file'?: string;
  'client-cert'?: string;
  'client-key'?: string;
  'agent-timeout-ms': number;
}

export interface SharedArgs extends ConnectionArgs {
  'state-dir': string;
  driver: (typeof DRIVER_KINDS)[number];
  'src-netns'?: string;
  'dst-netns'?: string;
  cmd?: string;
  probe?: string;
  'probe-netns'?: string;
  'exec-start'?: string;
  'exec-probe'?: string;
  'exec-stop'?: string;
  'hook-timeout-ms': number;
  announce: (typeof ANNOUNCE_KINDS)[number];
  'announce-netns'?: string;
  'announce-via'?: string;
  'announce-dev'?: string;
  'announce-exec'?: string;
  'ready-timeout-ms': number;
  'probe-interval-ms': number;
  'stop-grace-ms': number;
  'announce-grace-ms': number;
  attempts: number;
  'lease-ttl-ms': number;
  etcd?: string;
  'etcd-prefix': string;
  'etcd-apply-timeout-ms': number;
  'preserve-connections': boolean;
  'max-drain': number;
  'flow-idle-ms': number;
  'flow-linger-ms': number;
  json: boolean;
}

const CONNECTION_GROUP = 'Agent connection (--token-file, --ca-file, --client-cert/--client-key win over the credentials file, for every agent):';

/** How every command that talks to agents reaches them: credentials file, its overrides, timeout. */
export function connectionOptions<T>(y: Argv<T>) {
  return y
    .option('credentials', {
      type: 'string',
      describe:
        'JSON file giving each agent origin (https://host:port) its token, CA and client certificate, plus a default entry ' +
        '(default: $ROUTESHIFT_CREDENTIALS, else ~/.config/routeshift/credentials.json if present; format in README "Security")',
    })
    .option('token-file', {
      type: 'string',
      describe: 'file holding the bearer token of every agent, mode 0600 (default: $ROUTESHIFT_TOKEN_FILE, which wins over the file too)',
    })
    .option('ca-file', { type: 'string', describe: 'verify https:// agents\' certificates against this CA (PEM) instead of the system\'s' })
    .option('client-cert', { type: 'string', describe: 'present this client certificate (PEM) to agents run with --client-ca' })
    .option('client-key', { type: 'string', describe: 'private key (PEM, mode 0600) of --client-cert' })
    .option('agent-timeout-ms', { type: 'number', default: 5000, describe: 'give up on an agent request after this long' })
    .group(['credentials', 'token-file', 'ca-file', 'client-cert', 'client-key', 'agent-timeout-ms'], CONNECTION_GROUP);
}

/** The options every command that talks to agents takes. */
export function agentOptions<T>(y: Argv<T>) {
  return connectionOptions(y)
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON document (for machines) instead of progress lines' });
}

/** Driver, announce hook, timing and state directory options of migrate and drain. */
export function migrationOptions<T>(y: Argv<T>) {
  return agentOptions(y)
    .option('state-dir', {
      type: 'string',
      default: DEFAULT_STATE_DIR,
      describe: 'where the journal (one file per run) and per-app locks are kept; --resume reads it',
    })
    .option('driver', {
      choices: DRIVER_KINDS,
      default: 'none' as const,
      describe:
        'how the app is started/probed/stopped: none = already running (ready = --probe, or at once); ' +
        'netns-process = run --cmd in a network namespace; exec = your --exec-* scripts',
    })
    .option('src-netns', { type: 'string', describe: 'netns-process: the app\'s namespace on the source ({app} {index} allowed)' })
    .option('dst-netns', { type: 'string', describe: 'netns-process: the app\'s namespace on the destination ({app} {index} allowed)' })
    .option('cmd', {
      type: 'string',
      describe: 'netns-process: command line of the app, run as `sh -c "exec CMD"` ({app} {address} {port} {proto} allowed)',
    })
    .option('probe', {
      type: 'string',
      describe: 'readiness check: udp:PORT (a datagram must be echoed) or tcp:PORT (a connection accepted); udp:ADDR:PORT for another address',
    })
    .option('probe-netns', { type: 'string', describe: 'run the probe in this namespace (netns-process default: the app\'s own)' })
    .option('exec-start', { type: 'string', describe: 'exec: script that starts the app (env ROUTESHIFT_APP, _ADDRESS, _PORT, _ROLE, _HOST, _PHASE…)' })
    .option('exec-probe', { type: 'string', describe: 'exec: script that exits 0 once the app is ready' })
    .option('exec-stop', { type: 'string', describe: 'exec: script that stops the app' })
    .option('hook-timeout-ms', { type: 'number', default: 30_000, describe: 'exec scripts are killed after this long' })
    .option('announce', {
      choices: ANNOUNCE_KINDS,
      default: 'none' as const,
      describe:
        'how the network learns the app moved: none = source keeps forwarding; ' +
        'netns-route = `ip route replace ADDR via --announce-via` in --announce-netns; exec = --announce-exec script; ' +
        'bgp = the destination\'s agent announces ADDR/32 (/128) through its BIRD, the source\'s withdraws it a grace later (agents started with --bird-include)',
    })
    .option('announce-netns', { type: 'string', describe: 'netns-route: the namespace whose route is moved (e.g. the fabric router)' })
    .option('announce-via', { type: 'string', describe: 'netns-route: next hop(s) of the destination(s), comma-separated in --to order' })
    .option('announce-dev', { type: 'string', describe: 'netns-route: output device of the new route' })
    .option('announce-exec', { type: 'string', describe: 'exec: announce script (env ROUTESHIFT_APP, _ADDRESS, _FROM, _TO, _TUNNEL…)' })
    .option('ready-timeout-ms', { type: 'number', default: DEFAULT_TIMING.readyTimeoutMs, describe: 'READY gives up (and rolls back) after this long' })
    .option('probe-interval-ms', { type: 'number', default: DEFAULT_TIMING.probeIntervalMs, describe: 'time between readiness probes' })
    .option('stop-grace-ms', { type: 'number', default: DEFAULT_TIMING.stopGraceMs, describe: 'wait after SWITCH before stopping the source app' })
    .option('announce-grace-ms', { type: 'number', default: DEFAULT_TIMING.announceGraceMs, describe: 'wait after announcing before removing the source entry (bgp: before the source withdraws, and again after)' })
    .option('attempts', { type: 'number', default: DEFAULT_TIMING.forwardAttempts, describe: 'tries of each step after SWITCH before "needs attention"' })
    .option('lease-ttl-ms', {
      type: 'number',
      default: DEFAULT_LEASE_TTL_MS,
      describe: "the agents' lease on each app's name (one owner at a time): renewed every third of it while the run goes on, lapses this long after a controller died",
    })
    .option('etcd', {
      type: 'string',
      describe:
        'etcd endpoint(s) URL[,URL…] of agents run with --etcd: --from/--to/the drained host are then host ids (HOST, or HOST=URL to give its API URL for reads), ' +
        'entries are written to etcd (docs/etcd.md); an http(s):// URL still names an HTTP agent',
    })
    .option('etcd-prefix', { type: 'string', default: DEFAULT_ETCD_PREFIX, describe: 'the key prefix of the layout in etcd (agents use the same)' })
    .option('etcd-apply-timeout-ms', { type: 'number', default: DEFAULT_APPLY_TIMEOUT_MS, describe: 'wait this long for an agent to report a write to etcd applied' })
    .group(['etcd', 'etcd-prefix', 'etcd-apply-timeout-ms'], 'Agents that take their entries from etcd:')
    .group(['driver', 'src-netns', 'dst-netns', 'cmd', 'probe', 'probe-netns', 'exec-start', 'exec-probe', 'exec-stop', 'hook-timeout-ms'], 'Workload driver:')
    .group(['announce', 'announce-netns', 'announce-via', 'announce-dev', 'announce-exec'], 'Announce hook:')
    .option('preserve-connections', {
      type: 'boolean',
      default: false,
      describe:
        'TCP connections open at SWITCH finish on the source copy, new ones go to the destination; ' +
        'DRAIN_FLOWS waits for the old ones to end (FIN/RST or idle) before STOP',
    })
    .option('max-drain', { type: 'number', default: DEFAULT_PRESERVE.maxDrainMs / 1000, describe: 'seconds DRAIN_FLOWS waits at most; the flows still open then are cut' })
    .option('flow-idle-ms', { type: 'number', default: DEFAULT_PRESERVE.idleMs, describe: 'an old flow silent this long is taken as gone' })
    .option('flow-linger-ms', { type: 'number', default: DEFAULT_PRESERVE.lingerMs, describe: 'after the client\'s FIN, a flow quiet this long is closed' })
    .group(['ready-timeout-ms', 'probe-interval-ms', 'stop-grace-ms', 'announce-grace-ms', 'attempts'], 'Timing:')
    .group(['preserve-connections', 'max-drain', 'flow-idle-ms', 'flow-linger-ms'], 'Connections:');
}

/** Bad input → UsageError (one line, exit 2). */
export function parseUrl(raw: string, flag: string): string {
  try {
    return normaliseAgentUrl(raw);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

function parseProbe(raw: string | undefined, netns: string | undefined): ProbeSpec | undefined {
  if (raw === undefined) {
    if (netns !== undefined) throw new UsageError('--probe-netns needs --probe');
    return undefined;
  }
  const m = /^(udp|tcp):(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(raw);
  const port = m ? Number(m[4]) : NaN;
  if (!m || port < 1 || port > 65535) throw new UsageError(`--probe ${raw}: expected udp:PORT, tcp:PORT, udp:ADDR:PORT or tcp:[V6ADDR]:PORT`);
  const address = m[2] ?? m[3];
  if (address !== undefined && !isIP(address)) throw new UsageError(`--probe ${raw}: ${address} is not an IP address`);
  return { proto: m[1] as 'udp' | 'tcp', port, ...(address ? { address } : {}), ...(netns ? { netns } : {}) };
}

function executable(path: string, flag: string): string {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new UsageError(`${flag} ${path}: not an executable file`);
  }
  return path;
}

function positive(n: number, flag: string, min = 0): number {
  if (!Number.isFinite(n) || n < min) throw new UsageError(`--${flag} must be a number ≥ ${min}`);
  return n;
}

const NETNS_PROCESS_FLAGS: Readonly<Record<NetnsProcessProblem['option'], string>> = { sourceNetns: '--src-netns', destNetns: '--dst-netns', command: '--cmd' };

export function driverSpec(a: SharedArgs): DriverSpec {
  const probe = parseProbe(a.probe, a['probe-netns']);
  switch (a.driver) {
    case 'none':
      return { kind: 'none', ...(probe ? { probe } : {}) };
    case 'netns-process': {
      const missing = (['src-netns', 'dst-netns', 'cmd'] as const).filter((k) => !a[k]);
      if (missing.length) throw new UsageError(`--driver netns-process needs ${missing.map((k) => `--${k}`).join(', ')}`);
      const spec = {
        kind: 'netns-process' as const,
        sourceNetns: a['src-netns'] as string,
        destNetns: a['dst-netns'] as string,
        command: a.cmd as string,
        stateDir: a['state-dir'],
        ...(probe ? { probe } : {}),
      };
      // Found now, not when START expands them half-way through a migration: bad input, exit 2.
      const problem = netnsProcessProblem(spec);
      if (problem) throw new UsageError(`${NETNS_PROCESS_FLAGS[problem.option]}: ${problem.reason}`);
      return spec;
    }
    case 'exec': {
      if (!a['exec-start'] && !a['exec-probe'] && !a['exec-stop']) throw new UsageError('--driver exec needs at least one of --exec-start, --exec-probe, --exec-stop');
      if (probe) throw new UsageError('--probe is for the none and netns-process drivers; with exec, probe in --exec-probe');
      return {
        kind: 'exec',
        ...(a['exec-start'] ? { start: executable(a['exec-start'], '--exec-start') } : {}),
        ...(a['exec-probe'] ? { probe: executable(a['exec-probe'], '--exec-probe') } : {}),
        ...(a['exec-stop'] ? { stop: executable(a['exec-stop'], '--exec-stop') } : {}),
        timeoutMs: positive(a['hook-timeout-ms'], 'hook-timeout-ms', 1),
      };
    }
  }
}

export function announceSpec(a: SharedArgs): AnnounceSpec {
  switch (a.announce) {
    case 'none':
      return { kind: 'none' };
    case 'netns-route': {
      if (!a['announce-netns'] || !a['announce-via']) throw new UsageError('--announce netns-route needs --announce-netns and --announce-via');
      const via = a['announce-via'].split(',').map((s) => s.trim()).filter(Boolean);
      for (const v of via) if (!isIP(v)) throw new UsageError(`--announce-via ${v}: not an IP address`);
      const spec = { kind: 'netns-route' as const, netns: a['announce-netns'], via, ...(a['announce-dev'] ? { dev: a['announce-dev'] } : {}) };
      try {
        new NetnsRouteHook(spec.netns, spec.via, spec.dev); // the hook's own checks (namespace and device names), before anything starts
      } catch (err) {
        throw new UsageError(`--announce netns-route: ${(err as Error).message}`);
      }
      return spec;
    }
    case 'bgp': {
      const extra = (['announce-netns', 'announce-via', 'announce-dev', 'announce-exec'] as const).filter((k) => a[k] !== undefined);
      if (extra.length) throw new UsageError(`--announce bgp takes no ${extra.map((k) => `--${k}`).join(', ')}: the agents drive their hosts' BIRD (agent --bird-include)`);
      return { kind: 'bgp' };
    }
    case 'exec':
      if (!a['announce-exec']) throw new UsageError('--announce exec needs --announce-exec SCRIPT');
      return { kind: 'exec', script: executable(a['announce-exec'], '--announce-exec'), timeoutMs: positive(a['hook-timeout-ms'], 'hook-timeout-ms', 1) };
  }
}

/** --lease-ttl-ms, within what agents grant. */
export function leaseTtl(a: SharedArgs): number {
  const ms = Math.round(positive(a['lease-ttl-ms'], 'lease-ttl-ms', MIN_LEASE_TTL_MS));
  if (ms > MAX_LEASE_TTL_MS) throw new UsageError(`--lease-ttl-ms must be at most ${MAX_LEASE_TTL_MS}`);
  return ms;
}

export function timing(a: SharedArgs): Timing {
  return {
    readyTimeoutMs: positive(a['ready-timeout-ms'], 'ready-timeout-ms', 1),
    probeIntervalMs: positive(a['probe-interval-ms'], 'probe-interval-ms', 1),
    stopGraceMs: positive(a['stop-grace-ms'], 'stop-grace-ms'),
    announceGraceMs: positive(a['announce-grace-ms'], 'announce-grace-ms'),
    forwardAttempts: Math.floor(positive(a.attempts, 'attempts', 1)),
  };
}

/** --preserve-connections and its bounds (checked with or without the flag), or undefined without it. */
export function preserveSpec(a: SharedArgs): PreserveOptions | undefined {
  const maxDrainMs = Math.round(positive(a['max-drain'], 'max-drain') * 1000);
  const idleMs = Math.round(positive(a['flow-idle-ms'], 'flow-idle-ms', 1));
  const lingerMs = Math.round(positive(a['flow-linger-ms'], 'flow-linger-ms', 1));
  if (!a['preserve-connections']) return undefined;
  return { maxDrainMs, idleMs, lingerMs, pollMs: DEFAULT_PRESERVE.pollMs };
}

/**
 * One HTTP client per agent URL, each with its own credentials: the flags
 * (and $ROUTESHIFT_TOKEN_FILE) first, then the credentials file's entry for
 * the agent's origin, then its default entry. The file is read now; each
 * agent's token and certificates on its first use, before any request to it.
 */
export function httpConnector(a: ConnectionArgs): AgentConnector {
  const timeoutMs = positive(a['agent-timeout-ms'], 'agent-timeout-ms', 1);
  const envToken = process.env.ROUTESHIFT_TOKEN_FILE || undefined;
  const overrides: CredentialsOverrides = {
    ...(a['token-file'] ? { tokenFile: a['token-file'] } : envToken ? { tokenFile: envToken, tokenFileFrom: '$ROUTESHIFT_TOKEN_FILE' } : {}),
    ...(a['ca-file'] ? { caFile: a['ca-file'] } : {}),
    ...(a['client-cert'] ? { clientCert: a['client-cert'] } : {}),
    ...(a['client-key'] ? { clientKey: a['client-key'] } : {}),
  };
  if (Boolean(overrides.clientCert) !== Boolean(overrides.clientKey)) throw new UsageError('--client-cert and --client-key go together');
  const where = credentialsPath(a.credentials);
  const file = asUsage(() => loadCredentials(where));
  const cache = new Map<string, AgentApi>();
  return (url) => {
    const key = normaliseAgentUrl(url);
    let c = cache.get(key);
    if (!c) {
      const creds = asUsage(() => resolveCredentials(key, file, overrides, where.path));
      c = new HttpAgentClient(key, { ...(creds.token ? { token: creds.token } : {}), ...(creds.tls ? { tls: creds.tls } : {}), ...(creds.noTokenHint ? { noTokenHint: creds.noTokenHint } : {}), timeoutMs });
      cache.set(key, c);
    }
    return c;
  };
}

/** Bad credentials are bad usage: one line, exit 2. */
function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CredentialsError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * The agents of migrate/drain: over HTTP, or with --etcd agents that take
 * their entries from etcd, named by host id (`HOST` or `HOST=URL`, the URL
 * of its read API when its status key's is not the one to use).
 */
export interface MigrationAgents {
  connect: AgentConnector;
  /** A user-given agent (`--from`, `--to`, the drained host) as the id the controller uses. */
  ref(raw: string, flag: string): string;
}

export function migrationAgents(a: SharedArgs): MigrationAgents {
  const readers = httpConnector(a);
  if (a.etcd === undefined) {
    // A journal of a migration through etcd names its hosts etcd:<host>: resuming it needs --etcd again.
    const connect: AgentConnector = (url) => {
      if (etcdHostOf(url) !== undefined) throw new UsageError(`${url} is a host whose agent takes its entries from etcd: give --etcd URL[,URL…]`);
      return readers(url);
    };
    return { connect, ref: parseUrl };
  }
  const etcd = asUsageError('--etcd', () => new EtcdClient(a.etcd as string));
  const layout = asUsageError('--etcd-prefix', () => new KeyLayout(a['etcd-prefix']));
  const urls = new Map<string, string>();
  const applyTimeoutMs = positive(a['etcd-apply-timeout-ms'], 'etcd-apply-timeout-ms', 1);
  return {
    connect: etcdConnector({ etcd, layout, readers, urls, applyTimeoutMs }),
    ref(raw, flag) {
      if (/^https?:\/\//i.test(raw)) return parseUrl(raw, flag);
      const eq = raw.indexOf('=');
      const host = asUsageError(flag, () => parseHostId(eq < 0 ? raw : raw.slice(0, eq)));
      if (eq >= 0) {
        const url = parseUrl(raw.slice(eq + 1), flag);
        const had = urls.get(host);
        if (had !== undefined && had !== url) throw new UsageError(`${flag}: host ${host} was given two URLs (${had}, ${url})`);
        urls.set(host, url);
      }
      return etcdAgentId(host);
    },
  };
}

function asUsageError<T>(flag: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}
