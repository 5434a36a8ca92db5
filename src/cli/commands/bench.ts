/**
 * `routeshift bench [name…] [--quick] [--json] [--out FILE]` — run the
 * benchmarks in bench/ (all, or the named ones), print figure, baseline,
 * ratio and goal per row, and write the results JSON with its plot and
 * Markdown page (bench/run.ts). Exits 1 only when a
 * benchmark is broken (it threw, or produced no numbers); a missed goal is
 * reported in the table, not in the exit code.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { BENCHMARK_NAMES } from '../../../bench/names.js';
import { UsageError } from '../common.js';
import { ExitCode } from '../exit.js';

interface BenchArgs {
  names: string[];
  quick: boolean;
  json: boolean;
  out?: string;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench [names..]',
  describe: 'run the benchmarks (each figure beside its baseline, as a ratio)',
  builder: (y: Argv<object>) =>
    y
      .parserConfiguration({ 'duplicate-arguments-array': true })
      .positional('names', {
        type: 'string',
        array: true,
        default: [],
        describe: `benchmarks to run (default all): ${BENCHMARK_NAMES.join(', ')}`,
      })
      .option('quick', { type: 'boolean', default: false, describe: 'small sizes and few repetitions (for tests; not figures to quote)' })
      .option('json', { type: 'boolean', default: false, describe: 'print the results as JSON instead of a table' })
      .option('out', { type: 'string', describe: 'results file (default bench/results.json, or bench/out/results-quick.json with --quick)' })
      .epilog('Writes the results JSON and, beside it, a plot (.svg) and a Markdown page (.md); a full run of every benchmark also rewrites the table in bench/README.md. Needs root (BPF, network namespaces) and the bench objects and helpers (`make -C bench`). Exit codes: 0 ran, 1 a benchmark is broken, 2 bad usage.') as unknown as Argv<BenchArgs>,
  handler: async (args: ArgumentsCamelCase<BenchArgs>) => {
    const names = (args.names ?? []).flatMap((n) => n.split(',')).filter(Boolean);
    const known: readonly string[] = BENCHMARK_NAMES;
    const unknown = names.filter((n) => !known.includes(n));
    if (unknown.length) {
      throw new UsageError(`unknown benchmark ${unknown.join(', ')} (known: ${BENCHMARK_NAMES.join(', ')})`);
    }
    // Loads every benchmark: only for this command. The installed package carries only their names.
    const { runBench } = await import('../../../bench/run.js').catch((err: unknown) => {
      if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
      throw new UsageError('the benchmarks run from a clone of the repository (`npm run bench`); the installed package does not carry them');
    });
    const { results } = await runBench({ names, quick: args.quick, json: args.json, ...(args.out ? { out: args.out } : {}) });
    process.exitCode = results.broken.length ? ExitCode.Failed : ExitCode.Ok;
  },
};
