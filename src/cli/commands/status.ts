/**
 * `routeshift status URL…` — what each agent holds (hook, tunnel, apps with
 * their action and counters, deliveries), and which migrations in the
 * state directory did not finish.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import type { AgentStatus, App, Delivery } from '../../controller/agent-client.js';
import { DEFAULT_STATE_DIR } from '../../controller/journal.js';
import { message } from '../../controller/machine.js';
import { unfinishedMigrations, type Unfinished } from '../../controller/unfinished.js';
import type { Proto } from '../../model/entry.js';
import { ExitCode } from '../exit.js';
import { agentOptions, httpConnector, parseUrl } from '../options.js';

interface StatusArgs {
  agents: string[];
  'token-file'?: string;
  'agent-timeout-ms': number;
  'state-dir': string;
  json: boolean;
}

interface AgentReport {
  url: string;
  ok: boolean;
  error?: string;
  status?: AgentStatus;
  apps?: App[];
  deliveries?: Delivery[];
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status <agents..>',
  describe: 'show what each agent holds, and unfinished migrations',
  builder: (y: Argv<object>) =>
    agentOptions(
      // Variadic positionals need duplicate arguments kept as an array; the
      // top-level parser may turn that off (it did: last one wins), so this command turns it back on.
      y
        .parserConfiguration({ 'duplicate-arguments-array': true })
        .positional('agents', { type: 'string', array: true, demandOption: true, describe: 'agent URL(s), or one comma-separated list' }),
    )
      .option('state-dir', { type: 'string', default: DEFAULT_STATE_DIR, describe: 'controller state directory to check for unfinished migrations' })
      .epilog('Exit codes: 0 every agent answered, 1 some agent did not, 2 bad usage.') as unknown as Argv<StatusArgs>,
  handler: async (args: ArgumentsCamelCase<StatusArgs>) => {
    const urls = args.agents.flatMap((a) => a.split(',')).filter(Boolean).map((a) => parseUrl(a, 'agent'));
    const connect = httpConnector(args);
    const reports = await Promise.all(
      urls.map(async (url): Promise<AgentReport> => {
        const c = connect(url);
        try {
          const [status, apps, deliveries] = await Promise.all([c.status(), c.listApps(), c.listDeliveries()]);
          return { url: c.url, ok: true, status, apps, deliveries };
        } catch (err) {
          return { url: c.url, ok: false, error: message(err) };
        }
      }),
    );
    const unfinished = unfinishedMigrations(args['state-dir']);
    if (args.json) process.stdout.write(JSON.stringify({ agents: reports, unfinished }, null, 2) + '\n');
    else process.stdout.write(text(reports, unfinished));
    process.exitCode = reports.every((r) => r.ok) ? ExitCode.Ok : ExitCode.Failed;
  },
};

function action(a: App): string {
  return a.action.type === 'local' ? 'LOCAL' : `FORWARD → ${a.action.tunnel}`;
}

function key(x: { address: string; proto: Proto; port: number }): string {
  return x.port ? `${x.address} ${String(x.proto)}/${x.port}` : x.proto === 'any' ? x.address : `${x.address} ${String(x.proto)}`;
}

function text(reports: AgentReport[], unfinished: Unfinished[]): string {
  const out: string[] = [];
  for (const r of reports) {
    if (!r.ok || !r.status) {
      out.push(`${r.url}: ${r.error ?? 'no answer'}`);
      continue;
    }
    const s = r.status;
    const tunnels = [s.tunnel.v4, s.tunnel.v6].filter(Boolean).join(', ') || 'none';
    const out4 = s.hook.uplinkTx ? `, out ${s.hook.uplinkTx}${s.hook.checksPartialChecksums ? ', partial checksums checked' : ''}` : '';
    out.push(`${r.url}: uplink ${s.uplink} (${s.hook.mode}${out4}), tunnel ${tunnels}, ${s.entries.apps} apps, ${s.entries.deliveries} deliveries, up ${s.uptimeSeconds}s, v${s.version}`);
    for (const [dev, d] of Object.entries(s.devices ?? {})) {
      out.push(`  device   ${dev.padEnd(20)} ${String(d.entries).padStart(6)} entries  via ${d.path}${d.slowPath ? ` (${d.slowPath} for partial checksums)` : ''}: ${d.why}`);
    }
    for (const a of r.apps ?? []) {
      out.push(
        `  app      ${a.name.padEnd(20)} ${key(a).padEnd(28)} dev ${a.dev.padEnd(12)} ${action(a).padEnd(24)} via ${a.path.via.padEnd(12)} local ${a.counters.local.packets} pkts, forward ${a.counters.forward.packets} pkts`,
      );
    }
    for (const d of r.deliveries ?? []) {
      out.push(`  delivery ${d.name.padEnd(20)} ${key(d).padEnd(28)} dev ${d.dev.padEnd(12)} via ${d.path.via.padEnd(12)} delivered ${d.counters.deliver.packets} pkts`);
    }
  }
  for (const u of unfinished) {
    out.push(`unfinished: ${u.app} (${u.from} → ${u.to}) at ${u.state}${u.outcome ? ` [${u.outcome}]` : ''}, journal ${u.journal}: run routeshift migrate ${u.app} --resume`);
  }
  return out.join('\n') + '\n';
}
