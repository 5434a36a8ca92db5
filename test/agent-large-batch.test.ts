/**
 * Large batches against a real agent:
 * - it gives a batch's memory back once it has answered (src/agent/memory.ts):
 *   its RSS after 60,000 entries loaded in 20,000-op batches is within a few
 *   MB of the same agent idle, though staging each batch takes tens of MB;
 *   without the release it stays ~80 MB up (the full-size figure is
 *   bench/agent-memory.ts);
 * - it keeps answering while a batch of 80,000 ops is staged (GET /healthz
 *   every 20 ms), and a write sent meanwhile waits for the batch, then applies.
 */
import t, { type Test } from 'tap';
import { AgentRig, benchAddr, postBatch } from '../bench/agent-rig.js';
import { rssOf, sleep } from '../bench/common.js';

const MB = 1024 * 1024;
const BATCHES = 3;
const OPS = 20_000;

function putOps(from: number, to: number): unknown[] {
  const ops = [];
  for (let i = from; i < to; i++) {
    ops.push({ op: 'put-app', name: `m${i}`, address: benchAddr(i), dev: 'vx', action: { type: 'forward', tunnel: '10.2.0.2' } });
  }
  return ops;
}

const AGENT_ARGS = ['--capacity', String(1 << 17)];
const AGENT_ENV = { ROUTESHIFT_LOG_LEVEL: 'warn' };

async function rig(t: Test): Promise<AgentRig> {
  const r = await AgentRig.create({ hosts: ['A'], apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }], agentArgs: AGENT_ARGS, agentEnv: AGENT_ENV });
  t.teardown(() => r.close());
  return r;
}

t.test(`agent RSS returns near idle after ${BATCHES} batches of ${OPS} ops`, async (t) => {
  const r = await rig(t);
  const a = r.agent('A');
  await a.request('GET', '/status');
  await sleep(500);
  const idle = rssOf(a.pid).rss;
  for (let b = 0; b < BATCHES; b++) await postBatch(a, putOps(b * OPS, (b + 1) * OPS));
  const st = (await a.request('GET', '/status')).json as { entries: { apps: number } };
  t.equal(st.entries.apps, BATCHES * OPS + 0, 'every entry was applied');
  await sleep(1500);
  const after = rssOf(a.pid);
  t.ok(after.peak - idle > 20 * MB, `staging a batch did take memory (peak ${(after.peak / MB).toFixed(0)} MB, idle ${(idle / MB).toFixed(0)} MB)`);
  t.ok(after.rss - idle < 20 * MB, `RSS ${(after.rss / MB).toFixed(1)} MB is within 20 MB of idle ${(idle / MB).toFixed(1)} MB`);
  // A restarted agent reads every pinned entry once to adopt them, and gives that back too.
  await a.stop();
  const again = await r.startAgent('A', AGENT_ARGS, AGENT_ENV);
  t.equal(again.adopted, true);
  await sleep(500);
  const adopted = rssOf(again.pid);
  t.ok(adopted.rss - idle < 20 * MB, `after adopting ${BATCHES * OPS} entries: RSS ${(adopted.rss / MB).toFixed(1)} MB (peak ${(adopted.peak / MB).toFixed(0)} MB), within 20 MB of idle`);
});

t.test('the agent answers while a large batch is staged; a write sent meanwhile waits for it', async (t) => {
  const a = (await rig(t)).agent('A');
  const n = 80_000;
  const ops = putOps(0, n);
  let done = false;
  const t0 = performance.now();
  const batch = postBatch(a, ops).finally(() => (done = true));
  await sleep(100); // the body is on its way and staging has begun
  const solo = a.request('PUT', '/v1/apps/solo', { address: '10.250.0.1', dev: 'vx', action: { type: 'forward', tunnel: '10.2.0.2' } });
  const latencies: number[] = [];
  while (!done) {
    const s0 = performance.now();
    const r = await a.request('GET', '/healthz');
    if (r.status !== 200) throw new Error(`/healthz answered ${r.status}`);
    latencies.push(performance.now() - s0);
    await sleep(20);
  }
  await batch;
  const batchMs = performance.now() - t0;
  const worst = Math.max(...latencies);
  t.ok(latencies.length >= 10, `/healthz answered ${latencies.length} times during the ${batchMs.toFixed(0)} ms batch`);
  t.ok(worst < batchMs / 2, `its slowest answer took ${worst.toFixed(0)} ms, well under the batch's ${batchMs.toFixed(0)} ms`);
  t.equal((await solo).status, 201, 'the write sent during the batch applied after it');
  const st = (await a.request('GET', '/status')).json as { entries: { apps: number } };
  t.equal(st.entries.apps, n + 1, 'every op of the batch and the single write are there');
});
