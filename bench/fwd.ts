/**
 * fwd ns/pkt (issue 7): rs_uplink's FORWARD path (parse, config, the
 * whole-address lookup — the entry has no port entries beside it, so no
 * second lookup —, next hop from the per-CPU rs_nexthop cache, refreshed by
 * bpf_fib_lookup every 20 ms, TTL, IPIP encap with the flow hash, counters,
 * XDP_TX) against, in the same run and on the same 64-byte
 * frame: the reference program bench_ref_ipip (one lookup + IPIP encap +
 * XDP_TX, next-hop MACs in its entry, NO fib lookup: its advantage) and the
 * floor bench_tx (XDP_TX only).
 *
 * Each figure is the kernel's mean ns per run of BPF_PROG_TEST_RUN with
 * repeat ≥ 1e6, through bench_driver (bench/ref_ipip.c), which restores the
 * frame before every run so each repetition takes the FORWARD path; the
 * harness checks that by counters (every repetition counted as forwarded,
 * nothing dropped or passed). Rounds are interleaved; medians are reported.
 * Rows: raw (driver included in both), net of the driver (floor subtracted
 * from both), and against the floor.
 */
import { ratioRow, median, type Benchmark, type Row } from './harness.js';
import { BenchNet, BenchObject, NET, UplinkObject, appAddr, frameTo, timeThroughDriver, xdpCtx } from './xdp.js';

export const GOAL = 1.25;

export const fwd: Benchmark = {
  name: 'fwd',
  title: 'rs_uplink FORWARD ns/pkt vs ref_ipip (1 lookup + IPIP + TX) and XDP_TX, testRun repeat 1e6',
  async run(ctx): Promise<Row[]> {
    const repeat = ctx.quick ? 20_000 : 1_000_000;
    const rounds = ctx.quick ? 2 : 7;
    using net = new BenchNet('rsbf');
    using bench = new BenchObject(1);
    using up = new UplinkObject(1);
    up.populate(1);
    bench.populateRef(1);
    const frame = frameTo(appAddr(0));
    bench.setTemplate(frame, 0);

    // the same packet, and both produce an IPIP frame to the tunnel endpoint
    for (const p of [bench.ref, up.program]) {
      bench.progs.update(0, p.fd);
      const r = net.run(() => bench.driver.testRun(frame, { repeat: 1, ctx: xdpCtx(frame.length, net.eth0) }));
      const out = r.data;
      if (r.retval !== 3 || out.readUInt16BE(12) !== 0x0800 || out[23] !== 4 || out.subarray(30, 34).join('.') !== NET.peer4) {
        throw new Error(`${p.name} did not encapsulate the benchmark frame (verdict ${r.retval}, out ${out.subarray(0, 34).toString('hex')})`);
      }
    }

    const targets = { tx: bench.tx, ref: bench.ref, rs: up.program } as const;
    const ns: Record<keyof typeof targets, number[]> = { tx: [], ref: [], rs: [] };
    for (const p of Object.values(targets)) timeThroughDriver(net, bench, p, frame, Math.min(repeat, 10_000)); // warm up
    const fwd0 = up.forwarded(0);
    const other0 = up.notForwarded();
    const order = Object.keys(targets) as (keyof typeof targets)[];
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < order.length; i++) {
        const name = order[(i + r) % order.length]!;
        ns[name].push(timeThroughDriver(net, bench, targets[name], frame, repeat));
      }
    }
    const forwarded = up.forwarded(0) - fwd0;
    if (forwarded !== BigInt(rounds * repeat) || up.notForwarded() !== other0) {
      throw new Error(`rs_uplink forwarded ${forwarded} of ${rounds * repeat} repetitions (others dropped or passed): not measuring FORWARD`);
    }
    const tx = median(ns.tx);
    const ref = median(ns.ref);
    const rs = median(ns.rs);
    ctx.log(`ns/pkt medians over ${rounds} rounds × ${repeat}: tx ${tx}, ref ${ref}, rs ${rs} (raw: ${JSON.stringify(ns)})`);
    const how = `BPF_PROG_TEST_RUN repeat ${repeat} via bench_driver, median of ${rounds} interleaved rounds, 64 B UDP, fib lookup SUCCESS in a netns`;
    return [
      ratioRow({ name: 'fwd ns/pkt', figure: rs, baseline: ref, unit: 'ns', baselineName: 'ref_ipip', maxRatio: GOAL, note: `${how}; driver cost (${tx} ns, = floor row) included in both` }),
      ratioRow({
        name: 'fwd ns/pkt, net of driver',
        figure: rs - tx,
        baseline: ref - tx,
        unit: 'ns',
        baselineName: 'ref_ipip',
        maxRatio: GOAL,
        note: `${how}; floor (driver + XDP_TX) subtracted from both: the programs' own cost. ref_ipip has its next hop in its entry (rs_uplink: a cached fib answer), no counters, no TTL/MTU checks, no flow hash`,
      }),
      ratioRow({ name: 'fwd ns/pkt vs floor', figure: rs, baseline: tx, unit: 'ns', baselineName: 'XDP_TX', maxRatio: null, note: how }),
    ];
  },
};

