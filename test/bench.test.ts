/**
 * The routeshift-level benchmarks run in --quick mode through the CLI
 * (`routeshift bench pps paths map-update batch-update switchover drain
 * agent-memory --quick --json --out F`) and produce every row with numbers
 * (figure, baseline, ratio = figure / baseline, goal, pass) and no broken
 * benchmark; the plot and the Markdown page are written beside the JSON.
 * Figures are not judged (quick sizes are not figures to quote), except
 * what makes a row meaningful: the path delivered packets, the migration
 * lost nothing it could not explain, the sender outran the path, every
 * delivery path of the paths benchmark delivered what was sent on it.
 */
import t from 'tap';
import { checkDocument } from '../src/cli/json.js';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatMarkdown, mergeResults, type BenchResults, type Row } from '../bench/harness.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const NAMES = ['pps', 'paths', 'map-update', 'batch-update', 'switchover', 'drain', 'agent-memory'];
/** The variants of the paths benchmark (bench/paths.ts): each is in the sender row's extra. */
const PATH_VARIANTS = ['kernel-x', 'kernel-y', 'kernel-z', 'ref', 'xdp', 'tc-peer', 'tc', 'rs-kernel', 'sender'];
const ROWS = [
  'netns pps',
  'netns CPU ns/pkt',
  'netns sender pps',
  ...['xdp', 'tc-peer', 'tc bridge'].flatMap((p) => [`paths ${p} pps`, `paths ${p} CPU ns/pkt`, `paths ${p} vs ref pps`, `paths ${p} vs ref CPU ns/pkt`]),
  'paths kernel path pps',
  'paths kernel path CPU ns/pkt',
  'paths ref_local pps',
  'paths ref_local CPU ns/pkt',
  'paths sender pps',
  'map update',
  'map update, pre-encoded',
  'map update via agent API',
  'map update via TS layer',
  'batch update',
  'batch update, pre-encoded',
  'agent batch ',
  'switchover gap at SWITCH',
  'switchover gap vs kernel flip',
  'switchover READY→flipped',
  'drain 50 apps: batched switch',
  'drain 50 apps: whole drain',
  'agent RSS, ',
  'agent RSS after restart, ',
];

t.test(`routeshift bench ${NAMES.join(' ')} --quick --json: every row has numbers`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rs-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'results.json');
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'bench', ...NAMES, '--quick', '--json', '--out', out], { timeout: 180_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  t.equal(code, 0, `exit 0 (stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')})`);
  const written = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
  t.same(checkDocument(JSON.parse(stdout)), [], 'a BenchResults document (docs/json.md)');
  t.same(JSON.parse(stdout), { apiVersion: 'routeshift/v1', kind: 'BenchResults', ...written }, '--json prints what --out wrote, as a BenchResults document');
  t.same(written.broken, [], 'no broken benchmark');
  t.equal(written.quick, true);
  t.ok(existsSync(join(dir, 'results.svg')) && readFileSync(join(dir, 'results.svg'), 'utf8').startsWith('<svg'), 'the plot is written beside the JSON');
  t.match(readFileSync(join(dir, 'results.md'), 'utf8'), /# Benchmark results[\s\S]*\| benchmark \| figure/, 'the Markdown page too');
  const find = (prefix: string): Row | undefined => written.rows.find((r) => r.name.startsWith(prefix));
  for (const want of ROWS) t.ok(find(want), `row ${want}…`);
  for (const r of written.rows) {
    const ok =
      Number.isFinite(r.figure) &&
      Number.isFinite(r.baseline) &&
      Number.isFinite(r.ratio) &&
      r.figure >= 0 &&
      r.baseline > 0 &&
      Math.abs(r.ratio - r.figure / r.baseline) < 1e-9 &&
      typeof r.unit === 'string' &&
      typeof r.baselineName === 'string' &&
      typeof r.goal === 'string' &&
      (r.pass === null || typeof r.pass === 'boolean');
    t.ok(ok, `${r.name}: ${r.figure} ${r.unit} vs ${r.baseline} (${r.baselineName}) = ${r.ratio.toFixed(2)}× goal ${r.goal}`);
  }
  // what makes the rows mean something, whatever the figures
  t.ok((find('netns pps')?.extra?.rsNotDeliveredPct as number) < 50, 'the routeshift path delivered the generated frames');
  t.ok((find('netns sender pps')?.ratio ?? 0) > 1, 'the sender alone outruns the path it feeds (not the bottleneck)');
  const paths = find('paths sender pps')?.extra ?? {};
  for (const v of PATH_VARIANTS) {
    t.ok((paths[`${v}NotDeliveredPct`] as number) < 50, `paths ${v}: delivered what was sent (not delivered ${String(paths[`${v}NotDeliveredPct`])}%)`);
    t.ok((paths[`${v}CpuNs`] as number) > 0, `paths ${v}: CPU time measured`);
  }
  t.equal(paths.rsDrops, 0, 'rs_uplink dropped nothing on any path');
  t.ok((find('paths sender pps')?.ratio ?? 0) > 1, 'the paths sender alone outruns the fastest path');
  t.ok(written.rows.every((r) => typeof r.bench === 'string' && NAMES.includes(r.bench)), 'every row says which benchmark made it');
  t.equal(find('switchover gap at SWITCH')?.extra?.lost, 0, 'the migration under the stream lost nothing');
  t.equal(find('switchover gap at SWITCH')?.extra?.duplicates, 0, '...and duplicated nothing');
  t.ok(written.machine.kernel && written.machine.cpus > 0, 'machine recorded');
});

t.test('a run of some benchmarks merges into earlier results: the others stay, each with its run', (t) => {
  const machine = { hostname: 'h', kernel: 'k1', cpu: 'c', cpus: 2, memGiB: 1 };
  const row = (name: string, figure: number, bench?: string): Row => ({
    name, figure, unit: 'ns', baseline: 1, baselineName: 'b', ratio: figure, goal: '—', pass: null, ...(bench ? { bench } : {}),
  });
  // earlier results without `runs` (as files written before it existed); a row without `bench` is replaced by name
  const earlier: BenchResults = {
    date: '2026-01-01T00:00:00.000Z', quick: false, machine,
    rows: [row('fwd ns/pkt', 1, 'fwd'), row('netns pps', 2), row('map update', 3, 'map-update')],
    broken: [{ name: 'drain', error: 'old' }],
    durationsMs: { fwd: 1, pps: 2, 'map-update': 3, drain: 4 },
  };
  const fresh: BenchResults = {
    date: '2026-02-01T00:00:00.000Z', quick: false, machine: { ...machine, kernel: 'k2' },
    rows: [row('paths xdp pps', 10, 'paths'), row('netns pps', 20, 'pps')],
    broken: [],
    durationsMs: { pps: 20, paths: 10 },
    runs: { pps: { date: '2026-02-01T00:00:00.000Z', kernel: 'k2' }, paths: { date: '2026-02-01T00:00:00.000Z', kernel: 'k2' } },
  };
  const m = mergeResults(earlier, fresh, ['fwd', 'scale', 'pps', 'paths', 'map-update', 'drain']);
  t.same(m.rows.map((r) => [r.name, r.figure]), [['fwd ns/pkt', 1], ['netns pps', 20], ['paths xdp pps', 10], ['map update', 3]], 're-run rows replaced, new ones in run order, the rest kept');
  t.same(Object.keys(m.durationsMs), ['fwd', 'pps', 'paths', 'map-update', 'drain']);
  t.same(m.broken, [{ name: 'drain', error: 'old' }], 'breakage of a benchmark that did not run stays');
  t.same(m.runs?.fwd, { date: earlier.date, kernel: 'k1' }, 'a kept benchmark keeps its run');
  t.same(m.runs?.paths, { date: fresh.date, kernel: 'k2' });
  t.match(formatMarkdown(m), /fwd, map-update, drain 2026-01-01T00:00:00.000Z on kernel k1; pps, paths 2026-02-01T00:00:00.000Z on kernel k2/, 'the table says when each ran');
  t.end();
});
