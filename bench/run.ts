/**
 * Run benchmarks, print the table, write the results JSON.
 *
 *   node dist/bench/run.js [name…] [--quick] [--json] [--out FILE]
 *   node dist/bench/run.js --markdown [FILE]   (table of a results file, for bench/README.md)
 *
 * Default output: bench/results.json (bench/out/results-quick.json with
 * --quick, so a quick run never overwrites the figures of a real one), and
 * beside it the plot (.svg) and the Markdown page (.md) of the same results.
 * A run of some benchmarks to the default path merges into what the file
 * holds (the others' rows stay, each benchmark with its own run date in
 * `runs`); whenever the default full file then holds every benchmark, the
 * table in bench/README.md (between its results markers) is rewritten.
 * With --out FILE, FILE holds exactly this run.
 * Exit 1 only when a benchmark is broken, not when a goal is missed.
 */
import { jsonDocument } from '../src/cli/json.js';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { repoRoot } from '../src/bpf/native.js';
import { formatMarkdown, formatTable, mergeResults, runBenchmarks, type BenchResults } from './harness.js';
import { BENCHMARKS } from './index.js';
import { renderResultsMarkdown, renderSvg, updateReadme } from './report.js';

export interface RunOptions {
  names?: string[];
  quick?: boolean;
  /** Print the JSON instead of the table on stdout. */
  json?: boolean;
  /** Where to write the results; default as above. */
  out?: string;
  /** Progress lines (default: stderr). */
  log?: (msg: string) => void;
}

export function defaultOutPath(quick: boolean): string {
  return quick ? join(repoRoot(), 'bench', 'out', 'results-quick.json') : join(repoRoot(), 'bench', 'results.json');
}

/**
 * The earlier results a run of some benchmarks merges into: those in the
 * default results file, when it holds results of the same kind (quick or
 * not). A run of every benchmark, or to a file given with --out, replaces
 * the file instead.
 */
function earlierResults(out: string, quick: boolean, names: readonly string[]): BenchResults | undefined {
  if (!names.length || out !== resolve(defaultOutPath(quick)) || !existsSync(out)) return undefined;
  try {
    const r = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
    return r.quick === quick && Array.isArray(r.rows) ? r : undefined;
  } catch {
    return undefined;
  }
}

export async function runBench(opts: RunOptions = {}): Promise<{ results: BenchResults; out: string }> {
  const quick = opts.quick ?? false;
  const names = opts.names ?? [];
  const fresh = await runBenchmarks(BENCHMARKS, names, {
    quick,
    log: opts.log ?? ((m) => process.stderr.write(`[bench] ${m}\n`)),
  });
  const out = resolve(opts.out ?? defaultOutPath(quick));
  const earlier = earlierResults(out, quick, names);
  // a run of some benchmarks keeps the others' results in the default file (each with its own run date)
  const results = earlier ? mergeResults(earlier, fresh, BENCHMARKS.map((b) => b.name)) : fresh;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
  const base = out.replace(/\.json$/, '');
  writeFileSync(`${base}.svg`, renderSvg(results));
  writeFileSync(`${base}.md`, renderResultsMarkdown(results));
  const readme = join(repoRoot(), 'bench', 'README.md');
  const complete = BENCHMARKS.every((b) => b.name in results.durationsMs);
  const updated = out === resolve(defaultOutPath(false)) && !quick && complete && updateReadme(readme, results);
  // what ran now is printed (and returned); the file holds it merged with the rest
  process.stdout.write(opts.json ? jsonDocument('BenchResults', { ...fresh }) : formatTable(fresh) + '\n');
  if (!opts.json) {
    process.stderr.write(
      `[bench] results ${earlier ? `merged into the earlier results of the other benchmarks in` : 'written to'} ${out}, ${base}.svg, ${base}.md${updated ? `, table in ${readme}` : ''}\n`,
    );
  }
  return { results: fresh, out };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const names: string[] = [];
  const opts: RunOptions = { names };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--quick') opts.quick = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--out') opts.out = args[++i];
    else if (a === '--markdown') {
      // print the table of an existing results file: run.js --markdown [FILE]
      const file = args[i + 1] && !args[i + 1]!.startsWith('-') ? args[++i]! : defaultOutPath(false);
      process.stdout.write(formatMarkdown(JSON.parse(readFileSync(file, 'utf8')) as BenchResults) + '\n');
      return;
    }
    else if (a.startsWith('-')) {
      process.stderr.write(`usage: run.js [name…] [--quick] [--json] [--out FILE]\n`);
      process.exit(2);
    } else names.push(a);
  }
  const { results } = await runBench(opts);
  process.exitCode = results.broken.length ? 1 : 0;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
