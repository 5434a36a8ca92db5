/**
 * `--announce bgp` end to end (issue 17, item 2): the network learns the
 * move over real BGP. Topology: client — fabric router — host A / host B
 * (src/testbed/topology.ts), with no static route for app x anywhere: a
 * real BIRD 2 runs in the fabric router's namespace and in each host's,
 * each with its own configuration and control socket in a temp dir, with
 * eBGP sessions A↔router and B↔router; the router's BIRD puts what it
 * learns into its kernel table. Each host's real agent drives its BIRD
 * (`--bird-include`, `--bird-socket`).
 *
 * 1. `routeshift app add x --announce` on A: A's agent announces x's /32,
 *    the router learns it over BGP (its FIB route is `proto bird` via A).
 * 2. x migrates A → B with the real controller and `announce: bgp` under
 *    a 20k packets/s UDP stream: 0 lost, 0 duplicated; afterwards the
 *    router routes x via B, learnt from B alone, and A announces nothing.
 *    Printed: the time from B's announce until the router's FIB routes to
 *    B (polled with `ip -n router route get`), and from A's withdraw.
 *
 * 3. The same for x's IPv6 address (x6, a /128 over IPv6 sessions) under a
 *    10k packets/s stream: 0 lost; the router routes it via B, learnt from B.
 *
 * Skips (with the reason) only when bird2 is not installed.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { HttpAgentClient } from '../src/controller/agent-client.js';
import type { Timing } from '../src/controller/journal.js';
import type { MigrationEvent } from '../src/controller/machine.js';
import { migrate } from '../src/controller/migrate.js';
import type { AnnouncementBatchBody, AnnouncementList } from '../src/model/announcement.js';
import { BirdSpeaker, birdBinary, hostConfig, routerConfig } from '../src/testbed/bird.js';
import { onStdoutLines } from '../src/testbed/traffic.js';
import { Bed, DEST, ECHO_EVERY, SOURCE, XHarness, account, describeStream, diagnose, lastAppReport, runCli, sleep, startFlows, waitForFile, workloadApp } from './lib/e2e.js';
import type { AppNode } from '../src/testbed/topology.js';

const PORT = 9000;
const TIMING: Timing = { readyTimeoutMs: 5000, probeIntervalMs: 50, stopGraceMs: 300, announceGraceMs: 1000, forwardAttempts: 3 };
const noteCtx = { log: () => undefined };
const run = promisify(execFile);

if (!birdBinary()) {
  t.plan(0, 'bird2 is not installed (scripts/setup.sh installs it: apt-get install bird2)');
} else {
  await main();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-bgp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const d of ['A', 'B', 'fab']) mkdirSync(join(dir, d));
  const include = (h: string): string => join(dir, h, 'routeshift.conf');
  const socket = (h: string): string => join(dir, h, 'bird.ctl');

  const bed = await Bed.create(t, {
    tag: 'rsbgp',
    apps: [
      { name: 'x', host: 'A', addr4: '10.200.0.10', announced: false },
      { name: 'x', host: 'B', addr4: '10.200.0.10', announced: false },
    ],
    hostAgentArgs: (h) => ['--bird-include', include(h), '--bird-socket', socket(h)],
    topology: { ipv6: true },
  });
  const { topo } = bed;
  const h = new XHarness(bed, PORT);
  const { xA } = h;
  const A = topo.host('A');
  const B = topo.host('B');

  // The three speakers (the agents created their include files at start, so BIRD finds them).
  const speakers: BirdSpeaker[] = [];
  t.teardown(async () => {
    for (const s of speakers) await s.stop();
  });
  const router = await BirdSpeaker.start({
    netns: topo.fabric.name,
    dir: join(dir, 'fab'),
    config: routerConfig({
      routerId: '10.255.0.1',
      asn: 65000,
      peers: [
        { name: 'hostA', address: A.addr4, asn: 65001 },
        { name: 'hostB', address: B.addr4, asn: 65002 },
        { name: 'hostA6', address: A.addr6, asn: 65001 },
        { name: 'hostB6', address: B.addr6, asn: 65002 },
      ],
      log: join(dir, 'fab', 'bird.log'),
    }),
  });
  speakers.push(router);
  for (const [host, asn] of [[A, 65001], [B, 65002]] as const) {
    speakers.push(
      await BirdSpeaker.start({
        netns: host.ns.name,
        dir: join(dir, host.name),
        config: hostConfig({
          routerId: host.addr4,
          asn,
          peers: [
            { name: 'fabric', address: host.fabricAddr4, asn: 65000 },
            { name: 'fabric6', address: host.fabricAddr6, asn: 65000 },
          ],
          include: include(host.name),
          protocolStem: 'routeshift',
          log: join(dir, host.name, 'bird.log'),
        }),
      }),
    );
  }
  await router.waitEstablished(['hostA', 'hostB', 'hostA6', 'hostB6']);

  /** The router's FIB for one of x's addresses (default IPv4): next hop and the route's origin. */
  async function fib(addr = xA.addr4): Promise<{ via: string | undefined; protocol: string | undefined }> {
    // `route get` fails when nothing routes the address (the fabric has no default route).
    const r = await run('ip', ['-n', topo.fabric.name, '-j', 'route', 'get', addr], { timeout: 10_000 }).then(
      ({ stdout }) => (JSON.parse(stdout) as { gateway?: string }[])[0],
      () => undefined,
    );
    const six = addr.includes(':');
    const shown = await run('ip', ['-n', topo.fabric.name, six ? '-6' : '-4', '-j', 'route', 'show', `${addr}/${six ? 128 : 32}`], { timeout: 10_000 });
    const [s] = JSON.parse(shown.stdout) as { protocol?: string }[];
    return { via: r?.gateway, protocol: s?.protocol };
  }

  async function waitFib(via: string, addr = xA.addr4, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last = await fib(addr);
    while (last.via !== via && Date.now() < end) {
      await sleep(20);
      last = await fib(addr);
    }
    if (last.via !== via) throw new Error(`router does not route ${addr} via ${via} within ${timeoutMs} ms (now ${JSON.stringify(last)}): ${await router.routes(addr)}`);
  }

  const token = readFileSync(bed.tokenFile, 'utf8').trim();
  const announcements = (host: string): Promise<AnnouncementList> => new HttpAgentClient(bed.url(host), { token }).listAnnouncements();

  t.test('before: no route for x until A announces it; then the router learns it over BGP', async (t) => {
    t.equal((await fib()).protocol, undefined, `no route ${xA.addr4}/32 on the router: nothing static`);
    // The operator's way: register x on A and announce it, with the CLI.
    const add = await runCli(['app', 'add', 'x', '--agent', bed.url('A'), '--addr', xA.addr4, '--dev', xA.hostDev, '--announce', '--token-file', bed.tokenFile]).done;
    t.equal(add.code, 0, `routeshift app add x --announce: ${add.stdout.trim()} ${add.stderr.trim()}`);
    t.match(add.stdout, /announced over BGP/, '…says it announced x');
    t.same((await announcements('A')).announcements, [{ name: 'x', address: xA.addr4, prefix: `${xA.addr4}/32` }], "A's agent announces x");
    await waitFib(A.addr4);
    const f = await fib();
    t.equal(f.protocol, 'bird', `the router's route to x is BIRD's (learnt over BGP), via ${f.via}`);
    t.match(readFileSync(include('A'), 'utf8'), `route ${xA.addr4}/32 blackhole;`, "A's include file holds the route");
  });

  t.test('migrate x A → B with --announce bgp under 20k pps: 0 lost; the router moves to B over BGP', async (t) => {
    await h.driver.start(h.X, SOURCE, noteCtx);
    await waitForFile(h.log('A'), /"ready"/);

    // Every announcement request the hook makes, with when it was sent and answered.
    const calls: { url: string; batch: AnnouncementBatchBody; sentAt: number; doneAt: number }[] = [];
    class RecordingClient extends HttpAgentClient {
      override async changeAnnouncements(batch: AnnouncementBatchBody): Promise<{ announced: number; withdrawn: number }> {
        const sentAt = Date.now();
        const r = await super.changeAnnouncements(batch);
        calls.push({ url: this.url, batch, sentAt, doneAt: Date.now() });
        return r;
      }
    }
    // The router's FIB as the kernel reports it changing (`ip monitor`, timestamped by `ip` itself)…
    const changes: { at: number; via: string | undefined }[] = [];
    const monitor = spawn('ip', ['-n', topo.fabric.name, '-ts', 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    t.teardown(() => void monitor.kill('SIGKILL'));
    onStdoutLines(monitor, (line) => {
      const m = /^\[(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d{3})\d*\] (Deleted )?10\.200\.0\.10 (?:via (\S+))?/.exec(line);
      if (!m) return;
      const [y, mo, d, hh, mi, ss, ms] = m.slice(1, 8).map(Number) as [number, number, number, number, number, number, number];
      changes.push({ at: new Date(y, mo - 1, d, hh, mi, ss, ms).getTime(), via: m[8] ? undefined : m[9] });
    });
    // …polled with `ip route get` (the ground truth, coarser on a busy machine), and the router's BIRD: its routes for x.
    /** `at`: when the lookup was started; `end`: when it answered (the route it shows held somewhere between). */
    const samples: { at: number; end: number; via: string | undefined }[] = [];
    const learnt: { at: number; fromB: boolean }[] = [];
    let polling = true;
    const poller = (async () => {
      const end = Date.now() + 60_000;
      for (let i = 0; polling && i < 20_000 && Date.now() < end; i++) {
        const at = Date.now();
        // No route at all ("unreachable") is a sample too: via undefined.
        const via = await run('ip', ['-n', topo.fabric.name, '-j', 'route', 'get', xA.addr4], { timeout: 10_000 }).then(
          ({ stdout }) => (JSON.parse(stdout) as { gateway?: string }[])[0]?.gateway,
          () => undefined,
        );
        samples.push({ at, end: Date.now(), via });
        await sleep(2);
      }
    })();
    const birdPoller = (async () => {
      const end = Date.now() + 60_000;
      for (let i = 0; polling && i < 20_000 && Date.now() < end; i++) {
        learnt.push({ at: Date.now(), fromB: /hostB/.test(await router.routes(`${xA.addr4}/32`)) });
        await sleep(5);
      }
    })();

    const events: { e: MigrationEvent; at: number }[] = [];
    const s = await h.stream(
      () =>
        migrate({
          app: 'x',
          from: bed.url('A'),
          to: bed.url('B'),
          destDev: h.xB.hostDev,
          driver: bed.driverSpec({ port: PORT }),
          announce: { kind: 'bgp' },
          timing: TIMING,
          stateDir: bed.stateDir,
          connect: (url) => new RecordingClient(url, { token, timeoutMs: 30_000 }),
          observe: (e) => events.push({ e, at: Date.now() }),
        }),
      { tailMs: 500 },
    );
    polling = false;
    await Promise.all([poller, birdPoller]);
    monitor.kill('SIGTERM');

    t.equal(s.value.outcome, 'done', `migration done in ${s.value.totalMs} ms (${JSON.stringify(s.value.phases)})${s.value.error ? `: ${s.value.error}` : ''}`);
    t.comment(describeStream(s));
    if (s.x.lost) await diagnose(bed, t, [xA, h.xB]);
    t.equal(s.x.lost, 0, 'x: 0 lost over what A and B received');
    t.equal(s.x.duplicated, 0, 'x: 0 duplicated');
    t.ok((s.x.perApp[0] ?? 0) > 0 && (s.x.perApp[1] ?? 0) > 0, 'A served the stream before SWITCH, B after');

    const announce = calls.find((c) => c.url === bed.url('B') && c.batch.announce?.some((a) => a.name === 'x'));
    const withdraw = calls.find((c) => c.url === bed.url('A') && c.batch.withdraw?.includes('x'));
    t.ok(announce, "the hook asked B's agent to announce x");
    t.ok(withdraw, "…and A's agent to withdraw it");
    if (announce && withdraw) {
      t.ok(withdraw.sentAt - announce.doneAt >= TIMING.announceGraceMs - 5, `A withdrew a grace period (${withdraw.sentAt - announce.doneAt} ms) after B announced`);
      const firstB = samples.find((x) => x.at >= announce.sentAt && x.via === B.addr4);
      const lastA = firstB ? [...samples].reverse().find((x) => x.at < firstB.at && x.via === A.addr4) : undefined;
      const changedToB = changes.find((x) => x.at >= announce.sentAt && x.via === B.addr4);
      const birdHasB = learnt.find((x) => x.at >= announce.sentAt && x.fromB);
      t.ok(firstB, `the router's FIB routed x via B during the migration (${samples.length} route-get samples)`);
      t.ok(changedToB, `…and the kernel reported the change (${changes.length} route events for x)`);
      t.notOk(samples.some((x) => x.at >= announce.sentAt && x.via === undefined), 'the router never lost its route to x');
      t.notOk(changes.some((x) => x.at >= announce.sentAt && x.via === undefined), '…no route event removed it either');
      const ms = (x: { at: number } | undefined, from: number): string => (x ? `${x.at - from} ms` : 'never');
      // What the agents themselves took (file written, BIRD reloaded, its table checked), from their logs.
      const applyMs = (host: string): string =>
        readFileSync(join(bed.dir, `agent-${host}.log`), 'utf8')
          .split('\n')
          .filter((l) => l.includes('BGP announcements changed'))
          .map((l) => `${(JSON.parse(l) as { ms: number }).ms} ms`)
          .join(', ');
      t.comment(`the agents' BIRD changes took: A ${applyMs('A')}; B ${applyMs('B')}`);
      t.comment(
        `BGP: B's announce (agent answered in ${announce.doneAt - announce.sentAt} ms) → the router's BIRD has B's route: ${ms(birdHasB, announce.sentAt)}; ` +
          `→ router FIB via B: ${ms(changedToB, announce.sentAt)} (ip monitor); ip route get saw it between ${ms(lastA, announce.sentAt)} and ${firstB ? `${firstB.end - announce.sentAt} ms` : 'never'} ` +
          `(${samples.length} lookups, one every ${samples.length > 1 ? ((samples.at(-1)!.at - samples[0]!.at) / (samples.length - 1)).toFixed(0) : '-'} ms)`,
      );
      t.comment(
        `${changedToB && changedToB.at < withdraw.sentAt ? 'the router moved to B while both announced' : "while both announced the router kept A (here the lower router id wins BGP's last tie-break)"}; A's withdraw came ${withdraw.sentAt - announce.sentAt} ms after the announce ` +
          `(answered in ${withdraw.doneAt - withdraw.sentAt} ms) → FIB via B: ${ms(changedToB, withdraw.sentAt)} after the withdraw was sent`,
      );
      const srcDeleted = events.find((e) => e.e.type === 'done' && 'state' in e.e && e.e.state === 'ANNOUNCE');
      t.ok(changedToB && srcDeleted && changedToB.at < srcDeleted.at, "the router routed to B before the migration finished (A's entry was removed after)");
    }

    const f = await fib();
    t.equal(f.via, B.addr4, 'after: the router routes x via B');
    t.equal(f.protocol, 'bird', '…by a route learnt over BGP');
    const routes = await router.routes(`${xA.addr4}/32`);
    t.match(routes, /hostB/, "the router's BIRD has x from its session with B");
    t.notMatch(routes, /hostA/, '…and none from A');
    t.same((await announcements('A')).announcements, [], 'A announces nothing');
    t.same((await announcements('B')).announcements, [{ name: 'x', address: xA.addr4, prefix: `${xA.addr4}/32` }], 'B announces x');
    t.notMatch(readFileSync(include('A'), 'utf8'), xA.addr4, "A's include file no longer has x");
    const p = await h.placement();
    t.equal(p.source, undefined, 'A has no entry for x');
    t.equal(p.dest?.action.type, 'local', 'B has x LOCAL');
    t.equal(p.destDelivery, undefined, 'B has no delivery left for x');
  });

  t.test('IPv6: x6 (x\'s /128) announced by A over an IPv6 session, migrated A → B with --announce bgp under 10k pps: 0 lost', async (t) => {
    const PORT6 = 9001;
    const addr = xA.addr6;
    const spec = bed.driverSpec({ port: PORT6, srcNetns: xA.ns.name, dstNetns: h.xB.ns.name });
    const driver = bed.driver({ port: PORT6, srcNetns: xA.ns.name, dstNetns: h.xB.ns.name });
    const X6 = workloadApp('x6', addr);
    const logOf = (node: AppNode): string => join(bed.stateDir, 'workload', `${node.ns.name}--x6.log`);
    t.equal((await fib(addr)).protocol, undefined, `no route ${addr}/128 on the router before A announces it`);
    await bed.registerLocal(xA, 'x6', 6);
    const put = await bed.agents.A?.request('PUT', '/v1/announcements/x6', { address: addr });
    t.equal(put?.status, 200, `A's agent announced x6: ${put?.text}`);
    await waitFib(A.addr6, addr);
    t.equal((await fib(addr)).protocol, 'bird', `the router learnt ${addr}/128 over BGP, via ${A.addr6}`);
    await driver.start(X6, SOURCE, noteCtx);
    await waitForFile(logOf(xA), /"ready"/);

    const flows = await startFlows(topo.client.ns, { flows: [{ to: addr, port: PORT6, rate: 10_000, echoEvery: ECHO_EVERY }], maxMs: 60_000, echoWaitMs: 300 });
    let result;
    try {
      await sleep(300);
      result = await migrate({
        app: 'x6',
        from: bed.url('A'),
        to: bed.url('B'),
        destDev: h.xB.hostDev,
        driver: spec,
        announce: { kind: 'bgp' },
        timing: TIMING,
        stateDir: bed.stateDir,
        connect: bed.connect,
      });
      await sleep(500);
    } finally {
      flows.signal();
    }
    const report = await flows.report;
    await sleep(100);
    await driver.stop(X6, SOURCE, noteCtx);
    await driver.stop(X6, DEST, noteCtx);
    const flow = report.flows[0];
    const acc = account(flow?.sent ?? 0, [lastAppReport(logOf(xA)), lastAppReport(logOf(h.xB))]);
    t.equal(result.outcome, 'done', `migration done in ${result.totalMs} ms${result.error ? `: ${result.error}` : ''}`);
    t.comment(`x6: sent ${flow?.sent}, received on A ${acc.perApp[0]}, on B ${acc.perApp[1]}, lost ${acc.lost}, duplicated ${acc.duplicated}`);
    t.ok((flow?.sent ?? 0) > 1000, 'the stream ran');
    t.equal(acc.lost, 0, 'x6: 0 lost');
    t.equal(acc.duplicated, 0, 'x6: 0 duplicated');
    t.ok((acc.perApp[0] ?? 0) > 0 && (acc.perApp[1] ?? 0) > 0, 'A served x6 before SWITCH, B after');
    const f = await fib(addr);
    t.equal(f.via, B.addr6, 'after: the router routes x6 via B');
    t.equal(f.protocol, 'bird', '…by a route learnt over BGP');
    const routes = await router.routes(`${addr}/128`);
    t.match(routes, /hostB6/, "the router's BIRD has x6 from its IPv6 session with B");
    t.notMatch(routes, /hostA6/, '…and none from A');
    t.notOk((await announcements('A')).announcements.some((a) => a.name === 'x6'), 'A no longer announces x6');
    t.ok((await announcements('B')).announcements.some((a) => a.name === 'x6' && a.prefix === `${addr}/128`), 'B announces x6/128');
  });
}
