/**
 * The main job, as a user runs it: `routeshift demo --json` with a short
 * run. Both applications lose nothing, host A ends with no LOCAL entry, and
 * nothing of the demo is left behind.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDocument } from '../src/cli/json.js';
import type { DemoResult } from '../src/demo/scenario.js';

t.test('routeshift demo --json: zero loss, host A drained, everything removed', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'rs-demo-test-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'demo', '--json', '--duration', '6', '--rate', '2000', '--out', out], {
    encoding: 'utf8',
    timeout: 240_000,
  });
  t.equal(r.status, 0, `demo exits 0 (stderr: ${r.stderr.slice(-500)})`);
  const result = JSON.parse(r.stdout) as DemoResult;
  t.same(checkDocument(result), [], 'the output is a DemoResult document (docs/json.md)');
  const byApp = Object.fromEntries(result.routeshift.streams.map((s) => [s.app, s]));
  for (const app of ['x', 'y']) {
    const s = byApp[app]!;
    t.equal(s.sent, 12_000, `${app}: the client sent every packet`);
    t.equal(s.lost, 0, `${app}: 0 lost (max gap ${s.maxGapMs} ms)`);
    t.equal(s.duplicated, 0, `${app}: 0 duplicated`);
  }
  t.equal(result.routeshift.migration.outcome, 'done');
  t.same(
    result.routeshift.migration.steps.map((s) => s.step),
    ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'DRAIN_FLOWS', 'STOP', 'ANNOUNCE'],
    'every protocol step ran, in order',
  );
  t.equal(result.routeshift.drain.outcome, 'done');
  t.equal(result.routeshift.drain.switchMode, 'batch', 'the drain switched in one batched update');
  t.same(result.routeshift.hostAEntriesAfter, { local: 0, forward: 0 }, 'host A is empty');
  t.equal(result.kernelBaseline.streams[0]?.sent, 12_000, 'the kernel baseline ran the same stream');
  t.ok(existsSync(result.plot), 'the plot was written');
  const svg = (await import('node:fs')).readFileSync(result.plot, 'utf8');
  t.match(svg, /<svg[^>]*>[\s\S]*x SWITCH[\s\S]*<\/svg>/, 'the plot marks the switch');

  const mine = (name: string): boolean => name.startsWith(`${result.prefix}-`);
  const netnsAfter = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0] ?? '');
  t.same(netnsAfter.filter(mine), [], `no namespace of the demo (${result.prefix}-*) is left`);
  t.same(readdirSync('/sys/fs/bpf').filter(mine), [], 'no pinned maps are left');
});

t.test('bad input is a usage error (exit 2), not a stack trace', async (t) => {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'demo', '--rate', '5'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /--rate must be an integer between 100 and 50000/);
  t.notMatch(r.stderr, /\bat .*\.js:\d+/);
});
