/**
 * The fast encoders of src/datapath/structs.ts (rs_app_key,
 * rs_redirect_value, rs_deliver_value: DataView stores, memoised tunnel and
 * MAC parsing) against a plain reference built here from LAYOUT with
 * Buffer#write* and the general address parser, byte for byte, on
 * pseudo-random entries written into dirty buffers at odd offsets; the
 * errors for bad input; IPv6 text written without the general parser as
 * that parser reads it; and BpfMap's bound scratch buffers on a real map
 * (an entry's bytes never carry over into the next one's).
 */
import t from 'tap';
import { BpfMap, MapType, rawBytes } from '../src/bpf/index.js';
import { parseAddress, parseMac, writeAddress } from '../src/model/address.js';
import {
  ACTIONS,
  LAYOUT,
  PATHS,
  PORTS_ONLY_ACTION,
  appKeyCodec,
  deliverValueCodec,
  redirectValueCodec,
  type AppKey,
  type DeliverValue,
  type RedirectValue,
  type Target,
} from '../src/datapath/structs.js';
import { protoNumber, type Proto } from '../src/model/entry.js';

// ---- the reference: one Buffer call per field, offsets looked up by name

const macBytes = (mac: string): Buffer => Buffer.from(mac.replace(/[:-]/g, ''), 'hex');

function refKey(k: AppKey): Buffer {
  const L = LAYOUT.rs_app_key.fields;
  const b = Buffer.alloc(LAYOUT.rs_app_key.size);
  const a = parseAddress(k.address);
  b.writeUInt8(a.family, L.family.offset);
  b.writeUInt8(protoNumber(k.proto), L.proto.offset);
  b.writeUInt16BE(k.port, L.port.offset);
  a.bytes.copy(b, L.addr.offset);
  return b;
}

function refTarget(v: Target, b: Buffer, L: Record<'ifindex' | 'dmac' | 'smac' | 'path' | 'slow_path', { offset: number }>): void {
  b.writeUInt32LE(v.ifindex, L.ifindex.offset);
  macBytes(v.dmac).copy(b, L.dmac.offset);
  macBytes(v.smac).copy(b, L.smac.offset);
  b.writeUInt8(PATHS.indexOf(v.path), L.path.offset);
  b.writeUInt8(PATHS.indexOf(v.slowPath), L.slow_path.offset);
}

function refRedirect(v: RedirectValue): Buffer {
  const L = LAYOUT.rs_redirect_value.fields;
  const b = Buffer.alloc(LAYOUT.rs_redirect_value.size);
  b.writeUInt32LE(v.action === 'ports-only' ? PORTS_ONLY_ACTION : ACTIONS[v.action], L.action.offset);
  b.writeUInt32LE(v.appId, L.app_id.offset);
  b.writeUInt32LE(v.ports ? 1 : 0, L.flags.offset);
  if (v.action === 'local' || v.action === 'preserve') refTarget(v, b, L);
  if (v.action === 'forward' || v.action === 'preserve') {
    const a = parseAddress(v.tunnel);
    b.writeUInt8(a.family, L.tunnel_family.offset);
    a.bytes.copy(b, L.tunnel_dst.offset);
  }
  return b;
}

function refDeliver(v: DeliverValue): Buffer {
  const L = LAYOUT.rs_deliver_value.fields;
  const b = Buffer.alloc(LAYOUT.rs_deliver_value.size);
  b.writeUInt32LE(v.appId, L.app_id.offset);
  refTarget(v, b, L);
  return b;
}

// ---- pseudo-random entries (a fixed seed: a failure repeats)

let seed = 12345;
const rnd = (n: number): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return Math.floor((seed / 2 ** 32) * n);
};
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
const v4 = (): string => `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
const v6 = (): string =>
  pick([
    () => `fd00::${rnd(65536).toString(16)}`,
    () => `2001:db8:${rnd(16)}::${rnd(16)}:1`,
    () => `::ffff:${v4()}`, // IPv4, spelled as IPv6
    () => Array.from({ length: 8 }, () => rnd(65536).toString(16)).join(':'),
  ])();
const address = (): string => (rnd(3) < 2 ? v4() : v6());
// a few tunnels and MACs, so the memos both hit and miss
const TUNNELS = ['10.2.0.2', '10.2.0.3', 'fd00:2::2', '::ffff:10.2.0.4'];
const MACS = ['02:00:00:00:00:01', '02:00:00:00:00:02', 'AA-BB-CC-DD-EE-FF', 'de:ad:BE:ef:00:7f'];
const target = (): Target => ({ ifindex: rnd(2 ** 32), dmac: pick(MACS), smac: pick(MACS), path: pick(PATHS), slowPath: pick(PATHS) });
const PROTOS: Proto[] = ['any', 'tcp', 'udp', 'icmp', 6, 17, 0, 132];
const key = (): AppKey => {
  const proto = pick(PROTOS);
  return { address: address(), proto, port: proto === 'tcp' || proto === 'udp' || proto === 6 || proto === 17 ? rnd(65536) : 0 };
};
const redirect = (): RedirectValue => {
  const ports = rnd(2) ? { ports: true as const } : {};
  const appId = rnd(2 ** 32);
  const tunnel = rnd(4) ? pick(TUNNELS) : address();
  return pick<() => RedirectValue>([
    () => ({ action: 'forward', appId, tunnel, ...ports }),
    () => ({ action: 'local', appId, ...target(), ...ports }),
    () => ({ action: 'preserve', appId, tunnel, ...target(), ...ports }),
    () => ({ action: 'ports-only', appId, ...ports }),
  ])();
};

/** Encode at offset 3 of a buffer full of `fill`: the struct's bytes, and whether anything around them changed. */
function encoded<T>(codec: { size: number; encode(v: T, into: Buffer, offset: number): void }, v: T, fill: number): { bytes: Buffer; clean: boolean } {
  const b = Buffer.alloc(codec.size + 6, fill);
  codec.encode(v, b, 3);
  return { bytes: b.subarray(3, 3 + codec.size), clean: [0, 1, 2].every((i) => b[i] === fill) && [0, 1, 2].every((i) => b[3 + codec.size + i] === fill) };
}

t.test('the fast encoders write exactly the reference bytes, padding zero, nothing around them', async (t) => {
  const N = 3000;
  let differ = 0;
  let dirty = 0;
  const check = <T>(name: string, codec: { size: number; encode(v: T, into: Buffer, offset: number): void }, v: T, ref: Buffer): void => {
    for (const fill of [0x00, 0xa5]) {
      const e = encoded(codec, v, fill);
      if (!e.bytes.equals(ref)) {
        if (differ++ < 5) t.fail(`${name} ${JSON.stringify(v)}: ${e.bytes.toString('hex')}, reference ${ref.toString('hex')}`);
      }
      if (!e.clean) dirty++;
    }
  };
  for (let i = 0; i < N; i++) {
    const k = key();
    check('rs_app_key', appKeyCodec, k, refKey(k));
    const r = redirect();
    check('rs_redirect_value', redirectValueCodec, r, refRedirect(r));
    const d = { appId: rnd(2 ** 32), ...target() };
    check('rs_deliver_value', deliverValueCodec, d, refDeliver(d));
  }
  t.equal(differ, 0, `${3 * N} entries, each into a zeroed and a dirty buffer, as the reference`);
  t.equal(dirty, 0, 'no byte before or after the struct written');
});

t.test('IPv6 written character by character as the general parser reads it, errors from the general parser', async (t) => {
  const valid = ['::', '::1', 'fd00::', 'FD00:0::1', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', '::ffff:a00:1', '::ffff:10.0.0.1', '64:ff9b::10.1.2.3', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '0:0:0:0:0:ffff:0:0'];
  for (const a of valid) {
    const b = Buffer.alloc(20, 0xee);
    const family = writeAddress(a, b, 2);
    t.same({ family, bytes: b.subarray(2, 18) }, parseAddress(a), `${a}: as parseAddress`);
    t.ok(b[0] === 0xee && b[1] === 0xee && b[18] === 0xee && b[19] === 0xee, `${a}: nothing written around the 16 bytes`);
  }
  const invalid = [':', ':::', '1::2::3', ':1::', '1::2:', '12345::', 'g::1', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8::', 'fd00::1%eth0', '::ffff:01.2.3.4', 'fd00: :1'];
  for (const a of invalid) {
    let expected = '';
    try {
      parseAddress(a);
    } catch (err) {
      expected = (err as Error).message;
    }
    t.throws(() => writeAddress(a, Buffer.alloc(16), 0), { name: 'TypeError', message: expected }, `${JSON.stringify(a)}: refused with parseAddress's message`);
  }
});

t.test('batches: the same entries back to back in one buffer, as one by one', async (t) => {
  const entries = Array.from({ length: 500 }, () => redirect());
  const all = Buffer.alloc(entries.length * redirectValueCodec.size, 0xff);
  entries.forEach((v, i) => redirectValueCodec.encode(v, all, i * redirectValueCodec.size));
  const one = Buffer.concat(entries.map(refRedirect));
  t.ok(all.equals(one), 'one buffer written entry after entry holds each entry\'s reference bytes');
});

t.test('bad input: clear errors, the memos keep no bad text', async (t) => {
  const local = (mac: unknown): RedirectValue =>
    ({ action: 'local', appId: 1, ifindex: 2, dmac: mac, smac: '02:00:00:00:00:02', path: 'xdp', slowPath: 'tc' }) as RedirectValue;
  const enc = (v: RedirectValue): Buffer => {
    const b = Buffer.alloc(redirectValueCodec.size);
    redirectValueCodec.encode(v, b, 0);
    return b;
  };
  for (const bad of ['02:00:00:00:00:0g', '02:00-00:00:00:01', '2:00:00:00:00:01', '02:00:00:00:00:01 ', '02:00:00:00:00', '02.00.00.00.00.01', '', 5, undefined]) {
    t.throws(() => enc(local(bad)), { name: 'TypeError', message: /invalid MAC address/ }, `MAC ${JSON.stringify(bad)} refused`);
    t.throws(() => parseMac(bad as string), TypeError, `parseMac refuses ${JSON.stringify(bad)} too`);
  }
  // a bad MAC right after a good one, then the good one again: the memo still holds the good one's bytes
  enc(local('02:00:00:00:00:01'));
  t.throws(() => enc(local('02:00:00:00:00:0x')), TypeError);
  t.ok(enc(local('02:00:00:00:00:01')).equals(refRedirect(local('02:00:00:00:00:01'))), 'good MAC after a refused one encodes right');
  t.same([...parseMac('AA-bb-CC-dd-EE-ff')], [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], 'either case, either separator');

  const fwd = (tunnel: unknown): RedirectValue => ({ action: 'forward', appId: 1, tunnel }) as RedirectValue;
  for (const bad of ['10.2.0.256', '10.2.0', 'fd00::1%eth0', undefined]) {
    t.throws(() => enc(fwd(bad)), { name: 'TypeError', message: /^tunnel address: invalid/ }, `tunnel ${JSON.stringify(bad)} refused, naming the field`);
  }
  t.ok(enc(fwd('10.2.0.2')).equals(refRedirect(fwd('10.2.0.2'))), 'a good tunnel after refused ones encodes right');
  t.throws(() => enc({ action: 'teleport', appId: 1 } as unknown as RedirectValue), { name: 'TypeError', message: /unknown action "teleport"/ });
  t.throws(() => enc({ action: 'forward', appId: -1, tunnel: '10.2.0.2' }), RangeError, 'appId out of range');
  t.throws(() => appKeyCodec.encode({ address: '10.0.0.1', proto: 'any', port: 80 }, Buffer.alloc(20), 0), RangeError, 'a port without tcp/udp');
  t.throws(() => appKeyCodec.encode({ address: '10.0.0.01', proto: 'any', port: 0 }, Buffer.alloc(20), 0), { name: 'TypeError', message: /^application key address: invalid/ });

  const short = Buffer.alloc(30, 0x77);
  t.throws(() => redirectValueCodec.encode(fwd('10.2.0.2'), short, 0), { name: 'RangeError', message: /rs_redirect_value needs 48 bytes at offset 0 of a 30-byte buffer/ });
  t.throws(() => appKeyCodec.encode({ address: '10.0.0.1', proto: 'any', port: 0 }, short, 11), RangeError);
  t.ok(short.every((x) => x === 0x77), 'nothing written when the struct does not fit');
});

t.test('BpfMap: bound scratch buffers, no bytes carried from one entry to the next', async (t) => {
  using m = BpfMap.create({ type: MapType.HASH, name: 'rst_codecs', maxEntries: 8 }, appKeyCodec, redirectValueCodec);
  using raw = BpfMap.fromId(m.info.id, rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
  const k: AppKey = { address: '10.9.0.1', proto: 'tcp', port: 443 };
  const local: RedirectValue = { action: 'local', appId: 3, ifindex: 7, dmac: 'aa:bb:cc:dd:ee:ff', smac: '02:00:00:00:00:02', path: 'tc', slowPath: 'kernel' };
  const fwd: RedirectValue = { action: 'forward', appId: 4, tunnel: 'fd00:2::9' };
  m.update(k, local);
  t.same(m.lookup(k), local, 'reads back');
  m.update(k, fwd, 'exist');
  t.same(m.lookup(k), fwd, 'replaced');
  t.ok(raw.lookup(refKey(k))!.equals(refRedirect(fwd)), 'the kernel holds the reference bytes: no MAC or path left from the LOCAL value');
  t.equal(m.lookup({ address: '10.9.0.1', proto: 'udp', port: 443 }), undefined, 'another key (same scratch buffer) is absent');
  t.throws(() => m.update(k, fwd, 'noexist'), { code: 'EEXIST' });
  t.throws(() => m.update({ ...k, port: 70000 }, fwd), RangeError, 'refused before the syscall');
  t.same(m.lookup(k), fwd, 'a refused update leaves the entry as it was');
  t.equal(m.delete(k), true);
  t.equal(m.delete(k), false, 'deleted once');
  t.equal(m.updateBatch(Array.from({ length: 8 }, (_, i) => [{ address: `10.9.1.${i}`, proto: 'any', port: 0 }, { ...fwd, appId: i }] as const)), 8);
  t.same(m.lookup({ address: '10.9.1.5', proto: 'any', port: 0 }), { ...fwd, appId: 5 }, 'batched entries read back');
});
