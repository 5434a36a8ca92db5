/**
 * The agent's one-per-uplink lock (src/agent/lock.ts), a flock(2) held for
 * the agent's life: a second holder is refused with the owner's PID, a
 * SIGKILLed owner frees it at once, and a lock file left with a live but
 * unrelated PID in it (PID reuse) blocks nobody.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PidLock } from '../src/agent/lock.js';

const LOCK_MODULE = join(process.cwd(), 'dist', 'src', 'agent', 'lock.js');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rs-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('one holder at a time; release removes the file and frees the lock', async (t) => {
  const dir = tempDir(t);
  const lock = PidLock.acquire('agent-x', 'uplink x', dir);
  t.equal(readFileSync(lock.path, 'utf8'), `${process.pid}\n`, 'the file names the owner');
  t.throws(() => PidLock.acquire('agent-x', 'uplink x', dir), new RegExp(`uplink x is already owned by process ${process.pid}`), 'a second holder is refused, naming the owner');
  const other = PidLock.acquire('agent-y', 'uplink y', dir);
  t.pass('another resource is another lock');
  other.release();
  lock.release();
  t.notOk(existsSync(lock.path), 'released: the file is gone');
  const again = PidLock.acquire('agent-x', 'uplink x', dir);
  t.pass('and the lock can be taken again');
  again.release();
  again.release();
  t.pass('releasing twice is harmless');
});

t.test('a SIGKILLed holder frees the lock at once; a live unrelated PID in the file blocks nobody', async (t) => {
  const dir = tempDir(t);
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { PidLock } from ${JSON.stringify(LOCK_MODULE)}; PidLock.acquire('agent-z', 'uplink z', ${JSON.stringify(dir)}); console.log('held'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the child did not take the lock in 20 s')), 20_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });
  t.equal(line, 'held');
  t.throws(() => PidLock.acquire('agent-z', 'uplink z', dir), new RegExp(`already owned by process ${child.pid}`), 'refused while the child lives, naming it');
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const lock = PidLock.acquire('agent-z', 'uplink z', dir);
  t.pass('taken at once after SIGKILL');
  lock.release();

  // A file naming a live process (PID 1 here) but with no flock on it: stale, not an owner.
  const path = join(dir, 'agent-w.lock');
  writeFileSync(path, '1\n');
  const w = PidLock.acquire('agent-w', 'uplink w', dir);
  t.equal(readFileSync(path, 'utf8'), `${process.pid}\n`, 'a reused PID cannot keep a dead agent\'s lock');
  w.release();
});
