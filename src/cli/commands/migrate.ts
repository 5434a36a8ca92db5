/**
 * `routeshift migrate NAME --from URL --to URL --dest-dev IF` — move one
 * application by map updates (docs/architecture.md, the migration protocol), or with
 * `--resume` finish/undo one a dead controller left half-way.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { checkName } from '../../controller/agent-client.js';
import { COMMIT_POINT, describeTable, type MigrationResult } from '../../controller/machine.js';
import { ControllerMetrics } from '../../controller/metrics.js';
import { migrate } from '../../controller/migrate.js';
import { resume, type ResumeResult } from '../../controller/resume.js';
import { UsageError } from '../common.js';
import { ExitCode, exitCodeOfOutcome } from '../exit.js';
import { controllerMetricsBody, printJson } from '../json.js';
import { migrationPlanText, planMigration } from '../migrate-plan.js';
import { reportMigrations } from '../report.js';
import { announceSpec, driverSpec, migrationAgents, migrationOptions, preserveSpec, leaseTtl, timing, type SharedArgs } from '../options.js';
import { ProgressPrinter, fmtMs } from '../progress.js';

interface MigrateArgs extends SharedArgs {
  name: string;
  from?: string;
  to?: string;
  'dest-dev'?: string;
  'dest-mac'?: string;
  resume: boolean;
  'dry-run': boolean;
}

export const migrateCommand: CommandModule<object, MigrateArgs> = {
  command: 'migrate <name>',
  describe: 'live-migrate one application from one host to another by changing BPF map entries',
  builder: (y: Argv<object>) =>
    migrationOptions(
      y
        .positional('name', { type: 'string', demandOption: true, describe: 'the app\'s name on the source agent' })
        .option('from', { type: 'string', describe: 'source agent URL (where the app is LOCAL now); with --etcd its host id (HOST or HOST=URL)' })
        .option('to', { type: 'string', describe: 'destination agent URL; with --etcd its host id (HOST or HOST=URL)' })
        .option('dest-dev', { type: 'string', describe: 'the app\'s interface on the destination host (e.g. its veth)' })
        .option('dest-mac', { type: 'string', describe: 'the app\'s MAC on the destination (default: the agent looks it up)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan (agents, entry, steps) read from the agents, and change nothing' })
        .option('resume', {
          type: 'boolean',
          default: false,
          describe:
            'finish or roll back the last migration of NAME from its journal in --state-dir (after a controller crash); other options come from the journal. ' +
            'Refuses (exit 3, changing nothing) when a journal it would have to trust is damaged, and says why and what to do',
        }),
    ).epilog(
      `Steps (each journaled before it is applied; any failure before ${COMMIT_POINT} rolls back, from ${COMMIT_POINT} on the migration rolls forward):\n\n${describeTable()}\n\n` +
        'Exit codes: 0 done, 1 failed and rolled back, 2 bad usage, 3 failed and needs attention (see --resume), or --resume refused a damaged journal.',
    ) as unknown as Argv<MigrateArgs>,
  handler: async (args: ArgumentsCamelCase<MigrateArgs>) => {
    const name = checkName(args.name);
    if (args['dry-run'] && args.resume) throw new UsageError('--dry-run plans a new migration; --resume continues one: give one of them');
    const agents = migrationAgents(args);
    const connect = agents.connect;
    const metrics = new ControllerMetrics();
    const printer = args.json ? undefined : new ProgressPrinter(process.stdout, 1);
    let result: MigrationResult | ResumeResult;
    if (args.resume) {
      if (!args.json) process.stdout.write(`resuming the migration of ${name} from ${args['state-dir']}\n`);
      result = await resume({ stateDir: args['state-dir'], app: name, connect, metrics, leaseTtlMs: leaseTtl(args), ...(printer ? { observe: printer.observer } : {}) });
    } else {
      const missing = (['from', 'to', 'dest-dev'] as const).filter((k) => !args[k]);
      if (missing.length) throw new UsageError(`migrate needs ${missing.map((k) => `--${k}`).join(', ')} (or --resume)`);
      const opts = {
        app: name,
        from: agents.ref(args.from as string, '--from'),
        to: agents.ref(args.to as string, '--to'),
        destDev: args['dest-dev'] as string,
        ...(args['dest-mac'] ? { destMac: args['dest-mac'] } : {}),
        driver: driverSpec(args),
        announce: announceSpec(args),
        timing: timing(args),
        leaseTtlMs: leaseTtl(args),
        ...(preserveSpec(args) ? { preserve: preserveSpec(args) } : {}),
        stateDir: args['state-dir'],
        connect,
        metrics,
        ...(printer ? { observe: printer.observer } : {}),
      };
      if (opts.from === opts.to) throw new UsageError('--from and --to name the same agent');
      if (args['dry-run']) {
        const plan = await planMigration(connect(opts.from), connect(opts.to), name, opts.destDev);
        if (args.json) printJson('MigrationPlan', { ...plan, driver: opts.driver.kind, announce: opts.announce.kind });
        else process.stdout.write(migrationPlanText(plan, opts.driver.kind, opts.announce.kind));
        // PREPARE would refuse: say so in the exit code too (nothing changed).
        process.exitCode = plan.items.length ? ExitCode.Ok : ExitCode.Failed;
        return;
      }
      if (!args.json) process.stdout.write(`migrating ${name}: ${opts.from} → ${opts.to}\n`);
      result = await migrate(opts);
    }
    printer?.flush();
    // A resume that found nothing to do was reported by the run that finished it.
    if (!('decision' in result && result.decision === 'nothing')) await reportMigrations(connect, [result]);
    if (args.json) {
      printJson('decision' in result ? 'ResumeResult' : 'MigrationResult', { ...result, metrics: controllerMetricsBody(await metrics.json()) });
    } else {
      process.stdout.write(summary(result) + '\n');
    }
    process.exitCode = exitCodeOfOutcome(result.outcome);
  },
};

function summary(r: MigrationResult): string {
  const phases = Object.entries(r.phases)
    .map(([k, v]) => `${k} ${fmtMs(v)}`)
    .join(', ');
  switch (r.outcome) {
    case 'done':
      return `${r.app} now runs on ${r.to} (${fmtMs(r.totalMs)}${phases ? `; ${phases}` : ''})`;
    case 'rolled-back':
      return `${r.app} stays on ${r.from}: rolled back after ${r.error ?? 'a failure'}`;
    case 'failed':
      return (
        `${r.app} NEEDS ATTENTION: ${r.error ?? 'failed'}\n` +
        `  journal ${r.journal}; fix the cause, then run: routeshift migrate ${r.app} --resume`
      );
  }
}
