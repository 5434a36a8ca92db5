/**
 * A change is crash-atomic: SIGKILL the agent anywhere inside the apply of
 * a 50,000-op mixed batch (deletes, actions switched both ways, new apps,
 * port entries and their placeholders, new and deleted deliveries) and the
 * restarted agent leaves the maps exactly as before the batch or exactly as
 * after it, byte for byte, entry by entry — never in between, never with an
 * orphan the data plane still acts on.
 *
 * The kill points are the agent's own failpoints (src/agent/failpoint.ts):
 * after the n-th batched write of the apply (`apply:n`, spread over all of
 * it), after the n-th pin of the intent (`intent:n`), and a kill from
 * outside while the batch is being staged. Each run starts from the same
 * baseline (the pinned maps restored while no agent runs) so ids are
 * allocated alike and the dumps compare exactly.
 */
import t from 'tap';
import { BpfMap } from '../src/bpf/index.js';
import { AgentRig, benchAddr, postBatch } from '../bench/agent-rig.js';
import type { AgentProcess } from '../src/testbed/agent-process.js';

const BASE_APPS = 40_000;
const BASE_DELIVERIES = 10_000;
const MAPS = ['rs_redirect', 'rs_deliver', 'rs_app_meta', 'rs_app_names', 'rs_app_stats'] as const;
const MAC = '02:00:00:00:00:42';
const TUNNEL = '10.2.0.2';

const rig = await AgentRig.create({
  hosts: ['A'],
  apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }],
  agentArgs: ['--capacity', String(1 << 17)],
  agentEnv: { ROUTESHIFT_LOG_LEVEL: 'warn' },
});
t.teardown(() => rig.close());
const pinDir = rig.pinDir('A');
const dev = rig.topo.app('x').hostDev;

type Dump = Record<(typeof MAPS)[number], Map<string, string>>;

/** Every entry of every map, as hex, read from the pins (no agent needed). */
function dump(): Dump {
  const out = {} as Dump;
  for (const name of MAPS) {
    using raw = BpfMap.openPinnedRaw(`${pinDir}/${name}`);
    const m = new Map<string, string>();
    for (const [k, v] of raw.entries()) m.set(k.toString('hex'), v.toString('hex'));
    out[name] = m;
  }
  return out;
}

/** Make the pinned maps hold exactly `d` again (while no agent runs), and drop any intent. */
function restore(d: Dump): void {
  for (const name of MAPS) {
    using m = BpfMap.openPinnedRaw(`${pinDir}/${name}`);
    const want = d[name];
    if (name !== 'rs_app_stats') {
      const extra = [...m.entries()].map(([k]) => k).filter((k) => !want.has(k.toString('hex')));
      if (extra.length) m.deleteBatch(extra);
    }
    const entries = [...want].map(([k, v]) => [Buffer.from(k, 'hex'), Buffer.from(v, 'hex')] as const);
    for (let i = 0; i < entries.length; i += 4096) m.updateBatch(entries.slice(i, i + 4096));
  }
}

/** Where `now` differs from `want`: counts per map, and a few keys. */
function diff(now: Dump, want: Dump): string[] {
  const out: string[] = [];
  for (const name of MAPS) {
    const a = now[name];
    const b = want[name];
    let missing = 0;
    let extra = 0;
    let changed = 0;
    for (const [k, v] of b) {
      const got = a.get(k);
      if (got === undefined) missing++;
      else if (got !== v) changed++;
    }
    for (const k of a.keys()) if (!b.has(k)) extra++;
    if (missing || extra || changed) out.push(`${name}: ${missing} missing, ${extra} extra, ${changed} changed`);
  }
  return out;
}

const op = (o: Record<string, unknown>): Record<string, unknown> => o;
const baseline: unknown[] = [];
for (let i = 0; i < BASE_APPS; i++) {
  const action = i % 2 ? { type: 'forward', tunnel: TUNNEL } : { type: 'local' };
  baseline.push(op({ op: 'put-app', name: `a${i}`, address: benchAddr(i), dev, mac: MAC, action }));
}
for (let i = 0; i < BASE_DELIVERIES; i++) baseline.push(op({ op: 'put-delivery', name: `d${i}`, address: benchAddr(100_000 + i), dev, mac: MAC }));

/** 50,000 ops that touch every kind of entry and the whole-address invariant. */
const mixed: unknown[] = [];
for (let i = 0; i < 12_000; i++) mixed.push(op({ op: 'delete-app', name: `a${i}` }));
for (let i = 12_000; i < 26_000; i++) mixed.push(op({ op: 'set-action', name: `a${i}`, action: i % 2 ? { type: 'local' } : { type: 'forward', tunnel: TUNNEL } }));
for (let i = 0; i < 6_000; i++) mixed.push(op({ op: 'put-app', name: `n${i}`, address: benchAddr(50_000 + i), dev, mac: MAC, action: { type: 'forward', tunnel: TUNNEL } }));
for (let i = 0; i < 4_000; i++) mixed.push(op({ op: 'put-app', name: `p${i}`, address: benchAddr(60_000 + i), proto: 'udp', port: 53, dev, mac: MAC }));
for (let i = 0; i < 5_000; i++) mixed.push(op({ op: 'delete-delivery', name: `d${i}` }));
for (let i = 0; i < 9_000; i++) mixed.push(op({ op: 'put-delivery', name: `e${i}`, address: benchAddr(120_000 + i), dev, mac: MAC }));

async function restartAgent(env: Record<string, string> = {}): Promise<AgentProcess> {
  await rig.agents.A?.stop('SIGKILL').catch(() => undefined);
  return rig.startAgent('A', ['--capacity', String(1 << 17)], { ROUTESHIFT_LOG_LEVEL: 'warn', ...env });
}

let before = {} as Dump;
let after = {} as Dump;
t.test('the baseline, and the reference after-state: the batch applied with no crash', async (t) => {
  await postBatch(rig.agent('A'), baseline);
  await rig.agent('A').stop('SIGKILL');
  before = dump();
  t.equal(before.rs_app_meta.size, BASE_APPS + BASE_DELIVERIES, 'baseline: every entry in the maps');
  await restartAgent();
  await postBatch(rig.agent('A'), mixed);
  await rig.agent('A').stop('SIGKILL');
  after = dump();
  t.same(Object.keys(before).filter((n) => diff(after, before).some((d) => d.startsWith(`${n}:`))), MAPS.filter((n) => n !== 'rs_app_stats'), 'the batch changes every entry map');
  t.equal(after.rs_app_meta.size, BASE_APPS + BASE_DELIVERIES - 12_000 + 10_000 - 5_000 + 9_000, 'reference after-state');
});

const killPoints: { name: string; env?: Record<string, string>; externalAfterMs?: number }[] = [
  { name: 'while staging (outside kill)', externalAfterMs: 150 },
  { name: 'after the first intent pin', env: { ROUTESHIFT_FAILPOINT: 'intent:1' } },
  { name: 'after the last intent record pin', env: { ROUTESHIFT_FAILPOINT: 'intent:5' } },
];
for (const n of [1, 2, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49]) {
  killPoints.push({ name: `after batched write ${n} of the apply`, env: { ROUTESHIFT_FAILPOINT: `apply:${n}` } });
}

const outcomes: Record<string, number> = { before: 0, after: 0 };
for (const k of killPoints) {
  t.test(`SIGKILL ${k.name}: after a restart the maps are exactly before or exactly after`, async (t) => {
    await rig.agents.A?.stop('SIGKILL').catch(() => undefined);
    restore(before);
    const a = await restartAgent(k.env ?? {});
    const post = postBatch(a, mixed).then(
      () => 'answered',
      () => 'no answer',
    );
    if (k.externalAfterMs !== undefined) setTimeout(() => a.child.kill('SIGKILL'), k.externalAfterMs);
    const code = await new Promise<string>((resolve) => a.child.once('exit', (_c, sig) => resolve(String(sig))));
    t.equal(code, 'SIGKILL', `the agent died (${await post})`);
    await restartAgent(); // adopts, replays an intent if one was pinned
    await rig.agent('A').stop('SIGKILL');
    const now = dump();
    const fromBefore = diff(now, before);
    const fromAfter = diff(now, after);
    const which = fromBefore.length === 0 ? 'before' : fromAfter.length === 0 ? 'after' : 'neither';
    if (which !== 'neither') outcomes[which]!++;
    t.not(which, 'neither', `exactly ${which}${which === 'neither' ? `: vs before ${fromBefore.join('; ')} | vs after ${fromAfter.join('; ')}` : ''}`);
  });
}

t.test('the kill points covered both outcomes', async (t) => {
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`);
  t.ok(outcomes.before! >= 1, 'a kill before the intent was complete left the state before');
  t.ok(outcomes.after! >= killPoints.length - 3, 'every kill inside the apply was completed after the restart');
});
