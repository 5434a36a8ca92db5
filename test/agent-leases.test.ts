/**
 * Leases, generations and the readiness probe, against a real agent process
 * on a real host namespace: grant, conflict naming the holder, renewal,
 * expiry, release, writes refused on a leased name (single and batched,
 * nothing changed), conditional writes on generations (412, nothing
 * changed), the restart grace, and POST /v1/probe toward a delivery's
 * device only.
 */
import t from 'tap';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfMap } from '../src/bpf/index.js';
import { rawBytes } from '../src/bpf/codec.js';
import { appKeyCodec, redirectValueCodec } from '../src/datapath/structs.js';
import { leaseNoteFile } from '../src/agent/lease.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';
import { APP_PL, sleep, startApp } from './lib/e2e.js';

const prefix = uniquePrefix('rslea');
const pinDir = `/sys/fs/bpf/${prefix}`;
const host = Netns.create(`${prefix}-h`);
const fabric = Netns.create(`${prefix}-f`);
const appX = Netns.create(`${prefix}-x`);
const dir = mkdtempSync(join(tmpdir(), 'rs-leases-'));
t.teardown(() => {
  for (const ns of [host, fabric, appX]) ns.delete();
  rmSync(pinDir, { recursive: true, force: true });
  rmSync(leaseNoteFile(pinDir), { force: true });
  rmSync(dir, { recursive: true, force: true });
});
veth({ ns: host, dev: 'eth0', addrs: ['10.0.11.2/24'] }, { ns: fabric, dev: 'up0', addrs: ['10.0.11.1/24'] });
veth({ ns: host, dev: 'vx0' }, { ns: appX, dev: 'eth0', mac: '02:00:00:00:00:20', addrs: ['10.200.1.10/32'] });
veth({ ns: host, dev: 'vy0' }, { ns: fabric, dev: 'vy0p' });
host.ip('route', 'add', '10.200.1.10/32', 'dev', 'vx0');
appX.ip('route', 'add', 'default', 'dev', 'eth0');
host.ip('neigh', 'add', '10.200.1.10', 'lladdr', '02:00:00:00:00:20', 'dev', 'vx0', 'nud', 'permanent');

function redirectSnapshot(): string {
  using m = BpfMap.openPinned(`${pinDir}/rs_redirect`, rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
  return [...m.entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort().join('\n');
}

let agent: AgentProcess;
t.before(async () => {
  agent = await AgentProcess.start({ netns: host.name, pinDir });
});
t.teardown(async () => {
  await agent?.stop();
});

type Json = Record<string, unknown>;
const req = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> => {
  const r = await agent.request(method, path, body);
  return { status: r.status, json: (r.json ?? {}) as Json };
};
const X = { address: '10.200.1.10', dev: 'vx0' };

t.test('grant, conflict naming the holder, renewal, release, expiry', async (t) => {
  const g = await req('POST', '/v1/leases', { owner: 'mig-1', ttlMs: 5000, names: ['a', 'b'] });
  t.equal(g.status, 200);
  t.same(g.json, { owner: 'mig-1', names: 2, ttlMs: 5000 });
  const other = await req('POST', '/v1/leases', { owner: 'mig-2', ttlMs: 5000, names: ['c', 'b'] });
  t.equal(other.status, 409, 'another owner is refused');
  t.match(other.json.error, /names\[1\]: "b" is leased by "mig-1" for \d+\.\d s more; nothing was leased/);
  t.match(other.json.holder, { name: 'b', owner: 'mig-1' });
  t.ok((other.json.holder as { remainingMs: number }).remainingMs > 3000, 'the holder and its remaining time are named');
  const list = (await req('GET', '/v1/leases')).json as { leases: { name: string; owner: string }[]; graceMs: number };
  t.same(list.leases.map((l) => [l.name, l.owner]), [['a', 'mig-1'], ['b', 'mig-1']], 'all or nothing: c was not leased');
  t.equal(list.graceMs, 0, 'a fresh agent has no restart grace');
  t.equal((await req('POST', '/v1/leases', { owner: 'mig-1', ttlMs: 300, names: ['a'] })).status, 200, 'the owner renews (here: shortens) its own');
  t.same((await req('DELETE', '/v1/leases/mig-2')).json, { released: 0 }, 'releasing what one does not hold releases nothing');
  t.same((await req('DELETE', '/v1/leases/mig-1?names=b')).json, { released: 1 });
  await sleep(500);
  t.same((await req('GET', '/v1/leases')).json.leases, [], 'a lease not renewed lapses');
  t.equal((await req('POST', '/v1/leases', { owner: 'mig-2', ttlMs: 5000, names: ['a', 'b'] })).status, 200, 'then another owner may take it');
  t.same((await req('DELETE', '/v1/leases/mig-2')).json, { released: 2 });
  // bad input names its field
  for (const [body, field] of [
    [{ owner: 'x y', ttlMs: 1000, names: ['a'] }, 'owner'],
    [{ owner: 'o', ttlMs: 5, names: ['a'] }, 'ttlMs'],
    [{ owner: 'o', ttlMs: 1000, names: [] }, 'names'],
    [{ owner: 'o', ttlMs: 1000, names: ['ok', '../x'] }, 'names[1]'],
    [{ owner: 'o', ttlMs: 1000, names: ['a'], extra: 1 }, 'extra'],
  ] as const) {
    const r = await req('POST', '/v1/leases', body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(r.json.field, field);
  }
});

t.test('a leased name is written only by its owner; unleased names by anyone', async (t) => {
  t.equal((await req('PUT', '/v1/apps/x', X)).status, 201, 'unleased: no owner needed');
  t.equal((await req('POST', '/v1/leases', { owner: 'mig-1', ttlMs: 10_000, names: ['x'] })).status, 200);
  const snap = redirectSnapshot();
  const noOwner = await req('POST', '/v1/apps/x/action', { type: 'forward', tunnel: '10.0.11.9' });
  t.equal(noOwner.status, 409);
  t.match(noOwner.json.error, /"x" is leased by "mig-1" .*a write without an owner is refused; nothing was changed/);
  t.match(noOwner.json.holder, { name: 'x', owner: 'mig-1' });
  t.equal((await req('POST', '/v1/apps/x/action?owner=mig-2', { type: 'forward', tunnel: '10.0.11.9' })).status, 409, 'another owner: refused');
  t.equal((await req('DELETE', '/v1/apps/x')).status, 409, 'a delete without the owner: refused');
  t.equal((await req('PUT', '/v1/deliveries/x', X)).status, 409, 'the delivery of the name is leased too');
  t.equal(redirectSnapshot(), snap, 'nothing changed');
  // a batch with one leased op is refused whole, before any map write
  const batch = await req('POST', '/v1/batch', { ops: [{ op: 'put-app', name: 'free', address: '10.200.1.50', dev: 'vx0', mac: '02:00:00:00:00:50' }, { op: 'delete-app', name: 'x' }] });
  t.equal(batch.status, 409);
  t.match(batch.json.error, /^ops\[1\]: "x" is leased by "mig-1"/);
  t.equal(redirectSnapshot(), snap, 'the batch changed nothing, not even its unleased op');
  t.equal((await req('GET', '/v1/apps/free')).status, 404);
  const mine = await req('POST', '/v1/apps/x/action?owner=mig-1', { type: 'forward', tunnel: '10.0.11.9' });
  t.equal(mine.status, 200, 'the owner writes');
  t.match(mine.json.action, { type: 'forward' });
  const owned = await req('POST', '/v1/batch', { owner: 'mig-1', ops: [{ op: 'set-action', name: 'x', action: { type: 'local' } }, { op: 'put-app', name: 'free', address: '10.200.1.50', dev: 'vx0', mac: '02:00:00:00:00:50' }] });
  t.same(owned.json, { applied: 2 }, "a batch made for the owner may write its names and unleased ones");
  t.equal((await req('DELETE', '/v1/leases/mig-1')).status, 200);
  t.equal((await req('DELETE', '/v1/apps/free')).status, 204, 'released: writable without an owner again');
  t.equal((await req('DELETE', '/v1/apps/x')).status, 204);
});

t.test('generations move with every write; conditional writes refuse a moved entry', async (t) => {
  const put = await req('PUT', '/v1/apps/g', X);
  const g1 = put.json.generation as number;
  t.ok(g1 > 0, `a new entry has a generation (${g1})`);
  t.equal((await req('PUT', '/v1/apps/g', X)).json.generation, g1, 'an idempotent re-put writes nothing: same generation');
  const sw = await req('POST', `/v1/apps/g/action?ifGeneration=${g1}`, { type: 'forward', tunnel: '10.0.11.9' });
  t.equal(sw.status, 200);
  const g2 = sw.json.generation as number;
  t.ok(g2 > g1, 'a write moves it');
  const snap = redirectSnapshot();
  const stale = await req('POST', `/v1/apps/g/action?ifGeneration=${g1}`, { type: 'local' });
  t.equal(stale.status, 412, 'conditional on a generation that moved on: 412');
  t.match(stale.json.error, new RegExp(`app "g" is at generation ${g2}: the write was conditional on generation ${g1}; nothing was changed`));
  t.equal(stale.json.generation, g2);
  t.equal((await req('PUT', '/v1/apps/g?ifGeneration=0', X)).status, 412, 'ifGeneration=0 is for a new entry only');
  t.equal((await req('DELETE', `/v1/apps/g?ifGeneration=${g1}`)).status, 412);
  t.equal(redirectSnapshot(), snap, 'nothing changed');
  const b = await req('POST', '/v1/batch', { generations: true, ops: [{ op: 'set-action', name: 'g', action: { type: 'local' }, ifGeneration: g2 }, { op: 'put-delivery', name: 'g', ...X }] });
  t.equal(b.status, 200);
  const gens = b.json.generations as number[];
  t.equal(gens.length, 2, 'a batch answers each op\'s generation when asked');
  t.ok(gens[0]! > g2 && gens[0] === gens[1], 'one request, one generation for what it wrote');
  const staleBatch = await req('POST', '/v1/batch', { ops: [{ op: 'delete-delivery', name: 'g' }, { op: 'delete-app', name: 'g', ifGeneration: g2 }] });
  t.equal(staleBatch.status, 412);
  t.match(staleBatch.json.error, /^ops\[1\]: app "g" is at generation/);
  t.equal((await req('GET', '/v1/deliveries/g')).status, 200, 'the refused batch deleted nothing');
  t.equal((await req('DELETE', `/v1/deliveries/g?ifGeneration=${gens[1]}`)).status, 204, 'the right generation: deleted');
  t.equal((await req('DELETE', `/v1/deliveries/g?ifGeneration=${gens[1]}`)).status, 404, 'gone: 404 as without a condition');
  t.equal((await req('PUT', '/v1/apps/g?ifGeneration=x', X)).json.field, 'ifGeneration');
  t.equal((await req('PUT', '/v1/apps/g?owner=', X)).json.field, 'owner');
  t.equal((await req('DELETE', '/v1/apps/g')).status, 204);
});

t.test('the probe reaches only the app behind a delivery, through its device', async (t) => {
  const script = join(dir, 'app.pl');
  writeFileSync(script, APP_PL);
  const app = await startApp(appX, script, 7411, 60);
  t.teardown(() => app.signal());
  t.equal((await req('PUT', '/v1/deliveries/p', X)).status, 201);
  const ok = await req('POST', '/v1/probe', { name: 'p', proto: 'udp', port: 7411, timeoutMs: 2000 });
  t.equal(ok.status, 200);
  t.match(ok.json, { ok: true, address: '10.200.1.10', dev: 'vx0' });
  t.ok((ok.json.rttMs as number) >= 0, `answered in ${String(ok.json.rttMs)} ms`);
  t.match((await req('POST', '/v1/probe', { name: 'p', proto: 'tcp', port: 7411, timeoutMs: 2000 })).json, { ok: true }, 'tcp: accepted');
  const closed = await req('POST', '/v1/probe', { name: 'p', proto: 'udp', port: 7412, timeoutMs: 500 });
  t.match(closed.json, { ok: false, rttMs: null }, 'nothing listens: not ok');
  t.match(closed.json.error, /udp\/7412/);
  t.equal((await req('POST', '/v1/probe', { name: 'nope', proto: 'udp', port: 7411 })).status, 404, 'only delivery entries are probed');
  // a delivery whose address this host routes elsewhere (the fabric's, via eth0) is not probed: no relay
  t.equal((await req('PUT', '/v1/deliveries/elsewhere', { address: '10.0.11.1', dev: 'vy0', mac: '02:00:00:00:00:99' })).status, 201);
  const relay = await req('POST', '/v1/probe', { name: 'elsewhere', proto: 'udp', port: 53 });
  t.equal(relay.status, 409);
  t.match(relay.json.error, /routes 10\.0\.11\.1 out of eth0, not the delivery's device vy0.*nothing was sent/);
  for (const [body, field] of [
    [{ name: 'p', proto: 'icmp', port: 1 }, 'proto'],
    [{ name: 'p', proto: 'udp', port: 0 }, 'port'],
    [{ name: 'p', proto: 'udp', port: 1, timeoutMs: 60_000 }, 'timeoutMs'],
    [{ name: 'p', proto: 'udp', port: 1, address: '8.8.8.8' }, 'address'],
  ] as const) {
    t.equal((await req('POST', '/v1/probe', body)).json.field, field, `bad ${field} refused`);
  }
  for (const n of ['p', 'elsewhere']) t.equal((await req('DELETE', `/v1/deliveries/${n}`)).status, 204);
});

t.test('restart: leases are forgotten, but until they could have lapsed only renewals and owned writes are taken', async (t) => {
  const put = await req('PUT', '/v1/apps/r', X);
  t.equal(put.status, 201);
  const gen = put.json.generation as number;
  t.equal((await req('POST', '/v1/leases', { owner: 'mig-r', ttlMs: 10_000, names: ['r'] })).status, 200);
  t.ok(existsSync(leaseNoteFile(pinDir)), 'the agent noted how long its leases may run');
  const t0 = Date.now();
  await agent.stop('SIGKILL');
  agent = await AgentProcess.start({ netns: host.name, pinDir, tokenFile: agent.tokenFile });
  const after = (await req('GET', '/v1/leases')).json as { leases: unknown[]; graceMs: number };
  t.same(after.leases, [], 'the restarted agent holds no lease');
  t.ok(after.graceMs > 0 && after.graceMs <= 10_000 - (Date.now() - t0) + 100, `but keeps a restart grace: what the lease had left (${after.graceMs} ms, restart took ${Date.now() - t0} ms)`);
  t.equal((await req('GET', '/v1/apps/r')).json.generation, gen, 'generations live in the pinned maps: kept');
  const anon = await req('POST', '/v1/apps/r/action', { type: 'forward', tunnel: '10.0.11.9' });
  t.equal(anon.status, 409, 'a write without an owner is refused in the grace');
  t.match(anon.json.error, /may still be leased by a holder from before this agent restarted/);
  const taker = await req('POST', '/v1/leases', { owner: 'mig-other', ttlMs: 10_000, names: ['r'] });
  t.equal(taker.status, 409, 'a new lease is refused in the grace');
  t.match(taker.json.error, /only renewals are granted/);
  t.equal((await req('POST', '/v1/leases', { owner: 'mig-r', ttlMs: 10_000, names: ['r'], renew: true })).status, 200, "the holder's renewal is granted");
  const owned = await req('POST', '/v1/apps/r/action?owner=mig-r', { type: 'forward', tunnel: '10.0.11.9' });
  t.equal(owned.status, 200, `and it writes (${JSON.stringify(owned.json)})`);
  t.ok((owned.json.generation as number) > gen, 'the write counter went on from the pinned generations');
  t.equal((await req('DELETE', '/v1/leases/mig-r')).status, 200);
  const left = ((await req('GET', '/v1/leases')).json as { graceMs: number }).graceMs;
  await sleep(left + 200);
  const del = await req('DELETE', '/v1/apps/r');
  t.equal(del.status, 204, `after the grace, unleased names are writable without an owner (${JSON.stringify(del.json)})`);
});
