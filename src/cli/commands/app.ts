/** `routeshift app add|list|show|rm`: manage one agent's application entries. */
import { isIP } from 'node:net';
import type { Argv, CommandModule } from 'yargs';
import type { Action, AgentApi, App, AppSpec, Proto } from '../../controller/agent-client.js';
import { announcementApi } from '../../controller/announce.js';
import { EntryRollbackError, UsageError } from '../common.js';
import { printJson } from '../json.js';
import { connectionOptions, httpConnector, parseUrl, type ConnectionArgs } from '../options.js';

interface CommonArgs extends ConnectionArgs {
  agent: string;
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

function client(args: CommonArgs): AgentApi {
  return httpConnector(args)(parseUrl(args.agent, '--agent'));
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

/** The spec that writes `app` again as it is (a MAC the agent resolved is resolved again). */
function specOf(app: App): AppSpec {
  return { address: app.address, proto: app.proto, port: app.port, dev: app.dev, ...(app.mac && app.macSource === 'given' ? { mac: app.mac } : {}), action: app.action };
}

/**
 * Undo `app add`'s write after its announcement failed: delete the entry it
 * created, or put back the one it replaced — only while the entry is still
 * the one written (its generation). Answers what was done; throws
 * EntryRollbackError when the entry stays as written.
 */
async function rollBackEntry(agent: AgentApi, written: App, before: App | undefined, why: string): Promise<string> {
  const guard = written.generation ? { ifGeneration: written.generation } : {};
  try {
    if (before) {
      await agent.putApp(written.name, specOf(before), guard);
      return 'its entry was put back as it was before (nothing changed)';
    }
    await agent.deleteApp(written.name, guard);
    return 'the entry this command created was removed again (nothing changed)';
  } catch (err) {
    throw new EntryRollbackError(
      `announcing ${written.name} failed: ${why}; rolling its entry back failed too: ${(err as Error).message}; ` +
        `the entry is as this command wrote it — check with \`routeshift app list\` and remove or rewrite it by hand`,
    );
  }
}

const common = <T>(y: Argv<T>) =>
  connectionOptions(y)
    .option('agent', { type: 'string', demandOption: true, describe: 'Agent URL, e.g. http://10.0.0.1:7450' })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON' });

const add: CommandModule<object, CommonArgs & { name: string; addr: string; dev: string; mac?: string; forward?: string; announce: boolean }> = {
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
      .option('forward', { type: 'string', describe: "Forward to this host's tunnel address instead of delivering locally" })
      .option('announce', {
        type: 'boolean',
        default: false,
        describe: "Then have the agent announce the address over BGP through its host's BIRD (agent --bird-include; migrate --announce bgp moves it)",
      }) as never,
  handler: async (args) => {
    const spec: AppSpec = { ...parseAddrArg(args.addr), dev: args.dev };
    if (args.mac) spec.mac = args.mac;
    if (args.forward) spec.action = { type: 'forward', tunnel: args.forward };
    const agent = client(args);
    // With --announce, all or nothing: the entry as it was is kept to be put back if announcing fails.
    const before = args.announce ? await agent.getApp(args.name) : undefined;
    const app = await agent.putApp(args.name, spec);
    if (args.announce) {
      try {
        await announcementApi(agent).changeAnnouncements({ announce: [{ name: app.name, address: app.address }] });
      } catch (err) {
        const why = (err as Error).message;
        const undone = await rollBackEntry(agent, app, before, why);
        throw new Error(`announcing ${app.name} failed: ${why}; ${undone}`);
      }
    }
    if (args.json) printJson('App', { agent: parseUrl(args.agent, '--agent'), app });
    else process.stdout.write(`${app.name}: ${app.address} on ${app.dev}, ${describeAction(app.action)}, via ${describePath(app.path)}${args.announce ? ', announced over BGP' : ''}\n`);
  },
};

const list: CommandModule<object, CommonArgs> = {
  command: 'list',
  describe: "List an agent's application entries with their counters",
  builder: (y) => common(y) as never,
  handler: async (args) => {
    const apps = await client(args).listApps();
    if (args.json) printJson('AppList', { agent: parseUrl(args.agent, '--agent'), items: apps });
    else printApps(apps);
  },
};

const rm: CommandModule<object, CommonArgs & { name: string; withdraw: boolean }> = {
  command: 'rm <name>',
  describe: 'Remove an application entry (its packets go to the kernel again)',
  builder: (y) =>
    common(y)
      .positional('name', { type: 'string', demandOption: true })
      .option('withdraw', { type: 'boolean', default: false, describe: "First have the agent withdraw the app's BGP announcement (agent --bird-include)" }) as never,
  handler: async (args) => {
    const agent = client(args);
    if (args.withdraw) await announcementApi(agent).changeAnnouncements({ withdraw: [args.name] });
    const removed = await agent.deleteApp(args.name);
    if (!removed) throw new Error(`no app named ${args.name} on ${args.agent}`); // exit 1: failed, nothing changed
    if (args.json) printJson('AppRemoved', { agent: parseUrl(args.agent, '--agent'), name: args.name });
    else process.stdout.write(`removed ${args.name}\n`);
  },
};

export const appCommand: CommandModule = {
  command: 'app <command>',
  describe: "Manage an agent's application (redirect) entries",
  builder: (y) => y.command(add).command(list).command(rm).demandCommand(1, 'say add, list or rm'),
  handler: () => undefined,
};
