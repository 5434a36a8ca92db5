/**
 * The agent's HTTP API against a real agent process driving a real host
 * namespace: every endpoint, every validation error, auth, idempotence,
 * atomic batches, refusal cases, and adoption of pinned state on restart.
 */
import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { BpfMap, u32 } from '../src/bpf/index.js';
import { appKeyCodec, redirectValueCodec, deliverValueCodec } from '../src/datapath/structs.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';
import { rawBytes } from '../src/bpf/codec.js';
import { metaValueCodec, nameKeyCodec } from '../src/datapath/meta.js';

const prefix = uniquePrefix('rsapi');
const pinDir = `/sys/fs/bpf/${prefix}`;
const host = Netns.create(`${prefix}-h`);
const fabric = Netns.create(`${prefix}-f`);
const appX = Netns.create(`${prefix}-x`);
const appY = Netns.create(`${prefix}-y`);
t.teardown(() => {
  for (const ns of [host, fabric, appX, appY]) ns.delete();
  rmSync(pinDir, { recursive: true, force: true });
});
veth({ ns: host, dev: 'eth0', addrs: ['10.0.10.2/24', 'fd00:10::2/64'] }, { ns: fabric, dev: 'up0', addrs: ['10.0.10.1/24'] });
veth({ ns: host, dev: 'vx0' }, { ns: appX, dev: 'eth0', mac: '02:00:00:00:00:10', addrs: ['10.200.0.10/32'] });
veth({ ns: host, dev: 'vy0' }, { ns: appY, dev: 'eth0', mac: '02:00:00:00:00:11', addrs: ['10.200.0.11/32'] });
host.ip('neigh', 'add', '10.200.0.10', 'lladdr', '02:00:00:00:00:10', 'dev', 'vx0', 'nud', 'permanent');
host.ip('neigh', 'add', '10.200.0.11', 'lladdr', '02:00:00:00:00:11', 'dev', 'vy0', 'nud', 'permanent');

/** Raw bytes of the redirect map, to prove a failed request changed nothing. */
function redirectSnapshot(): string {
  using m = BpfMap.openPinned(`${pinDir}/rs_redirect`, rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
  return [...m.entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort().join('\n');
}

/** Raw bytes of the agent's pinned name index and name map. */
function namesSnapshot(): string {
  return ['rs_app_names', 'rs_app_meta']
    .map((m) => {
      using map = BpfMap.openPinned(`${pinDir}/${m}`, rawBytes(m === 'rs_app_names' ? 52 : 4), rawBytes(m === 'rs_app_names' ? 4 : 96));
      return [...map.entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort().join('\n');
    })
    .join('\n--\n');
}

let agent: AgentProcess;
t.before(async () => {
  agent = await AgentProcess.start({ netns: host.name, pinDir });
});
t.teardown(async () => {
  await agent?.stop();
});

t.test('auth: healthz is open, everything else needs the bearer token', async (t) => {
  t.equal((await agent.request('GET', '/healthz', undefined, null)).status, 200);
  for (const path of ['/status', '/v1/apps', '/v1/deliveries', '/metrics']) {
    t.equal((await agent.request('GET', path, undefined, null)).status, 401, `${path} without a token`);
    t.equal((await agent.request('GET', path, undefined, 'wrong-token-0123456789')).status, 401, `${path} with a wrong token`);
    t.equal((await agent.request('GET', path)).status, 200, `${path} with the token`);
  }
  t.equal((await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' }, null)).status, 401);
  t.equal(redirectSnapshot(), '', 'an unauthenticated write changed nothing');
});

t.test('status says what is attached where', async (t) => {
  const s = (await agent.request('GET', '/status')).json as Record<string, unknown> & { hook: { programId: number; attachedProgramId: number; mode: string }; tunnel: { v4: string; v6: string } };
  t.equal(s.uplink, 'eth0');
  t.equal(s.hook.mode, 'native');
  t.equal(s.hook.programId, s.hook.attachedProgramId, 'the agent program is the one attached');
  t.equal(s.tunnel.v4, '10.0.10.2', "tunnel v4 defaults to the uplink's address");
  t.equal(s.tunnel.v6, 'fd00:10::2');
  t.equal(s.adopted, false);
});

t.test('apps: create, idempotent re-put, read, switch action, delete', async (t) => {
  const put = await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' });
  t.equal(put.status, 201);
  t.match(put.json, { name: 'x', address: '10.200.0.10', proto: 'any', port: 0, dev: 'vx0', mac: '02:00:00:00:00:10', action: { type: 'local' } });
  const snap = redirectSnapshot();
  const again = await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' });
  t.equal(again.status, 200, 'the same body again is 200');
  t.equal(redirectSnapshot(), snap, '...and changes no byte');

  t.equal((await agent.request('PUT', '/v1/apps/y', { address: '10.200.0.11', proto: 'udp', port: 5000, dev: 'vy0' })).status, 201);
  const list = (await agent.request('GET', '/v1/apps')).json as { apps: { name: string }[] };
  t.same(list.apps.map((a) => a.name), ['x', 'y']);

  const fwd = await agent.request('POST', '/v1/apps/x/action', { type: 'forward', tunnel: '10.0.20.2' });
  t.equal(fwd.status, 200);
  t.same((fwd.json as { action: unknown }).action, { type: 'forward', tunnel: '10.0.20.2' });
  {
    using m = BpfMap.openPinned(`${pinDir}/rs_redirect`, appKeyCodec, redirectValueCodec);
    t.match(m.lookup({ address: '10.200.0.10', proto: 'any', port: 0 }), { action: 'forward', tunnel: '10.0.20.2' }, 'the map holds FORWARD');
  }
  const back = await agent.request('POST', '/v1/apps/x/action', { type: 'local' });
  t.match(back.json, { action: { type: 'local' }, mac: '02:00:00:00:00:10' }, 'back to LOCAL with the remembered MAC');
  t.equal((await agent.request('GET', '/v1/apps/x')).status, 200);
  t.equal((await agent.request('DELETE', '/v1/apps/x')).status, 204);
  t.equal((await agent.request('GET', '/v1/apps/x')).status, 404);
  t.equal((await agent.request('DELETE', '/v1/apps/x')).status, 404);
  t.equal((await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' })).status, 201, 're-create after delete');
});

t.test("changes to one app never touch another app's entry", async (t) => {
  using m = BpfMap.openPinned(`${pinDir}/rs_redirect`, appKeyCodec, rawBytes(redirectValueCodec.size));
  const yKey = { address: '10.200.0.11', proto: 'udp' as const, port: 5000 };
  const before = m.lookup(yKey);
  t.ok(before, 'y has an entry');
  for (let i = 0; i < 20; i++) {
    await agent.request('POST', '/v1/apps/x/action', i % 2 ? { type: 'local' } : { type: 'forward', tunnel: `10.0.20.${i + 2}` });
  }
  await agent.request('DELETE', '/v1/apps/x');
  await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' });
  t.same(m.lookup(yKey), before, "y's bytes are unchanged");
});

t.test('validation: every bad field is a 400 that names it and changes nothing', async (t) => {
  const snap = redirectSnapshot();
  const cases: [string, string, unknown, string][] = [
    ['PUT', '/v1/apps/bad', { address: '10.200.0.300', dev: 'vx0' }, 'address'],
    ['PUT', '/v1/apps/bad', { address: 'fd00::zz', dev: 'vx0' }, 'address'],
    ['PUT', '/v1/apps/bad', { dev: 'vx0' }, 'address'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', proto: 'gre2', dev: 'vx0' }, 'proto'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', port: 80, dev: 'vx0' }, 'port'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', proto: 'tcp', port: 70000, dev: 'vx0' }, 'port'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', proto: 'tcp', port: 1.5, dev: 'vx0' }, 'port'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'nosuchdev' }, 'dev'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'x'.repeat(16) }, 'dev'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'vx0' }, 'mac'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00' }, 'mac'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00:12', colour: 'red' }, 'colour'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00:12', action: { type: 'teleport' } }, 'action.type'],
    ['PUT', '/v1/apps/bad', { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00:12', action: { type: 'forward', tunnel: 'nowhere' } }, 'action.tunnel'],
    ['PUT', `/v1/apps/${'n'.repeat(49)}`, { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00:12' }, 'name'],
    ['PUT', '/v1/apps/bad%20name', { address: '10.200.0.12', dev: 'vx0', mac: '02:00:00:00:00:12' }, 'name'],
    ['PUT', '/v1/apps/bad', [1, 2], 'body'],
    ['POST', '/v1/apps/x/action', { type: 'forward' }, 'body.tunnel'],
    ['PUT', '/v1/deliveries/bad', { address: '10.200.0.12', dev: 'vx0' }, 'mac'],
    ['POST', '/v1/batch', { ops: 'all' }, 'ops'],
    ['POST', '/v1/batch', { ops: [{ op: 'explode', name: 'x' }] }, 'ops[0].op'],
  ];
  for (const [method, path, body, field] of cases) {
    const r = await agent.request(method, path, body);
    t.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)} → 400`);
    t.equal((r.json as { field?: string }).field, field, `...naming ${field}: ${(r.json as { error?: string }).error}`);
  }
  const badJson = await agent.request('PUT', '/v1/apps/bad', '{"address": ');
  t.equal(badJson.status, 400, 'malformed JSON is a 400');
  t.equal(redirectSnapshot(), snap, 'no failed request changed the map');
  t.equal((await agent.request('GET', '/v1/apps/bad')).status, 404, 'and no name was registered');
});

t.test('conflicts: a key has one owner, a name keeps its address', async (t) => {
  const snap = redirectSnapshot();
  const dup = await agent.request('PUT', '/v1/apps/x2', { address: '10.200.0.10', dev: 'vx0' });
  t.equal(dup.status, 409);
  t.match((dup.json as { error: string }).error, /already belongs to app "x"/);
  const moved = await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.13', dev: 'vx0', mac: '02:00:00:00:00:13' });
  t.equal(moved.status, 409);
  t.equal((await agent.request('POST', '/v1/apps/ghost/action', { type: 'local' })).status, 404);
  t.equal(redirectSnapshot(), snap);
});

t.test('deliveries: create, idempotent, list, delete', async (t) => {
  const body = { address: '10.200.0.20', proto: 'udp', port: 53, dev: 'vx0', mac: '02:00:00:00:00:20' };
  t.equal((await agent.request('PUT', '/v1/deliveries/d1', body)).status, 201);
  t.equal((await agent.request('PUT', '/v1/deliveries/d1', body)).status, 200);
  const list = (await agent.request('GET', '/v1/deliveries')).json as { deliveries: { name: string; counters: unknown }[] };
  t.same(list.deliveries.map((d) => d.name), ['d1']);
  t.same(list.deliveries[0]?.counters, { deliver: { packets: '0', bytes: '0' } });
  {
    using m = BpfMap.openPinned(`${pinDir}/rs_deliver`, appKeyCodec, deliverValueCodec);
    t.match(m.lookup({ address: '10.200.0.20', proto: 'udp', port: 53 }), { dmac: '02:00:00:00:00:20' });
  }
  t.equal((await agent.request('DELETE', '/v1/deliveries/d1')).status, 204);
  t.equal((await agent.request('GET', '/v1/deliveries/d1')).status, 404);
});

t.test('batch: applied together, or not at all', async (t) => {
  const ops = Array.from({ length: 50 }, (_, i) => ({
    op: 'put-app',
    name: `b${i}`,
    address: `10.201.0.${i + 1}`,
    dev: 'vx0',
    mac: '02:00:00:00:01:00',
  }));
  const r = await agent.request('POST', '/v1/batch', { ops });
  t.same(r.json, { applied: 50 });
  const switched = await agent.request('POST', '/v1/batch', {
    ops: ops.map((o) => ({ op: 'set-action', name: o.name, action: { type: 'forward', tunnel: '10.0.20.2' } })),
  });
  t.equal(switched.status, 200);
  const apps = ((await agent.request('GET', '/v1/apps')).json as { apps: { name: string; action: { type: string } }[] }).apps;
  t.equal(apps.filter((a) => a.name.startsWith('b') && a.action.type === 'forward').length, 50, 'all 50 switched');

  const snap = redirectSnapshot();
  const bad = await agent.request('POST', '/v1/batch', {
    ops: [{ op: 'set-action', name: 'b0', action: { type: 'local' } }, { op: 'delete-app', name: 'nope' }],
  });
  t.equal(bad.status, 404, 'a batch naming an unknown app fails');
  t.equal(redirectSnapshot(), snap, 'and its valid first op was not applied');
  const names = namesSnapshot();
  const undone = await agent.request('POST', '/v1/batch', {
    ops: [
      { op: 'delete-app', name: 'b1' },
      { op: 'put-app', name: 'b1', address: '10.201.0.2', dev: 'vx0', mac: '02:00:00:00:01:01' },
      { op: 'put-app', name: 'fresh', address: '10.201.1.1', dev: 'vx0', mac: '02:00:00:00:01:02' },
      { op: 'set-action', name: 'nope', action: { type: 'local' } },
    ],
  });
  t.equal(undone.status, 404, 'delete, re-create, create, then an unknown name: refused');
  t.equal(redirectSnapshot(), snap, 'the redirect map is byte-identical');
  t.equal(namesSnapshot(), names, 'and so is the name index');
  const del = await agent.request('POST', '/v1/batch', { ops: ops.map((o) => ({ op: 'delete-app', name: o.name })) });
  t.same(del.json, { applied: 50 });
});

t.test('listings come in pages: every entry once, a cursor to go on, bad paging refused', async (t) => {
  const ops = Array.from({ length: 30 }, (_, i) => ({ op: 'put-app', name: `pg${String(i).padStart(2, '0')}`, address: `10.202.0.${i + 1}`, dev: 'vx0', mac: '02:00:00:00:02:00' }));
  t.same((await agent.request('POST', '/v1/batch', { ops })).json, { applied: 30 });
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await agent.request('GET', `/v1/apps?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(r.status, 200);
    const body = r.json as { apps: { name: string }[]; next: string | null };
    const names = body.apps.map((a) => a.name);
    t.ok(names.length <= 7 + 3, `page ${pages}: ${names.length} entries (7, or a whole hash bucket more)`);
    t.same(names, [...names].sort(), `page ${pages} is sorted by name`);
    seen.push(...names);
    cursor = body.next;
    pages++;
  } while (cursor && pages < 100);
  const pg = seen.filter((n) => n.startsWith('pg'));
  t.same([...pg].sort(), ops.map((o) => o.name), 'every app listed, once');
  t.equal(new Set(seen).size, seen.length, 'no app on two pages');
  t.ok(pages >= 5, `${pages} pages of at most ~7`);
  const all = (await agent.request('GET', '/v1/apps')).json as { apps: unknown[]; next: string | null };
  t.equal(all.next, null, 'a listing that fits one page (default 10,000) has no next');
  t.equal(all.apps.length, seen.length);
  for (const [query, field] of [['limit=0', 'limit'], ['limit=100001', 'limit'], ['limit=ten', 'limit'], ['cursor=zz', 'cursor'], ['page=2', 'page']] as const) {
    const bad = await agent.request('GET', `/v1/apps?${query}`);
    t.equal(bad.status, 400, `?${query} refused`);
    t.equal((bad.json as { field?: string }).field, field, `naming ${field}`);
  }
  const d = (await agent.request('GET', '/v1/deliveries?limit=5')).json as { deliveries: unknown[]; next: string | null };
  t.ok(Array.isArray(d.deliveries) && 'next' in d, 'deliveries page the same way');
  t.same((await agent.request('POST', '/v1/batch', { ops: ops.map((o) => ({ op: 'delete-app', name: o.name })) })).json, { applied: 30 });
});

t.test('metrics: per-app counters and capacity in Prometheus format', async (t) => {
  const m = await agent.request('GET', '/metrics');
  t.match(m.text, /routeshift_app_packets_total\{app="x",action="local",uplink="eth0"\} 0/);
  t.match(m.text, /routeshift_drops_total\{reason="no_delivery",uplink="eth0"\} 0/);
  t.match(m.text, /routeshift_map_capacity\{map="redirect",uplink="eth0"\} 65536/);
  t.match(m.text, /routeshift_entries\{map="redirect",uplink="eth0"\} 2/);
});

t.test('refusals: a second agent on the same uplink, a missing uplink, insecure off loopback', async (t) => {
  await t.rejects(AgentProcess.start({ netns: host.name, pinDir }), /already owned by process \d+/);
  const other = `${pinDir}-nodev`;
  await t.rejects(AgentProcess.start({ netns: host.name, pinDir: other, uplink: 'nosuch0' }), /nosuch0 does not exist/);
  t.notOk(existsSync(other), 'a refused start pins nothing');
  await t.rejects(
    AgentProcess.start({ netns: host.name, pinDir: other, uplink: 'vx0', listen: '0.0.0.0:0', args: ['--insecure'] }),
    /only listens on loopback/,
  );
});

t.test('restart: a SIGKILLed agent leaves forwarding in place; the next one adopts the pinned entries', async (t) => {
  const before = ((await agent.request('GET', '/v1/apps')).json as { apps: unknown[] }).apps;
  const snap = redirectSnapshot();
  await agent.stop('SIGKILL');
  t.match(host.ip('link', 'show', 'dev', 'eth0'), /prog\/xdp id \d+/, 'the program stays attached');
  agent = await AgentProcess.start({ netns: host.name, pinDir, tokenFile: agent.tokenFile });
  t.equal(agent.adopted, true);
  t.same(((await agent.request('GET', '/v1/apps')).json as { apps: unknown[] }).apps, before, 'same apps, same ids');
  t.equal(redirectSnapshot(), snap, 'no byte of the map changed');
  const s = (await agent.request('GET', '/status')).json as { hook: { programId: number; attachedProgramId: number } };
  t.equal(s.hook.attachedProgramId, s.hook.programId, "the new agent's program replaced the old one");
});

t.test('restart repairs a name index a crash left behind, and drops a name whose entry never landed', async (t) => {
  await agent.stop('SIGKILL');
  {
    // A crash between the map writes of one request: x lost its index entry;
    // a name 'ghost' was written to the name map but its entry never landed.
    using names = BpfMap.openPinned(`${pinDir}/rs_app_names`, nameKeyCodec, u32);
    t.ok(names.delete({ kind: 'app', name: 'x' }));
    using meta = BpfMap.openPinned(`${pinDir}/rs_app_meta`, u32, metaValueCodec);
    meta.update(4000, { kind: 'app', key: { address: '10.209.0.1', proto: 'any', port: 0 }, name: 'ghost', dev: 'vx0', mac: null, macSource: 'given', generation: 1 });
    names.update({ kind: 'app', name: 'ghost' }, 4000);
  }
  agent = await AgentProcess.start({ netns: host.name, pinDir, tokenFile: agent.tokenFile });
  t.equal((await agent.request('GET', '/v1/apps/x')).status, 200, 'x is found by name again');
  t.equal((await agent.request('GET', '/v1/apps/ghost')).status, 404, 'the half-made name is gone');
  using names = BpfMap.openPinned(`${pinDir}/rs_app_names`, nameKeyCodec, u32);
  t.equal(names.lookup({ kind: 'app', name: 'ghost' }), undefined, '...from the name index too');
});

t.test('--cleanup removes the program and the pinned maps', async (t) => {
  await agent.stop('SIGTERM');
  t.match(host.ip('link', 'show', 'dev', 'eth0'), /prog\/xdp/, 'SIGTERM keeps forwarding in place');
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, ['dist/src/cli/main.js', 'agent', '--uplink', 'eth0', '--netns', host.name, '--pin-dir', pinDir, '--cleanup'], { encoding: 'utf8' });
  t.match(out, /removed:/);
  t.notMatch(host.ip('link', 'show', 'dev', 'eth0'), /prog\/xdp/);
  t.notOk(existsSync(pinDir));
});
