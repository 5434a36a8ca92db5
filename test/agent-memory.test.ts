/**
 * A real agent gives a large batch's memory back once it has answered
 * (src/agent/memory.ts): its RSS after 60,000 entries loaded in 20,000-op
 * batches is within a few MB of the same agent idle, though staging each
 * batch takes tens of MB. Without the release the agent stays ~150 MB up
 * (the full-size figure is bench/agent-memory.ts).
 */
import t from 'tap';
import { AgentRig, benchAddr, postBatch } from '../bench/agent-rig.js';
import { rssOf, sleep } from '../bench/common.js';

const MB = 1024 * 1024;
const BATCHES = 3;
const OPS = 20_000;

t.test(`agent RSS returns near idle after ${BATCHES} batches of ${OPS} ops`, async (t) => {
  const rig = await AgentRig.create({
    hosts: ['A'],
    apps: [{ name: 'x', host: 'A', addr4: '10.200.0.10' }],
    agentArgs: ['--capacity', String(1 << 17)],
    agentEnv: { ROUTESHIFT_LOG_LEVEL: 'warn' },
  });
  t.teardown(() => rig.close());
  const a = rig.agent('A');
  await a.request('GET', '/status');
  await sleep(500);
  const idle = rssOf(a.pid).rss;
  for (let b = 0; b < BATCHES; b++) {
    const ops = [];
    for (let i = b * OPS; i < (b + 1) * OPS; i++) {
      ops.push({ op: 'put-app', name: `m${i}`, address: benchAddr(i), dev: 'vx', action: { type: 'forward', tunnel: '10.2.0.2' } });
    }
    await postBatch(a, ops);
  }
  const st = (await a.request('GET', '/status')).json as { entries: { apps: number } };
  t.equal(st.entries.apps, BATCHES * OPS + 0, 'every entry was applied');
  await sleep(1500);
  const after = rssOf(a.pid);
  t.ok(after.peak - idle > 20 * MB, `staging a batch did take memory (peak ${(after.peak / MB).toFixed(0)} MB, idle ${(idle / MB).toFixed(0)} MB)`);
  t.ok(after.rss - idle < 20 * MB, `RSS ${(after.rss / MB).toFixed(1)} MB is within 20 MB of idle ${(idle / MB).toFixed(1)} MB`);
});
