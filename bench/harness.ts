/**
 * The benchmark harness: each benchmark is a module that measures its
 * figure and its baseline in the same run and returns rows; the harness
 * runs a selection, prints a table, and writes JSON. A benchmark that throws
 * is "broken" (the run fails); a missed goal is only reported.
 */
import { cpus, hostname, release, totalmem } from 'node:os';

export interface Row {
  /** Benchmark row name, e.g. 'fwd ns/pkt'. */
  name: string;
  figure: number;
  unit: string;
  baseline: number;
  baselineName: string;
  /** figure / baseline. */
  ratio: number;
  /** Human-readable goal, e.g. '≤ 1.25×'; '—' when the row is informational. */
  goal: string;
  /** Whether the goal is met; null for informational rows. */
  pass: boolean | null;
  /** How it was measured, caveats. */
  note?: string;
  /** Further numbers of the same measurement (counts, rates of the sender…). */
  extra?: Record<string, number | string | boolean>;
  /** The benchmark that produced the row (set by the harness). */
  bench?: string;
}

export interface BenchContext {
  quick: boolean;
  log(msg: string): void;
}

export interface Benchmark {
  /** Short name used on the command line, e.g. 'fwd'. */
  name: string;
  /** One line: what is measured against what. */
  title: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

export interface BenchResults {
  date: string;
  quick: boolean;
  machine: { hostname: string; kernel: string; cpu: string; cpus: number; memGiB: number };
  rows: Row[];
  broken: { name: string; error: string }[];
  durationsMs: Record<string, number>;
  /**
   * The run (its date) and kernel each benchmark's rows come from: one run
   * for all, unless a run of some benchmarks was merged into earlier
   * results (mergeResults).
   */
  runs?: Record<string, { date: string; kernel: string }>;
}

/**
 * A row comparing figure to baseline against a "≤ max×" goal (null max =
 * informational), or a "≥ min×" goal when `minRatio` is given. `also` is a
 * further condition of the goal (e.g. 0 lost) with its text for the goal.
 */
export function ratioRow(
  r: Omit<Row, 'ratio' | 'goal' | 'pass'> & { maxRatio: number | null; minRatio?: number; also?: { ok: boolean; goal: string } },
): Row {
  const { maxRatio, minRatio, also, ...rest } = r;
  const ratio = r.baseline > 0 ? r.figure / r.baseline : Number.NaN;
  let goal = '—';
  let pass: boolean | null = null;
  if (minRatio !== undefined) {
    goal = `≥ ${minRatio}×`;
    pass = Number.isFinite(ratio) && ratio >= minRatio;
  } else if (maxRatio !== null) {
    goal = `≤ ${maxRatio}×`;
    pass = Number.isFinite(ratio) && ratio <= maxRatio;
  }
  if (also) {
    goal = goal === '—' ? also.goal : `${goal}, ${also.goal}`;
    pass = (pass ?? true) && also.ok;
  }
  return { ...rest, ratio, goal, pass };
}

export function machineInfo(): BenchResults['machine'] {
  const c = cpus();
  return {
    hostname: hostname(),
    kernel: release(),
    cpu: c[0]?.model ?? 'unknown',
    cpus: c.length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

export async function runBenchmarks(
  all: readonly Benchmark[],
  names: readonly string[],
  opts: { quick: boolean; log?: (msg: string) => void },
): Promise<BenchResults> {
  const unknown = names.filter((n) => !all.some((b) => b.name === n));
  if (unknown.length) {
    throw new Error(`unknown benchmark ${unknown.join(', ')} (known: ${all.map((b) => b.name).join(', ')})`);
  }
  const chosen = names.length ? all.filter((b) => names.includes(b.name)) : all;
  const log = opts.log ?? (() => undefined);
  const results: BenchResults = {
    date: new Date().toISOString(),
    quick: opts.quick,
    machine: machineInfo(),
    rows: [],
    broken: [],
    durationsMs: {},
    runs: {},
  };
  for (const b of chosen) {
    const t0 = performance.now();
    results.runs![b.name] = { date: results.date, kernel: results.machine.kernel };
    log(`running ${b.name}: ${b.title}${opts.quick ? ' (quick)' : ''}`);
    try {
      const rows = await b.run({ quick: opts.quick, log: (m) => log(`  ${b.name}: ${m}`) });
      const bad = rows.filter((r) => !Number.isFinite(r.figure) || !Number.isFinite(r.baseline) || !Number.isFinite(r.ratio));
      if (!rows.length || bad.length) {
        throw new Error(`produced ${rows.length} rows, ${bad.length} without finite numbers`);
      }
      results.rows.push(...rows.map((r) => ({ ...r, bench: b.name })));
    } catch (err) {
      results.broken.push({ name: b.name, error: err instanceof Error ? err.message : String(err) });
    }
    results.durationsMs[b.name] = Math.round(performance.now() - t0);
  }
  return results;
}

/**
 * A run of some benchmarks merged into earlier results: the rows, duration,
 * breakage and run record of every benchmark that ran now replace those it
 * had; the other benchmarks' stay as they were measured, each with its own
 * date and kernel in `runs`. Rows are kept in `order` (benchmark names, the
 * run order). A row of earlier results that does not say which benchmark
 * made it is replaced by a fresh row of the same name, else kept, last.
 */
export function mergeResults(earlier: BenchResults, fresh: BenchResults, order: readonly string[]): BenchResults {
  const ran = new Set(Object.keys(fresh.durationsMs));
  const freshNames = new Set(fresh.rows.map((r) => r.name));
  const kept = earlier.rows.filter((r) => (r.bench ? !ran.has(r.bench) : !freshNames.has(r.name)));
  const rank = (r: Row): number => {
    const i = order.indexOf(r.bench ?? '');
    return i < 0 ? order.length : i;
  };
  const rows = [...kept, ...fresh.rows]
    .map((r, i) => ({ r, i }))
    .sort((a, b) => rank(a.r) - rank(b.r) || a.i - b.i)
    .map((x) => x.r);
  const byOrder = <T>(rec: Record<string, T>): Record<string, T> =>
    Object.fromEntries(Object.entries(rec).sort(([a], [b]) => (order.indexOf(a) >>> 0) - (order.indexOf(b) >>> 0)));
  const earlierRuns = earlier.runs ?? Object.fromEntries(Object.keys(earlier.durationsMs).map((n) => [n, { date: earlier.date, kernel: earlier.machine.kernel }]));
  const keptOf = <T>(rec: Record<string, T>): Record<string, T> => Object.fromEntries(Object.entries(rec).filter(([n]) => !ran.has(n)));
  return {
    ...fresh,
    rows,
    broken: [...earlier.broken.filter((b) => !ran.has(b.name)), ...fresh.broken],
    durationsMs: byOrder({ ...keptOf(earlier.durationsMs), ...fresh.durationsMs }),
    runs: byOrder({ ...keptOf(earlierRuns), ...(fresh.runs ?? {}) }),
  };
}

/**
 * When the benchmarks of merged results ran ("fwd, scale <date> on kernel
 * <k>; paths <date> on kernel <k>"), or undefined when they all ran in one
 * run: the date and the machine's kernel say it.
 */
export function mergedRuns(res: BenchResults): string | undefined {
  const groups = new Map<string, string[]>();
  for (const [name, r] of Object.entries(res.runs ?? {})) {
    const k = `${r.date} on kernel ${r.kernel}`;
    groups.set(k, [...(groups.get(k) ?? []), name]);
  }
  return groups.size > 1 ? [...groups].map(([k, names]) => `${names.join(', ')} ${k}`).join('; ') : undefined;
}

const fmt = (n: number): string =>
  !Number.isFinite(n) ? 'n/a' : Math.abs(n) >= 1000 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);

/** A ratio with two decimals, or two significant digits when smaller than 0.01 (never "0.00×"). */
export const fmtRatio = (r: number): string => `${Math.abs(r) > 0 && Math.abs(r) < 0.01 ? r.toPrecision(2) : r.toFixed(2)}×`;

export function formatTable(res: BenchResults): string {
  const head = ['benchmark', 'figure', 'baseline', 'ratio', 'goal', 'pass'];
  const body = res.rows.map((r) => [
    r.name,
    `${fmt(r.figure)} ${r.unit}`,
    `${fmt(r.baseline)} ${r.unit} (${r.baselineName})`,
    fmtRatio(r.ratio),
    r.goal,
    r.pass === null ? '—' : r.pass ? 'pass' : 'FAIL',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  for (const b of res.broken) out.push(`BROKEN ${b.name}: ${b.error}`);
  const merged = mergedRuns(res);
  out.push(
    `${res.machine.cpu}, ${res.machine.cpus} CPUs, ${merged ? `measured ${merged}` : `kernel ${res.machine.kernel}, ${res.date}`}${res.quick ? ' (quick: small sizes, not figures to quote)' : ''}`,
  );
  return out.join('\n');
}

/** The results as a Markdown table (for bench/README.md). */
export function formatMarkdown(res: BenchResults): string {
  const out = ['| benchmark | figure | baseline | ratio | goal | pass |', '|---|---|---|---|---|---|'];
  for (const r of res.rows) {
    out.push(
      `| ${r.name} | ${fmt(r.figure)} ${r.unit} | ${fmt(r.baseline)} ${r.unit} (${r.baselineName}) | ${fmtRatio(r.ratio)} | ${r.goal} | ${r.pass === null ? '—' : r.pass ? 'pass' : 'FAIL'} |`,
    );
  }
  for (const b of res.broken) out.push(`| ${b.name} | BROKEN: ${b.error} | | | | |`);
  const merged = mergedRuns(res);
  out.push(
    '',
    merged
      ? `Measured on ${res.machine.cpu}, ${res.machine.cpus} CPUs, ${res.machine.memGiB} GiB: ${merged}${res.quick ? ' (quick run)' : ''}.`
      : `Measured ${res.date} on ${res.machine.cpu}, ${res.machine.cpus} CPUs, ${res.machine.memGiB} GiB, kernel ${res.machine.kernel}${res.quick ? ' (quick run)' : ''}.`,
  );
  return out.join('\n');
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
