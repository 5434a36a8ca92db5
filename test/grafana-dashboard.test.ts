/**
 * The Grafana dashboard (deploy/grafana/routeshift.json) against what real
 * agents expose: a real Prometheus scrapes the agents of hosts A and B while
 * packets hit two apps and the CLI migrates one of them three times; then
 * every query of the dashboard (panels and template variables, Grafana's
 * variables replaced by what "All" and a 2-minute rate interval give) is
 * evaluated through Prometheus' HTTP API and must return series — and the
 * ones that measure something must measure what happened.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, runCli, sleep } from './lib/e2e.js';

interface Target {
  expr: string;
}
interface Panel {
  title: string;
  targets: Target[];
}
interface Variable {
  name: string;
  type: string;
  query?: { query: string };
}
interface Dashboard {
  panels: Panel[];
  templating: { list: Variable[] };
}

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

const dashboard = JSON.parse(readFileSync(join(process.cwd(), 'deploy', 'grafana', 'routeshift.json'), 'utf8')) as Dashboard;

const bed = await Bed.create(t, { tag: 'rsgf', apps: MIGRATION_APPS });
const { topo } = bed;
const xA = topo.app('x', 'A');
const xB = topo.app('x', 'B');
const yA = topo.app('y', 'A');
await bed.registerLocal(xA);
await bed.registerLocal(yA);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const port = await freePort();
writeFileSync(
  join(bed.dir, 'prometheus.yml'),
  [
    'global: { scrape_interval: 1s, scrape_timeout: 900ms }',
    'scrape_configs:',
    '  - job_name: routeshift',
    `    authorization: { type: Bearer, credentials_file: ${bed.tokenFile} }`,
    `    static_configs: [{ targets: ['${new URL(bed.url('A')).host}', '${new URL(bed.url('B')).host}'] }]`,
  ].join('\n'),
);
const prom = spawn(
  'prometheus',
  [`--config.file=${join(bed.dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(bed.dir, 'prom-data')}`, `--web.listen-address=127.0.0.1:${port}`],
  { stdio: 'ignore' },
);
t.teardown(() => {
  prom.kill('SIGKILL');
});

async function query(expr: string): Promise<Series[]> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Series[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? body.status}`);
  return body.data?.result ?? [];
}

/** A dashboard expression as Grafana sends it with every variable at "All" and a 2-minute rate interval. */
function resolve(expr: string): string {
  return expr.replace(/\$__rate_interval/g, '2m').replace(/\$(job|instance)\b/g, '.*');
}

t.test('every dashboard query returns series from real agents', async (t) => {
  // Prometheus up, both agents scraped.
  const deadline = Date.now() + 60_000;
  let up: Series[] = [];
  while (Date.now() < deadline) {
    up = await query('up == 1').catch(() => []);
    if (up.length === 2) break;
    await sleep(500);
  }
  t.equal(up.length, 2, 'both agents are scraped (token accepted)');

  // Traffic to both apps (count-bounded), then x moves A → B → A → B with the CLI.
  for (const app of [xA, yA]) {
    const r = spawnSync('ip', ['netns', 'exec', topo.client.ns.name, 'ping', '-c', '150', '-i', '0.01', '-W', '1', '-q', app.addr4], { encoding: 'utf8', timeout: 30_000 });
    t.match(r.stdout, /150 packets transmitted/, `pinged ${app.name}`);
  }
  const flags = ['--token-file', bed.tokenFile, '--state-dir', bed.stateDir, '--stop-grace-ms', '1', '--announce-grace-ms', '1', '--json'];
  for (const [from, to, dev] of [['A', 'B', xB.hostDev], ['B', 'A', xA.hostDev], ['A', 'B', xB.hostDev]] as const) {
    const r = await runCli(['migrate', 'x', '--from', bed.url(from), '--to', bed.url(to), '--dest-dev', dev, ...flags], 90_000).done;
    t.equal(r.code, 0, `migrate x ${from} → ${to}: ${r.stderr.slice(0, 300)}`);
    t.notMatch(r.stderr, /not counted/, 'the result was reported to the source agent');
    await sleep(1500); // scrapes between the migrations
  }
  // Let a few more scrapes see the last migration.
  await sleep(4000);

  const exprs: { where: string; expr: string }[] = [];
  for (const p of dashboard.panels) for (const tg of p.targets) exprs.push({ where: `panel "${p.title}"`, expr: resolve(tg.expr) });
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query' || !v.query) continue;
    // label_values(SELECTOR, LABEL): the selector must have series carrying the label.
    const m = /^label_values\((.+), (\w+)\)$/.exec(resolve(v.query.query));
    t.ok(m, `variable ${v.name} is a label_values query`);
    if (m) exprs.push({ where: `variable $${v.name} (label ${m[2]})`, expr: `count by (${m[2]}) (${m[1]})` });
  }
  t.ok(exprs.length >= 12, `${exprs.length} queries`);
  const results = new Map<string, Series[]>();
  for (const { where, expr } of exprs) {
    const series = await query(expr);
    results.set(expr, series);
    t.ok(series.length > 0, `${where}: ${series.length} series for ${expr}`);
  }

  const panelSeries = (title: string): Series[] => {
    const p = dashboard.panels.find((x) => x.title === title);
    if (!p) throw new Error(`no panel "${title}"`);
    return results.get(resolve(p.targets[0]!.expr)) ?? [];
  };
  const value = (s: Series | undefined): number => Number(s?.value[1]);
  t.ok(value(panelSeries('Packets/s per app and action').find((s) => s.metric.app === 'y' && s.metric.action === 'local')) > 0, 'y delivered locally at a rate > 0');
  t.ok(panelSeries('Packets/s per app and action').some((s) => s.metric.app === 'x'), 'x is on the panel');
  t.ok(value(panelSeries('Migrations by outcome').find((s) => s.metric.outcome === 'done')) > 0, 'migrations done > 0');
  const p90 = panelSeries('Migration phase latency (p90)');
  const phases = new Set(p90.map((s) => s.metric.phase));
  for (const step of ['PREPARE', 'DELIVER', 'SWITCH', 'ANNOUNCE']) t.ok(phases.has(step), `a latency for ${step}`);
  const sw = p90.find((s) => s.metric.phase === 'SWITCH');
  t.ok(Number.isFinite(value(sw)) && value(sw) > 0 && value(sw) < 30, `SWITCH p90 is a duration: ${sw?.value[1]} s`);
  const build = panelSeries('Agents');
  t.equal(build.length, 2, 'one build_info per agent');
  const { version } = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { version: string };
  t.ok(build.every((s) => s.metric.version === version && s.metric.kernel && s.metric.node), 'build_info carries version, node and kernel');
  t.ok(value(panelSeries('Agent resident memory')[0]) > 1e6, 'process_resident_memory_bytes is the standard name');
});
