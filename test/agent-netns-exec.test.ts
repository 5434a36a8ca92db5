/**
 * An agent started the way users start it in a namespace — `ip netns exec
 * NS routeshift agent …` with its default flags — keeps its state across a
 * restart. `ip netns exec` gives the process a mount namespace of its own
 * with /sys remounted, so the bpffs the agent pins into is mounted by the
 * agent itself and vanishes with it: the restarted agent must find the
 * entries through the program attached to the uplink, which holds every
 * map, the agent's own included.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { statSync } from 'node:fs';
import { PidLock, agentLockName, uplinkLockName } from '../src/agent/lock.js';
import { AGENT_NODE_FLAGS } from '../src/agent/memory.js';
import { defaultPinDir } from '../src/datapath/host.js';
import { Topology } from '../src/testbed/topology.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { udpStream } from '../src/testbed/traffic.js';
import { CHILD_ENV, CLI, cliJson } from './lib/e2e.js';

const topo = Topology.create({ prefix: uniquePrefix('rsn'), hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }], ipv6: false });
t.teardown(() => topo.destroy());
const host = topo.host('A');
const x = topo.app('x');
const LISTEN = '127.0.0.1:7461';
const URL = `http://${LISTEN}`;

const running = new Set<ChildProcess>();
t.teardown(() => {
  for (const c of running) c.kill('SIGKILL');
  // the agent's locks, if a failed run left them (its pins went with its mount namespace)
  PidLock.removeIfFree(agentLockName(defaultPinDir('eth0', host.ns.name)));
  try {
    PidLock.removeIfFree(uplinkLockName(statSync(`/run/netns/${host.ns.name}`, { bigint: true }).ino, 'eth0'));
  } catch {
    /* the namespace went first */
  }
});

/** `ip netns exec <host> routeshift agent --uplink eth0 --insecure --listen …`: the process is the agent (ip execs it). */
async function startAgent(): Promise<{ child: ChildProcess; ready: { adopted: boolean }; log: string[] }> {
  const child = spawn('ip', ['netns', 'exec', host.ns.name, process.execPath, ...AGENT_NODE_FLAGS, CLI, 'agent', '--uplink', 'eth0', '--insecure', '--listen', LISTEN], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: CHILD_ENV,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const log: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => log.push(l));
  const ready = await new Promise<{ adopted: boolean }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent not ready in 30 s: ${log.slice(-3).join(' | ')}`)), 30_000);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line) as { adopted: boolean });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}: ${log.slice(-3).join(' | ')}`));
    });
  });
  return { child, ready, log };
}

/** The CLI run where the agent listens: inside the host's namespace. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', host.ns.name, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: CHILD_ENV });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d));
    c.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
    c.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A bounded stream client → x; what x received. */
async function stream(port: number, count: number): Promise<{ sent: number; received: number }> {
  const r = await udpStream(topo.client.ns, x.ns, { addr: x.addr4, port, rate: 2000, count, maxMs: 10_000 });
  return { sent: r.sender.sent, received: r.receiver.received };
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  await done;
}

interface AppJson {
  name: string;
  appId: number;
  path: { via: string };
  counters: { local: { packets: string } };
}

t.test('under `ip netns exec`, a SIGKILLed agent restarted the same way adopts every entry, and packets flow throughout', async (t) => {
  const first = await startAgent();
  t.equal(first.ready.adopted, false, 'the first start is fresh');
  const add = await cli(['app', 'add', 'x', '--agent', URL, '--addr', x.addr4, '--dev', x.hostDev, '--json']);
  t.equal(add.code, 0, `app add without --mac (the agent resolves it): ${add.stderr.trim()}`);
  const added = cliJson<{ app: AppJson }>('app add', add).app;
  t.equal(added.path.via, 'tc-peer', 'a veth whose peer runs no XDP program: delivered through TC into its namespace');

  const before = stream(5500, 2000);
  const r1 = await before;
  t.equal(r1.received, r1.sent, `before the restart: ${r1.received}/${r1.sent} delivered`);

  await stop(first.child, 'SIGKILL');
  // forwarding goes on with no agent at all
  const gap = await stream(5501, 1000);
  t.equal(gap.received, gap.sent, `with the agent dead: ${gap.received}/${gap.sent} delivered`);

  const second = await startAgent();
  t.equal(second.ready.adopted, true, 'the restarted agent adopted the running data plane');
  t.ok(
    second.log.some((l) => /"adopted":true/.test(l) || /adopted pinned entries/.test(l)),
    'its log says what it adopted',
  );
  const list = await cli(['app', 'list', '--agent', URL, '--json']);
  t.equal(list.code, 0, list.stderr.trim());
  const listed = (JSON.parse(list.stdout) as { items: AppJson[] }).items;
  t.same(listed.map((a) => a.name), ['x'], 'x is still registered');
  t.equal(listed[0]?.appId, added.appId, '…with its app id');
  t.ok(Number(listed[0]?.counters.local.packets) >= r1.sent + gap.sent, `…and its counters kept (${listed[0]?.counters.local.packets} packets)`);
  const status = await fetchInNetns('/status');
  t.equal(status.adoptedFrom, 'program', 'found through the program on the uplink (the pins went with the first agent\'s mount namespace)');

  const after = await stream(5502, 2000);
  t.equal(after.received, after.sent, `after the restart: ${after.received}/${after.sent} delivered`);

  await stop(second.child, 'SIGTERM');
  const cleanup = await cli(['agent', '--uplink', 'eth0', '--cleanup']);
  t.equal(cleanup.code, 0, 'agent --cleanup under ip netns exec removes what is left');
});

/** GET a path from the agent, which listens on the host namespace's loopback. */
async function fetchInNetns(path: string): Promise<Record<string, unknown>> {
  const r = await new Promise<string>((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', host.ns.name, process.execPath, '-e', `fetch(${JSON.stringify(URL + path)}).then(r => r.text()).then(t => process.stdout.write(t))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: CHILD_ENV,
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`fetch ${path} exited ${code}`))));
  });
  return JSON.parse(r) as Record<string, unknown>;
}
