/**
 * The native addon and its typed layer against the real kernel: object
 * loading, every map operation, XDP and TC attachment with traffic in a
 * network namespace, BPF_PROG_TEST_RUN, maps bound to and shared between
 * programs, BPF links (tp_btf attach, pin, reopen), error codes, and fd
 * hygiene.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfMap,
  BpfObject,
  Link,
  LinkType,
  MapType,
  TEST_XDP_LIVE_FRAMES,
  XdpAction,
  detachTc,
  detachXdp,
  ensureBpffs,
  ifindexOf,
  inNetns,
  isErrno,
  perCpu,
  possibleCpus,
  queryXdp,
  rawBytes,
  u32,
  u64,
} from '../src/bpf/index.js';
import { addon } from '../src/bpf/native.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';

const OBJ = join(process.cwd(), 'bpf/test/addon_test.o');
const TRACE_OBJ = join(process.cwd(), 'bpf/test/trace_test.o');
ensureBpffs();

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isErrno(err) ? err.code : `non-errno: ${String(err)}`;
  }
  return undefined;
}

function catchErr(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('loads an object and lists its programs and maps', async (t) => {
  using obj = BpfObject.load(OBJ);
  t.same(obj.programs().map((p) => p.name).sort(), ['tc_count', 'xdp_count', 'xdp_swap_mac']);
  const maps = Object.fromEntries(obj.maps().map((m) => [m.name, m]));
  t.equal(maps.t_hash?.keySize, 4);
  t.equal(maps.t_hash?.valueSize, 8);
  t.equal(maps.t_hash?.maxEntries, 16);
  t.equal(maps.t_seen?.type, MapType.PERCPU_ARRAY);
});

t.test('map CRUD with update modes and their error codes', async (t) => {
  using obj = BpfObject.load(OBJ);
  using m = obj.map('t_hash', u32, u64);
  t.equal(m.lookup(1), undefined, 'absent key looks up as undefined');
  m.update(1, 10n);
  t.equal(m.lookup(1), 10n);
  m.update(1, 11n, 'exist');
  t.equal(m.lookup(1), 11n, 'exist mode replaces');
  t.equal(codeOf(() => m.update(1, 12n, 'noexist')), 'EEXIST');
  t.equal(codeOf(() => m.update(2, 12n, 'exist')), 'ENOENT');
  t.equal(m.delete(1), true);
  t.equal(m.delete(1), false, 'deleting an absent key reports false');
  for (let i = 0; i < 16; i++) m.update(i, BigInt(i));
  let full: unknown;
  try {
    m.update(99, 1n);
  } catch (err) {
    full = err;
  }
  t.ok(isErrno(full, 'E2BIG'), 'a full hash map refuses with E2BIG');
  t.match((full as Error).message, /update map t_hash: E2BIG .*map full, 16 entries/);
  t.same([...m.keys()].sort((a, b) => a - b), [...Array(16).keys()], 'key iteration sees every key');
  const entries = new Map(m.entries(5));
  t.equal(entries.size, 16, 'batched entries() with small chunks sees every entry');
  t.equal(entries.get(7), 7n);
  t.equal(m.count(), 16);
});

t.test('batch update, lookup and delete', async (t) => {
  using obj = BpfObject.load(OBJ);
  using m = obj.map('t_hash', u32, u64);
  const batch = Array.from({ length: 12 }, (_, i) => [i + 100, BigInt(i * 3)] as const);
  t.equal(m.updateBatch(batch), 12);
  t.equal(m.lookup(105), 15n);
  t.same(new Map(m.entries(4)), new Map(batch), 'batched lookup returns what batch update wrote');
  t.equal(m.deleteBatch([100, 101, 102]), 3);
  t.equal(m.count(), 9);
  t.equal(codeOf(() => m.deleteBatch([100])), 'ENOENT', 'batch delete of an absent key fails with ENOENT');
  // Over capacity: the kernel applies what fits and says how many.
  let err: unknown;
  try {
    m.updateBatch(Array.from({ length: 20 }, (_, i) => [i + 500, 1n] as const));
  } catch (e) {
    err = e;
  }
  t.ok(isErrno(err, 'E2BIG'));
  t.equal((err as { count?: number }).count, 16 - 9, 'error carries how many entries were applied');
});

t.test('array map: update and lookup by index, delete is refused', async (t) => {
  using obj = BpfObject.load(OBJ);
  using m = obj.map('t_array', u32, u64);
  t.equal(m.lookup(3), 0n, 'array entries exist and start at zero');
  m.update(3, 42n);
  t.equal(m.lookup(3), 42n);
  t.equal(codeOf(() => m.delete(3)), 'EINVAL');
  t.equal(codeOf(() => m.update(4, 1n)), 'E2BIG', 'index past the end');
  t.equal([...m.entries()].length, 4);
});

t.test('per-CPU values: one per possible CPU, each padded to 8 bytes', async (t) => {
  const cpus = possibleCpus();
  using obj = BpfObject.load(OBJ);
  using m = obj.map('t_percpu_hash', u32, perCpu(u32));
  t.equal(m.valueCodec.size, 8 * cpus);
  const values = Array.from({ length: cpus }, (_, i) => 1000 + i);
  m.update(7, values);
  t.same(m.lookup(7), values);
  t.same(new Map(m.entries()).get(7), values);
  t.throws(() => m.update(8, [1]), RangeError, 'wrong number of per-CPU values is refused before the syscall');
  t.throws(() => obj.map('t_percpu_hash', u32, u32), /per-CPU map: wrap the value codec with perCpu/);
});

t.test('lookups decode out of scratch space: returned values never alias each other', async (t) => {
  using obj = BpfObject.load(OBJ);
  using raw = obj.map('t_hash', rawBytes(4), rawBytes(8));
  const key = (n: number): Buffer => Buffer.from([n, 0, 0, 0]);
  raw.update(key(1), Buffer.alloc(8, 0xaa));
  raw.update(key(2), Buffer.alloc(8, 0xbb));
  const a = raw.lookup(key(1));
  const b = raw.lookup(key(2));
  t.same(a, Buffer.alloc(8, 0xaa), 'the first value is intact after a second lookup');
  t.same(b, Buffer.alloc(8, 0xbb));
  t.equal(raw.lookup(key(3)), undefined, 'an absent key after a hit is still absent');
  t.same(raw.lookup(key(1)), Buffer.alloc(8, 0xaa));
  t.equal(typeof addon().trimMemory(), 'boolean', 'malloc_trim is reachable (the agent calls it after large batches)');
});

t.test('wrong-size keys and values are refused in TypeScript before any syscall', async (t) => {
  using obj = BpfObject.load(OBJ);
  t.throws(() => obj.map('t_hash', u64, u64), /codec sizes key 8\/value 8 do not match the map's key 4\/value 8/);
  using raw = obj.map('t_hash', rawBytes(4), rawBytes(8));
  t.throws(() => raw.update(Buffer.alloc(3), Buffer.alloc(8)), /expected 4 bytes, got 3/);
  t.throws(() => raw.update(Buffer.alloc(4), Buffer.alloc(9)), /expected 8 bytes, got 9/);
});

t.test('pin and open-pinned round trip; freeze makes a map read-only', async (t) => {
  const dir = mkdtempSync('/sys/fs/bpf/rs-addon-test-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 't_hash');
  {
    using obj = BpfObject.load(OBJ);
    using m = obj.map('t_hash', u32, u64);
    m.update(5, 55n);
    m.pin(path);
  }
  {
    using again = BpfMap.openPinned(path, u32, u64);
    t.equal(again.lookup(5), 55n, 'the pinned map kept its entry after every handle closed');
    again.update(6, 66n);
  }
  // An object told to use the pin path adopts the pinned map instead of making a new one.
  {
    using obj = BpfObject.load(OBJ, { pinPaths: { t_hash: path } });
    using m = obj.map('t_hash', u32, u64);
    t.equal(m.lookup(6), 66n, 'load with pinPaths reuses the pinned map and its entries');
  }
  t.equal(codeOf(() => BpfMap.openPinned(join(dir, 'absent'), u32, u64)), 'ENOENT');
  using frozen = BpfMap.create({ type: MapType.ARRAY, name: 'rs_frozen', maxEntries: 1 }, u32, u64);
  frozen.update(0, 1n);
  frozen.freeze();
  t.equal(codeOf(() => frozen.update(0, 2n)), 'EPERM', 'a frozen map refuses user-space writes');
  unlinkSync(path);
});

t.test('load errors: missing file, non-BPF file, verifier rejection', async (t) => {
  t.equal(codeOf(() => BpfObject.load('/nonexistent/x.o')), 'ENOENT');
  const notBpf = codeOf(() => BpfObject.load(join(process.cwd(), 'bpf/test/not_bpf.txt')));
  t.ok(notBpf && !notBpf.startsWith('non-errno'), `a non-ELF file fails with an errno code (${notBpf})`);
  let err: unknown;
  try {
    BpfObject.load(join(process.cwd(), 'bpf/test/bad_verifier.o'));
  } catch (e) {
    err = e;
  }
  t.ok(isErrno(err, 'EACCES'), 'verifier rejection is EACCES');
  t.match((err as Error).message, /verifier rejected a program: load BPF object .*bad_verifier\.o: EACCES/);
  t.match((err as Error).message, /invalid access to packet/, 'the message carries the verifier log tail');
  t.match((err as { log?: string }).log ?? '', /processed \d+ insns/, 'the full log is attached');
});

t.test('closed handles refuse with EBADF', async (t) => {
  const obj = BpfObject.load(OBJ);
  const m = obj.map('t_hash', u32, u64);
  const p = obj.program('xdp_count');
  obj.close();
  m.update(1, 1n);
  t.equal(m.lookup(1), 1n, 'a map handle outlives its object');
  m.close();
  t.equal(codeOf(() => m.lookup(1)), 'EBADF');
  p.close();
  t.equal(codeOf(() => p.testRun(Buffer.alloc(64))), 'EBADF');
});

t.test('testRun returns the verdict and the rewritten packet', async (t) => {
  using obj = BpfObject.load(OBJ);
  using p = obj.program('xdp_swap_mac');
  const pkt = Buffer.alloc(64);
  Buffer.from('020000000001', 'hex').copy(pkt, 0);
  Buffer.from('020000000002', 'hex').copy(pkt, 6);
  pkt.writeUInt16BE(0x0800, 12);
  // Repetitions rewrite the same buffer: one run, so the swap is not undone.
  const r = p.testRun(pkt, { repeat: 1 });
  t.equal(r.retval, XdpAction.TX);
  t.equal(r.data.subarray(0, 6).toString('hex'), '020000000002');
  t.equal(r.data.subarray(6, 12).toString('hex'), '020000000001');
  t.same(r.data.subarray(12), pkt.subarray(12), 'the rest is untouched');
  t.ok(r.durationNs >= 0);
  const timed = p.testRun(pkt, { repeat: 10_000 });
  t.ok(timed.durationNs > 0 && timed.durationNs < 100_000, `mean ns per run is plausible (${timed.durationNs})`);
  const short = p.testRun(Buffer.alloc(14));
  t.equal(short.retval, XdpAction.TX);
});

t.test('XDP and TC attached on a veth in a namespace count real packets', async (t) => {
  const prefix = uniquePrefix('rsad');
  const ns = Netns.create(`${prefix}-h`);
  t.teardown(() => ns.delete());
  const peer = Netns.create(`${prefix}-p`);
  t.teardown(() => peer.delete());
  veth({ ns, dev: 'eth0', addrs: ['10.99.0.1/24'] }, { ns: peer, dev: 'eth0', addrs: ['10.99.0.2/24'] });

  using obj = BpfObject.load(OBJ);
  using xdp = obj.program('xdp_count');
  using tc = obj.program('tc_count');
  using seen = obj.map('t_seen', u32, perCpu(u64));
  const total = (i: number): bigint => (seen.lookup(i) ?? []).reduce((a, b) => a + b, 0n);

  const ifindex = inNetns(ns.name, () => ifindexOf('eth0'));
  inNetns(ns.name, () => xdp.attachXdp(ifindex, { mode: 'generic' }));
  t.equal(inNetns(ns.name, () => queryXdp(ifindex)).mode, 'generic');
  t.equal(
    codeOf(() => inNetns(ns.name, () => xdp.attachXdp(ifindex, { mode: 'generic' }))),
    'EBUSY',
    'a second attach without replace is refused',
  );
  const att = inNetns(ns.name, () => tc.attachTc(ifindex, 'ingress'));
  t.equal(att.hookCreated, true, 'the clsact hook was absent, so this attach created it');

  peer.exec('ping', '-c', '5', '-i', '0.01', '-W', '1', '10.99.0.1');
  t.ok(total(0) >= 5n, `XDP saw the pings (${total(0)})`);
  t.ok(total(1) >= 5n, `TC saw the pings (${total(1)})`);

  inNetns(ns.name, () => detachXdp(ifindex, 'generic'));
  t.equal(inNetns(ns.name, () => queryXdp(ifindex)).progId, 0, 'XDP detached');
  t.equal(inNetns(ns.name, () => detachTc(att)), true);
  t.notMatch(ns.exec('tc', 'qdisc', 'show', 'dev', 'eth0'), /clsact/, 'the qdisc it created is gone');

  // A hook that existed before is left in place on detach.
  ns.exec('tc', 'qdisc', 'add', 'dev', 'eth0', 'clsact');
  const att2 = inNetns(ns.name, () => tc.attachTc(ifindex, 'egress'));
  t.equal(att2.hookCreated, false);
  t.equal(codeOf(() => inNetns(ns.name, () => tc.attachTc(ifindex, 'egress'))), 'EEXIST', 'a filter at the same handle and priority is refused');
  t.equal(inNetns(ns.name, () => tc.attachTc(ifindex, 'egress', { replace: true })).hookCreated, false, 'unless replace takes its place');
  inNetns(ns.name, () => detachTc(att2));
  t.match(ns.exec('tc', 'qdisc', 'show', 'dev', 'eth0'), /clsact/, 'a pre-existing clsact qdisc is kept');
});

t.test('no fd leak: 10,000 maps created and closed', async (t) => {
  const fds = (): number => readdirSync('/proc/self/fd').length;
  // Warm up once so lazily opened descriptors are not counted as a leak.
  BpfMap.create({ type: MapType.HASH, name: 'rs_warm', maxEntries: 1 }, u32, u64).close();
  const before = fds();
  for (let i = 0; i < 10_000; i++) {
    const m = BpfMap.create({ type: MapType.HASH, name: 'rs_leak', maxEntries: 1 }, u32, u64);
    m.close();
  }
  t.equal(fds(), before, 'fd count is flat');
  // Objects too: open/load/close releases every program and map fd.
  for (let i = 0; i < 50; i++) BpfObject.load(OBJ).close();
  t.equal(fds(), before, 'fd count is flat after loading objects');
});

t.test('bindMap: a program holds a map its code never uses, lists it in mapIds and keeps it alive', async (t) => {
  using obj = BpfObject.load(OBJ);
  using p = obj.program('xdp_count');
  using seen = obj.map('t_seen', u32, perCpu(u64));
  t.same(p.mapIds(), [seen.info.id], 'xdp_count holds the one map its code uses');
  const extra = BpfMap.create({ type: MapType.HASH, name: 'rs_bound', maxEntries: 4 }, u32, u64);
  const id = extra.info.id;
  extra.update(1, 11n);
  p.bindMap(extra);
  p.bindMap(extra);
  t.same(p.mapIds().sort((x, y) => x - y), [seen.info.id, id].sort((x, y) => x - y), 'the bound map is listed once, binding twice is harmless');
  extra.close();
  // What a restarted agent does: find the map through the program, open it by id.
  using found = BpfMap.fromId(id, u32, u64);
  t.equal(found.lookup(1), 11n, 'the program kept the map (and its entry) alive after its last fd closed');
  using raw = BpfMap.fromId(id);
  t.same([raw.keyCodec.size, raw.valueCodec.size], [4, 8], 'fromId without codecs gives raw bytes of the map sizes');
  const closed = BpfMap.create({ type: MapType.HASH, name: 'rs_closed', maxEntries: 1 }, u32, u64);
  closed.close();
  t.equal(codeOf(() => p.bindMap(closed)), 'EBADF', 'binding a closed map fails with EBADF');
});

t.test('reuseMaps: a second object loads onto the first object\'s map instead of making its own', async (t) => {
  using first = BpfObject.load(OBJ);
  using seen1 = first.map('t_seen', u32, perCpu(u64));
  using hash1 = first.map('t_hash', u32, u64);
  using second = BpfObject.load(OBJ, { reuseMaps: { t_seen: seen1, t_hash: hash1 } });
  using seen2 = second.map('t_seen', u32, perCpu(u64));
  using hash2 = second.map('t_hash', u32, u64);
  t.equal(seen2.info.id, seen1.info.id, 'the same kernel map');
  hash1.update(3, 33n);
  t.equal(hash2.lookup(3), 33n, 'written through the first object, read through the second');
  hash2.update(4, 44n);
  t.equal(hash1.lookup(4), 44n, 'and the other way round');
  using p2 = second.program('xdp_count');
  t.ok(p2.mapIds().includes(seen1.info.id), "the second object's program uses the first object's map");
  const total = (): bigint => (seen1.lookup(0) ?? []).reduce((x, y) => x + y, 0n);
  const before = total();
  p2.testRun(Buffer.alloc(64), { repeat: 3 });
  t.equal(total(), before + 3n, "the second object's program counts into the first object's map");

  using array = first.map('t_array', u32, u64);
  let err: unknown;
  try {
    BpfObject.open(OBJ, { reuseMaps: { t_hash: array } });
  } catch (e) {
    err = e;
  }
  t.ok(isErrno(err, 'EINVAL'), 'a map of another shape is refused with EINVAL');
  t.match((err as Error).message, /reuse map t_array \(id \d+\) as t_hash in .*addon_test\.o: type 2, expected 1; .*name t_array, expected t_hash/);
  t.equal(
    codeOf(() => BpfObject.open(OBJ, { reuseMaps: { t_hash: hash1 }, maxEntries: { t_hash: 32 } })),
    'EINVAL',
    'a reused map smaller than maxEntries asks for is refused (libbpf would keep its 16 silently)',
  );
  t.equal(codeOf(() => BpfObject.open(OBJ, { reuseMaps: { t_nope: hash1 } })), 'ENOENT', 'an unknown map name is ENOENT');
});

t.test('attach: a tp_btf program on xdp_redirect_err counts real failed redirects; a pinned link outlives its handle', async (t) => {
  const prefix = uniquePrefix('rstr');
  const ns = Netns.create(`${prefix}-h`);
  t.teardown(() => ns.delete());
  const peer = Netns.create(`${prefix}-p`);
  t.teardown(() => peer.delete());
  veth({ ns, dev: 'eth0' }, { ns: peer, dev: 'eth0' });
  // The peer runs no XDP program and has GRO off: redirects into eth0 fail (EOPNOTSUPP).
  ns.exec('ethtool', '-K', 'eth0', 'gro', 'off');
  peer.exec('ethtool', '-K', 'eth0', 'gro', 'off');
  const ifindex = inNetns(ns.name, () => ifindexOf('eth0'));
  const peerIfindex = inNetns(peer.name, () => ifindexOf('eth0'));
  const dir = mkdtempSync('/sys/fs/bpf/rs-addon-test-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  using obj = BpfObject.load(TRACE_OBJ);
  using redirect = obj.program('xdp_redirect_to');
  using tracer = obj.program('trace_redirect_err');
  using config = obj.map('tr_config', u32, u32);
  using events = obj.map('tr_events', u32, u64);
  config.update(0, redirect.id);
  config.update(1, ifindex);
  const count = (): bigint => events.lookup(0) ?? -1n;
  const frame = Buffer.alloc(64);
  frame.writeUInt16BE(0x0800, 12);
  // Live frames: XDP_REDIRECT really goes to xdp_do_redirect_frame, which
  // fires the tracepoint on failure (live runs report no retval).
  const run = (frames: number): void => {
    inNetns(ns.name, () => redirect.testRun(frame, { flags: TEST_XDP_LIVE_FRAMES, dataSizeOut: 0, repeat: frames }));
  };

  run(4);
  t.equal(count(), 0n, 'nothing is counted before the program is attached');
  const link = obj.attach('trace_redirect_err');
  t.equal(link.type, LinkType.RAW_TRACEPOINT, 'a tp_btf program is a raw tracepoint link');
  t.equal(link.info().progId, tracer.id, 'the link runs the tracer');
  run(10);
  t.equal(count(), 10n, 'each failed redirect fired xdp_redirect_err once');
  t.equal(BigInt.asIntN(64, events.lookup(1) ?? 0n), -95n, 'with err -EOPNOTSUPP (the peer runs no XDP program)');
  t.equal(events.lookup(2), BigInt(ifindex), 'and the target ifindex');

  // The error is the veth's: with an XDP program on the peer the same redirects succeed.
  using attachedObj = BpfObject.load(OBJ);
  using pass = attachedObj.program('xdp_count');
  inNetns(peer.name, () => pass.attachXdp(peerIfindex, { mode: 'native' }));
  run(5);
  inNetns(peer.name, () => detachXdp(peerIfindex, 'native'));
  t.equal(count(), 10n, 'no redirect error while the peer runs XDP');

  const pin = join(dir, 'redirect_err');
  link.pin(pin);
  link.close();
  run(5);
  t.equal(count(), 15n, 'the pinned link still counts after its handle closed');
  t.equal(codeOf(() => link.info()), 'EBADF', 'the closed handle refuses');

  const again = Link.openPinned(pin);
  t.equal(again.id, link.id, 'the pin opens the same link');
  t.equal(again.info().progId, tracer.id);
  const update = catchErr(() => again.updateProgram(redirect));
  t.ok(isErrno(update, 'EINVAL'), `a tracepoint link cannot change program (${(update as { code?: string }).code})`);
  t.match((catchErr(() => again.updateProgram(redirect)) as Error).message, new RegExp(`^update program of link ${link.id}: E`));
  unlinkSync(pin);
  again.close();
  run(5);
  t.equal(count(), 15n, 'unpinned and closed: detached, nothing counted');
  t.notOk(existsSync(pin));

  events.pin(join(dir, 'map'));
  const notLink = catchErr(() => Link.openPinned(join(dir, 'map')));
  t.ok(isErrno(notLink, 'EINVAL'), 'opening a pinned map as a link is EINVAL');
  t.match((notLink as Error).message, /not a link/);
  t.equal(codeOf(() => Link.openPinned(join(dir, 'absent'))), 'ENOENT');
  using plain = BpfObject.load(OBJ);
  const noAuto = catchErr(() => plain.attach('xdp_count'));
  t.ok(isErrno(noAuto), `a program whose section names no attach point is refused (${(noAuto as { code?: string }).code})`);
  t.match((noAuto as Error).message, /attach program xdp_count \(section xdp\)/);
});

t.test('no fd leak: links attached and closed, programs asked for their map ids', async (t) => {
  const fds = (): number => readdirSync('/proc/self/fd').length;
  using obj = BpfObject.load(TRACE_OBJ);
  using p = obj.program('xdp_redirect_to');
  obj.attach('trace_redirect_err').close();
  const before = fds();
  for (let i = 0; i < 50; i++) {
    obj.attach('trace_redirect_err').close();
    p.mapIds();
  }
  t.equal(fds(), before, 'fd count is flat');
});
