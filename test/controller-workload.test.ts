/**
 * Workload drivers and announce hooks for real: `netns-process` runs a real
 * UDP echo inside a real network namespace (created and deleted by exact
 * name by this test), tracks and stops only the PID it started; `exec` runs
 * real scripts with the documented environment; `netns-route` moves a real
 * route in that namespace. The root namespace is never touched.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsRouteHook, createAnnounceHook, type Announcement } from '../src/controller/announce.js';
import { ExecDriver } from '../src/workload/exec.js';
import { NetnsProcessDriver, findTagged } from '../src/workload/netns-process.js';
import { NoneDriver } from '../src/workload/none.js';
import { isAlive } from '../src/os/process.js';
import { probeUdp } from '../src/workload/probe.js';
import type { WorkloadApp, WorkloadHost } from '../src/workload/driver.js';
import { Netns, run, uniquePrefix } from '../src/testbed/netns.js';

const tmp = mkdtempSync(join(tmpdir(), 'rsct-wl-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const ns = Netns.create(uniquePrefix('rsct'));
t.teardown(() => ns.delete());

const ECHO = join(tmp, 'echo.mjs');
writeFileSync(
  ECHO,
  `import { createSocket } from 'node:dgram';
const s = createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(Number(process.argv[2]), '0.0.0.0');
process.on('SIGTERM', () => process.exit(0));
`,
);

const app: WorkloadApp = { name: 'x', address: '127.0.0.1', proto: 'udp', port: 7777, migrationId: 'test' };
const dest: WorkloadHost = { role: 'destination', agentUrl: 'http://b', index: 0 };
const source: WorkloadHost = { role: 'source', agentUrl: 'http://a', index: 0 };
const noteLog: string[] = [];
const ctx = { log: (m: string) => noteLog.push(m) };

async function until(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (let i = 0; i < 200 && Date.now() < end; i++) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

t.test('netns-process: starts the app in the namespace, probes it, stops only its PID', async (t) => {
  const stateDir = join(tmp, 'state1');
  const d = new NetnsProcessDriver({
    sourceNetns: 'unused-{app}',
    destNetns: ns.name,
    command: `${process.execPath} ${ECHO} {port}`,
    probe: { proto: 'udp', address: '127.0.0.1', port: 7777, timeoutMs: 300 },
    stateDir,
    killAfterMs: 1000,
  });
  let pid: number | undefined;
  t.teardown(() => {
    // Only the PID this test started, if it is still ours.
    const rec = d.running(app, dest);
    if (rec) process.kill(rec.pid, 'SIGKILL');
  });
  await d.start(app, dest, ctx);
  const rec = d.running(app, dest);
  t.ok(rec, 'the PID is recorded');
  pid = rec?.pid;
  t.equal(run('ip', ['netns', 'identify', String(pid)]).trim(), ns.name, 'the process lives in the namespace');
  t.ok(await until(() => d.probe(app, dest, ctx), 5000), 'ready: alive and the UDP echo answers inside the namespace');
  t.notOk(await probeUdp('127.0.0.1', 7777, 200), 'the root namespace does not see it');

  await d.start(app, dest, ctx);
  t.equal(d.running(app, dest)?.pid, pid, 'start again is a no-op');
  t.ok(noteLog.some((m) => /already running/.test(m)));

  await d.stop(app, dest, ctx);
  t.notOk(d.running(app, dest), 'stopped');
  t.notOk(isAlive(rec!), 'the process is gone');
  t.notOk(existsSync(join(stateDir, 'workload', `${ns.name}--x.json`)), 'record removed');
  await d.stop(app, dest, ctx);
  t.ok(noteLog.some((m) => /nothing stopped/.test(m)), 'stop again is a no-op');
  await t.rejects(d.probe(app, dest, ctx), /never started/);
});

t.test('netns-process: a controller killed between spawn and record leaves no orphan and no second copy', async (t) => {
  // What a controller SIGKILLed right after the spawn leaves: the intent record
  // (written before the spawn) and a process carrying its tag.
  const stateDir = join(tmp, 'state-intent');
  const d = new NetnsProcessDriver({ sourceNetns: ns.name, destNetns: ns.name, command: 'sleep 30', stateDir });
  const recordFile = join(stateDir, 'workload', `${ns.name}--x.json`);
  const tag = 'feedc0ffee0123456789abcd';
  mkdirSync(join(stateDir, 'workload'), { recursive: true });
  writeFileSync(recordFile, JSON.stringify({ tag, netns: ns.name, command: 'sleep 30', startedAt: new Date().toISOString(), log: '/dev/null' }) + '\n');
  const orphan = spawn('ip', ['netns', 'exec', ns.name, 'sh', '-c', 'exec sleep 30'], { detached: true, stdio: 'ignore', env: { ...process.env, ROUTESHIFT_APP_TAG: tag } });
  t.teardown(() => {
    if (orphan.exitCode === null && orphan.signalCode === null) orphan.kill('SIGKILL');
  });
  await new Promise((r) => orphan.once('spawn', r));
  t.ok(await until(async () => findTagged(tag)?.pid === orphan.pid, 3000), 'the process is found by its tag');

  await d.start(app, source, ctx);
  t.equal(d.running(app, source)?.pid, orphan.pid, 'start adopts it instead of starting a second copy');
  t.equal((JSON.parse(readFileSync(recordFile, 'utf8')) as { pid?: number }).pid, orphan.pid, 'and completes the record');
  await d.stop(app, source, ctx);
  t.ok(await until(async () => orphan.exitCode !== null || orphan.signalCode !== null, 5000), 'stop ends it');

  // An intent whose process never started: nothing to adopt, a fresh start.
  writeFileSync(recordFile, JSON.stringify({ tag: 'deadbeefdeadbeefdeadbeef', netns: ns.name, command: 'sleep 30', startedAt: new Date().toISOString(), log: '/dev/null' }) + '\n');
  t.notOk(d.running(app, source), 'an intent without a process is not a running app');
  t.notOk(existsSync(recordFile), 'and is cleared');
  await d.start(app, source, ctx);
  const fresh = d.running(app, source);
  t.ok(fresh && fresh.pid !== orphan.pid, 'start then starts the app');
  t.match(readFileSync(`/proc/${fresh!.pid}/environ`, 'latin1'), /ROUTESHIFT_APP_TAG=[0-9a-f]{24}/, 'carrying a tag of its own');
  await d.stop(app, source, ctx);
});

t.test('netns-process: a process that exits makes probe fail at once', async (t) => {
  const d = new NetnsProcessDriver({ sourceNetns: ns.name, destNetns: ns.name, command: 'sleep 0.1', stateDir: join(tmp, 'state2') });
  await d.start(app, source, ctx);
  t.equal(await d.probe(app, source, ctx), true, 'alive (no probe configured) = ready');
  t.ok(await until(async () => !d.running(app, source), 3000), 'exits');
  await t.rejects(d.probe(app, source, ctx), /is not running any more/);
  await d.stop(app, source, ctx);
  t.ok(noteLog.some((m) => /had already exited/.test(m)));
});

t.test('netns-process: a missing namespace fails start or probe clearly', async (t) => {
  const d = new NetnsProcessDriver({ sourceNetns: 'x', destNetns: `${ns.name}-missing`, command: 'sleep 5', stateDir: join(tmp, 'state3') });
  let failed = false;
  try {
    await d.start(app, dest, ctx);
    t.ok(await until(async () => !d.running(app, dest), 3000), 'ip netns exec exits');
    await d.probe(app, dest, ctx);
  } catch (err) {
    failed = true;
    t.match((err as Error).message, /not running any more|exited at once|cannot start/);
  }
  t.ok(failed);
});

t.test('none: ready at once, or when its probe answers', async (t) => {
  t.equal(await new NoneDriver().probe(app, dest, ctx), true);
  t.equal(await new NoneDriver({ proto: 'tcp', port: 1, timeoutMs: 200, netns: ns.name }).probe(app, dest, ctx), false, 'nothing listens → not ready');
});

t.test('exec: scripts get the documented environment; exit codes decide', async (t) => {
  const out = join(tmp, 'env.txt');
  const counter = join(tmp, 'count');
  const script = (name: string, body: string) => {
    const p = join(tmp, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  const start = script('start.sh', `env | grep ^ROUTESHIFT_ | sort > ${out}`);
  const probe = script('probe.sh', `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n+1)) > ${counter}; [ $n -ge 2 ]`);
  const stop = script('stop.sh', `echo "cannot stop $ROUTESHIFT_APP" >&2; exit 3`);
  const d = new ExecDriver({ start, probe, stop, timeoutMs: 5000 });
  await d.start({ ...app, port: 0, proto: 'any' }, dest, ctx);
  t.same(readFileSync(out, 'utf8').trim().split('\n'), [
    'ROUTESHIFT_ADDRESS=127.0.0.1',
    'ROUTESHIFT_APP=x',
    'ROUTESHIFT_HOST=http://b',
    'ROUTESHIFT_HOST_INDEX=0',
    'ROUTESHIFT_MIGRATION=test',
    'ROUTESHIFT_PHASE=start',
    'ROUTESHIFT_PORT=0',
    'ROUTESHIFT_PROTO=any',
    'ROUTESHIFT_ROLE=destination',
  ]);
  t.same([await d.probe(app, dest, ctx), await d.probe(app, dest, ctx), await d.probe(app, dest, ctx)], [false, false, true], 'probe: exit 0 = ready');
  await t.rejects(d.stop(app, source, ctx), /stop of x on http:\/\/a: hook .*stop\.sh exit 3: cannot stop x/);
  const slow = new ExecDriver({ start: script('slow.sh', 'sleep 5'), timeoutMs: 200 });
  const t0 = Date.now();
  await t.rejects(slow.start(app, dest, ctx), /timed out after 200 ms/);
  t.ok(Date.now() - t0 < 2000, 'a hung hook (and what it started) is killed at its timeout');
});

t.test('netns-route: moves the route of the app in the namespace (IPv4, IPv6, batch)', async (t) => {
  ns.ip('link', 'add', 'rsa0', 'type', 'veth', 'peer', 'name', 'rsb0');
  ns.ip('addr', 'add', '10.98.0.1/24', 'dev', 'rsa0');
  ns.ip('addr', 'add', 'fd00:98::1/64', 'dev', 'rsa0', 'nodad');
  ns.ip('link', 'set', 'rsa0', 'up');
  ns.ip('link', 'set', 'rsb0', 'up');
  const hook = createAnnounceHook({ kind: 'netns-route', netns: ns.name, via: ['10.98.0.2', '10.98.0.3'] });
  const base: Announcement = { app: 'x', address: '10.99.0.10', proto: 'any', port: 0, from: 'http://a', to: 'http://b', toIndex: 0, tunnel: '192.0.2.2', migrationId: 't' };
  await hook.announce(base);
  t.match(ns.ip('route', 'show', '10.99.0.10/32'), /via 10\.98\.0\.2/);
  await hook.announce({ ...base, toIndex: 1 });
  t.match(ns.ip('route', 'show', '10.99.0.10/32'), /via 10\.98\.0\.3/, 'replaced, not added');
  await hook.announceAll([11, 12, 13].map((i) => ({ ...base, app: `a${i}`, address: `10.99.0.${i}` })));
  for (const i of [11, 12, 13]) t.match(ns.ip('route', 'show', `10.99.0.${i}/32`), /via 10\.98\.0\.2/);
  const h6 = new NetnsRouteHook(ns.name, ['fd00:98::2']);
  await h6.announce({ ...base, address: 'fd00:99::10' });
  t.match(ns.ip('-6', 'route', 'show', 'fd00:99::10/128'), /via fd00:98::2/);
  await t.rejects(h6.announce(base), /\(fd00:98::2\) is not an IPv4 address like x's 10\.99\.0\.10/);
  t.throws(() => new NetnsRouteHook('bad name', ['10.0.0.1']), /invalid network namespace/);
});
