/** `routeshift agent`: run the per-host daemon, or remove what it made (--cleanup). */
import type { CommandModule } from 'yargs';
import { DEFAULT_LISTEN, DEFAULT_TOKEN_FILE } from '../../agent/defaults.js';
import { DEFAULT_CAPACITY, DEFAULT_FLOW_CAPACITY } from '../../datapath/structs.js';
import { UsageError } from '../common.js';
import { DEFAULT_BIRD_SOCKET } from '../../agent/bird-control.js';
import type { EtcdSettings } from '../../agent/agent.js';
import { parseEndpoints } from '../../etcd/client.js';
import { DEFAULT_ETCD_PREFIX, DEFAULT_STATUS_TTL_SECONDS, parseHostId, parsePrefix } from '../../etcd/layout.js';

interface AgentArgs {
  uplink: string;
  listen: string;
  'token-file': string;
  'pin-dir'?: string;
  'tunnel-addr'?: string[];
  mtu?: number;
  'xdp-mode': 'native' | 'generic';
  capacity?: number;
  'flow-capacity'?: number;
  insecure: boolean;
  replace: boolean;
  'detach-on-exit': boolean;
  cleanup: boolean;
  'tls-cert'?: string;
  'tls-key'?: string;
  'client-ca'?: string;
  netns?: string;
  'bird-include'?: string;
  'bird-socket': string;
  'bird-protocol': string;
  etcd?: string;
  'host-id'?: string;
  'etcd-prefix': string;
  'etcd-status-ttl': number;
}

export const agentCommand: CommandModule<object, AgentArgs> = {
  command: 'agent',
  describe: 'Run the per-host agent: load and attach the data plane on the uplink, serve the API and /metrics',
  builder: (y) =>
    y
      .option('uplink', { type: 'string', demandOption: true, describe: 'Interface packets for applications arrive on (XDP is attached here)' })
      .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'ADDR:PORT for the HTTP API (port 0 picks one)' })
      .option('token-file', {
        type: 'string',
        default: process.env.ROUTESHIFT_TOKEN_FILE ?? DEFAULT_TOKEN_FILE,
        describe: 'Bearer token file; generated (mode 0600) if absent. Env: ROUTESHIFT_TOKEN_FILE',
      })
      .option('pin-dir', { type: 'string', describe: 'bpffs directory for the maps [default: /sys/fs/bpf/routeshift/<uplink>; …/netns-<name>/<uplink> in a named netns]' })
      .option('tunnel-addr', { type: 'string', array: true, describe: "This host's tunnel address(es), v4 and/or v6 [default: the uplink's global addresses]" })
      .option('mtu', { type: 'number', describe: 'Outer MTU limit for forwarded packets [default: the route MTU]' })
      .option('xdp-mode', { choices: ['native', 'generic'] as const, default: 'native' as const, describe: 'XDP attach mode (generic works on any device, slower)' })
      .option('capacity', { type: 'number', describe: `Entries per map and application ids [default: ${DEFAULT_CAPACITY}]` })
      .option('flow-capacity', { type: 'number', describe: `Entries of each flow table of --preserve-connections migrations (LRU) [default: ${DEFAULT_FLOW_CAPACITY}]` })
      .option('insecure', { type: 'boolean', default: false, describe: 'Serve without a token (local demos only; loopback only)' })
      .option('replace', { type: 'boolean', default: false, describe: "Take over an uplink whose XDP program is not routeshift's" })
      .option('detach-on-exit', { type: 'boolean', default: false, describe: 'Detach the program on shutdown (default: keep forwarding)' })
      .option('cleanup', { type: 'boolean', default: false, describe: 'Detach routeshift from the uplink and remove its pinned maps, then exit' })
      .option('tls-cert', { type: 'string', describe: 'Serve HTTPS with this certificate (PEM)' })
      .option('tls-key', { type: 'string', describe: 'Private key (PEM) for --tls-cert' })
      .option('client-ca', {
        type: 'string',
        describe: 'Require a client certificate signed by this CA (PEM) on every connection, /healthz included (mTLS; needs --tls-cert)',
      })
      .option('netns', {
        type: 'string',
        describe: 'Drive the data plane of network namespace NAME while serving the API from here (test topologies, demo)',
      })
      .option('bird-include', {
        type: 'string',
        describe:
          'Announce apps over BGP (migrate --announce bgp) through this host\'s BIRD 2: the agent owns this file of static routes, ' +
          'which BIRD\'s configuration includes and its BGP protocols export (created empty if absent)',
      })
      .option('bird-socket', { type: 'string', default: DEFAULT_BIRD_SOCKET, describe: 'BIRD\'s control socket (bird -s PATH)' })
      .option('bird-protocol', {
        type: 'string',
        default: 'routeshift',
        describe: 'Name stem of the static protocols in --bird-include: NAME4 (IPv4) and NAME6 (IPv6), for BIRD\'s export filters',
      })
      .group(['bird-include', 'bird-socket', 'bird-protocol'], 'BGP (BIRD 2):')
      .option('etcd', {
        type: 'string',
        describe: 'Take the entries from etcd at URL[,URL…] (docs/etcd.md): the agent reconciles its maps to its host\'s keys; the API\'s entry writes are refused',
      })
      .option('host-id', { type: 'string', describe: 'This host\'s id in the etcd key layout (<prefix>hosts/<ID>/…); required with --etcd' })
      .option('etcd-prefix', { type: 'string', default: DEFAULT_ETCD_PREFIX, describe: 'Key prefix of routeshift\'s layout in etcd' })
      .option('etcd-status-ttl', { type: 'number', default: DEFAULT_STATUS_TTL_SECONDS, describe: 'Seconds the status key outlives the agent (its lease TTL)' })
      .group(['etcd', 'host-id', 'etcd-prefix', 'etcd-status-ttl'], 'Fleet mode (etcd):')
      .example('$0 agent --uplink eth0 --listen 10.0.0.1:7450', 'run on a host; the token is written to /etc/routeshift/token')
      .example('$0 agent --uplink eth0 --bird-include /etc/bird/routeshift.conf', 'also announce apps over BGP through BIRD (see README, "Announcing over BGP")')
      .example('$0 agent --uplink eth0 --etcd http://10.0.0.9:2379 --host-id host-a', 'take the entries from etcd (docs/etcd.md)')
      .example('$0 agent --uplink eth0 --cleanup', 'remove everything the agent made') as never,
  handler: async (args) => {
    // Loaded here, not at the top: every other command starts without fastify, prom-client and the addon.
    const { HostDatapath, defaultPinDir } = await import('../../datapath/host.js');
    const { enterNetns } = await import('../../bpf/index.js');
    const { startAgent } = await import('../../agent/agent.js');
    const pinDir = args['pin-dir'] ?? defaultPinDir(args.uplink, args.netns);
    if (args.cleanup) {
      if (args.netns) enterNetns(args.netns);
      const { PidLock, agentLockName } = await import('../../agent/lock.js');
      const removed = HostDatapath.cleanup(args.uplink, pinDir);
      const lock = PidLock.removeIfFree(agentLockName(pinDir));
      if (lock) removed.push(lock);
      process.stdout.write(removed.length ? `removed:\n  ${removed.join('\n  ')}\n` : 'nothing to remove\n');
      return;
    }
    if (Boolean(args['tls-cert']) !== Boolean(args['tls-key'])) throw new UsageError('--tls-cert and --tls-key go together');
    if (args['client-ca'] && !args['tls-cert']) {
      throw new UsageError('--client-ca makes the agent check client certificates, which only HTTPS carries: give --tls-cert and --tls-key too');
    }
    if (args['flow-capacity'] !== undefined && (!Number.isInteger(args['flow-capacity']) || args['flow-capacity'] < 1)) {
      throw new UsageError('--flow-capacity must be a positive integer');
    }
    if (args.capacity !== undefined && (!Number.isInteger(args.capacity) || args.capacity < 1)) {
      throw new UsageError('--capacity must be a positive integer');
    }
    if (args.etcd === undefined && args['host-id'] !== undefined) throw new UsageError('--host-id names this host in etcd: give --etcd URL[,URL…] too');
    if (args.etcd !== undefined && !args['host-id']) throw new UsageError('--etcd needs --host-id ID: the host whose keys this agent takes (<prefix>hosts/<ID>/…)');
    const ttl = args['etcd-status-ttl'];
    if (!Number.isInteger(ttl) || ttl < 3 || ttl > 3600) throw new UsageError('--etcd-status-ttl must be an integer 3..3600 (seconds; etcd grants no lease shorter than ~3 s)');
    let etcd: EtcdSettings | undefined;
    if (args.etcd !== undefined) {
      try {
        etcd = { endpoints: parseEndpoints(args.etcd), hostId: parseHostId(args['host-id']!), prefix: parsePrefix(args['etcd-prefix']), statusTtlSeconds: ttl };
      } catch (err) {
        throw new UsageError(`${(err as Error).message}`);
      }
    }
    const agent = await startAgent({
      uplink: args.uplink,
      listen: args.listen,
      tokenFile: args['token-file'],
      insecure: args.insecure,
      pinDir,
      ...(args['tunnel-addr'] ? { tunnelAddrs: args['tunnel-addr'] } : {}),
      ...(args.mtu !== undefined ? { mtu: args.mtu } : {}),
      xdpMode: args['xdp-mode'],
      ...(args.capacity !== undefined ? { capacity: args.capacity } : {}),
      ...(args['flow-capacity'] !== undefined ? { flowCapacity: args['flow-capacity'] } : {}),
      replace: args.replace,
      detachOnExit: args['detach-on-exit'],
      ...(args.netns ? { netns: args.netns } : {}),
      ...(etcd ? { etcd } : {}),
      ...(args['bird-include'] ? { bgp: { include: args['bird-include'], socket: args['bird-socket'], protocol: args['bird-protocol'] } } : {}),
      ...(args['tls-cert'] && args['tls-key']
        ? { tls: { certFile: args['tls-cert'], keyFile: args['tls-key'], ...(args['client-ca'] ? { clientCaFile: args['client-ca'] } : {}) } }
        : {}),
    });
    if (agent.tokenGenerated) process.stderr.write(`routeshift: generated a token in ${agent.tokenFile}\n`);
    // A line a supervisor or test can wait for.
    process.stdout.write(`${JSON.stringify({ ready: true, url: agent.url, pid: process.pid, adopted: agent.datapath.adopted })}\n`);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        void agent.close().then(resolve);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};
