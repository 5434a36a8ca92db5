/**
 * Every command's --json output, against real agents (two hosts in network
 * namespaces), checked against the schema it is documented with
 * (src/cli/json.ts; docs/json.md is rendered from it and must be in step).
 * Along the way: `migrate --dry-run` changes nothing, input the agent
 * refuses is exit 2 with an Error document, and no output carries
 * prom-client's internals.
 */
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION, KINDS, checkDocument, renderJsonDoc, type KindName } from '../src/cli/json.js';
import { STEPS } from '../src/controller/machine.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, runCli } from './lib/e2e.js';

const bed = await Bed.create(t, { tag: 'rsj', apps: MIGRATION_APPS });
const xA = bed.topo.app('x', 'A');
const xB = bed.topo.app('x', 'B');
const A = bed.url('A');
const B = bed.url('B');
const auth = ['--token-file', bed.tokenFile];
const fast = ['--state-dir', bed.stateDir, '--stop-grace-ms', '1', '--announce-grace-ms', '1', '--probe-interval-ms', '20'];
const seen = new Set<KindName>();

/** Run the CLI with --json; the document must be the expected kind, conform to its schema and carry no library internals. */
async function json(t: Test, kind: KindName, args: string[], exit = 0): Promise<Record<string, unknown>> {
  const r = await runCli([...args, '--json'], 90_000).done;
  t.equal(r.code, exit, `routeshift ${args.join(' ')} exits ${exit}: ${r.stderr.slice(0, 500)}`);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    t.fail(`not one JSON document: ${r.stdout.slice(0, 500)}`);
    return {};
  }
  t.equal(doc.apiVersion, API_VERSION);
  t.equal(doc.kind, kind, `kind ${kind}`);
  t.same(checkDocument(doc), [], `${kind} conforms to its schema`);
  t.notMatch(r.stdout, /"(aggregator|exemplar|hashMap)"/, 'no prom-client internals');
  seen.add(kind);
  return doc;
}

t.test('docs/json.md is the rendering of the schema', async (t) => {
  const file = join(process.cwd(), 'docs', 'json.md');
  const text = readFileSync(file, 'utf8');
  const marker = '<!-- generated from src/cli/json.ts (renderJsonDoc) -->\n';
  const at = text.indexOf(marker);
  t.ok(at > 0, 'the file has the marker of its generated part');
  const want = `\n${renderJsonDoc()}\n`;
  if (process.env.UPDATE_DOCS === '1') writeFileSync(file, text.slice(0, at + marker.length) + want);
  t.equal(text.slice(at + marker.length), want, 'in step (regenerate: UPDATE_DOCS=1 and run this test)');
});

t.test('app add / list / rm', async (t) => {
  const add = await json(t, 'App', ['app', 'add', 'x', '--agent', A, '--addr', xA.addr4, '--dev', xA.hostDev, ...auth]);
  t.match(add, { agent: A, app: { name: 'x', address: xA.addr4, action: { type: 'local' } } });
  await json(t, 'App', ['app', 'add', 'y', '--agent', A, '--addr', bed.topo.app('y', 'A').addr4, '--dev', bed.topo.app('y', 'A').hostDev, ...auth]);
  const list = await json(t, 'AppList', ['app', 'list', '--agent', A, ...auth]);
  t.same((list.items as { name: string }[]).map((a) => a.name), ['x', 'y']);

  // Input the agent refuses (a device that does not exist): exit 2, the agent's field named.
  const bad = await json(t, 'Error', ['app', 'add', 'z', '--agent', A, '--addr', '10.200.9.9', '--dev', 'nosuchdev0', ...auth], 2);
  t.match(bad, { code: 'invalid-input', exitCode: 2, httpStatus: 400, field: 'dev', agent: A, message: /nosuchdev0/ });
  const unreachable = await json(t, 'Error', ['app', 'list', '--agent', 'http://127.0.0.1:9', ...auth], 1);
  t.match(unreachable, { code: 'unreachable', exitCode: 1 });

  await json(t, 'App', ['app', 'add', 'tmp', '--agent', A, '--addr', '10.200.9.10', '--dev', xA.hostDev, '--mac', '02:00:00:00:99:01', ...auth]);
  t.match(await json(t, 'AppRemoved', ['app', 'rm', 'tmp', '--agent', A, ...auth]), { agent: A, name: 'tmp' });
  t.match(await json(t, 'Error', ['app', 'rm', 'tmp', '--agent', A, ...auth], 1), { code: 'failed' });
});

t.test('migrate --dry-run prints the plan and changes nothing; drain --dry-run too', async (t) => {
  const before = await bed.client('A').getApp('x');
  const plan = await json(t, 'MigrationPlan', ['migrate', 'x', '--from', A, '--to', B, '--dest-dev', xB.hostDev, '--dry-run', ...auth, ...fast]);
  t.match(plan, {
    app: 'x',
    source: A,
    destinations: [{ url: B }],
    items: [{ app: 'x', address: xA.addr4, sourceDev: xA.hostDev, to: B, destDev: xB.hostDev }],
    skipped: [],
    driver: 'none',
    announce: 'none',
  });
  t.same((plan.steps as { step: string }[]).map((s) => s.step), STEPS, 'every step of the protocol, in order');
  t.same(await bed.client('A').getApp('x'), before, 'the source entry is as it was');
  t.same(await bed.client('B').listDeliveries(), [], 'no delivery on the destination');

  const none = await json(t, 'MigrationPlan', ['migrate', 'nope', '--from', A, '--to', B, '--dest-dev', xB.hostDev, '--dry-run', ...auth, ...fast], 1);
  t.match(none, { items: [], skipped: [{ app: 'nope', reason: /has no app nope/ }] });

  const text = await runCli(['migrate', 'x', '--from', A, '--to', B, '--dest-dev', xB.hostDev, '--dry-run', ...auth, ...fast]).done;
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^plan: migrate x .* → .*\n {2}x {2}10\.200\.0\.10 {2}dev \S+ → dev \S+\nsteps:\n {2}PREPARE/);
  t.match(text.stdout, /nothing was changed\n$/);

  const drainPlan = await json(t, 'DrainPlan', ['drain', A, '--to', B, '--dry-run', ...auth, ...fast]);
  t.same((drainPlan.items as { app: string }[]).map((i) => i.app), ['x', 'y']);
});

t.test('migrate, migrate --resume, status, drain', async (t) => {
  const done = await json(t, 'MigrationResult', ['migrate', 'x', '--from', A, '--to', B, '--dest-dev', xB.hostDev, ...auth, ...fast]);
  t.match(done, { app: 'x', outcome: 'done', metrics: { migrations: { done: 1 } } });
  const phases = (done.metrics as { phaseSeconds: Record<string, { count: number }> }).phaseSeconds;
  t.same(Object.keys(phases).sort(), [...STEPS].sort(), 'a count per phase');
  t.ok(Object.values(phases).every((p) => p.count === 1), 'each observed once');

  const resumed = await json(t, 'ResumeResult', ['migrate', 'x', '--resume', ...auth, ...fast]);
  t.match(resumed, { app: 'x', decision: 'nothing', outcome: 'done' });

  const status = await json(t, 'Status', ['status', A, B, ...auth, '--state-dir', bed.stateDir]);
  const agents = status.agents as { ok: boolean; apps: { name: string }[] }[];
  t.same(agents.map((a) => a.ok), [true, true]);
  t.same(agents[1]?.apps.map((a) => a.name), ['x'], 'x is on B');

  // x back from B to A as a drain of B.
  const drained = await json(t, 'DrainResult', ['drain', B, '--to', A, '--dest-dev', xA.hostDev, ...auth, ...fast]);
  t.match(drained, { outcome: 'done', leftLocal: [], metrics: { migrations: { done: 1 } } });
});

t.test('every kind was seen', async (t) => {
  // Checked elsewhere: DemoResult by test/demo.test.ts (the demo builds its own topology), Maps by test/cli-maps.test.ts (it stops agents),
  // BenchResults by test/bench.test.ts (benchmarks take minutes).
  const expected = (Object.keys(KINDS) as KindName[]).filter((k) => !['DemoResult', 'Maps', 'BenchResults'].includes(k));
  t.same([...seen].sort(), expected.sort());
});
