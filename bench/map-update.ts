/**
 * map update (issues 4 and 7): one entry update
 *  - from TypeScript through the typed map layer (BpfMap.update with the
 *    rs_redirect codecs: encode + one bpf syscall through the addon) against
 *    the same updates in C through libbpf (bench/out/update_c), on the same
 *    pinned map, same keys (1,024 existing keys, replaced in turn), same
 *    value; goal ≤ 1.5×;
 *  - through a real agent's HTTP API end to end (POST /v1/apps/:name/action,
 *    the SWITCH request: validate, plan, map update, log, answer) against
 *    `bpftool map update` of the same key and value on the agent's pinned
 *    map, in the same run (informational: one is a daemon request, the other
 *    a process per update).
 */
import { execFileSync } from 'node:child_process';
import { BpfMap, MapType, rawBytes } from '../src/bpf/index.js';
import { HttpAgentClient } from '../src/controller/agent-client.js';
import { appKeyCodec, redirectValueCodec, type AppKey, type RedirectValue } from '../src/datapath/structs.js';
import { AgentRig, benchAddr } from './agent-rig.js';
import { removePinDir, runUpdateC } from './common.js';
import { median, ratioRow, type Benchmark, type Row } from './harness.js';
import { refKey } from './xdp.js';
import { uniquePrefix } from '../src/testbed/netns.js';

const NKEYS = 1024;
const hex = (b: Buffer): string[] => [...b].map((x) => x.toString(16).padStart(2, '0'));

export const mapUpdate: Benchmark = {
  name: 'map-update',
  title: 'single entry update: TS BpfMap.update vs C libbpf; agent API end to end vs bpftool map update',
  async run(ctx): Promise<Row[]> {
    // many short rounds, TS and C in turn: on a shared machine the load
    // drifts, and neighbouring rounds see about the same
    const n = ctx.quick ? 20_000 : 100_000;
    const rounds = ctx.quick ? 2 : 9;
    const rows: Row[] = [];
    let typedNs = NaN; // the TS map layer's update, for the bpftool row below

    // ---- TS map layer vs C, same pinned map
    const pin = `/sys/fs/bpf/${uniquePrefix('rsbu')}`;
    const map = BpfMap.create({ type: MapType.HASH, name: 'rsb_update', maxEntries: NKEYS }, appKeyCodec, redirectValueCodec);
    try {
      map.pin(pin);
      const keys: AppKey[] = Array.from({ length: NKEYS }, (_, i) => ({ address: benchAddr(i), proto: 'any', port: 0 }));
      const value: RedirectValue = { action: 'forward', appId: 7, tunnel: '10.2.0.2' };
      // C builds its keys itself: they must be the bytes the codec writes
      const k = Buffer.alloc(appKeyCodec.size);
      appKeyCodec.encode(keys[5]!, k, 0);
      if (!k.equals(refKey(5))) throw new Error(`C key layout ${refKey(5).toString('hex')} differs from appKeyCodec's ${k.toString('hex')}`);
      const v = Buffer.alloc(redirectValueCodec.size);
      redirectValueCodec.encode(value, v, 0);
      const valueHex = v.toString('hex');
      for (const key of keys) map.update(key, value); // every later update replaces
      // the same map with pre-encoded buffers: the addon + syscall without the codecs
      using raw = BpfMap.openPinned(pin, rawBytes(appKeyCodec.size), rawBytes(redirectValueCodec.size));
      const rawKeys = keys.map((key) => {
        const b = Buffer.alloc(appKeyCodec.size);
        appKeyCodec.encode(key, b, 0);
        return b;
      });
      const ts: number[] = [];
      const tsRaw: number[] = [];
      const c: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < n; i++) map.update(keys[i % NKEYS]!, value);
        ts.push(Number(process.hrtime.bigint() - t0) / n);
        const t1 = process.hrtime.bigint();
        for (let i = 0; i < n; i++) raw.update(rawKeys[i % NKEYS]!, v);
        tsRaw.push(Number(process.hrtime.bigint() - t1) / n);
        c.push((await runUpdateC({ mode: 'single', pin, n, arg: NKEYS, valueHex })).nsPerOp);
      }
      if (map.count() !== NKEYS) throw new Error(`map holds ${map.count()} entries, not ${NKEYS}: TS and C wrote different keys`);
      const tsNs = median(ts);
      typedNs = tsNs;
      const cNs = median(c);
      const rawNs = median(tsRaw);
      ctx.log(`TS ${tsNs.toFixed(0)} ns/update (pre-encoded ${rawNs.toFixed(0)}), C ${cNs.toFixed(0)} ns/update (rounds: TS ${ts.map((x) => x.toFixed(0))}, C ${c.map((x) => x.toFixed(0))})`);
      rows.push(
        ratioRow({
          name: 'map update',
          figure: tsNs,
          baseline: cNs,
          unit: 'ns',
          baselineName: 'C libbpf bpf_map_update_elem',
          maxRatio: 1.5,
          note: `${n} updates per round (1,024 existing rs_redirect-shaped keys in turn, same value), median of ${rounds} interleaved rounds; TS includes encoding by the codecs`,
          extra: { tsPreEncodedNs: Math.round(rawNs) },
        }),
        ratioRow({
          name: 'map update, pre-encoded',
          figure: rawNs,
          baseline: cNs,
          unit: 'ns',
          baselineName: 'C libbpf bpf_map_update_elem',
          maxRatio: null,
          note: 'the same updates through BpfMap with raw Buffer codecs (keys/values encoded before timing): the addon + syscall alone; the difference to the row above is the codecs',
        }),
      );
    } finally {
      map.close();
      removePinDir(pin);
    }

    // ---- agent API end to end vs bpftool
    const rig = await AgentRig.create({ hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }] });
    try {
      const a = rig.agent('A');
      const client = new HttpAgentClient(a.url, { token: rig.token.token });
      const tunnels = ['10.9.0.2', '10.9.0.3'];
      const app = await client.putApp('x', { address: '10.200.0.10', dev: 'vx', action: { type: 'forward', tunnel: tunnels[0]! } });
      const nApi = ctx.quick ? 50 : 500;
      const nTool = ctx.quick ? 10 : 50;
      for (let i = 0; i < 20; i++) await client.setAction('x', { type: 'forward', tunnel: tunnels[i % 2]! }); // warm up
      const t0 = performance.now();
      for (let i = 0; i < nApi; i++) {
        const r = await client.setAction('x', { type: 'forward', tunnel: tunnels[(i + 1) % 2]! });
        if (r.action.type !== 'forward') throw new Error('agent answered without the new action');
      }
      const apiMs = (performance.now() - t0) / nApi;
      const keyBuf = Buffer.alloc(appKeyCodec.size);
      appKeyCodec.encode({ address: '10.200.0.10', proto: 'any', port: 0 }, keyBuf, 0);
      const values = tunnels.map((t) => {
        const b = Buffer.alloc(redirectValueCodec.size);
        redirectValueCodec.encode({ action: 'forward', appId: app.appId, tunnel: t }, b, 0);
        return b;
      });
      const mapPin = `${rig.pinDir('A')}/rs_redirect`;
      const t1 = performance.now();
      for (let i = 0; i < nTool; i++) {
        execFileSync('bpftool', ['map', 'update', 'pinned', mapPin, 'key', 'hex', ...hex(keyBuf), 'value', 'hex', ...hex(values[i % 2]!)], { stdio: 'ignore' });
      }
      const toolMs = (performance.now() - t1) / nTool;
      // leave the entry as the agent last wrote it
      execFileSync('bpftool', ['map', 'update', 'pinned', mapPin, 'key', 'hex', ...hex(keyBuf), 'value', 'hex', ...hex(values[nApi % 2]!)], { stdio: 'ignore' });
      ctx.log(`agent API ${apiMs.toFixed(2)} ms/update, bpftool ${toolMs.toFixed(2)} ms/update`);
      rows.push(
        ratioRow({
          name: 'map update via agent API',
          figure: apiMs,
          baseline: toolMs,
          unit: 'ms',
          baselineName: 'bpftool map update',
          maxRatio: null,
          note: `POST /v1/apps/x/action (FORWARD, alternating tunnel) over HTTP on loopback, token auth, mean of ${nApi} sequential requests; bpftool: mean of ${nTool} runs on the agent's pinned rs_redirect, same key and values`,
        }),
        ratioRow({
          name: 'map update via TS layer',
          figure: typedNs / 1000,
          baseline: toolMs * 1000,
          unit: 'µs',
          baselineName: 'bpftool map update',
          maxRatio: null,
          note: 'the "map update" row\'s BpfMap.update (codecs + addon + syscall) against the bpftool runs of the row above: what a controller linking the TS layer saves over shelling out to bpftool per change',
        }),
      );
    } finally {
      await rig.close();
    }
    return rows;
  },
};
