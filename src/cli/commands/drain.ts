/**
 * `routeshift drain URL --to URL[,URL…]` — kernel migration: move every app
 * that is LOCAL on one host to other hosts, switching them all in one
 * batched map update, so the host can be emptied and its kernel replaced.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { drain, planDrain, type DrainPlan, type DrainResult } from '../../controller/drain.js';
import { ControllerMetrics } from '../../controller/metrics.js';
import { UsageError } from '../common.js';
import { exitCodeOfOutcome } from '../exit.js';
import { controllerMetricsBody, printJson } from '../json.js';
import { reportMigrations } from '../report.js';
import { announceSpec, driverSpec, migrationAgents, migrationOptions, preserveSpec, leaseTtl, timing, type SharedArgs } from '../options.js';
import { ProgressPrinter, fmtMs } from '../progress.js';

interface DrainArgs extends SharedArgs {
  source: string;
  to: string;
  'dest-dev': string;
  concurrency: number;
  'dry-run': boolean;
}

export const drainCommand: CommandModule<object, DrainArgs> = {
  command: 'drain <source>',
  describe: 'migrate every application off a host (kernel migration), switching all in one batched map update',
  builder: (y: Argv<object>) =>
    migrationOptions(
      y
        .positional('source', { type: 'string', demandOption: true, describe: 'agent URL of the host to empty; with --etcd its host id (HOST or HOST=URL)' })
        .option('to', { type: 'string', demandOption: true, describe: 'destination agent URL(s), comma-separated; apps are spread round-robin' })
        .option('dest-dev', {
          type: 'string',
          default: '{dev}',
          describe: 'each app\'s interface on its destination; {dev} = its device on the source, {app}, {index} = destination position',
        })
        .option('concurrency', { type: 'number', default: 16, describe: 'apps started / probed / stopped at the same time' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan (which app goes where) and change nothing' }),
    ).epilog(
      'Exit codes: 0 every app moved, 1 failed and rolled back (some or all apps stayed), 2 bad usage, 3 some app needs attention (see `migrate NAME --resume`).',
    ) as unknown as Argv<DrainArgs>,
  handler: async (args: ArgumentsCamelCase<DrainArgs>) => {
    const agents = migrationAgents(args);
    const source = agents.ref(args.source, 'source');
    const destinations = args.to.split(',').map((s) => s.trim()).filter(Boolean).map((u) => agents.ref(u, '--to'));
    if (!destinations.length) throw new UsageError('--to needs at least one agent URL');
    if (new Set(destinations).size !== destinations.length) throw new UsageError('--to names an agent twice');
    if (destinations.includes(source)) throw new UsageError(`--to includes the host being drained (${source})`);
    if (!Number.isInteger(args.concurrency) || args.concurrency < 1) throw new UsageError('--concurrency must be a whole number ≥ 1');
    const connect = agents.connect;

    if (args['dry-run']) {
      const plan = await planDrain(connect(source), destinations.map(connect), args['dest-dev']);
      if (args.json) printJson('DrainPlan', { ...plan });
      else process.stdout.write(planText(plan));
      return;
    }
    const metrics = new ControllerMetrics();
    const printer = args.json ? undefined : new ProgressPrinter(process.stdout, 2);
    if (!args.json) process.stdout.write(`draining ${source} → ${destinations.join(', ')}\n`);
    const result = await drain({
      source,
      destinations,
      destDev: args['dest-dev'],
      driver: driverSpec(args),
      announce: announceSpec(args),
      timing: timing(args),
      leaseTtlMs: leaseTtl(args),
      ...(preserveSpec(args) ? { preserve: preserveSpec(args) } : {}),
      stateDir: args['state-dir'],
      concurrency: args.concurrency,
      connect,
      metrics,
      ...(printer ? { observe: printer.observer } : {}),
    });
    printer?.flush();
    await reportMigrations(connect, result.apps);
    if (args.json) printJson('DrainResult', { ...result, metrics: controllerMetricsBody(await metrics.json()) });
    else process.stdout.write(resultText(result));
    process.exitCode = exitCodeOfOutcome(result.outcome);
  },
};

function planText(plan: DrainPlan): string {
  const lines = [`plan: drain ${plan.source} (${plan.items.length} apps)`];
  for (const i of plan.items) {
    lines.push(`  ${i.app.padEnd(20)} ${`${i.address}${i.port ? `:${i.proto}/${i.port}` : ''}`.padEnd(28)} → ${i.to}  dev ${i.destDev}`);
  }
  for (const s of plan.skipped) lines.push(`  ${s.app.padEnd(20)} skipped: ${s.reason}`);
  if (!plan.items.length) lines.push('  nothing to move: no LOCAL entries');
  return lines.join('\n') + '\n';
}

function resultText(r: DrainResult): string {
  const lines: string[] = [];
  const done = r.apps.filter((a) => a.outcome === 'done').length;
  lines.push(`${done}/${r.apps.length} apps moved off ${r.source} in ${fmtMs(r.totalMs)} (switch: ${r.switchMode}${r.batches.SWITCH !== undefined ? `, ${fmtMs(r.batches.SWITCH)}` : ''})`);
  for (const a of r.apps) {
    const total = Object.values(a.phases).reduce((s, v) => s + v, 0);
    const mark = a.outcome === 'done' ? '✓' : a.outcome === 'rolled-back' ? '↶' : '✗';
    lines.push(`  ${mark} ${a.app.padEnd(20)} → ${a.to}  ${fmtMs(total)}${a.error ? `  ${a.error}` : ''}`);
  }
  if (r.leftLocal.length) lines.push(`  still LOCAL on ${r.source}: ${r.leftLocal.join(', ')}`);
  const attention = r.apps.filter((a) => a.outcome === 'failed');
  for (const a of attention) lines.push(`  ${a.app} NEEDS ATTENTION: fix the cause, then run: routeshift migrate ${a.app} --resume`);
  return lines.join('\n') + '\n';
}
