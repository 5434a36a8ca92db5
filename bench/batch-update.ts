/**
 * batch update (issues 4 and 7): entries/s
 *  - from TypeScript, BpfMap.updateBatch in batches of 10,000 rs_redirect
 *    entries (codec encoding included), against the same batches in C
 *    through libbpf's bpf_map_update_batch (bench/out/update_c) on the same
 *    pinned map; goal ≥ 0.9× C (issue #16);
 *  - through a real agent's batch endpoint: POST /v1/batch with 100,000
 *    put-app ops (FORWARD entries) end to end — validation, planning, the
 *    batched map updates, logging, answer — against C's rate of the same run
 *    (informational: the floor of the map writes alone).
 */
import { BpfMap, MapType, rawBytes } from '../src/bpf/index.js';
import { appKeyCodec, redirectValueCodec, type AppKey, type RedirectValue } from '../src/datapath/structs.js';
import { uniquePrefix } from '../src/testbed/netns.js';
import { AgentRig, benchAddr, postBatch } from './agent-rig.js';
import { removePinDir, runUpdateC, taskRuntimeNs } from './common.js';
import { median, ratioRow, type Benchmark, type Row } from './harness.js';

const BATCH = 10_000;

export const batchUpdate: Benchmark = {
  name: 'batch-update',
  title: 'batch update entries/s: TS updateBatch (10k) vs C libbpf; agent POST /v1/batch of 100k entries',
  async run(ctx): Promise<Row[]> {
    const n = ctx.quick ? 20_000 : 200_000;
    const rounds = ctx.quick ? 1 : 7;
    const nAgent = ctx.quick ? 5_000 : 100_000;
    const rows: Row[] = [];
    const pin = `/sys/fs/bpf/${uniquePrefix('rsbb')}`;
    const map = BpfMap.create({ type: MapType.HASH, name: 'rsb_batch', maxEntries: n }, appKeyCodec, redirectValueCodec);
    let cRate = 0;
    try {
      map.pin(pin);
      const value: RedirectValue = { action: 'forward', appId: 7, tunnel: '10.2.0.2' };
      const v = Buffer.alloc(redirectValueCodec.size);
      redirectValueCodec.encode(value, v, 0);
      const entries: (readonly [AppKey, RedirectValue])[] = Array.from({ length: n }, (_, i) => [{ address: benchAddr(i), proto: 'any', port: 0 }, value] as const);
      using raw = BpfMap.openPinned(pin, rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
      const rawEntries = entries.map(([k]) => {
        const b = Buffer.alloc(appKeyCodec.size);
        appKeyCodec.encode(k, b, 0);
        return [b, v] as const;
      });
      // the same batches as contiguous buffers, as updateEncoded takes them
      const keysEncoded = Buffer.concat(rawEntries.map(([k]) => k));
      const valuesEncoded = Buffer.concat(rawEntries.map(() => v));
      const ks = appKeyCodec.size;
      const vs = redirectValueCodec.size;
      const ts: number[] = [];
      const tsRaw: number[] = [];
      const tsEncoded: number[] = [];
      const c: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < n; i += BATCH) map.updateBatch(entries.slice(i, i + BATCH));
        ts.push((n * 1e9) / Number(process.hrtime.bigint() - t0));
        const t1 = process.hrtime.bigint();
        for (let i = 0; i < n; i += BATCH) raw.updateBatch(rawEntries.slice(i, i + BATCH));
        tsRaw.push((n * 1e9) / Number(process.hrtime.bigint() - t1));
        const t2 = process.hrtime.bigint();
        for (let i = 0; i < n; i += BATCH) {
          const count = Math.min(BATCH, n - i);
          map.updateEncoded(keysEncoded.subarray(i * ks, (i + count) * ks), valuesEncoded.subarray(i * vs, (i + count) * vs), count);
        }
        tsEncoded.push((n * 1e9) / Number(process.hrtime.bigint() - t2));
        const cr = await runUpdateC({ mode: 'batch', pin, n, arg: BATCH, valueHex: v.toString('hex') });
        c.push((n * 1e9) / cr.ns);
      }
      if (map.count() !== n) throw new Error(`map holds ${map.count()} entries, not ${n}: TS and C wrote different keys`);
      const tsRate = median(ts);
      cRate = median(c);
      const rawRate = median(tsRaw);
      const encodedRate = median(tsEncoded);
      const fmt = (xs: number[]): string => xs.map((x) => Math.round(x / 1000)).join(',');
      ctx.log(
        `TS ${Math.round(tsRate)} entries/s (pre-encoded ${Math.round(rawRate)}, updateEncoded ${Math.round(encodedRate)}), C ${Math.round(cRate)} entries/s ` +
          `(rounds, k/s: TS ${fmt(ts)}, C ${fmt(c)})`,
      );
      rows.push(
        ratioRow({
          name: 'batch update',
          figure: tsRate,
          baseline: cRate,
          unit: 'entries/s',
          baselineName: 'C libbpf bpf_map_update_batch',
          maxRatio: null,
          minRatio: 0.9,
          note: `${n} rs_redirect entries per round in batches of ${BATCH} (the first TS round creates, the rest replace), median of ${rounds} rounds; TS includes building the key/value buffers with the codecs`,
          extra: { tsPreEncodedPerS: Math.round(rawRate) },
        }),
        ratioRow({
          name: 'batch update, pre-encoded',
          figure: rawRate,
          baseline: cRate,
          unit: 'entries/s',
          baselineName: 'C libbpf bpf_map_update_batch',
          maxRatio: null,
          note: 'the same batches through BpfMap with raw Buffer codecs (encoded before timing, each entry copied into the batch buffer); the difference to the row above is the codecs',
        }),
        ratioRow({
          name: 'batch update, updateEncoded',
          figure: encodedRate,
          baseline: cRate,
          unit: 'entries/s',
          baselineName: 'C libbpf bpf_map_update_batch',
          maxRatio: null,
          note: 'the same batches from contiguous buffers encoded before timing, through BpfMap.updateEncoded: the addon and the kernel alone, no per-entry work in JS',
        }),
      );
    } finally {
      map.close();
      removePinDir(pin);
    }

    const rig = await AgentRig.create({
      hosts: ['A'],
      apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }],
      agentArgs: ['--capacity', String(Math.max(65536, 2 ** Math.ceil(Math.log2(nAgent + 1))))],
    });
    try {
      const ops = Array.from({ length: nAgent }, (_, i) => ({
        op: 'put-app',
        name: `b${i}`,
        address: benchAddr(i),
        dev: 'vx',
        action: { type: 'forward', tunnel: '10.2.0.2' },
      }));
      const cpu0 = taskRuntimeNs(rig.agent('A').pid);
      const ms = await postBatch(rig.agent('A'), ops);
      const cpuMs = (taskRuntimeNs(rig.agent('A').pid) - cpu0) / 1e6; // the agent's main thread: what the batch cost it, whatever else ran
      const rate = (nAgent * 1000) / ms;
      const st = (await rig.agent('A').request('GET', '/status')).json as { entries: { apps: number } };
      if (st.entries.apps !== nAgent) throw new Error(`agent holds ${st.entries.apps} apps after the batch, not ${nAgent}`);
      ctx.log(`agent batch of ${nAgent}: ${ms.toFixed(0)} ms, ${Math.round(rate)} entries/s; agent main thread on CPU ${cpuMs.toFixed(0)} ms`);
      rows.push(
        ratioRow({
          name: `agent batch ${nAgent >= 1000 ? `${nAgent / 1000}k` : nAgent} entries`,
          figure: rate,
          baseline: cRate,
          unit: 'entries/s',
          baselineName: 'C libbpf batch (above)',
          maxRatio: null,
          note:
            `one POST /v1/batch of ${nAgent} put-app ops (FORWARD) to a real agent over loopback HTTP, end to end (${ms.toFixed(0)} ms; the agent's main thread ran ${cpuMs.toFixed(0)} ms of it): ` +
            'JSON parse, validation, plan, intent record, batched updates of meta + names + rs_redirect + counters, logging',
          extra: { ms: Math.round(ms), entries: nAgent, agentCpuMs: Math.round(cpuMs) },
        }),
      );
    } finally {
      await rig.close();
    }
    return rows;
  },
};
