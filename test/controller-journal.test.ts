/**
 * The journal's durability contract (a step's record is on disk before the
 * step is applied), group commit, torn-line handling, and the per-app lock
 * (second holder refused with the holder named; stale locks taken over).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Journal, LockHeldError, acquireLock, findJournal, lockPath, newJournalId, readJournal, type OpenRecord } from '../src/controller/journal.js';
import { Migration } from '../src/controller/machine.js';
import { identify } from '../src/os/process.js';
import { FAST, FakeAnnounce, FakeDriver, agents, stateDir } from './controller-doubles.js';

/** Every journal starts with its open record. */
const openRecord = (j: Journal): OpenRecord => ({ type: 'open', journal: j.id, kind: 'migrate', pid: process.pid, host: 'test', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST });

t.test('every step is journaled (on disk) before it is applied', async (t) => {
  const dir = stateDir(t);
  const env = { ...agents(), driver: new FakeDriver() };
  const id = newJournalId('x');
  const j = await Journal.create(dir, id);
  await j.append(openRecord(j));
  const lastOnDisk = () => {
    const recs = readJournal(j.path);
    return recs[recs.length - 1];
  };
  const seen: string[] = [];
  // At the moment each agent call is made, the newest durable line must be that step's `enter`.
  const expectAt: Record<string, string> = { putDelivery: 'DELIVER', setAction: 'SWITCH', putApp: 'ANNOUNCE' };
  for (const agent of [env.a, env.b]) {
    agent.fault = (call) => {
      const want = expectAt[call.method];
      if (want && call.name === 'x') {
        const last = lastOnDisk();
        seen.push(`${call.method}:${last?.type}:${(last as { state?: string }).state}`);
      }
    };
  }
  const origStart = env.driver.start.bind(env.driver);
  env.driver.start = async (a, h) => {
    const last = lastOnDisk();
    seen.push(`start:${last?.type}:${(last as { state?: string }).state}`);
    return origStart(a, h);
  };
  const plan = { type: 'plan' as const, app: 'x', from: env.a.url, to: env.b.url, toIndex: 0, destDev: 'vx-b' };
  await j.append(plan);
  const m = new Migration({ journalId: id, plan, source: env.a, dest: env.b, driver: env.driver, announce: new FakeAnnounce(), timing: FAST }, j);
  t.equal(await m.advance(), 'done');
  await j.close();
  t.same(seen, ['start:enter:START', 'putDelivery:enter:DELIVER', 'setAction:enter:SWITCH', 'putApp:enter:ANNOUNCE']);
});

t.test('concurrent appends (group commit) are all durable, in sequence order', async (t) => {
  const dir = stateDir(t);
  const j = await Journal.create(dir, newJournalId('g'));
  await j.append(openRecord(j));
  await Promise.all(Array.from({ length: 200 }, (_, i) => j.append({ type: 'plan', app: `a${i}`, from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'v' })));
  await j.close();
  const recs = readJournal(j.path).slice(1);
  t.equal(recs.length, 200);
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i + 1));
  t.same(recs.map((r) => (r as { app: string }).app), Array.from({ length: 200 }, (_, i) => `a${i}`));
  await t.rejects(j.append({ type: 'enter', app: 'late', state: 'START' }), /closed/);
});

t.test('a torn last line is ignored; a corrupt line before the end is an error', async (t) => {
  const dir = stateDir(t);
  const j = await Journal.create(dir, newJournalId('torn'));
  await j.append(openRecord(j));
  await j.append({ type: 'plan', app: 'x', from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'v' });
  await j.append({ type: 'enter', app: 'x', state: 'PREPARE' });
  await j.close();
  appendFileSync(j.path, '{"seq":3,"type":"ent');
  t.equal(readJournal(j.path).length, 3, 'torn tail dropped');
  const text = readFileSync(j.path, 'utf8');
  writeFileSync(j.path, text.replace('"type":"enter"', '"type":"enter"garbage') + '\n');
  t.throws(() => readJournal(j.path), /line 3: checksum mismatch/);
});

t.test('findJournal picks the newest journal that plans the app', async (t) => {
  const dir = stateDir(t);
  const j1 = await Journal.create(dir, `2020-01-01T00-00-00-000Z-x-1-aaaa`);
  await j1.append(openRecord(j1));
  await j1.append({ type: 'plan', app: 'x', from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'old' });
  await j1.close();
  const j2 = await Journal.create(dir, `2021-01-01T00-00-00-000Z-x-1-bbbb`);
  await j2.append(openRecord(j2));
  await j2.append({ type: 'plan', app: 'x', from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'new' });
  await j2.close();
  const j3 = await Journal.create(dir, `2022-01-01T00-00-00-000Z-y-1-cccc`);
  await j3.append(openRecord(j3));
  await j3.append({ type: 'plan', app: 'y', from: 'http://a', to: 'http://b', toIndex: 0, destDev: 'y' });
  await j3.close();
  t.equal(findJournal(dir, 'x')?.path, j2.path);
  t.equal(findJournal(dir, 'nope'), undefined);
});

t.test('a second lock of one app is refused with the holder named; released, it can be taken', async (t) => {
  const dir = stateDir(t);
  const l1 = acquireLock(dir, 'x', 'J1');
  const err = (() => {
    try {
      acquireLock(dir, 'x', 'J2');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof LockHeldError);
  t.match((err as Error).message, new RegExp(`pid ${process.pid} on ${hostname()}.*journal J1`));
  const other = acquireLock(dir, 'y', 'J3');
  other.release();
  l1.release();
  t.notOk(existsSync(lockPath(dir, 'x')));
  acquireLock(dir, 'x', 'J4').release();
});

t.test('a lock held by a dead process, or by a reused PID, is stale and taken over', async (t) => {
  const dir = stateDir(t);
  acquireLock(dir, 'x', 'setup').release();
  // A PID that existed and is now dead: a child we ran and reaped.
  const dead = spawnSync('true').pid as number;
  writeFileSync(lockPath(dir, 'x'), JSON.stringify({ pid: dead, startTime: '1', host: hostname(), journal: 'OLD', since: 'then' }));
  const l = acquireLock(dir, 'x', 'NEW');
  t.match(JSON.parse(readFileSync(lockPath(dir, 'x'), 'utf8')), { pid: process.pid, journal: 'NEW' });
  l.release();
  // Our own PID but another start time: the PID was reused, the holder is gone.
  const me = identify(process.pid)!;
  writeFileSync(lockPath(dir, 'x'), JSON.stringify({ pid: me.pid, startTime: String(Number(me.startTime) - 1), host: hostname(), journal: 'OLD', since: 'then' }));
  acquireLock(dir, 'x', 'NEW2').release();
  // A corrupt lock file is stale too.
  writeFileSync(lockPath(dir, 'x'), 'garbage');
  acquireLock(dir, 'x', 'NEW3').release();
});

t.test('migrate() of an app already being migrated is refused and writes no journal', async (t) => {
  const dir = stateDir(t);
  const { a, b, connect } = agents();
  const held = acquireLock(dir, 'x', 'OTHER');
  t.teardown(() => held.release());
  const { migrate } = await import('../src/controller/migrate.js');
  await t.rejects(
    migrate({ app: 'x', from: a.url, to: b.url, destDev: 'v', driver: { kind: 'none' }, announce: { kind: 'none' }, timing: FAST, stateDir: dir, connect }),
    { name: 'LockHeldError', message: /journal OTHER/ },
  );
  t.equal(findJournal(dir, 'x'), undefined);
  t.equal(a.calls.length, 0, 'no agent was called');
});
