/**
 * Bad input to a real agent, scripted: hundreds of requests a careless or
 * hostile client could send — names, addresses, MACs, devices, actions,
 * batches, queries, headers and URLs that cannot work — each answered with
 * a 4xx in the documented shape `{error, field?}` (error text cut short:
 * never a whole megabyte field echoed back), and after each one every map
 * of the agent is exactly as before, byte for byte.
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { BpfMap } from '../src/bpf/index.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { Topology } from '../src/testbed/topology.js';

const topo = Topology.create({ prefix: uniquePrefix('rsbi'), hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }], ipv6: false });
t.teardown(() => topo.destroy());
const pinDir = `/sys/fs/bpf/${topo.prefix}-A`;
const agent = await AgentProcess.start({ netns: topo.host('A').ns.name, pinDir });
t.teardown(async () => {
  await agent.stop();
  rmSync(pinDir, { recursive: true, force: true });
});
const x = topo.app('x');
const DEV = x.hostDev;
const MAC = '02:00:00:00:00:42';
const OWN_TUNNEL = topo.host('A').addr4;

// a few good entries, so conflicts and updates have something to hit
for (const [path, body] of [
  ['/v1/apps/x', { address: x.addr4, dev: DEV, mac: MAC }],
  ['/v1/apps/xp', { address: '10.200.0.20', proto: 'udp', port: 53, dev: DEV, mac: MAC }],
  ['/v1/deliveries/d', { address: '10.200.0.30', dev: DEV, mac: MAC }],
] as const) {
  const r = await agent.request('PUT', path, body);
  if (r.status !== 201) throw new Error(`setup ${path}: ${r.status} ${r.text}`);
}

const MAPS = ['rs_redirect', 'rs_deliver', 'rs_app_meta', 'rs_app_names', 'rs_config'];
function dump(): string {
  return MAPS.map((name) => {
    using m = BpfMap.openPinnedRaw(`${pinDir}/${name}`);
    return [...m.entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort().join(',');
  }).join('|');
}
const snapshot = dump();

interface Case {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  token?: string | null;
  status: number | number[];
  field?: string;
}
const cases: Case[] = [];
const add = (c: Case): void => void cases.push(c);

// ---------------------------------------------------------------- names --
const BAD_NAMES = ['.', '..', '.hidden', 'a'.repeat(49), 'a b', 'ä', 'a%2Fb', '%00', 'a;b', 'a*', 'a:b', '@'];
for (const n of BAD_NAMES) {
  const p = encodeURIComponent(n);
  // '.' and '..' are resolved by the URL itself (/v1/apps/.. is /v1): no such route
  const status = n === '.' || n === '..' ? [400, 404] : 400;
  add({ name: `GET app named ${JSON.stringify(n)}`, method: 'GET', path: `/v1/apps/${p}`, status });
  add({ name: `PUT app named ${JSON.stringify(n)}`, method: 'PUT', path: `/v1/apps/${p}`, body: { address: '10.200.1.1', dev: DEV, mac: MAC }, status });
  add({ name: `DELETE app named ${JSON.stringify(n)}`, method: 'DELETE', path: `/v1/apps/${p}`, status });
  add({ name: `action of app named ${JSON.stringify(n)}`, method: 'POST', path: `/v1/apps/${p}/action`, body: { type: 'local' }, status });
  add({ name: `PUT delivery named ${JSON.stringify(n)}`, method: 'PUT', path: `/v1/deliveries/${p}`, body: { address: '10.200.1.1', dev: DEV, mac: MAC }, status });
  add({ name: `DELETE delivery named ${JSON.stringify(n)}`, method: 'DELETE', path: `/v1/deliveries/${p}`, status });
}
add({ name: 'GET a name of 100 kB', method: 'GET', path: `/v1/apps/${'a'.repeat(100_000)}`, status: [400, 414, 431] });

// --------------------------------------------------------- app bodies --
const good = { address: '10.200.1.1', dev: DEV, mac: MAC };
const BAD_ADDRESSES: unknown[] = [
  undefined, null, 5, true, [], {}, '', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', '::g', ':::', '1::2::3',
  'fe80::1%eth0', '0.0.0.0', '0.1.2.3', '127.0.0.1', '127.255.255.254', '224.0.0.1', '239.1.1.1', '255.255.255.255', '240.0.0.1',
  '::', '::1', 'ff02::1', 'ff05::2', '::ffff:127.0.0.1', '::ffff:224.0.0.1', 'A'.repeat(10 * 1024 * 1024),
];
for (const address of BAD_ADDRESSES) {
  add({ name: `app address ${String(address).slice(0, 24)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, address }, status: 400, field: 'address' });
  add({ name: `delivery address ${String(address).slice(0, 24)}`, method: 'PUT', path: '/v1/deliveries/n1', body: { ...good, address }, status: 400, field: 'address' });
}
for (const proto of ['tcpp', '', -1, 256, 1.5, {}, [], null, true]) {
  add({ name: `proto ${JSON.stringify(proto)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, proto }, status: 400, field: 'proto' });
  add({ name: `delivery proto ${JSON.stringify(proto)}`, method: 'PUT', path: '/v1/deliveries/n1', body: { ...good, proto }, status: 400, field: 'proto' });
}
for (const [proto, port] of [['udp', -1], ['udp', 65536], ['tcp', 1.5], ['udp', '53'], ['any', 80], ['icmp', 1], [undefined, 80], ['udp', null]] as const) {
  add({ name: `port ${JSON.stringify(port)} with proto ${String(proto)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, ...(proto === undefined ? {} : { proto }), port }, status: 400, field: 'port' });
}
for (const dev of ['', 'a'.repeat(16), 'lo', 'eth0', 'nonexistent0', 'a/b', 5, null, 'x y']) {
  add({ name: `dev ${JSON.stringify(dev)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, dev }, status: 400, field: 'dev' });
  add({ name: `delivery dev ${JSON.stringify(dev)}`, method: 'PUT', path: '/v1/deliveries/n1', body: { ...good, dev }, status: 400, field: 'dev' });
}
for (const mac of ['', 'zz:00:00:00:00:01', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '33:33:00:00:00:01', 'aa:bb:cc:dd:ee', '02:00:00:00:00:01:02', '0200.0000.0001', 12, null, 'x'.repeat(1_000_000)]) {
  add({ name: `mac ${JSON.stringify(mac).slice(0, 24)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, mac }, status: 400, field: 'mac' });
  add({ name: `delivery mac ${JSON.stringify(mac).slice(0, 24)}`, method: 'PUT', path: '/v1/deliveries/n1', body: { ...good, mac }, status: 400, field: 'mac' });
}
const BAD_ACTIONS: [unknown, string][] = [
  ['local', 'action'], [null, 'action'], [[], 'action'], [{}, 'action.type'], [{ type: 'drop' }, 'action.type'], [{ type: 'local', tunnel: '10.2.0.2' }, 'action.tunnel'],
  [{ type: 'forward' }, 'action.tunnel'], [{ type: 'forward', tunnel: 5 }, 'action.tunnel'], [{ type: 'forward', tunnel: 'host' }, 'action.tunnel'],
  [{ type: 'forward', tunnel: '0.0.0.0' }, 'action.tunnel'], [{ type: 'forward', tunnel: '255.255.255.255' }, 'action.tunnel'],
  [{ type: 'forward', tunnel: '127.0.0.1' }, 'action.tunnel'], [{ type: 'forward', tunnel: '224.0.0.1' }, 'action.tunnel'],
  [{ type: 'forward', tunnel: '::' }, 'action.tunnel'], [{ type: 'forward', tunnel: 'ff02::1' }, 'action.tunnel'],
  [{ type: 'forward', tunnel: OWN_TUNNEL }, 'action.tunnel'], [{ type: 'forward', tunnel: '10.2.0.2', extra: 1 }, 'action.extra'],
];
for (const [action, field] of BAD_ACTIONS) {
  add({ name: `action ${JSON.stringify(action)}`, method: 'PUT', path: '/v1/apps/n1', body: { ...good, action }, status: 400, field });
  add({ name: `POST action ${JSON.stringify(action)} to x`, method: 'POST', path: '/v1/apps/x/action', body: action, status: 400 });
}
for (const body of [null, [], 'a string', 42, true, { ...good, unknown: 1 }, { ...good, appId: 3 }, { ...good, address: x.addr4, ports: true }]) {
  add({ name: `app body ${JSON.stringify(body).slice(0, 40)}`, method: 'PUT', path: '/v1/apps/n1', body, status: 400 });
}

// ------------------------------------------------ conflicts, unknowns --
add({ name: "another name for x's address", method: 'PUT', path: '/v1/apps/x2', body: { address: x.addr4, dev: DEV, mac: MAC }, status: 409, field: undefined });
add({ name: "another name for xp's port key", method: 'PUT', path: '/v1/apps/x3', body: { address: '10.200.0.20', proto: 'udp', port: 53, dev: DEV, mac: MAC }, status: 409 });
add({ name: 'x given another address', method: 'PUT', path: '/v1/apps/x', body: { address: '10.200.9.9', dev: DEV, mac: MAC }, status: 409 });
add({ name: 'another name for d', method: 'PUT', path: '/v1/deliveries/d2', body: { address: '10.200.0.30', dev: DEV, mac: MAC }, status: 409 });
for (const [method, path] of [['GET', '/v1/apps/nope'], ['DELETE', '/v1/apps/nope'], ['POST', '/v1/apps/nope/action'], ['GET', '/v1/deliveries/nope'], ['DELETE', '/v1/deliveries/nope']] as const) {
  add({ name: `${method} ${path}`, method, path, ...(method === 'POST' ? { body: { type: 'local' } } : {}), status: 404 });
}
for (const [method, path] of [['GET', '/nope'], ['PATCH', '/v1/apps/x'], ['PUT', '/v1/apps'], ['GET', '/v1/apps/x/y/z'], ['POST', '/status']] as const) {
  add({ name: `no route ${method} ${path}`, method, path, status: 404 });
}

// --------------------------------------------------------------- batch --
const okOp = { op: 'put-app', name: 'b0', address: '10.200.2.1', dev: DEV, mac: MAC };
const BAD_BATCHES: [string, unknown][] = [
  ['not an object', [okOp]], ['null', null], ['no ops', {}], ['ops not an array', { ops: okOp }], ['an unknown top field', { ops: [], dry: true }],
  ['an op that is not an object', { ops: [okOp, 5] }], ['an unknown op', { ops: [okOp, { op: 'drop', name: 'b1' }] }], ['an op without a name', { ops: [okOp, { op: 'delete-app' }] }],
  ['an op with a bad name', { ops: [okOp, { ...okOp, name: '..' }] }], ['a bad address in op 2', { ops: [okOp, { ...okOp, name: 'b1', address: '127.0.0.1' }] }],
  ['a conflict inside the batch', { ops: [okOp, { ...okOp, name: 'b1' }] }], ['a conflict with x', { ops: [okOp, { ...okOp, name: 'b1', address: x.addr4 }] }],
  ['a delete of an unknown app after good ops', { ops: [okOp, { op: 'delete-app', name: 'nope' }] }], ['set-action of an unknown app', { ops: [okOp, { op: 'set-action', name: 'nope', action: { type: 'local' } }] }],
  ['a forward to ourselves in op 1', { ops: [{ ...okOp, action: { type: 'forward', tunnel: OWN_TUNNEL } }] }], ['a delete of x then x again with a bad mac', { ops: [{ op: 'delete-app', name: 'x' }, { ...okOp, name: 'x', address: x.addr4, mac: '00:00:00:00:00:00' }] }],
  ['an extra field on an op', { ops: [{ ...okOp, extra: 1 }] }], ['a delivery on lo', { ops: [{ op: 'put-delivery', name: 'bd', address: '10.200.3.1', dev: 'lo', mac: MAC }] }],
  ['1,000,001 ops', { ops: new Array(1_000_001).fill(0) }],
];
for (const [name, body] of BAD_BATCHES) add({ name: `batch with ${name}`, method: 'POST', path: '/v1/batch', body, status: [400, 404, 409] });

// ------------------------------------------------------------- queries --
for (const q of ['limit=0', 'limit=-1', 'limit=x', 'limit=100001', 'limit=1.5', 'cursor=zz', 'cursor=00', `cursor=${'0'.repeat(17)}`, 'other=1', 'limit=1&limit=2']) {
  add({ name: `GET /v1/apps?${q}`, method: 'GET', path: `/v1/apps?${q}`, status: 400 });
  add({ name: `GET /v1/deliveries?${q}`, method: 'GET', path: `/v1/deliveries?${q}`, status: 400 });
}

// ---------------------------------------------------------------- auth --
for (const token of [null, '', 'wrong', `${agent.token}x`, agent.token.slice(1)]) {
  add({ name: `PUT with token ${JSON.stringify(token)?.slice(0, 12)}`, method: 'PUT', path: '/v1/apps/n1', body: good, token, status: 401 });
  add({ name: `DELETE x with token ${JSON.stringify(token)?.slice(0, 12)}`, method: 'DELETE', path: '/v1/apps/x', token, status: 401 });
  add({ name: `batch with token ${JSON.stringify(token)?.slice(0, 12)}`, method: 'POST', path: '/v1/batch', body: { ops: [okOp] }, token, status: 401 });
}

t.test(`${cases.length} bad requests: each a 4xx in the documented shape, no map changed`, async (t) => {
  t.ok(cases.length >= 300, `${cases.length} cases`);
  const problems: string[] = [];
  for (const c of cases) {
    const r = await agent.request(c.method, c.path, c.body, c.token === undefined ? agent.token : c.token);
    const want = Array.isArray(c.status) ? c.status : [c.status];
    const body = r.json as { error?: unknown; field?: unknown } | undefined;
    if (!want.includes(r.status)) problems.push(`${c.name}: HTTP ${r.status}, want ${want.join('|')}: ${r.text.slice(0, 200)}`);
    else if (typeof body?.error !== 'string') problems.push(`${c.name}: no {error} in ${r.text.slice(0, 200)}`);
    else if (body.error.length > 1100) problems.push(`${c.name}: an error of ${body.error.length} characters`);
    else if (Object.keys(body).some((k) => k !== 'error' && k !== 'field')) problems.push(`${c.name}: unexpected keys ${Object.keys(body).join(',')}`);
    else if (c.field !== undefined && body.field !== c.field && !(typeof body.field === 'string' && body.field.endsWith(c.field))) {
      problems.push(`${c.name}: field ${String(body.field)}, want ${c.field}`);
    }
    if (dump() !== snapshot) {
      problems.push(`${c.name}: THE MAPS CHANGED`);
      break;
    }
  }
  t.same(problems, [], 'every bad request refused as documented, nothing changed');
});

/** One raw HTTP exchange (for what fetch will not send). */
function raw(request: string): Promise<string> {
  const { hostname, port } = new URL(agent.url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), hostname);
    let out = '';
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
    s.on('data', (d) => (out += d.toString()));
    s.on('error', reject);
    s.on('close', () => resolve(out));
    s.end(request);
  });
}

t.test("what Node's HTTP parser refuses still answers {error} as JSON, and changes nothing", async (t) => {
  const huge = await raw(`GET /status HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
  t.match(huge, /^HTTP\/1\.1 431 /, 'a header block over the limit: 431');
  t.match(huge, /\r\n\r\n\{"error":"Request Header Fields Too Large"\}$/, '…with a JSON body');
  const garbage = await raw('THIS IS NOT HTTP\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 [\s\S]*\{"error":"Bad Request"\}$/, 'not HTTP at all: 400 with a JSON body');
  const badJson = await agent.request('PUT', '/v1/apps/n1', '{"address": ', agent.token);
  t.equal(badJson.status, 400, 'malformed JSON: 400');
  t.type((badJson.json as { error?: unknown }).error, 'string');
  t.equal(dump(), snapshot, 'no map changed');
});

t.test('the agent is still healthy and holds exactly its good entries', async (t) => {
  t.equal((await agent.request('GET', '/healthz')).status, 200);
  const apps = (await agent.request('GET', '/v1/apps')).json as { apps: { name: string }[] };
  t.same(apps.apps.map((a) => a.name), ['x', 'xp']);
});
