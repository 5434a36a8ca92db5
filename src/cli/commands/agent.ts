/** `routeshift agent`: run the per-host daemon, or remove what it made (--cleanup). */
import type { CommandModule } from 'yargs';
import { DEFAULT_LISTEN, DEFAULT_TOKEN_FILE } from '../../agent/defaults.js';
import { DEFAULT_CAPACITY } from '../../datapath/structs.js';
import { UsageError } from '../common.js';

interface AgentArgs {
  uplink: string;
  listen: string;
  'token-file': string;
  'pin-dir'?: string;
  'tunnel-addr'?: string[];
  mtu?: number;
  'xdp-mode': 'native' | 'generic';
  capacity?: number;
  insecure: boolean;
  replace: boolean;
  'detach-on-exit': boolean;
  cleanup: boolean;
  'tls-cert'?: string;
  'tls-key'?: string;
  netns?: string;
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
      .option('insecure', { type: 'boolean', default: false, describe: 'Serve without a token (local demos only; loopback only)' })
      .option('replace', { type: 'boolean', default: false, describe: "Take over an uplink whose XDP program is not routeshift's" })
      .option('detach-on-exit', { type: 'boolean', default: false, describe: 'Detach the program on shutdown (default: keep forwarding)' })
      .option('cleanup', { type: 'boolean', default: false, describe: 'Detach routeshift from the uplink and remove its pinned maps, then exit' })
      .option('tls-cert', { type: 'string', describe: 'Serve HTTPS with this certificate (PEM)' })
      .option('tls-key', { type: 'string', describe: 'Private key (PEM) for --tls-cert' })
      .option('netns', {
        type: 'string',
        describe: 'Drive the data plane of network namespace NAME while serving the API from here (test topologies, demo)',
      })
      .example('$0 agent --uplink eth0 --listen 10.0.0.1:7450', 'run on a host; the token is written to /etc/routeshift/token')
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
    if (args.capacity !== undefined && (!Number.isInteger(args.capacity) || args.capacity < 1)) {
      throw new UsageError('--capacity must be a positive integer');
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
      replace: args.replace,
      detachOnExit: args['detach-on-exit'],
      ...(args.netns ? { netns: args.netns } : {}),
      ...(args['tls-cert'] && args['tls-key'] ? { tls: { certFile: args['tls-cert'], keyFile: args['tls-key'] } } : {}),
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
