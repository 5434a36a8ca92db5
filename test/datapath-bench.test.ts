/**
 * The fwd and scale benchmarks run in --quick mode through the CLI
 * (`routeshift bench fwd scale --quick --json`) and produce every row with
 * numbers: figure, baseline, ratio, goal — and no broken benchmark. The
 * figures themselves are not judged here (quick sizes are not figures to
 * quote); the benchmark checks by counters that it measured the FORWARD path.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResults } from '../bench/harness.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');

t.test('routeshift bench fwd scale --quick --json: every row has numbers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rs-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'results.json');
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'bench', 'fwd', 'scale', '--quick', '--json', '--out', out], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  t.equal(code, 0, `exit 0 (stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')})`);
  // --json is the versioned envelope (docs/json.md); --out is the results file bench/ keeps
  const { apiVersion, kind, ...printed } = JSON.parse(stdout) as BenchResults & { apiVersion: string; kind: string };
  t.same({ apiVersion, kind }, { apiVersion: 'routeshift/v1', kind: 'BenchResults' }, '--json is a versioned BenchResults document');
  const written = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
  t.same(printed, written, '--json prints what --out wrote');
  t.same(written.broken, [], 'no broken benchmark');
  t.equal(written.quick, true);
  const names = written.rows.map((r) => r.name);
  for (const want of ['fwd ns/pkt', 'fwd ns/pkt, net of driver', 'fwd ns/pkt vs floor', 'scale 1 entries', 'scale 1k entries']) {
    t.ok(names.includes(want), `row ${want}`);
  }
  for (const r of written.rows) {
    const ok =
      Number.isFinite(r.figure) &&
      Number.isFinite(r.baseline) &&
      Number.isFinite(r.ratio) &&
      r.figure > 0 &&
      r.baseline > 0 &&
      Math.abs(r.ratio - r.figure / r.baseline) < 1e-9 &&
      typeof r.unit === 'string' &&
      typeof r.baselineName === 'string' &&
      typeof r.goal === 'string' &&
      (r.pass === null || typeof r.pass === 'boolean');
    t.ok(ok, `${r.name}: ${r.figure} ${r.unit} vs ${r.baseline} (${r.baselineName}) = ${r.ratio.toFixed(2)}× goal ${r.goal}`);
  }
  t.ok(written.machine.kernel && written.machine.cpus > 0, 'machine recorded');
});
