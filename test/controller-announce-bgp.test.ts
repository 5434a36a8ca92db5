/**
 * The controller's side of `--announce bgp` against in-memory agents that
 * also take announcement requests (the agents' side, with a real BIRD, is
 * test/agent-bgp.test.ts; the whole, test/e2e-bgp.test.ts):
 *
 * - the order of step 7 (ANNOUNCE): the destination's LOCAL entry, its
 *   announce, a grace period, the source's withdraw, another grace, then
 *   the source entry removed and the delivery after it;
 * - a drain: one announce request per destination holding its apps, one
 *   withdraw request to the source holding them all;
 * - a destination whose BIRD fails: the migration rolls forward, then
 *   needs attention, and the source keeps forwarding (its entry stays).
 */
import t from 'tap';
import { AgentFailedError, type App } from '../src/controller/agent-client.js';
import { drain } from '../src/controller/drain.js';
import { migrate } from '../src/controller/migrate.js';
import type { Timing } from '../src/controller/journal.js';
import type { AnnouncementBatchBody } from '../src/model/announcement.js';
import { FAST, stateDir } from './controller-doubles.js';
import { MemoryAgent } from './lib/memory-agent.js';

interface Event {
  url: string;
  what: string;
  body?: unknown;
  at: number;
}

/** A memory agent that also announces (what its BIRD would), recording every call on one shared timeline. */
class AnnouncingAgent extends MemoryAgent {
  readonly announced = new Map<string, string>();
  birdDown = false;

  constructor(
    url: string,
    tunnel: { v4?: string },
    private readonly timeline: Event[],
  ) {
    super(url, tunnel);
    this.fault = (call) => {
      const body = call.body as { op?: string }[] | undefined;
      const what = call.method === 'batch' && Array.isArray(body) ? `batch:${body.map((o) => o.op).join(',')}` : call.method;
      timeline.push({ url, what, body: call.body, at: performance.now() });
    };
  }

  async changeAnnouncements(batch: AnnouncementBatchBody): Promise<{ announced: number; withdrawn: number }> {
    this.timeline.push({ url: this.url, what: batch.announce?.length ? 'announce' : 'withdraw', body: batch, at: performance.now() });
    if (this.birdDown) throw new AgentFailedError(this.url, 'POST /v1/announcements', 500, 'BIRD control socket /run/bird/bird.ctl does not exist: is BIRD running?', undefined);
    let withdrawn = 0;
    for (const n of batch.withdraw ?? []) if (this.announced.delete(n)) withdrawn++;
    for (const a of batch.announce ?? []) this.announced.set(a.name, a.address);
    return { announced: batch.announce?.length ?? 0, withdrawn };
  }
}

function app(name: string, i: number): App {
  return {
    name, address: `10.200.0.${10 + i}`, proto: 'any', port: 0, dev: `v${name}`, mac: '02:00:00:00:00:01', macSource: 'given',
    path: { via: 'xdp' }, action: { type: 'local' }, appId: i + 1, generation: i + 1,
    counters: { local: { packets: '0', bytes: '0' }, forward: { packets: '0', bytes: '0' } },
  };
}

function hosts(n: number) {
  const timeline: Event[] = [];
  const a = new AnnouncingAgent('http://a:7000', { v4: '192.0.2.1' }, timeline);
  const b = new AnnouncingAgent('http://b:7000', { v4: '192.0.2.2' }, timeline);
  const c = new AnnouncingAgent('http://c:7000', { v4: '192.0.2.3' }, timeline);
  for (let i = 0; i < n; i++) {
    const x = app(`app${i}`, i);
    a.apps.set(x.name, x);
    a.announced.set(x.name, x.address);
  }
  const by: Record<string, AnnouncingAgent> = { [a.url]: a, [b.url]: b, [c.url]: c };
  return { a, b, c, timeline, connect: (u: string) => by[u] as AnnouncingAgent };
}

const GRACE = 60;
const timing: Timing = { ...FAST, announceGraceMs: GRACE };

t.test('migrate: destination LOCAL, announce, grace, source withdraw, grace, source entry removed, delivery removed', async (t) => {
  const { a, b, timeline, connect } = hosts(1);
  const r = await migrate({ app: 'app0', from: a.url, to: b.url, destDev: 'vapp0', driver: { kind: 'none' }, announce: { kind: 'bgp' }, timing, stateDir: stateDir(t), connect });
  t.equal(r.outcome, 'done', r.error ?? 'done');
  const at = (url: string, what: string): Event => {
    const e = timeline.find((x) => x.url === url && x.what === what);
    if (!e) throw new Error(`no ${what} on ${url}: ${JSON.stringify(timeline.map((x) => `${x.url} ${x.what}`))}`);
    return e;
  };
  const local = at(b.url, 'putApp');
  const announce = at(b.url, 'announce');
  const withdraw = at(a.url, 'withdraw');
  const removed = at(a.url, 'deleteApp');
  const undelivered = at(b.url, 'deleteDelivery');
  t.ok(local.at < announce.at, "B's LOCAL entry is written before B announces");
  t.same(announce.body, { announce: [{ name: 'app0', address: '10.200.0.10' }] }, "B announces app0's address");
  t.ok(withdraw.at - announce.at >= GRACE - 1, `A withdraws a grace period after (${(withdraw.at - announce.at).toFixed(0)} ms ≥ ${GRACE})`);
  t.same(withdraw.body, { withdraw: ['app0'] }, 'A withdraws app0');
  t.ok(removed.at - withdraw.at >= GRACE - 1, `A's entry goes another grace later (${(removed.at - withdraw.at).toFixed(0)} ms)`);
  t.ok(undelivered.at > removed.at, "B's delivery goes last");
  t.same([...a.announced.keys()], [], 'A announces nothing');
  t.same([...b.announced], [['app0', '10.200.0.10']], 'B announces app0');
});

t.test('drain: one announce request per destination, one withdraw request to the source', async (t) => {
  const { a, b, c, timeline, connect } = hosts(6);
  const r = await drain({ source: a.url, destinations: [b.url, c.url], destDev: '{dev}', driver: { kind: 'none' }, announce: { kind: 'bgp' }, timing, stateDir: stateDir(t), concurrency: 4, connect });
  t.equal(r.outcome, 'done');
  const announces = timeline.filter((x) => x.what === 'announce');
  t.same(announces.map((x) => x.url).sort(), [b.url, c.url], 'one announce request per destination');
  for (const x of announces) {
    t.equal((x.body as AnnouncementBatchBody).announce?.length, 3, `${x.url} announces its 3 apps in one request`);
  }
  const withdraws = timeline.filter((x) => x.what === 'withdraw');
  t.equal(withdraws.length, 1, 'one withdraw request');
  t.same(((withdraws[0]?.body as AnnouncementBatchBody).withdraw ?? []).slice().sort(), ['app0', 'app1', 'app2', 'app3', 'app4', 'app5'], '…to the source, for all six');
  t.equal(a.announced.size, 0, 'the source announces nothing');
  t.equal(b.announced.size + c.announced.size, 6, 'the destinations announce all six');
});

t.test("a destination whose BIRD is down: roll forward, then needs attention; the source keeps forwarding and announcing", async (t) => {
  const { a, b, connect } = hosts(1);
  b.birdDown = true;
  const r = await migrate({ app: 'app0', from: a.url, to: b.url, destDev: 'vapp0', driver: { kind: 'none' }, announce: { kind: 'bgp' }, timing, stateDir: stateDir(t), connect });
  t.equal(r.outcome, 'failed', 'needs attention (exit 3), not rolled back: SWITCH was committed');
  t.match(r.error, /BIRD control socket \/run\/bird\/bird.ctl does not exist/, "the agent's reason reaches the operator");
  t.same(a.apps.get('app0')?.action, { type: 'forward', tunnel: '192.0.2.2' }, 'the source still forwards to B');
  t.ok(a.announced.has('app0'), '…and still announces app0: nothing was withdrawn');
});
