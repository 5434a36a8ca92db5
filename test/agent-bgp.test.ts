/**
 * The agent's BGP announcements against a real BIRD 2 (src/agent/bgp.ts,
 * src/agent/bird-control.ts), in a network namespace of this test's own:
 *
 * - announce and withdraw IPv4 and IPv6 addresses: BIRD's table holds
 *   exactly the file's routes after each change; two names on one address
 *   announce it once and it stays while one of them does; a new announcer
 *   on the same file (an agent restart) reads the state back;
 * - BIRD not running / the socket missing: the change fails, the message
 *   names the socket and what to run, the file is as before;
 * - BIRD refusing the configuration: its reason in the message, the file as before;
 * - a file not written by routeshift is refused at start;
 * - through a real agent: the HTTP routes validate their input (400 naming
 *   the field), and an agent started without --bird-include answers 409
 *   saying how to start it;
 * - `routeshift app add --announce` with BIRD absent: exit 1, the reason,
 *   and the entry rolled back (deleted when it created it, put back when
 *   it replaced one).
 *
 * Skips (with the reason) only when bird2 is not installed.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { BgpAnnouncer } from '../src/agent/bgp.js';
import { BirdControl } from '../src/agent/bird-control.js';
import { BirdSpeaker, birdBinary } from '../src/testbed/bird.js';
import { Netns, uniquePrefix } from '../src/testbed/netns.js';
import { announceSpec, type SharedArgs } from '../src/cli/options.js';
import { Bed } from './lib/e2e.js';
import { runCli } from './lib/cli.js';

const log = pino({ level: 'silent' });

if (!birdBinary()) {
  t.plan(0, 'bird2 is not installed (scripts/setup.sh installs it: apt-get install bird2)');
} else {
  await main();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-agent-bgp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = Netns.create(`${uniquePrefix('rsab')}-bird`);
  t.teardown(() => ns.delete());
  const include = join(dir, 'routeshift.conf');
  const socket = join(dir, 'bird.ctl');
  const opts = { include, socket, protocol: 'routeshift' };
  const announcer = BgpAnnouncer.open(opts, log);
  t.match(readFileSync(include, 'utf8'), /protocol static routeshift4 \{\n  ipv4;\n\}/, 'a missing include file is created, with empty protocols');

  const config = (extra = ''): string => `router id 10.255.0.9;\nlog "${join(dir, 'bird.log')}" all;\nprotocol device {}\ninclude "${include}";\n${extra}`;
  let bird: BirdSpeaker | undefined;
  t.teardown(async () => bird?.stop());

  t.test('BIRD not running: a clear error naming the socket, nothing changed', async (t) => {
    const before = readFileSync(include, 'utf8');
    await t.rejects(
      announcer.apply({ announce: [{ name: 'web', address: '10.200.0.10' }], withdraw: [] }),
      new RegExp(`BIRD control socket ${socket} does not exist: is BIRD running\\? start BIRD .*--bird-socket PATH`),
    );
    t.equal(readFileSync(include, 'utf8'), before, 'the include file is as before');
    t.same(announcer.list().announcements, [], 'nothing is announced');
  });

  t.test('announce and withdraw, IPv4 and IPv6: BIRD holds exactly what the file says', async (t) => {
    bird = await BirdSpeaker.start({ netns: ns.name, dir, config: config() });
    const control = new BirdControl(socket);
    const routes = async (table: string, proto: string): Promise<string> => {
      const r = await control.command(`show route table ${table} protocol ${proto}`).catch(() => ({ lines: [] }));
      return r.lines.map((l) => l.text).join('\n');
    };
    const t0 = performance.now();
    const r = await announcer.apply({
      announce: [
        { name: 'web', address: '10.200.0.10' },
        { name: 'web-dns', address: '10.200.0.10' },
        { name: 'api6', address: 'fd00:200::a' },
      ],
      withdraw: [],
    });
    const took = performance.now() - t0;
    t.same(r, { announced: 3, withdrawn: 0 }, `three announced in one reconfiguration (${took.toFixed(0)} ms)`);
    t.match(await routes('master4', 'routeshift4'), /10\.200\.0\.10\/32\s+blackhole/, "BIRD's IPv4 table has the /32");
    t.match(await routes('master6', 'routeshift6'), /fd00:200::a\/128\s+blackhole/, '…and the IPv6 table the /128');
    t.equal(readFileSync(include, 'utf8').match(/route 10\.200\.0\.10\/32 blackhole;/g)?.length, 1, 'two names on one address: one route');

    await announcer.apply({ announce: [], withdraw: ['web'] });
    t.match(await routes('master4', 'routeshift4'), /10\.200\.0\.10\/32/, 'withdrawing one of the two names keeps the route');
    const w = await announcer.apply({ announce: [], withdraw: ['web-dns', 'api6', 'never-announced'] });
    t.same(w, { announced: 0, withdrawn: 2 }, 'withdrawing what was never announced is no change');
    t.notMatch(await routes('master4', 'routeshift4'), /10\.200\.0\.10/, 'the /32 is gone from BIRD');
    t.notMatch(await routes('master6', 'routeshift6'), /fd00:200::a/, '…and the /128');

    await announcer.apply({ announce: [{ name: 'web', address: '10.200.0.10' }], withdraw: [] });
    const again = BgpAnnouncer.open(opts, log);
    t.same(again.list().announcements, [{ name: 'web', address: '10.200.0.10', prefix: '10.200.0.10/32' }], 'a restarted announcer reads the state back from the file');
    t.same(again.list().bird, { socket, include, protocols: { v4: 'routeshift4', v6: 'routeshift6' } }, 'and says which BIRD it drives');
  });

  t.test("a drain's worth: 5,000 addresses in one batch, one reconfiguration", async (t) => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ name: `d${i}`, address: `10.201.${i >> 8}.${i & 255}` }));
    let t0 = performance.now();
    t.same(await announcer.apply({ announce: many, withdraw: [] }), { announced: 5000, withdrawn: 0 }, 'all announced');
    const tookIn = performance.now() - t0;
    const shown = await new BirdControl(socket).command('show route count table master4 protocol routeshift4');
    t.match(shown.lines.map((l) => l.text).join(' '), /5001 of 5001 routes/, "BIRD's table holds all of them (and web's)");
    t0 = performance.now();
    t.same(await announcer.apply({ announce: [], withdraw: many.map((m) => m.name) }), { announced: 0, withdrawn: 5000 }, 'all withdrawn');
    t.comment(`5,000 announced in ${tookIn.toFixed(0)} ms, withdrawn in ${(performance.now() - t0).toFixed(0)} ms (each one file write, one \`configure\`, the table checked)`);
    t.same(announcer.list().announcements.map((a) => a.name), ['web'], 'only web is left');
  });

  t.test('BIRD refuses the configuration: its reason in the error, the file as before', async (t) => {
    const before = readFileSync(include, 'utf8');
    // The operator's configuration defines a protocol of the same name: BIRD cannot load ours.
    await bird?.stop();
    bird = await BirdSpeaker.start({ netns: ns.name, dir, config: config() });
    writeFileSync(join(dir, 'bird.conf'), config('protocol static routeshift6 { ipv6; }\n'));
    await t.rejects(announcer.apply({ announce: [{ name: 'api', address: '10.200.0.20' }], withdraw: [] }), /BIRD \(.*\) refused `configure`: 8002 .*routeshift6/);
    t.equal(readFileSync(include, 'utf8'), before, 'the include file is as before');
    t.same(announcer.list().announcements.map((a) => a.name), ['web'], 'the announcements are as before');
    writeFileSync(join(dir, 'bird.conf'), config());
  });

  t.test('BIRD stopped after announcing: the error says so; nothing changed', async (t) => {
    await bird?.stop();
    const before = readFileSync(include, 'utf8');
    await t.rejects(announcer.apply({ announce: [], withdraw: ['web'] }), new RegExp(`BIRD control socket ${socket}(: nothing listens on it| does not exist)`));
    t.equal(readFileSync(include, 'utf8'), before, 'the include file is as before');
  });

  t.test('--announce bgp on the command line: no hook options of the other kinds', async (t) => {
    t.same(announceSpec({ announce: 'bgp' } as SharedArgs), { kind: 'bgp' }, '--announce bgp is the whole spec');
    t.throws(() => announceSpec({ announce: 'bgp', 'announce-via': '10.0.0.1' } as SharedArgs), /--announce bgp takes no --announce-via: the agents drive their hosts' BIRD/);
  });

  t.test('a file routeshift did not write is refused', async (t) => {
    const foreign = join(dir, 'foreign.conf');
    writeFileSync(foreign, 'protocol static mine { ipv4; route 10.0.0.0/8 blackhole; }\n');
    t.throws(() => BgpAnnouncer.open({ ...opts, include: foreign }, log), /exists and was not written by routeshift/);
    t.throws(() => BgpAnnouncer.open({ ...opts, protocol: '4bad-name' }, log), /--bird-protocol "4bad-name": a BIRD symbol/);
  });

  t.test('the agent API: input validated, 409 without --bird-include', async (t) => {
    let birdArgs = true;
    const bed = await Bed.create(t, {
      tag: 'rsabh',
      apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }],
      hosts: ['A'],
      hostAgentArgs: () => (birdArgs ? ['--bird-include', join(dir, 'agent.conf'), '--bird-socket', join(dir, 'absent.ctl')] : []),
    });
    const agent = () => bed.agents.A!;
    const bad = await agent().request('PUT', '/v1/announcements/web', { address: '10.200.0.300' });
    t.equal(bad.status, 400, 'a bad address: 400');
    t.match(bad.json, { field: 'address' }, '…naming the field');
    const mc = await agent().request('PUT', '/v1/announcements/web', { address: '224.0.0.1' });
    t.match(mc.json, { field: 'address', error: /multicast/ }, 'a multicast address: refused, saying why');
    const name = await agent().request('PUT', '/v1/announcements/bad%20name', { address: '10.200.0.10' });
    t.match(name, { status: 400, json: { field: 'name' } }, 'a bad name: 400');
    const batch = await agent().request('POST', '/v1/announcements', { announce: [{ name: 'a', address: '10.0.0.1' }], withdraw: ['a'] });
    t.match(batch, { status: 400, json: { field: 'withdraw[0]', error: /twice/ } }, 'a batch naming one app twice: 400');
    const down = await agent().request('PUT', '/v1/announcements/web', { address: '10.200.0.10' });
    t.equal(down.status, 500, 'BIRD absent: 500');
    t.match(down.json, { error: new RegExp(`BIRD control socket ${join(dir, 'absent.ctl')} does not exist`) }, '…naming the socket');
    t.same((await agent().request('GET', '/v1/announcements')).json, {
      announcements: [],
      bird: { socket: join(dir, 'absent.ctl'), include: join(dir, 'agent.conf'), protocols: { v4: 'routeshift4', v6: 'routeshift6' } },
    }, 'nothing announced');
    t.equal((await agent().request('DELETE', '/v1/announcements/web')).status, 404, 'withdrawing what is not announced: 404 (BIRD is not asked)');

    // `app add --announce` with BIRD absent: all or nothing — the entry is rolled back.
    const x = bed.topo.app('x', 'A');
    const addX = (...extra: string[]) =>
      runCli(['app', 'add', 'x', '--agent', bed.url('A'), '--addr', x.addr4, '--dev', x.hostDev, '--token-file', bed.tokenFile, ...extra]);
    const created = await addX('--announce', '--mac', '02:00:00:00:ab:01');
    t.equal(created.code, 1, `app add --announce, BIRD absent: exit 1 (${created.stderr.trim()})`);
    t.match(created.stderr, new RegExp(`announcing x failed: .*BIRD control socket ${join(dir, 'absent.ctl')} does not exist.*; the entry this command created was removed again \\(nothing changed\\)`), '…saying why, and that the entry it created is gone');
    t.equal(await bed.client('A').getApp('x'), undefined, 'no entry for x is left on the agent');
    const plain = await addX('--mac', '02:00:00:00:ab:01');
    t.equal(plain.code, 0, `app add without --announce writes the entry: ${plain.stderr.trim()}`);
    const before = await bed.client('A').getApp('x');
    const replaced = await addX('--announce', '--mac', '02:00:00:00:ab:02', '--forward', '10.9.9.9');
    t.equal(replaced.code, 1, 'app add --announce over an existing entry, BIRD absent: exit 1');
    t.match(replaced.stderr, /its entry was put back as it was before \(nothing changed\)/, '…saying the entry was put back');
    const after = await bed.client('A').getApp('x');
    t.match(after, { address: before?.address, dev: before?.dev, mac: '02:00:00:00:ab:01', macSource: 'given', action: { type: 'local' } }, 'the entry is as it was: LOCAL, its MAC');
    t.match((await agent().request('GET', '/v1/announcements')).json, { announcements: [] }, 'still nothing announced');
    t.equal((await bed.client('A').deleteApp('x')), true, 'x removed again (the next check starts clean)');

    await agent().stop();
    birdArgs = false;
    await bed.startAgent('A');
    const off = await agent().request('PUT', '/v1/announcements/web', { address: '10.200.0.10' });
    t.equal(off.status, 409, 'an agent started without --bird-include: 409');
    t.match(off.json, { error: /start it with --bird-include FILE/ }, '…saying how to start it');
  });
}
