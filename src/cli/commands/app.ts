/** `routeshift app add|list|show|rm`: manage one agent's application entries. */
import { isIP } from 'node:net';
import type { Argv, CommandModule } from 'yargs';
import { HttpAgentClient, type Action, type App, type AppSpec, type Proto } from '../../controller/agent-client.js';
import { UsageError, readTokenFile } from '../common.js';

interface CommonArgs {
  agent: string;
  'token-file'?: string;
  json: boolean;
}

/** "IP", "IP:PROTO/PORT", "[IPv6]:PROTO/PORT" or "IP:PROTO" → address, proto, port. */
function parseAddrArg(text: string): { address: string; proto: Proto; port: number } {
  const bad = (): never => {
    throw new UsageError(`--addr ${JSON.stringify(text)}: expected IP, IP:PROTO or IP:PROTO/PORT (IPv6 in brackets), e.g. 10.0.0.5:udp/53`);
  };
  let address = text;
  let rest = '';
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (v6) {
    address = v6[1]!;
    rest = v6[2] ?? '';
  } else if (isIP(text) === 0) {
    const i = text.lastIndexOf(':');
    if (i < 0) bad();
    address = text.slice(0, i);
    rest = text.slice(i + 1);
  }
  if (isIP(address) === 0) bad();
  if (!rest) return { address, proto: 'any', port: 0 };
  const m = /^(tcp|udp|icmp|any)(?:\/(\d{1,5}))?$/.exec(rest);
  if (!m) return bad();
  const port = m[2] ? Number(m[2]) : 0;
  if (port > 65535) bad();
  return { address, proto: m[1] as Proto, port };
}

function client(args: CommonArgs): HttpAgentClient {
  const token = readTokenFile(args['token-file']);
  return new HttpAgentClient(args.agent, token ? { token } : {});
}

function describeAction(a: Action): string {
  return a.type === 'local' ? 'LOCAL' : `FORWARD → ${a.tunnel}`;
}

function describePath(p: App['path']): string {
  return p.slowVia ? `${p.via} (${p.slowVia} for partial checksums)` : p.via;
}

function printApps(apps: App[]): void {
  if (apps.length === 0) {
    process.stdout.write('no applications\n');
    return;
  }
  const rows = apps.map((a) => [
    a.name,
    `${a.address}${a.proto === 'any' ? '' : `:${a.proto}${a.port ? `/${a.port}` : ''}`}`,
    a.dev,
    describeAction(a.action),
    describePath(a.path),
    a.counters.local.packets,
    a.counters.forward.packets,
  ]);
  const head = ['NAME', 'ADDRESS', 'DEV', 'ACTION', 'PATH', 'LOCAL PKTS', 'FORWARD PKTS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
}

const common = <T>(y: Argv<T>) =>
  y
    .option('agent', { type: 'string', demandOption: true, describe: 'Agent URL, e.g. http://10.0.0.1:7450' })
    .option('token-file', { type: 'string', describe: "Agent's bearer token file (default: $ROUTESHIFT_TOKEN_FILE)" })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON' });

const add: CommandModule<object, CommonArgs & { name: string; addr: string; dev: string; mac?: string; forward?: string }> = {
  command: 'add <name>',
  describe: 'Create (or update in place) an application entry: LOCAL, or FORWARD with --forward',
  builder: (y) =>
    common(y)
      .positional('name', { type: 'string', demandOption: true, describe: 'Application name (1-48 of A-Z a-z 0-9 _ . -)' })
      .option('addr', { type: 'string', demandOption: true, describe: 'IP, IP:PROTO or IP:PROTO/PORT the application serves' })
      .option('dev', { type: 'string', demandOption: true, describe: "The application's interface on the agent's host" })
      .option('mac', {
        type: 'string',
        describe: "The application's MAC (default: the agent follows the route to --addr on --dev and resolves the next hop's MAC, by ARP/ND if need be)",
      })
      .option('forward', { type: 'string', describe: "Forward to this host's tunnel address instead of delivering locally" }) as never,
  handler: async (args) => {
    const spec: AppSpec = { ...parseAddrArg(args.addr), dev: args.dev };
    if (args.mac) spec.mac = args.mac;
    if (args.forward) spec.action = { type: 'forward', tunnel: args.forward };
    const app = await client(args).putApp(args.name, spec);
    process.stdout.write(
      args.json ? `${JSON.stringify(app)}\n` : `${app.name}: ${app.address} on ${app.dev}, ${describeAction(app.action)}, via ${describePath(app.path)}\n`,
    );
  },
};

const list: CommandModule<object, CommonArgs> = {
  command: 'list',
  describe: "List an agent's application entries with their counters",
  builder: (y) => common(y) as never,
  handler: async (args) => {
    const apps = await client(args).listApps();
    if (args.json) process.stdout.write(`${JSON.stringify(apps)}\n`);
    else printApps(apps);
  },
};

const rm: CommandModule<object, CommonArgs & { name: string }> = {
  command: 'rm <name>',
  describe: 'Remove an application entry (its packets go to the kernel again)',
  builder: (y) => common(y).positional('name', { type: 'string', demandOption: true }) as never,
  handler: async (args) => {
    const removed = await client(args).deleteApp(args.name);
    if (!removed) throw new Error(`no app named ${args.name} on ${args.agent}`); // exit 1: failed, nothing changed
    process.stdout.write(args.json ? '{"removed":true}\n' : `removed ${args.name}\n`);
  },
};

export const appCommand: CommandModule = {
  command: 'app <command>',
  describe: "Manage an agent's application (redirect) entries",
  builder: (y) => y.command(add).command(list).command(rm).demandCommand(1, 'say add, list or rm'),
  handler: () => undefined,
};
