/**
 * `routeshift status --watch` against a real agent while packets hit one
 * of its two apps: the refreshes show packets/s per app from the kernel's
 * counters — the app with traffic above 0, the other at 0, none on the
 * first refresh (no earlier counters) — and stop after --count.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, runCli } from './lib/e2e.js';

const bed = await Bed.create(t, { tag: 'rswt', apps: MIGRATION_APPS });
const xA = bed.topo.app('x', 'A');
const yA = bed.topo.app('y', 'A');
await bed.registerLocal(xA);
await bed.registerLocal(yA);

t.test('status --watch shows live packets/s per app', async (t) => {
  // 100 pings/s to x for up to 8 s (count-bounded), while the watch refreshes every second.
  const ping = spawn('ip', ['netns', 'exec', bed.topo.client.ns.name, 'ping', '-c', '800', '-i', '0.01', '-W', '1', '-q', xA.addr4], { stdio: 'ignore' });
  t.teardown(() => {
    if (ping.exitCode === null) ping.kill('SIGKILL');
  });
  await new Promise((r) => setTimeout(r, 500));
  const r = await runCli(['status', bed.url('A'), '--watch', '--interval', '1', '--count', '4', '--token-file', bed.tokenFile], 60_000).done;
  t.equal(r.code, 0, r.stderr);
  const blocks = r.stdout.split(/\n(?=routeshift status --watch: )/);
  t.equal(blocks.length, 4, 'four refreshes, then it stops');
  t.notMatch(r.stdout, /\x1b\[/, 'no terminal control characters in a pipe');
  const row = (block: string, name: string): string[] => {
    const line = block.split('\n').find((l) => l.split(/\s+/)[1] === name);
    return line ? line.trim().split(/\s{2,}/) : [];
  };
  t.same(row(blocks[0]!, 'x').slice(3, 6), ['-', '-', '-'], 'no rate on the first refresh');
  const last = blocks[3]!;
  t.match(last, /AGENT\s+NAME\s+ACTION\s+LOCAL pps\s+FORWARD pps\s+DELIVER pps\s+TRAFFIC/);
  const x = row(last, 'x');
  t.equal(x[2], 'LOCAL');
  t.ok(Number(x[3]) > 10, `x: ${x[3]} packets/s delivered locally`);
  t.equal(Number(x[4]), 0, 'x: nothing forwarded');
  t.equal(Number(row(last, 'y')[3]), 0, 'y: no traffic, 0 packets/s');

  const bad = await runCli(['status', bed.url('A'), '--watch', '--json', '--token-file', bed.tokenFile]).done;
  t.equal(bad.code, 2, 'a watch is not for --json');
  t.match(JSON.parse(bad.stdout), { kind: 'Error', code: 'bad-usage' });
});
