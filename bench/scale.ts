/**
 * scale (issue 7): rs_uplink FORWARD ns/pkt with 1, 1k, 100k and 1M entries
 * in its redirect map, against the reference program with the same number
 * of entries (same 20-byte key layout), in the same run.
 *
 * Keys are random over the populated set: bench_driver puts the next
 * destination of a shuffled list of every populated key into each
 * repetition's frame (one BPF_PROG_TEST_RUN, repeat ≥ 1e6, each repetition
 * a different key, the list walked in order so only the map lookups are
 * random), so hash-table cache misses count as they would with many flows.
 * App ids spread over 65,536 counters like real applications. The driver's
 * own cost (restore + key walk + tail call) is measured by driving XDP_TX
 * and reported; rows are raw and net of it.
 */
import { median, ratioRow, type Benchmark, type Row } from './harness.js';
import { BenchNet, BenchObject, UplinkObject, appAddr, frameTo, shuffled, timeThroughDriver } from './xdp.js';
import { GOAL } from './fwd.js';

const label = (n: number): string => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n));

export const scale: Benchmark = {
  name: 'scale',
  title: 'rs_uplink FORWARD ns/pkt at 1/1k/100k/1M entries, random keys, vs ref_ipip at the same size',
  async run(ctx): Promise<Row[]> {
    const sizes = ctx.quick ? [1, 1000] : [1, 1000, 100_000, 1_000_000];
    const repeat = ctx.quick ? 20_000 : 1_000_000;
    const rounds = ctx.quick ? 2 : 3;
    const rows: Row[] = [];
    using net = new BenchNet('rsbs');
    for (const n of sizes) {
      using bench = new BenchObject(n);
      using up = new UplinkObject(n);
      const t0 = performance.now();
      up.populate(n);
      bench.populateRef(n);
      bench.setKeys(shuffled(n));
      const frame = frameTo(appAddr(0));
      bench.setTemplate(frame, n);
      ctx.log(`${label(n)} entries populated in ${(performance.now() - t0).toFixed(0)} ms`);

      const targets = { tx: bench.tx, ref: bench.ref, rs: up.program } as const;
      const ns: Record<keyof typeof targets, number[]> = { tx: [], ref: [], rs: [] };
      const fwd0 = up.forwardedTotal();
      const other0 = up.notForwarded();
      const order = Object.keys(targets) as (keyof typeof targets)[];
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < order.length; i++) {
          const name = order[(i + r) % order.length]!;
          ns[name].push(timeThroughDriver(net, bench, targets[name], frame, repeat));
        }
      }
      const forwarded = up.forwardedTotal() - fwd0;
      if (forwarded !== BigInt(rounds * repeat) || up.notForwarded() !== other0) {
        throw new Error(`${label(n)}: rs_uplink forwarded ${forwarded} of ${rounds * repeat} repetitions: not measuring FORWARD`);
      }
      const tx = median(ns.tx);
      const ref = median(ns.ref);
      const rs = median(ns.rs);
      ctx.log(`${label(n)}: tx ${tx}, ref ${ref}, rs ${rs} ns (raw ${JSON.stringify(ns)})`);
      const how = `repeat ${repeat}, each repetition a different key of ${label(n)} (shuffled), median of ${rounds} rounds; driver cost ${tx} ns`;
      rows.push(
        ratioRow({ name: `scale ${label(n)} entries`, figure: rs, baseline: ref, unit: 'ns', baselineName: `ref_ipip ${label(n)}`, maxRatio: GOAL, note: `${how}, included in both` }),
        ratioRow({
          name: `scale ${label(n)} entries, net of driver`,
          figure: rs - tx,
          baseline: ref - tx,
          unit: 'ns',
          baselineName: `ref_ipip ${label(n)}`,
          maxRatio: GOAL,
          note: `${how}, subtracted from both`,
        }),
      );
    }
    return rows;
  },
};
