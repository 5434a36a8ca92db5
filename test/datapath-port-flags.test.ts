/**
 * The agent keeps what the data plane's whole-address-first lookup needs
 * (bpf/routeshift.h): the whole-address entry of an address with port
 * entries carries the `ports` flag, an address with port entries only has a
 * 'ports-only' placeholder, and users never see placeholders. Drives the
 * agent's one path for changes (EntryStore) on a real HostDatapath in a
 * namespace, reads the raw map, and runs packets through the attached
 * program to show the entries mean what they should.
 */
import t from 'tap';
import { mkdirSync, rmSync } from 'node:fs';
import { pino } from 'pino';
import { inNetns, xdpVerdictName } from '../src/bpf/index.js';
import { HostDatapath } from '../src/datapath/host.js';
import { configOf, type AppKey, type RedirectValue } from '../src/datapath/structs.js';
import { EntryStore, type OpList } from '../src/agent/store.js';
import { parseAppBody, parseBatchOp, type AppSpec } from '../src/model/entry.js';
import type { LinkResolver } from '../src/agent/links.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { createFixtureNet, NET } from './lib/fixture-net.js';
import { eth, ipv4, pattern, udp } from './lib/packets.js';
import { xdpCtx } from './lib/uplink.js';

const net = createFixtureNet('rspf');
t.teardown(() => net.destroy());
const pinDir = `/sys/fs/bpf/${uniquePrefix('rspf')}`;
mkdirSync(pinDir, { recursive: true });
t.teardown(() => rmSync(pinDir, { recursive: true, force: true }));

const links: LinkResolver = {
  device: () => ({ ifindex: 42, mac: '02:00:00:00:10:01', path: 'xdp', slowPath: 'tc-peer', why: 'test' }),
  resolve: async () => {},
  neighbourMac: () => '02:00:00:00:10:10',
  knownMac: () => '02:00:00:00:10:10',
};
const log = pino({ level: 'silent' });
const dp = inNetns(net.ns.name, () => HostDatapath.open({ uplink: 'eth0', pinDir, capacity: 256 }));
t.teardown(() => dp.close());
dp.setConfig(configOf({ tunnelAddr4: NET.up4 }));
let store = new EntryStore(dp, log, links);

const X = '10.200.0.10';
const Y = '10.200.0.11';
const whole = (address: string): AppKey => ({ address, proto: 'any', port: 0 });
const udpKey = (address: string, port: number): AppKey => ({ address, proto: 'udp', port });
const entry = (k: AppKey): RedirectValue | undefined => dp.redirect.lookup(k);
const names = (): string[] => store.listApps().apps.map((a) => a.name);
/** An app entry as a request would give it, parsed by the model's validator. */
const body = (address: string, extra: Record<string, unknown> = {}): AppSpec => parseAppBody({ address, dev: 'eth1', ...extra });
/** A batch body's ops, parsed as the server does. */
const opList = (body: { ops: unknown[] }): OpList => ({ length: body.ops.length, at: (i) => parseBatchOp(body.ops[i], i) });

/** Verdict of a UDP packet to address:port arriving on the uplink. */
function verdict(address: string, port: number): string {
  const frame = eth({ dst: NET.upMac, src: NET.routerMac }, ipv4({ src: '198.18.0.2', dst: address }, udp(40000, port, pattern(16))));
  return inNetns(net.ns.name, () => xdpVerdictName(dp.program.testRun(frame, { repeat: 1, ctx: xdpCtx(frame.length, net.eth0) }).retval));
}

t.test('a whole-address app alone: no flag, one lookup', async (t) => {
  await store.putApp('x', body(X), 'test');
  t.same(entry(whole(X)), { action: 'local', appId: 0, ifindex: 42, dmac: '02:00:00:00:10:10', smac: '02:00:00:00:10:01', path: 'xdp', slowPath: 'tc-peer' });
});

t.test('adding a port entry flags the whole-address entry; removing it clears the flag', async (t) => {
  await store.putApp('xp', body(X, { proto: 'udp', port: 5000, action: { type: 'forward', tunnel: NET.peer4 } }), 'test');
  t.match(entry(whole(X)), { action: 'local', ports: true }, 'flagged');
  t.match(entry(udpKey(X, 5000)), { action: 'forward', tunnel: NET.peer4 });
  t.notOk('ports' in entry(udpKey(X, 5000))!, 'port entries carry no flag');
  t.equal(verdict(X, 5000), 'TX', 'udp/5000 is forwarded (the port entry)');
  t.equal(verdict(X, 5001), 'REDIRECT', 'udp/5001 is LOCAL (the whole address)');
  await store.setAction('x', { type: 'forward', tunnel: NET.peer4 }, 'test');
  t.match(entry(whole(X)), { action: 'forward', ports: true }, 'an action change keeps the flag');
  await store.setAction('x', { type: 'local' }, 'test');
  await store.deleteApp('xp', 'test');
  t.notOk('ports' in entry(whole(X))!, 'flag cleared with the last port entry');
  t.equal(entry(udpKey(X, 5000)), undefined);
  t.equal(verdict(X, 5000), 'REDIRECT');
});

t.test('port entries only: a placeholder nobody sees, removed with the last port entry', async (t) => {
  await store.putApp('y53', body(Y, { proto: 'udp', port: 53 }), 'test');
  await store.putApp('y54', body(Y, { proto: 'udp', port: 54 }), 'test');
  t.same(entry(whole(Y)), { action: 'ports-only', appId: 0xffffffff, ports: true }, 'placeholder');
  t.same(names(), ['x', 'y53', 'y54'], 'apps list only real apps');
  t.equal(verdict(Y, 53), 'REDIRECT', 'its ports are served');
  t.equal(verdict(Y, 55), 'PASS', 'other ports pass');
  await store.deleteApp('y53', 'test');
  t.ok(entry(whole(Y)), 'still one port entry: placeholder kept');
  await store.deleteApp('y54', 'test');
  t.equal(entry(whole(Y)), undefined, 'last port entry gone: placeholder gone');
  t.equal([...dp.redirect.keys()].length, 1, 'only x is left in the map');
});

t.test('whole-address app deleted while port entries remain: replaced by the placeholder, and back', async (t) => {
  await store.putApp('xp', body(X, { proto: 'udp', port: 5000 }), 'test');
  await store.deleteApp('x', 'test');
  t.same(entry(whole(X)), { action: 'ports-only', appId: 0xffffffff, ports: true });
  t.equal(verdict(X, 5001), 'PASS', 'the rest of the address passes');
  t.equal(verdict(X, 5000), 'REDIRECT');
  await store.putApp('x', body(X), 'test');
  t.match(entry(whole(X)), { action: 'local', ports: true }, 'the app replaces the placeholder, flag kept');
  t.same(names(), ['x', 'xp']);
});

t.test('a batch is settled as a whole; an idempotent re-put writes nothing', async (t) => {
  await store.batch(
    opList({
      ops: [
        { op: 'put-app', name: 'z', address: '10.200.0.12', dev: 'eth1' },
        { op: 'put-app', name: 'zp', address: '10.200.0.12', proto: 'tcp', port: 80, dev: 'eth1' },
        { op: 'put-app', name: 'wp', address: '10.200.0.13', proto: 'tcp', port: 80, dev: 'eth1' },
        { op: 'delete-app', name: 'xp' },
      ],
    }),
    'test',
  );
  t.match(entry(whole('10.200.0.12')), { action: 'local', ports: true });
  t.same(entry(whole('10.200.0.13')), { action: 'ports-only', appId: 0xffffffff, ports: true });
  t.notOk('ports' in entry(whole(X))!);
  const snap = JSON.stringify([...dp.redirect.entries()]);
  await store.putApp('zp', body('10.200.0.12', { proto: 'tcp', port: 80 }), 'test');
  await store.putApp('z', body('10.200.0.12'), 'test');
  t.equal(JSON.stringify([...dp.redirect.entries()]), snap, 'nothing changed');
});

t.test('a restarted agent repairs maps pinned without flags (an older agent)', async (t) => {
  const z = entry(whole('10.200.0.12'))!;
  dp.redirect.update(whole('10.200.0.12'), { ...z, ports: undefined } as RedirectValue);
  dp.redirect.delete(whole('10.200.0.13'));
  t.notOk('ports' in entry(whole('10.200.0.12'))!, 'flag lost');
  store = new EntryStore(dp, log, links);
  t.match(entry(whole('10.200.0.12')), { action: 'local', ports: true }, 'flag restored');
  t.same(entry(whole('10.200.0.13')), { action: 'ports-only', appId: 0xffffffff, ports: true }, 'placeholder restored');
  t.same(names(), ['wp', 'x', 'z', 'zp']);
});

t.test('a change that would overfill a map is refused before anything is written (placeholders fill the redirect map)', async (t) => {
  // Capacity 5: two apps on port entries take 2 ids but 4 redirect slots (entry + placeholder
  // each). A third needs 2 more slots, and only one is left: refused before any write.
  const smallPin = `${pinDir}-small`;
  mkdirSync(smallPin, { recursive: true });
  t.teardown(() => rmSync(smallPin, { recursive: true, force: true }));
  const small = inNetns(net.ns.name, () => HostDatapath.open({ uplink: 'eth1', pinDir: smallPin, capacity: 5 }));
  t.teardown(() => {
    inNetns(net.ns.name, () => small.detach());
    small.close();
  });
  const s = new EntryStore(small, log, links);
  await s.putApp('p1', body('10.210.0.1', { proto: 'udp', port: 5000 }), 'test');
  await s.putApp('p2', body('10.210.0.2', { proto: 'udp', port: 5000 }), 'test');
  const dump = (m: { entries(): IterableIterator<[unknown, unknown]> }): string => JSON.stringify([...m.entries()].map((e) => JSON.stringify(e)).sort());
  const before = { redirect: dump(small.redirect), meta: dump(small.meta), names: dump(small.names) };
  await t.rejects(
    s.putApp('p3', body('10.210.0.3', { proto: 'udp', port: 5000 }), 'test'),
    { status: 409, message: /E2BIG .*map full, 5 entries\); nothing was changed.*--capacity/ },
    'the second new slot does not fit: a 409 that says what to do',
  );
  t.same({ redirect: dump(small.redirect), meta: dump(small.meta), names: dump(small.names) }, before, 'redirect, names and meta are exactly as before');
  t.same(s.listApps().apps.map((a) => a.name), ['p1', 'p2']);
  t.same(s.counts, { apps: 2, deliveries: 0 });
});

t.test('adoption repairs what a crash between map writes can leave, and counts what is live', async (t) => {
  const pin = `${pinDir}-adopt`;
  mkdirSync(pin, { recursive: true });
  t.teardown(() => rmSync(pin, { recursive: true, force: true }));
  const first = inNetns(net.ns.name, () => HostDatapath.open({ uplink: 'eth1', pinDir: pin, capacity: 64 }));
  const s1 = new EntryStore(first, log, links);
  for (const [name, i] of [['a1', 1], ['a2', 2], ['a3', 3], ['a4', 4]] as const) await s1.putApp(name, body(`10.211.0.${i}`), 'test');
  await s1.putApp('p1', body('10.211.0.9', { proto: 'udp', port: 53 }), 'test');
  await s1.putDelivery('d1', body('10.211.1.1'), 'test');
  const idOf = (name: string): number => s1.getApp(name).appId;
  const [a1, a2, a3, a4] = ['a1', 'a2', 'a3', 'a4'].map(idOf) as [number, number, number, number];
  // What crashes can leave: a name index entry missing (a1), pointing at another id (a2's
  // name at a3's id), an extra name for a live id (ghost -> a4), an entry whose redirect
  // write never landed (a3: meta and name, no redirect entry).
  first.names.delete({ kind: 'app', name: 'a1' });
  first.names.update({ kind: 'app', name: 'a2' }, a3);
  first.names.update({ kind: 'app', name: 'ghost' }, a4);
  first.redirect.delete(whole('10.211.0.3'));
  inNetns(net.ns.name, () => first.detach());
  first.close();

  const again = inNetns(net.ns.name, () => HostDatapath.open({ uplink: 'eth1', pinDir: pin, capacity: 64 }));
  t.teardown(() => {
    inNetns(net.ns.name, () => again.detach());
    again.close();
  });
  const s2 = new EntryStore(again, log, links);
  const index = new Map([...again.names.entries()].map(([k, id]) => [`${k.kind}:${k.name}`, id]));
  t.same(s2.counts, { apps: 4, deliveries: 1 }, 'a1 a2 a4 p1 and d1 are live; a3 never reached the data plane');
  t.same(s2.listApps().apps.map((a) => a.name), ['a1', 'a2', 'a4', 'p1']);
  t.equal(index.get('app:a1'), a1, 'a missing name is written back');
  t.equal(index.get('app:a2'), a2, 'a name pointing at the wrong id is corrected');
  t.notOk(index.has('app:ghost'), 'a name no meta entry carries is dropped');
  t.notOk(index.has('app:a3'), 'the half-written entry is dropped, name and all');
  t.equal(again.meta.lookup(a3), undefined);
  t.equal(index.get('delivery:d1'), s2.getDelivery('d1').appId);
  t.equal(index.size, 5, 'one name per live entry, nothing else');
  t.equal(again.redirect.lookup(whole('10.211.0.9'))?.action, 'ports-only', 'p1 still has its placeholder');
  await s2.putApp('a3', body('10.211.0.3'), 'test');
  t.equal(s2.counts.apps, 5, 'the dropped name can be used again');
});
