/**
 * 100,000 distinct random and mutated frames through rs_uplink (and a sample
 * through rs_pass) with BPF_PROG_TEST_RUN, inside a namespace where the fib
 * lookup answers every way (test/lib/fixture-net.ts), with entries of every
 * kind installed.
 *
 * Per packet: the verdict is PASS, DROP, TX or REDIRECT (never ABORTED or
 * anything else); a DROP leaves the frame untouched; a PASS leaves it
 * untouched unless it is a FORWARD to an unresolved next hop (then it is the
 * encapsulated packet to that tunnel endpoint); every outer IPv4 header we
 * write has a valid checksum.
 *
 * Counters, the accounting this test defines and asserts (N frames, U of
 * them without an IP ethertype, which the program ignores uncounted):
 *   (1) every IP frame is counted exactly once in: an app action (local,
 *       forward, deliver), a drop reason, or the events unparsed / no_entry
 *       / ttl / icmp_sent — packets and bytes (no_neigh is an extra mark on
 *       a forwarded packet, not a separate outcome);
 *   (2) PASS = U + unparsed + no_entry + no_neigh + ttl;
 *   (3) DROP = drops; ICMP errors sent (TX from our address) = icmp_sent;
 *   (4) REDIRECT + TX − ICMP errors = local + forward + deliver − no_neigh.
 *
 * The seed is printed; RS_FUZZ_SEED=<n> replays a run.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { inNetns, xdpVerdictName } from '../src/bpf/index.js';
import { parseIPv4 } from '../src/model/address.js';
import { DROP_REASONS, EVENTS, type AppKey, type EventName, type RedirectValue } from '../src/datapath/structs.js';
import { NET, createFixtureNet } from './lib/fixture-net.js';
import { ETH_P, IPPROTO, checksumOk, eth, icmp, icmp6Echo, icmpEcho, ipv4, ipv6, pattern, raw, tcp, udp } from './lib/packets.js';
import { APP_SLOTS, Uplink, asAgentWrites, xdpCtx } from './lib/uplink.js';

const TOTAL = 100_000;
const seed = Number(process.env.RS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
t.comment(`fuzz seed ${seed} (RS_FUZZ_SEED=${seed} to replay)`);

// mulberry32
let state = seed >>> 0;
function rnd(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let x = state;
  x = Math.imul(x ^ (x >>> 15), x | 1);
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number): number => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const bytes = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
};

// ------------------------------------------------------------- setting --

const net = createFixtureNet('rsfz');
t.teardown(() => net.destroy());
const up = new Uplink();
t.teardown(() => up.close());

const CLIENT = '198.18.0.2';
const CLIENT6 = '2001:db8:c::2';
const X = '10.200.0.10'; // FORWARD over v4 (TX); udp/5000 LOCAL
const Z = '10.200.0.12'; // FORWARD to an unresolved neighbour (PASS + no_neigh)
const W = '10.200.0.13'; // FORWARD out of eth1 (REDIRECT)
const V = '10.200.0.14'; // FORWARD with no route (DROP no_route)
const L = '10.200.0.15'; // LOCAL
const Y = '10.200.0.11'; // no entry
const X6 = 'fd00:200::10'; // FORWARD over v6
const X6b = 'fd00:200::12'; // FORWARD over v4
const L6 = 'fd00:200::15'; // LOCAL
const Y6 = 'fd00:200::11'; // no entry
const localV = { action: 'local', appId: 4, ifindex: 42, dmac: '02:00:00:00:10:10', smac: '02:00:00:00:10:01', path: 'xdp', slowPath: 'tc-peer' } as const;
const k = (address: string, proto: AppKey['proto'] = 'any', port = 0): AppKey => ({ address, proto, port });

up.setConfig({ tunnelAddr4: NET.up4, tunnelAddr6: NET.up6 });
// written as the agent writes them: X's whole-address entry carries the ports flag
for (const [key, v] of asAgentWrites([
  [k(X), { action: 'forward', appId: 1, tunnel: NET.peer4 }],
  [k(X, 'udp', 5000), { ...localV, appId: 2 }],
  [k(Z), { action: 'forward', appId: 3, tunnel: NET.unresolved4 }],
  [k(W), { action: 'forward', appId: 5, tunnel: NET.third4 }],
  [k(V), { action: 'forward', appId: 6, tunnel: NET.unroutable4 }],
  [k(L), localV],
  [k(X6), { action: 'forward', appId: 7, tunnel: NET.peer6 }],
  [k(X6b), { action: 'forward', appId: 8, tunnel: NET.peer4 }],
  [k(L6), { ...localV, appId: 9 }],
] as [AppKey, RedirectValue][])) {
  up.redirect.update(key, v);
}
const deliverV = { ifindex: 43, dmac: '02:00:00:00:20:10', smac: '02:00:00:00:20:01', path: 'xdp', slowPath: 'tc-peer' } as const;
up.deliver.update(k(X), { appId: 10, ...deliverV });
up.deliver.update(k(X6), { appId: 11, ...deliverV });
const APP_IDS = Array.from({ length: APP_SLOTS }, (_, i) => i);

// ----------------------------------------------------------- templates --

const v4dsts = [X, Z, W, V, L, Y, NET.up4];
const v6dsts = [X6, X6b, L6, Y6, NET.up6];
const fromRouter = { dst: NET.upMac, src: NET.routerMac };

function l4For(v6: boolean): ReturnType<typeof udp> {
  const n = pick([0, 8, 32, 100, 600, 1400, 1460]);
  switch (int(4)) {
    case 0:
      return udp(1024 + int(60000), pick([5000, 5001, 53, int(65536)]), pattern(n, int(256)));
    case 1:
      return tcp(1024 + int(60000), pick([5000, 80, 443]), { flags: pick([0x02, 0x10, 0x18]) }, pattern(n % 1400));
    case 2:
      return v6 ? icmp6Echo(int(65536), int(65536), pattern(n)) : icmpEcho(int(65536), int(65536), pattern(n));
    default:
      return v6 ? raw(IPPROTO.ICMPV6, Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), pattern(n)])) : icmp(3, 4, Buffer.alloc(4), pattern(n));
  }
}

function template(): Buffer {
  const vlan = rnd() < 0.15 ? { vlan: int(4096) } : {};
  const ttl = pick([64, 64, 64, 2, 1, 0, 255]);
  const kind = int(6);
  if (kind === 0 || kind === 1) {
    const frag = rnd() < 0.1;
    return eth(
      { ...fromRouter, ...vlan },
      ipv4(
        { src: CLIENT, dst: pick(v4dsts), ttl, df: rnd() < 0.8, mf: frag && rnd() < 0.5, fragOffset: frag ? int(200) : 0, tos: int(256), id: int(65536), ...(rnd() < 0.1 ? { options: Buffer.from([1, 1, 1, 0]) } : {}) },
        l4For(false),
      ),
    );
  }
  if (kind === 2 || kind === 3) {
    return eth({ ...fromRouter, ...vlan }, ipv6({ src: CLIENT6, dst: pick(v6dsts), hopLimit: ttl, tclass: int(256), flow: int(1 << 20) }, l4For(true)));
  }
  // tunnel packets to us (and near misses)
  const inner =
    rnd() < 0.5
      ? ipv4({ src: CLIENT, dst: pick([X, Y, L]), ttl }, l4For(false))
      : ipv6({ src: CLIENT6, dst: pick([X6, Y6]), hopLimit: ttl }, l4For(true));
  const innerProto = inner[0]! >> 4 === 4 ? IPPROTO.IPIP : IPPROTO.IPV6;
  const outer =
    kind === 4
      ? ipv4({ src: NET.peer4, dst: rnd() < 0.9 ? NET.up4 : NET.peer4, mf: rnd() < 0.05 }, raw(innerProto, inner))
      : ipv6({ src: NET.peer6, dst: rnd() < 0.9 ? NET.up6 : NET.peer6 }, raw(innerProto, inner));
  return eth({ ...fromRouter, ...vlan }, outer);
}

function mutate(f: Buffer): Buffer {
  let b = Buffer.from(f);
  const l3 = b.readUInt16BE(12) === ETH_P.VLAN ? 18 : 14;
  const n = 1 + int(3);
  for (let i = 0; i < n; i++) {
    switch (int(9)) {
      case 0: // flip bytes in the headers
        for (let j = 1 + int(4); j > 0; j--) b[int(Math.min(b.length, 120))] = int(256);
        break;
      case 1: // flip a byte anywhere
        b[int(b.length)] = int(256);
        break;
      case 2: // truncate
        b = b.subarray(0, 14 + int(Math.max(1, b.length - 14)));
        break;
      case 3: // junk at the end
        b = Buffer.concat([b, bytes(1 + int(64))]);
        break;
      case 4: // IPv4 ihl / version nibble
        if (b.length > l3) b[l3] = pick([0x45, 0x46, 0x44, 0x40, 0x4f, 0x65, 0x05, int(256)]);
        break;
      case 5: // a length field
        if (b.length > l3 + 6) {
          const v4 = b[l3]! >> 4 === 4;
          b.writeUInt16BE(pick([0, 1, 19, 20, 39, 40, 41, b.length - l3, b.length - l3 + 1, 0xffff, int(65536)]), l3 + (v4 ? 2 : 4));
        }
        break;
      case 6: // protocol / next header
        if (b.length > l3 + 9) b[l3 + (b[l3]! >> 4 === 4 ? 9 : 6)] = pick([4, 41, 6, 17, 1, 58, 44, 0, int(256)]);
        break;
      case 7: // ethertype
        b.writeUInt16BE(pick([ETH_P.IPV4, ETH_P.IPV6, ETH_P.VLAN, ETH_P.QINQ, ETH_P.ARP, int(65536)]), 12);
        break;
      default: // fragment bits / TTL
        if (b.length > l3 + 8) {
          if (b[l3]! >> 4 === 4) {
            b[l3 + 6] = pick([0x00, 0x20, 0x40, 0x60, int(256)]);
            b[l3 + 8] = pick([0, 1, 2, 255]);
          } else b[l3 + 7] = pick([0, 1, 2, 255]);
        }
    }
  }
  return b;
}

function randomFrame(): Buffer {
  const b = bytes(14 + int(400));
  if (rnd() < 0.7) b.writeUInt16BE(pick([ETH_P.IPV4, ETH_P.IPV6]), 12);
  if (rnd() < 0.5 && b.length > 14) b[14] = b.readUInt16BE(12) === ETH_P.IPV6 ? 0x60 | (b[14]! & 0xf) : 0x45;
  return b;
}

/** Whether the program sees an IP ethertype (at most one VLAN tag). */
function hasIpEthertype(b: Buffer): boolean {
  let type = b.readUInt16BE(12);
  if (type === ETH_P.VLAN || type === ETH_P.QINQ) {
    if (b.length < 18) return false;
    type = b.readUInt16BE(16);
  }
  return type === ETH_P.IPV4 || type === ETH_P.IPV6;
}

// ----------------------------------------------------------------- run --

t.test(`${TOTAL} distinct random and mutated frames: allowed verdicts, counters add up`, async (t) => {
  const seen = new Set<string>();
  const frames: Buffer[] = [];
  const templates = Array.from({ length: 2000 }, template);
  const t0 = performance.now();
  let attempts = 0;
  while (frames.length < TOTAL && attempts++ < TOTAL * 3) {
    const r = rnd();
    let f: Buffer;
    if (r < 0.05) f = pick(templates);
    else if (r < 0.15) f = template();
    else if (r < 0.85) f = mutate(pick(templates));
    else f = randomFrame();
    if (f.length < 14) continue;
    const id = createHash('md5').update(f).digest('base64');
    if (seen.has(id)) continue;
    seen.add(id);
    frames.push(f);
  }
  t.equal(frames.length, TOTAL, `${TOTAL} distinct frames generated in ${(performance.now() - t0).toFixed(0)} ms`);

  const before = up.snapshot(APP_IDS);
  const verdicts: Record<string, number> = {};
  const problems: string[] = [];
  let nonIp = 0;
  let ipBytes = 0n;
  let passEncap = 0;
  let icmpSent = 0;
  const up4 = parseIPv4(NET.up4);
  const unresolved4 = parseIPv4(NET.unresolved4);
  const problem = (what: string, f: Buffer): void => {
    if (problems.length < 10) problems.push(`${what}: ${f.toString('hex')}`);
  };
  const t1 = performance.now();
  inNetns(net.ns.name, () => {
    for (const f of frames) {
      const r = up.program.testRun(f, { repeat: 1, ctx: xdpCtx(f.length, net.eth0) });
      const v = xdpVerdictName(r.retval);
      verdicts[v] = (verdicts[v] ?? 0) + 1;
      if (hasIpEthertype(f)) ipBytes += BigInt(f.length);
      else nonIp++;
      const out = r.data;
      const outV4 = out.length >= 34 && out.readUInt16BE(12) === ETH_P.IPV4 && out[14] === 0x45;
      const fromUs = outV4 && out.subarray(26, 30).equals(up4);
      switch (v) {
        case 'PASS':
          if (!out.equals(f)) {
            if (fromUs && out.subarray(30, 34).equals(unresolved4) && out[23] === IPPROTO.IPIP) passEncap++;
            else problem('PASS modified the frame', f);
          }
          break;
        case 'DROP':
          if (!out.equals(f)) problem('DROP modified the frame', f);
          break;
        case 'TX':
        case 'REDIRECT':
          if (fromUs && !checksumOk(out.subarray(14, 34))) problem('outer IPv4 header checksum invalid', f);
          if (v === 'TX' && ((fromUs && out[23] === IPPROTO.ICMP) || (out.readUInt16BE(12) === ETH_P.IPV6 && out[20] === IPPROTO.ICMPV6 && out[54] === 2))) {
            icmpSent++;
          }
          break;
        default:
          problem(`verdict ${v}`, f);
      }
    }
  });
  const elapsed = performance.now() - t1;
  const after = up.snapshot(APP_IDS);
  t.comment(`ran ${TOTAL} frames in ${elapsed.toFixed(0)} ms; verdicts ${JSON.stringify(verdicts)}`);
  t.same(problems, [], 'every frame: allowed verdict, DROP/PASS untouched (except NO_NEIGH encap), our headers valid');
  t.same(Object.keys(verdicts).filter((v) => !['PASS', 'DROP', 'TX', 'REDIRECT'].includes(v)), [], 'verdicts ⊆ {PASS, DROP, TX, REDIRECT}');
  for (const v of ['PASS', 'DROP', 'TX', 'REDIRECT']) t.ok((verdicts[v] ?? 0) > 100, `${v} reached (${verdicts[v] ?? 0})`);

  // counters
  const d = (x: bigint, y: bigint): number => Number(y - x);
  let apps = 0;
  let appBytes = 0n;
  const byStat = { local: 0, forward: 0, deliver: 0 };
  for (const id of APP_IDS) {
    for (const s of ['local', 'forward', 'deliver'] as const) {
      const n = d(before.apps[id]![s].packets, after.apps[id]![s].packets);
      apps += n;
      byStat[s] += n;
      appBytes += after.apps[id]![s].bytes - before.apps[id]![s].bytes;
    }
  }
  const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, d(before.drops[r].packets, after.drops[r].packets)]));
  const dropBytes = DROP_REASONS.reduce((a, r) => a + after.drops[r].bytes - before.drops[r].bytes, 0n);
  const ev = Object.fromEntries(EVENTS.map((e) => [e, d(before.events[e].packets, after.events[e].packets)]));
  const evBytes = (e: EventName): bigint => after.events[e].bytes - before.events[e].bytes;
  const dropSum = Object.values(drops).reduce((a, b) => a + b, 0);
  t.comment(`apps ${JSON.stringify(byStat)}; drops ${JSON.stringify(drops)}; events ${JSON.stringify(ev)}; non-IP ${nonIp}`);

  const N = TOTAL;
  const outcomes = ['unparsed', 'no_entry', 'ttl', 'icmp_sent'] as const;
  t.equal(apps + dropSum + outcomes.reduce((a, e) => a + ev[e]!, 0), N - nonIp, '(1) every IP frame counted exactly once (packets)');
  t.equal(appBytes + dropBytes + outcomes.reduce((a, e) => a + evBytes(e), 0n), ipBytes, '(1) … and bytes = their frame lengths');
  t.equal(verdicts.PASS ?? 0, nonIp + ev.unparsed! + ev.no_entry! + ev.no_neigh! + ev.ttl!, '(2) PASS = non-IP + unparsed + no_entry + no_neigh + ttl');
  t.equal(verdicts.DROP ?? 0, dropSum, '(3) DROP = drops');
  t.equal(icmpSent, ev.icmp_sent, '(3) ICMP errors sent = icmp_sent');
  t.equal((verdicts.REDIRECT ?? 0) + (verdicts.TX ?? 0) - icmpSent, apps - ev.no_neigh!, '(4) REDIRECT + TX − ICMP = app actions − no_neigh');
  t.equal(passEncap, ev.no_neigh, 'every encapsulated PASS is a no_neigh event');
  t.equal(ev.kernel_path, 0, 'no kernel path: every entry here is on xdp');
  t.ok(drops.malformed! > 100 && ev.unparsed! > 100 && ev.no_neigh! > 0 && byStat.deliver > 0 && byStat.local > 0, 'the interesting paths were reached');
});

t.test('rs_pass passes every frame untouched', async (t) => {
  let bad = 0;
  for (let i = 0; i < 1000; i++) {
    const f = i % 2 ? mutate(template()) : randomFrame();
    const r = up.pass.testRun(f, { repeat: 1 });
    if (xdpVerdictName(r.retval) !== 'PASS' || !r.data.equals(f)) bad++;
  }
  t.equal(bad, 0, '1000 frames: PASS, unchanged');
});
