/**
 * The real CLI process on a damaged journal: `migrate NAME --resume`
 * refuses with exit 3, naming the file, the line, the reason and the safe
 * choices, on stderr in plain words (no stack trace); `status` (text and
 * --json) lists the damaged journal with its reason.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Journal, acquireLock, newJournalId } from '../src/controller/journal.js';
import { Migration } from '../src/controller/machine.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir } from './controller-doubles.js';
import { runCli, type CliRun } from './lib/cli.js';


const cli = (args: string[]): Promise<CliRun> => runCli(args);

t.test('migrate --resume on a damaged journal: exit 3 and the way on; status lists it', async (t) => {
  const dir = stateDir(t);
  // A real journal of a migration of x that went through SWITCH.
  const env = { ...agents(), driver: new FakeDriver() };
  const id = newJournalId('x');
  const lock = acquireLock(dir, 'x', id);
  const j = await Journal.create(dir, id);
  await j.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST });
  const plan = { type: 'plan' as const, app: 'x', from: env.a.url, to: env.b.url, toIndex: 0, destDev: 'vx-b' };
  await j.append(plan);
  const m = new Migration({ journalId: id, plan, source: env.a, dest: env.b, driver: env.driver, announce: new FakeAnnounce(), timing: FAST }, j);
  t.equal(await m.advance(), 'done');
  await j.close();
  lock.release();

  // Keep it up to SWITCH done, and edit the line before it by hand.
  const lines = readFileSync(j.path, 'utf8').split('\n');
  const sw = lines.findIndex((l) => l.includes('"type":"done"') && l.includes('"state":"SWITCH"'));
  t.ok(sw > 2, 'SWITCH done was journaled');
  const edited = lines.slice(0, sw + 1).map((l, i) => (i === sw - 1 ? l.replace('"type":"enter"', '"type":"enter","attempt":2') : l));
  writeFileSync(j.path, edited.join('\n') + '\n');
  const bytes = readFileSync(j.path, 'utf8');

  const r = await cli(['migrate', 'x', '--resume', '--state-dir', dir]);
  t.equal(r.code, 3, 'exit 3: needs attention');
  t.match(r.stderr, `routeshift: cannot resume x: journal ${j.path} is damaged: line ${sw}: checksum mismatch: the line was changed after it was written`);
  t.match(r.stderr, /Nothing was changed/);
  t.match(r.stderr, `last readable record is line ${sw + 1}: done SWITCH`);
  t.match(r.stderr, `routeshift status ${env.a.url} ${env.b.url} --state-dir ${dir}`);
  t.match(r.stderr, `mv ${j.path} ${j.path}.damaged`);
  t.match(r.stderr, `it then finds no journal of x and does nothing`);
  t.match(r.stderr, `roll forward: routeshift app add x --agent ${env.b.url} --addr 10.200.0.10:udp/5000 --dev vx-b`);
  t.match(r.stderr, `routeshift app add x --agent ${env.a.url} --addr 10.200.0.10:udp/5000 --dev vx-a --mac 02:00:00:00:0a:01`);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.equal(readFileSync(j.path, 'utf8'), bytes, 'the journal is untouched');

  // status: an agent that does not answer (exit 1), and the damaged journal with its reason.
  const token = join(dir, 'token');
  writeFileSync(token, 'tok\n', { mode: 0o600 });
  const agentArgs = ['--token-file', token, '--agent-timeout-ms', '2000'];
  const json = await cli(['status', 'http://127.0.0.1:1', '--state-dir', dir, '--json', ...agentArgs]);
  t.equal(json.code, 1, 'status: the agent did not answer');
  const report = JSON.parse(json.stdout) as { damaged: { journal: string; path: string; reason: string; apps: string[] }[]; unfinished: unknown[] };
  t.match(report.damaged, [{ journal: id, path: j.path, reason: `line ${sw}: checksum mismatch: the line was changed after it was written`, apps: ['x'] }]);
  t.same(report.unfinished, []);
  const text = await cli(['status', 'http://127.0.0.1:1', '--state-dir', dir, ...agentArgs]);
  t.match(text.stdout, `damaged journal: ${j.path}: line ${sw}: checksum mismatch`);
  t.match(text.stdout, /plans x\. --resume refuses/);
});
