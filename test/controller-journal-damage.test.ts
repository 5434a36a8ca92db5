/**
 * A journal that cannot lie (issue #13 item 5).
 *
 * Real journals are produced by real migrations (the machine, the journal
 * writer, in-memory agents): one that ends done, one that rolls back. The
 * agents' state is recorded just before and just after every line is
 * written, so a journal cut at any byte can be paired with the state a
 * controller dying at that moment would leave:
 *  - cut at every line boundary and in the middle of every line (a torn
 *    tail): decoding keeps exactly the complete lines, and --resume from
 *    there reaches a consistent end (rolled back, or done), cuts the torn
 *    tail off, and leaves a journal that reads clean;
 *  - damage (null and garbage lines, missing fields, wrong types, unknown
 *    fields, an edited line, a removed or repeated line, a directory in
 *    place of the file, a bad last line that is complete): --resume refuses,
 *    names the file, the line and the reason, calls no agent and writes
 *    nothing; `status` (journalReport) lists the journal with its reason;
 *  - a damaged newest journal is never skipped for an older finished one;
 *  - journals of the previous format (no checksums) are read as legacy.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exitCodeOfError } from '../src/cli/exit.js';
import type { App, Delivery } from '../src/controller/agent-client.js';
import { Journal, acquireLock, newJournalId, type JournalRecord, type Stored } from '../src/controller/journal.js';
import { decodeJournal, lineSum } from '../src/controller/journal-format.js';
import { inspectJournal, journalDir, searchJournals } from '../src/controller/journal-files.js';
import { Migration } from '../src/controller/machine.js';
import { ResumeRefusedError } from '../src/controller/refusal.js';
import { resume, type ResumeResult } from '../src/controller/resume.js';
import { journalReport } from '../src/controller/unfinished.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir, type HasTeardown } from './controller-doubles.js';

interface Snapshot {
  a: [string, App][];
  b: [string, App][];
  bDeliveries: [string, Delivery][];
  running: string[];
}

interface Recorded {
  id: string;
  bytes: Buffer;
  /** Byte offset just after each line. */
  lineEnds: number[];
  /** before[i]: the hosts just before line i+1 was written; after[i]: just after it was durable. */
  before: Snapshot[];
  after: Snapshot[];
  outcome: string;
}

type Env = ReturnType<typeof agents> & { driver: FakeDriver };

function snap(env: Env): Snapshot {
  return structuredClone({ a: [...env.a.apps], b: [...env.b.apps], bDeliveries: [...env.b.deliveries], running: [...env.driver.running] });
}

function restore(s: Snapshot): Env {
  const env = { ...agents(), driver: new FakeDriver() };
  env.a.apps.clear();
  for (const [k, v] of structuredClone(s.a)) env.a.apps.set(k, v);
  for (const [k, v] of structuredClone(s.b)) env.b.apps.set(k, v);
  for (const [k, v] of structuredClone(s.bDeliveries)) env.b.deliveries.set(k, v);
  env.driver.running = new Set(s.running);
  return env;
}

/** A real migration of x, with the hosts recorded around every journal line. */
async function recordRun(t: HasTeardown, rollBack: boolean): Promise<Recorded> {
  const env: Env = { ...agents(), driver: new FakeDriver() };
  env.driver.neverReady = rollBack;
  const dir = stateDir(t);
  const id = newJournalId('x');
  const lock = acquireLock(dir, 'x', id);
  const j = await Journal.create(dir, id);
  const before: Snapshot[] = [];
  const after: Snapshot[] = [];
  const append = j.append.bind(j);
  j.append = async (rec: JournalRecord) => {
    before.push(snap(env));
    await append(rec);
    after.push(snap(env));
  };
  await j.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'exec', script: '/bin/true' }, timing: FAST });
  const plan = { type: 'plan' as const, app: 'x', from: env.a.url, to: env.b.url, toIndex: 0, destDev: 'vx-b' };
  await j.append(plan);
  const m = new Migration({ journalId: id, plan, source: env.a, dest: env.b, driver: env.driver, announce: new FakeAnnounce(), timing: FAST }, j);
  const outcome = await m.advance();
  await j.close();
  lock.release();
  const bytes = readFileSync(j.path);
  const lineEnds: number[] = [];
  for (let i = bytes.indexOf(0x0a); i >= 0; i = bytes.indexOf(0x0a, i + 1)) lineEnds.push(i + 1);
  return { id, bytes, lineEnds, before, after, outcome };
}

/** A state directory holding one journal with these bytes (under the run's id). */
function journalWith(t: HasTeardown, id: string, bytes: Uint8Array | string): { dir: string; path: string } {
  const dir = stateDir(t);
  mkdirSync(journalDir(dir), { recursive: true });
  const path = join(journalDir(dir), `${id}.jsonl`);
  writeFileSync(path, bytes);
  return { dir, path };
}

function resumeOn(dir: string, env: Env): Promise<ResumeResult> {
  return resume({ stateDir: dir, app: 'x', connect: (u) => (u === env.a.url ? env.a : env.b), createDriver: () => env.driver, createAnnounceHook: () => new FakeAnnounce() });
}

/** Rolled back (x LOCAL on a, nothing on b) or done (x LOCAL on b only); y never touched. */
function consistent(t: Test, env: Env, outcome: string, what: string): void {
  if (outcome === 'done') {
    t.notOk(env.a.apps.has('x'), `${what}: source entry gone`);
    t.same(env.b.apps.get('x')?.action, { type: 'local' }, `${what}: destination owns x`);
    t.notOk(env.b.deliveries.has('x'), `${what}: delivery removed`);
    t.same([...env.driver.running], ['destination'], `${what}: x runs on the destination only`);
  } else {
    t.same(env.a.apps.get('x')?.action, { type: 'local' }, `${what}: source LOCAL`);
    t.notOk(env.b.deliveries.has('x'), `${what}: no delivery left on the destination`);
    t.notOk(env.b.apps.has('x'), `${what}: no app entry on the destination`);
    t.same([...env.driver.running], ['source'], `${what}: x runs on the source only`);
  }
  t.same(env.a.apps.get('y')?.action, { type: 'local' }, `${what}: y untouched`);
}

/** Resume from a cut journal with the hosts as a crash at that moment leaves them; check the end. */
async function resumeCut(t: Test, run: Recorded, cut: number, hosts: Snapshot, what: string): Promise<void> {
  const { dir, path } = journalWith(t, run.id, run.bytes.subarray(0, cut));
  const env = restore(hosts);
  const decoded = inspectJournal(path).decoded;
  if (!decoded.records.some((r) => r.type === 'plan')) {
    // The run never planned x durably, so it never touched it: there is nothing to resume, and nothing to undo.
    await t.rejects(resumeOn(dir, env), /no journal of a migration of x/, `${what}: nothing to resume`);
    consistent(t, env, 'rolled-back', what);
    return;
  }
  const r = await resumeOn(dir, env);
  t.ok(r.outcome === 'done' || r.outcome === 'rolled-back', `${what}: resumed to ${r.outcome} (${r.decision})`);
  consistent(t, env, r.outcome, what);
  const after = inspectJournal(path);
  t.same(after.decoded.problems, [], `${what}: the continued journal reads clean`);
  t.notOk(after.decoded.torn, `${what}: no torn tail left`);
  t.match(after.decoded.records[after.decoded.records.length - 1], { type: 'end', outcome: r.outcome }, `${what}: ends with its outcome`);
  if (decoded.torn) t.ok(r.notes.some((n) => /torn/.test(n)), `${what}: the torn line is reported`);
}

for (const rollBack of [false, true]) {
  const label = rollBack ? 'a rolled-back run' : 'a successful run';
  t.test(`${label}: cut at every line boundary → the complete lines, and --resume reaches a consistent end`, async (t) => {
    const run = await recordRun(t, rollBack);
    t.equal(run.outcome, rollBack ? 'rolled-back' : 'done');
    t.equal(run.lineEnds.length, run.before.length, 'one line per record');
    for (let k = 0; k <= run.lineEnds.length; k++) {
      const cut = k === 0 ? 0 : (run.lineEnds[k - 1] as number);
      const d = decodeJournal(run.bytes.subarray(0, cut), run.id);
      t.same(d.problems, [], `after ${k} lines: no damage`);
      t.equal(d.records.length, k, `after ${k} lines: ${k} records`);
      t.notOk(d.torn, `after ${k} lines: nothing torn`);
      // The controller died after line k was durable: before it did anything more, or just before writing line k+1.
      const last = run.after[k - 1] ?? run.before[0];
      const next = run.before[k] ?? last;
      await resumeCut(t, run, cut, last as Snapshot, `after ${k} lines, hosts as then`);
      if (next !== last) await resumeCut(t, run, cut, next as Snapshot, `after ${k} lines, hosts as just before line ${k + 1}`);
    }
  });

  t.test(`${label}: cut inside every line → a torn tail, dropped; --resume proceeds from the lines before it`, async (t) => {
    const run = await recordRun(t, rollBack);
    for (let k = 0; k < run.lineEnds.length; k++) {
      const start = k === 0 ? 0 : (run.lineEnds[k - 1] as number);
      const end = run.lineEnds[k] as number;
      // The middle of line k+1, and all of it but its newline (the record is whole, the write was not).
      for (const cut of [start + Math.floor((end - start) / 2), end - 1]) {
        const d = decodeJournal(run.bytes.subarray(0, cut), run.id);
        t.same(d.problems, [], `line ${k + 1} cut at byte ${cut - start}: no damage`);
        t.equal(d.records.length, k, `line ${k + 1} cut at byte ${cut - start}: the ${k} lines before it`);
        t.same(d.torn, { line: k + 1, bytes: cut - start }, `line ${k + 1} cut at byte ${cut - start}: torn tail`);
        t.equal(d.keepBytes, start);
        // Line k+1 was being written: whatever came before it had been done.
        await resumeCut(t, run, cut, run.before[k] as Snapshot, `line ${k + 1} cut at byte ${cut - start}`);
      }
    }
  });
}

// ------------------------------------------------------------ damage

/** The lines of a journal, and the same with one line replaced (checksummed anew, like a writer that wrote it so). */
function lines(bytes: Buffer): string[] {
  return bytes.toString('utf8').split('\n').slice(0, -1);
}

function summed(json: string): string {
  return `${lineSum(json)} ${json}`;
}

function recordOf(line: string): Stored & Record<string, unknown> {
  return JSON.parse(line.slice(line.indexOf(' ') + 1)) as Stored & Record<string, unknown>;
}

/** Re-sum a line after changing its record (a schema violation a checksum cannot catch). */
function rewrite(line: string, change: (r: Record<string, unknown>) => void): string {
  const r = recordOf(line);
  change(r);
  return summed(JSON.stringify(r));
}

t.test('damage of every kind: named by line and reason; --resume refuses and changes nothing; status lists it', async (t) => {
  const run = await recordRun(t, false);
  const L = lines(run.bytes);
  const planAt = L.findIndex((l) => recordOf(l).type === 'plan');
  const prepDoneAt = L.findIndex((l) => recordOf(l).type === 'done' && recordOf(l).state === 'PREPARE');
  const switchDoneAt = L.findIndex((l) => recordOf(l).type === 'done' && recordOf(l).state === 'SWITCH');
  const cutAfterSwitch = L.slice(0, switchDoneAt + 1);
  const with_ = (i: number, line: string, base = cutAfterSwitch): string[] => base.map((l, j) => (j === i ? line : l));
  const cases: { name: string; lines: string[]; line: number; reason: RegExp }[] = [
    { name: 'a null line', lines: with_(planAt + 1, 'null'), line: planAt + 2, reason: /not a journal line/ },
    { name: 'a checksummed null record', lines: with_(planAt + 1, summed('null')), line: planAt + 2, reason: /expected a JSON object/ },
    { name: 'a garbage line', lines: with_(2, '\u0000\u0000garbage{'), line: 3, reason: /not a journal line/ },
    { name: 'checksummed text that is not JSON', lines: with_(2, summed('{"seq":2,')), line: 3, reason: /not valid JSON/ },
    { name: 'an empty line', lines: with_(2, ''), line: 3, reason: /empty line/ },
    { name: 'an open without a driver', lines: with_(0, rewrite(L[0] as string, (r) => delete r.driver)), line: 1, reason: /driver: missing/ },
    { name: 'a plan without from', lines: with_(planAt, rewrite(L[planAt] as string, (r) => delete r.from)), line: planAt + 1, reason: /from: missing/ },
    { name: 'a plan with a numeric from', lines: with_(planAt, rewrite(L[planAt] as string, (r) => (r.from = 7))), line: planAt + 1, reason: /from: expected an agent URL/ },
    { name: 'toIndex as a string', lines: with_(planAt, rewrite(L[planAt] as string, (r) => (r.toIndex = '0'))), line: planAt + 1, reason: /toIndex: expected an integer/ },
    { name: 'a step that does not exist', lines: with_(planAt + 1, rewrite(L[planAt + 1] as string, (r) => (r.state = 'TELEPORT'))), line: planAt + 2, reason: /state: expected one of/ },
    { name: 'an unknown record type', lines: with_(planAt + 1, rewrite(L[planAt + 1] as string, (r) => (r.type = 'skip'))), line: planAt + 2, reason: /type: expected one of/ },
    { name: 'an unknown field', lines: with_(planAt, rewrite(L[planAt] as string, (r) => (r.force = true))), line: planAt + 1, reason: /force: unknown field/ },
    {
      name: 'a recorded source entry with a bad port',
      lines: with_(prepDoneAt, rewrite(L[prepDoneAt] as string, (r) => ((r.facts as { original: { port: number } }).original.port = -1))),
      line: prepDoneAt + 1,
      reason: /facts\.original\.port: expected an integer/,
    },
    { name: 'a missing seq', lines: with_(2, rewrite(L[2] as string, (r) => delete r.seq)), line: 3, reason: /seq: missing/ },
    { name: 'an edited line (checksum)', lines: with_(planAt, (L[planAt] as string).replace('vx-b', 'vx-c')), line: planAt + 1, reason: /checksum mismatch/ },
    { name: 'a line without its checksum', lines: with_(planAt, (L[planAt] as string).slice(17)), line: planAt + 1, reason: /no checksum/ },
    { name: 'a removed line', lines: cutAfterSwitch.filter((_, j) => j !== planAt + 2), line: planAt + 3, reason: /seq \d+ where \d+ was expected/ },
    { name: 'a repeated line', lines: [...cutAfterSwitch.slice(0, planAt + 2), ...cutAfterSwitch.slice(planAt + 1)], line: planAt + 3, reason: /seq \d+ where \d+ was expected/ },
    { name: 'the open record moved', lines: [L[planAt] as string, L[0] as string, ...cutAfterSwitch.slice(planAt + 1)], line: 1, reason: /first record is plan, not open/ },
    { name: 'a step before its plan', lines: with_(planAt, rewrite(L[planAt] as string, (r) => (r.app = 'other'))), line: planAt + 2, reason: /has no plan before it/ },
    { name: 'the open record of another journal', lines: with_(0, rewrite(L[0] as string, (r) => (r.journal = 'someone-else'))), line: 1, reason: /names journal someone-else/ },
    // A bad line at the end that is complete (newline and all) is damage, not a torn tail.
    { name: 'a bad complete last line', lines: [...cutAfterSwitch, '{"seq": 99'], line: cutAfterSwitch.length + 1, reason: /no checksum|not valid JSON/ },
  ];
  for (const c of cases) {
    const bytes = c.lines.join('\n') + '\n';
    const { dir, path } = journalWith(t, run.id, bytes);
    const d = decodeJournal(Buffer.from(bytes), run.id);
    const named = (problems: readonly { line: number; reason: string }[]): boolean => problems.some((p) => p.line === c.line && c.reason.test(p.reason));
    t.ok(d.problems.length > 0, `${c.name}: damaged`);
    t.ok(named(d.problems), `${c.name}: line ${c.line}, ${String(c.reason)}`);

    // The hosts as they are after SWITCH (what the cut journal says): resume must still not act.
    const env = restore(run.after[switchDoneAt] as Snapshot);
    const err = await resumeOn(dir, env).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof ResumeRefusedError, `${c.name}: --resume refuses`);
    const msg = (err as Error).message;
    t.match(msg, path, `${c.name}: the refusal names the file`);
    t.match(msg, `line ${c.line}: `, `${c.name}: and the line`);
    t.match(msg, /Nothing was changed/);
    t.match(msg, /routeshift status .*--state-dir/, `${c.name}: offers to look`);
    t.match(msg, /mv .*\.jsonl .*\.damaged/, `${c.name}: offers to move it aside`);
    t.match(msg, /roll back: .*routeshift app add x --agent \S+ --addr/, `${c.name}: offers to finish by hand (roll back)`);
    t.match(msg, /roll forward: routeshift app add x --agent \S+ --addr .*routeshift app rm x/, `${c.name}: offers to finish by hand (roll forward)`);
    t.equal(exitCodeOfError(err), 3, `${c.name}: exit 3 (needs attention)`);
    t.equal(env.a.calls.length + env.b.calls.length, 0, `${c.name}: no agent was called`);
    t.equal(readFileSync(path, 'utf8'), bytes, `${c.name}: the journal is untouched`);

    const report = journalReport(dir);
    t.match(report.damaged, [{ journal: run.id, path, reason: new RegExp(`line ${c.line}: `) }], `${c.name}: status lists it with its reason`);
    t.ok(named(report.damaged[0]?.problems ?? []), `${c.name}: status names the line's problem`);
    t.same(report.unfinished, [], `${c.name}: and does not guess at what it says`);
  }
});

t.test('a directory in place of the journal file is damage, reported and refused', async (t) => {
  const dir = stateDir(t);
  const path = join(journalDir(dir), `${newJournalId('x')}.jsonl`);
  mkdirSync(path, { recursive: true });
  t.match(inspectJournal(path).decoded.problems, [{ line: 0, reason: 'not a regular file (a directory)' }]);
  const env = restore(snap({ ...agents(), driver: new FakeDriver() }));
  await t.rejects(resumeOn(dir, env), { name: 'ResumeRefusedError', message: /is damaged: not a regular file \(a directory\)/ });
  t.match(journalReport(dir).damaged, [{ path, reason: 'not a regular file (a directory)' }]);
  // The journal directory itself being a file is a clear error, not a stack trace of readdir.
  const dir2 = stateDir(t);
  writeFileSync(journalDir(dir2), 'x');
  t.throws(() => journalReport(dir2), /journal is not a directory/);
});

t.test('a damaged newest journal is never skipped for an older finished one', async (t) => {
  const done = await recordRun(t, false);
  const later = await recordRun(t, false);
  // The older run ended done; the newer one is damaged after SWITCH (its hosts: x switched, running on both).
  const L = lines(later.bytes);
  const switchDoneAt = L.findIndex((l) => recordOf(l).type === 'done' && recordOf(l).state === 'SWITCH');
  const damaged = [...L.slice(0, switchDoneAt), (L[switchDoneAt] as string).replace('"ms":', '"ms":1'), ...L.slice(switchDoneAt + 1, switchDoneAt + 2)];
  const { dir, path } = journalWith(t, done.id, done.bytes);
  const newer = join(journalDir(dir), `${later.id}.jsonl`);
  writeFileSync(newer, damaged.join('\n') + '\n');
  t.ok(later.id > done.id, 'the damaged one is newer');
  const env = restore(later.after[switchDoneAt] as Snapshot);
  const err = (await resumeOn(dir, env).catch((e: unknown) => e)) as Error;
  t.match(err, { name: 'ResumeRefusedError' }, 'refused, not "already ended done; nothing to do"');
  t.match(err.message, newer);
  t.match(err.message, `line ${switchDoneAt + 1}: checksum mismatch`);
  t.match(err.message, `it then resumes from ${path}, where x ended done`, 'says what moving it aside would do');
  t.match(err.message, /last readable record is line \d+: /);
  t.equal(env.a.calls.length + env.b.calls.length, 0, 'no agent was called');
  t.same(searchJournals(dir, 'x').damagedNewer.map((f) => f.path), [newer]);
  const report = journalReport(dir);
  t.same(report.damaged.map((d) => d.path), [newer]);
});

t.test('journals of the previous format (no checksums) are read as legacy, with schema and order still checked', async (t) => {
  const run = await recordRun(t, false);
  const L = lines(run.bytes);
  const bare = L.map((l) => l.slice(17));
  const stop = bare.findIndex((l) => (JSON.parse(l) as { type: string; state?: string }).type === 'enter' && (JSON.parse(l) as { state?: string }).state === 'STOP');
  const legacyCut = bare.slice(0, stop + 1).join('\n') + '\n';
  const d = decodeJournal(Buffer.from(legacyCut), run.id);
  t.equal(d.legacy, true);
  t.same(d.problems, []);
  t.equal(d.records.length, stop + 1);
  // Old and new lines mixed (a legacy journal continued by this version) read fine.
  t.same(decodeJournal(Buffer.from(legacyCut + L[stop + 1] + '\n'), run.id).problems, []);
  // Schema violations are still caught.
  const noFrom = bare.map((l, i) => (i === 1 ? l.replace(/"from":"[^"]*",/, '') : l)).slice(0, stop + 1);
  t.match(decodeJournal(Buffer.from(noFrom.join('\n') + '\n'), run.id).problems, [{ line: 2, reason: /from: missing/ }]);
  // And resume continues one, with a warning, to a consistent end.
  const { dir, path } = journalWith(t, run.id, legacyCut);
  const env = restore(run.after[stop] as Snapshot);
  const r = await resumeOn(dir, env);
  t.equal(r.outcome, 'done');
  consistent(t, env, 'done', 'legacy resumed');
  t.ok(r.notes.some((n) => /previous format \(no checksums\)/.test(n)), 'warned');
  t.same(inspectJournal(path).decoded.problems, [], 'the continued legacy journal still reads');
  t.match(journalReport(dir).unfinished, [], 'finished now');
});

t.test('status: an unfinished migration behind a newer damaged journal says --resume would refuse', async (t) => {
  const run = await recordRun(t, false);
  const other = await recordRun(t, false);
  const L = lines(run.bytes);
  const { dir } = journalWith(t, run.id, L.slice(0, 5).join('\n') + '\n');
  writeFileSync(join(journalDir(dir), `${other.id}.jsonl`), 'garbage\n');
  const report = journalReport(dir);
  t.match(report.unfinished, [{ app: 'x', journal: run.id, blockedBy: other.id }]);
  t.match(report.damaged, [{ journal: other.id, reason: 'line 1: not a journal line (neither "<checksum> <json>" nor JSON)', apps: [] }]);
});

t.test('a journal cut at a line boundary behind what happened (no checksum can tell) is caught by the source entry', async (t) => {
  const run = await recordRun(t, false);
  const L = lines(run.bytes);
  const readyDone = L.findIndex((l) => recordOf(l).type === 'done' && recordOf(l).state === 'READY');
  const { dir, path } = journalWith(t, run.id, L.slice(0, readyDone + 1).join('\n') + '\n');
  // The journal says READY was the last step; the hosts say the migration went on to SWITCH.
  const switched = run.after[L.findIndex((l) => recordOf(l).type === 'done' && recordOf(l).state === 'SWITCH')] as Snapshot;
  const env = restore(switched);
  const err = (await resumeOn(dir, env).catch((e: unknown) => e)) as Error;
  t.match(err, { name: 'ResumeUndecidedError', message: /says SWITCH of x never began, but its source entry on http:\/\/a:7000 is \{"type":"forward".*nothing changed/ });
  t.equal(exitCodeOfError(err), 3);
  t.same([...env.driver.running].sort(), ['destination', 'source'], 'nothing was stopped');
  t.ok(env.b.deliveries.has('x'), 'the delivery entry is still there');
  t.equal(readFileSync(path, 'utf8'), L.slice(0, readyDone + 1).join('\n') + '\n', 'nothing was journaled');
  t.same([env.a, env.b].flatMap((a) => a.calls.filter((c) => c.method === 'takeLeases' || c.method === 'releaseLeases')), [], 'no lease was taken (the guard reads; leases come after it)');
});

t.test('the writer refuses a record reading back would refuse, without using up its seq', async (t) => {
  const dir = stateDir(t);
  const id = newJournalId('w');
  const j = await Journal.create(dir, id);
  await j.append({ type: 'open', journal: id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST });
  await t.rejects(j.append({ type: 'plan', app: 'x', from: 'not a url', to: 'http://b', toIndex: 0, destDev: 'v' }), /not journaling a plan record that could not be read back: from: expected an agent URL/);
  await t.rejects(j.append({ type: 'done', app: 'x', state: 'PREPARE', ms: Number.NaN }), /ms: expected a number/);
  await j.append({ type: 'plan', app: 'x', from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'v' });
  await j.close();
  const d = inspectJournal(j.path).decoded;
  t.same(d.problems, []);
  t.same(d.records.map((r) => r.seq), [0, 1], 'no gap');
});
