/**
 * `routeshift status URL…` — what each agent holds (hook, tunnel, apps with
 * their action and counters, deliveries), which migrations in the state
 * directory did not finish, and which journals there are damaged (and why:
 * `--resume` refuses while they are there).
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import type { AgentStatus, App, Delivery } from '../../controller/agent-client.js';
import { DEFAULT_STATE_DIR } from '../../controller/journal.js';
import { message } from '../../controller/machine.js';
import { journalReport, type JournalReport } from '../../controller/unfinished.js';
import type { Proto } from '../../model/entry.js';
import { ExitCode } from '../exit.js';
import { printJson } from '../json.js';
import { UsageError } from '../common.js';
import { watchRates } from '../watch.js';
import { agentOptions, httpConnector, parseUrl } from '../options.js';

interface StatusArgs {
  agents: string[];
  'token-file'?: string;
  'agent-timeout-ms': number;
  'state-dir': string;
  json: boolean;
  watch: boolean;
  interval: number;
  count?: number;
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
      .option('watch', { type: 'boolean', default: false, describe: 'refresh every --interval seconds with live packets/s per app and action (Ctrl-C ends it)' })
      .option('interval', { type: 'number', default: 2, describe: '--watch: seconds between refreshes' })
      .option('count', { type: 'number', describe: '--watch: stop after this many refreshes' })
      .epilog('Exit codes: 0 every agent answered, 1 some agent did not, 2 bad usage.') as unknown as Argv<StatusArgs>,
  handler: async (args: ArgumentsCamelCase<StatusArgs>) => {
    const urls = args.agents.flatMap((a) => a.split(',')).filter(Boolean).map((a) => parseUrl(a, 'agent'));
    const connect = httpConnector(args);
    if (args.watch) {
      if (args.json) throw new UsageError('--watch is for a terminal; for machines use --json without it, or the agents\' /metrics');
      if (!(args.interval >= 0.2 && args.interval <= 3600)) throw new UsageError('--interval must be between 0.2 and 3600 seconds');
      if (args.count !== undefined && !(Number.isInteger(args.count) && args.count >= 1)) throw new UsageError('--count must be a whole number ≥ 1');
      const w = await watchRates({ agents: urls.map(connect), intervalS: args.interval, count: args.count, write: (s) => process.stdout.write(s), clear: process.stdout.isTTY === true });
      process.exitCode = w.allAnswered === w.refreshes ? ExitCode.Ok : ExitCode.Failed;
      return;
    }
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
    const journals = readJournals(args['state-dir']);
    if (args.json) printJson('Status', { agents: reports, ...journals });
    else process.stdout.write(text(reports, journals));
    process.exitCode = reports.every((r) => r.ok) ? ExitCode.Ok : ExitCode.Failed;
  },
};

/** The journals' report; a state directory that cannot be read is reported too, not thrown. */
function readJournals(stateDir: string): JournalReport & { journalError?: string } {
  try {
    return journalReport(stateDir);
  } catch (err) {
    return { unfinished: [], damaged: [], journalError: message(err) };
  }
}

function action(a: App): string {
  return a.action.type === 'local' ? 'LOCAL' : `FORWARD → ${a.action.tunnel}`;
}

function key(x: { address: string; proto: Proto; port: number }): string {
  return x.port ? `${x.address} ${String(x.proto)}/${x.port}` : x.proto === 'any' ? x.address : `${x.address} ${String(x.proto)}`;
}

function text(reports: AgentReport[], journals: ReturnType<typeof readJournals>): string {
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
  for (const u of journals.unfinished) {
    const legacy = u.legacy ? ' (previous journal format: no checksums)' : '';
    const next = u.blockedBy ? `--resume refuses while the newer damaged journal ${u.blockedBy} is there (below)` : `run routeshift migrate ${u.app} --resume`;
    out.push(`unfinished: ${u.app} (${u.from} → ${u.to}) at ${u.state}${u.outcome ? ` [${u.outcome}]` : ''}, journal ${u.journal}${legacy}: ${next}`);
  }
  for (const d of journals.damaged) {
    out.push(
      `damaged journal: ${d.path}: ${d.reason}; ${d.apps.length ? `plans ${d.apps.join(', ')}` : 'no readable plan'}. ` +
        '--resume refuses for any app with no readable journal newer than it: inspect it, then move it aside (mv FILE FILE.damaged) or finish by hand',
    );
  }
  if (journals.journalError) out.push(`journals: ${journals.journalError}`);
  return out.join('\n') + '\n';
}
