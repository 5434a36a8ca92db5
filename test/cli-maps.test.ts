/**
 * `routeshift maps` against pins made by real agents that were then
 * stopped: entries decoded by name, addresses as text, actions by name,
 * devices and MACs as the agent wrote them, counters equal to what the
 * agent reported before it stopped — in text and as a Maps document.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { checkDocument } from '../src/cli/json.js';
import { MIGRATION_APPS } from '../src/testbed/topology.js';
import { Bed, runCli } from './lib/e2e.js';

const bed = await Bed.create(t, { tag: 'rsmp', apps: MIGRATION_APPS });
const { topo } = bed;
const xA = topo.app('x', 'A');
const yA = topo.app('y', 'A');
const xB = topo.app('x', 'B');
const A = bed.client('A');
const B = bed.client('B');
const PINGS = 40;

interface Row {
  name: string | null;
  address: string;
  proto: string | number;
  port: number;
  appId: number;
  action?: string;
  tunnel?: string;
  target?: { dev: string | null; dmac: string; path: string };
  counters: Record<string, { packets: string; bytes: string }>;
}

t.test('maps decodes the pins of stopped agents', async (t) => {
  const tunnelB = (await B.status()).tunnel.v4;
  t.ok(tunnelB, 'B has a tunnel address');
  await bed.registerLocal(xA);
  await A.putApp('y', { address: yA.addr4, proto: 'udp', port: 5353, dev: yA.hostDev, action: { type: 'forward', tunnel: tunnelB! } });
  await B.putDelivery('x', { address: xB.addr4, dev: xB.hostDev });
  const ping = spawnSync('ip', ['netns', 'exec', topo.client.ns.name, 'ping', '-c', String(PINGS), '-i', '0.01', '-W', '1', '-q', xA.addr4], { encoding: 'utf8', timeout: 30_000 });
  t.match(ping.stdout, new RegExp(`${PINGS} packets transmitted`));
  const appsA = await A.listApps();
  const deliveriesB = await B.listDeliveries();
  t.ok(Number(appsA.find((a) => a.name === 'x')?.counters.local.packets) >= PINGS, 'x counted the pings');

  // SIGTERM: the agents go, the program stays attached and the maps pinned.
  for (const h of ['A', 'B']) t.equal(await bed.agents[h]!.stop('SIGTERM'), 0, `agent ${h} stopped`);

  const r = await runCli(['maps', '--pin-dir', bed.pinDir('A'), '--json']).done;
  t.equal(r.code, 0, r.stderr);
  const dump = JSON.parse(r.stdout) as { kind: string; owner: { uplink: string }; config: { tunnel: { v4: string } }; redirect: Row[]; deliver: Row[]; drops: Record<string, unknown>; undecoded: unknown[] };
  t.same(checkDocument(dump), [], 'a Maps document (docs/json.md)');
  t.equal(dump.owner.uplink, 'eth0');
  t.same(dump.undecoded, [], 'every entry decoded');
  t.same(dump.redirect.map((e) => e.name), ['x', 'y', null], 'entries by name, then the placeholder');
  t.match(dump.redirect[2], { address: yA.addr4, proto: 'any', port: 0, action: 'ports-only' }, "y's address has only a port entry: the agent's placeholder for the whole address");
  for (const view of appsA) {
    const row = dump.redirect.find((e) => e.name === view.name)!;
    t.match(row, { address: view.address, proto: view.proto, port: view.port, appId: view.appId, action: view.action.type }, `${view.name}: key and action as the API showed them`);
    t.same(row.counters, view.counters, `${view.name}: counters as the agent last reported them`);
  }
  const x = dump.redirect.find((e) => e.name === 'x')!;
  t.match(x.target, { dev: xA.hostDev, dmac: appsA.find((a) => a.name === 'x')!.mac }, 'x: LOCAL to its device and MAC');
  t.equal(dump.redirect.find((e) => e.name === 'y')?.tunnel, tunnelB, 'y: FORWARD to B');
  t.ok('no_route' in dump.drops || Object.keys(dump.drops).length > 3, 'drops by reason name');

  const rb = await runCli(['maps', '--pin-dir', bed.pinDir('B'), '--json']).done;
  t.equal(rb.code, 0, rb.stderr);
  const db = JSON.parse(rb.stdout) as { config: { tunnel: { v4: string } }; deliver: Row[] };
  t.equal(db.config.tunnel.v4, tunnelB, "B's tunnel address from rs_config");
  t.match(db.deliver, [{ name: 'x', address: xB.addr4, target: { dev: xB.hostDev } }]);
  t.same(db.deliver[0]?.counters, deliveriesB[0]?.counters);

  const text = await runCli(['maps', '--pin-dir', bed.pinDir('A')]).done;
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /uplink eth0/);
  t.match(text.stdout, new RegExp(`\\n  x +${xA.addr4.replace(/\./g, '\\.')} +\\d+ +LOCAL +${xA.hostDev} `));
  t.match(text.stdout, new RegExp(`\\n  y +${yA.addr4.replace(/\./g, '\\.')}:udp/5353 +\\d+ +FORWARD → ${tunnelB!.replace(/\./g, '\\.')} `));

  const none = await runCli(['maps', '--pin-dir', '/sys/fs/bpf/rs-no-such-dir', '--json']).done;
  t.equal(none.code, 2);
  t.match(JSON.parse(none.stdout), { kind: 'Error', code: 'bad-usage', message: /no routeshift maps are pinned in \/sys\/fs\/bpf\/rs-no-such-dir/ });
});
