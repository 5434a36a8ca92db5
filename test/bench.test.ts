/**
 * The routeshift-level benchmarks run in --quick mode through the CLI
 * (`routeshift bench pps map-update batch-update switchover drain
 * agent-memory --quick --json --out F`) and produce every row with numbers
 * (figure, baseline, ratio = figure / baseline, goal, pass) and no broken
 * benchmark; the plot and the Markdown page are written beside the JSON.
 * Figures are not judged (quick sizes are not figures to quote), except
 * what makes a row meaningful: the path delivered packets, the migration
 * lost nothing it could not explain, the sender outran the path.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResults, Row } from '../bench/harness.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const NAMES = ['pps', 'map-update', 'batch-update', 'switchover', 'drain', 'agent-memory'];
const ROWS = [
  'netns pps',
  'netns CPU ns/pkt',
  'netns sender pps',
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
    execFile(process.execPath, [CLI, 'bench', ...NAMES, '--quick', '--json', '--out', out], { timeout: 150_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  t.equal(code, 0, `exit 0 (stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')})`);
  const written = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
  t.same(JSON.parse(stdout), written, '--json prints what --out wrote');
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
  t.equal(find('switchover gap at SWITCH')?.extra?.lost, 0, 'the migration under the stream lost nothing');
  t.equal(find('switchover gap at SWITCH')?.extra?.duplicates, 0, '...and duplicated nothing');
  t.ok(written.machine.kernel && written.machine.cpus > 0, 'machine recorded');
});
