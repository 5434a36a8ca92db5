/**
 * The `migrate`, `drain` and `status` commands as an operator runs them:
 * the real CLI process, talking HTTP (the real client) to in-memory agents
 * served over HTTP by this test. Checks exit codes (0 done, 1 rolled back,
 * 2 bad usage, 3 needs attention), --json output, one-line errors, and
 * the lock refusing a second migration.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode, exitCodeOfError, exitCodeOfOutcome } from '../src/cli/exit.js';
import { UsageError } from '../src/cli/common.js';
import { AgentFailedError, AgentHttpError, AgentRefusedError, AgentUnreachableError, InvalidNameError, type AgentApi } from '../src/controller/agent-client.js';
import { LockHeldError, acquireLock } from '../src/controller/journal.js';
import { ResumeUndecidedError } from '../src/controller/resume.js';
import { agents } from './controller-doubles.js';
import { runCli, type CliRun } from './lib/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'rsct-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const tokenFile = join(tmp, 'token');
writeFileSync(tokenFile, 'tok\n', { mode: 0o600 }); // a token file others can read is refused

/** Serve an AgentApi over the documented HTTP API (enough of it for the controller). */
function serve(agent: AgentApi): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', async () => {
      const send = (status: number, obj?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(obj === undefined ? '' : JSON.stringify(obj));
      };
      if (req.headers.authorization !== 'Bearer tok') return send(401, { error: 'bad token' });
      const b = body ? (JSON.parse(body) as Record<string, unknown>) : {};
      const url = new URL(req.url ?? '/', 'http://agent');
      const m = /^\/v1\/(apps|deliveries)(?:\/([^/]+))?(\/action)?$/.exec(url.pathname);
      // single-entry writes carry their lease owner and condition in the query
      const guard = {
        ...(url.searchParams.has('owner') ? { owner: url.searchParams.get('owner') as string } : {}),
        ...(url.searchParams.has('ifGeneration') ? { ifGeneration: Number(url.searchParams.get('ifGeneration')) } : {}),
      };
      try {
        if (url.pathname === '/status') return send(200, await agent.status());
        if (url.pathname === '/v1/batch') return send(200, await agent.batch(b.ops as never, { ...(b.owner ? { owner: b.owner as string } : {}), generations: b.generations === true }));
        if (url.pathname === '/v1/leases' && req.method === 'POST') return send(200, await agent.takeLeases(b as never));
        const release = /^\/v1\/leases\/([^/]+)$/.exec(url.pathname);
        if (release && req.method === 'DELETE') return send(200, { released: await agent.releaseLeases(decodeURIComponent(release[1] as string), url.searchParams.get('names')?.split(',')) });
        if (url.pathname === '/v1/probe') return send(200, await agent.probe(b as never));
        if (!m) return send(404, { error: 'no such path' });
        const [, kind, name, action] = m;
        if (kind === 'apps') {
          if (!name) return send(200, { apps: await agent.listApps() });
          if (action) return send(200, await agent.setAction(name, b as never, guard));
          if (req.method === 'GET') {
            const a = await agent.getApp(name);
            return a ? send(200, a) : send(404, { error: `no app ${name}` });
          }
          if (req.method === 'PUT') return send(200, await agent.putApp(name, b as never, guard));
          if (req.method === 'DELETE') return (await agent.deleteApp(name, guard)) ? send(204) : send(404, { error: 'none' });
        } else {
          if (!name) return send(200, { deliveries: await agent.listDeliveries() });
          if (req.method === 'PUT') return send(200, await agent.putDelivery(name, b as never, guard));
          if (req.method === 'DELETE') return (await agent.deleteDelivery(name, guard)) ? send(204) : send(404, { error: 'none' });
        }
        send(405, { error: 'method' });
      } catch (err) {
        if (err instanceof AgentHttpError) return send(err.status, { error: err.agentMessage, ...(err.field ? { field: err.field } : {}) });
        if (err instanceof AgentUnreachableError) return req.socket.destroy();
        send(500, { error: (err as Error).message });
      }
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

const cli = (args: string[]): Promise<CliRun> => runCli(args, { env: { ROUTESHIFT_TOKEN_FILE: tokenFile }, timeoutMs: 30_000 });

async function hosts(t: { teardown(f: () => void): void }) {
  const env = agents();
  const sa = await serve(env.a);
  const sb = await serve(env.b);
  t.teardown(() => {
    sa.server.close();
    sb.server.close();
  });
  return { ...env, A: sa.url, B: sb.url, stateDir: mkdtempSync(join(tmp, 'state-')) };
}

const fast = ['--stop-grace-ms', '1', '--announce-grace-ms', '1', '--probe-interval-ms', '5'];

t.test('bad usage → exit 2 and one line on stderr, no stack trace', async (t) => {
  for (const args of [
    ['migrate', 'x', '--from', 'a:1'],
    ['migrate', 'bad name', '--from', 'a:1', '--to', 'b:1', '--dest-dev', 'v'],
    ['migrate', 'x', '--from', 'a:1', '--to', 'b:1', '--dest-dev', 'v', '--driver', 'netns-process'],
    ['migrate', 'x', '--from', 'a:1', '--to', 'b:1', '--dest-dev', 'v', '--probe', 'udp:99999'],
    ['drain', 'a:1', '--to', 'a:1'],
    ['migrate', 'x', '--from', 'a:1', '--to', 'b:1', '--dest-dev', 'v', '--token-file', join(tmp, 'missing')],
  ]) {
    const r = await cli(args);
    t.equal(r.code, 2, args.join(' '));
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.match(r.stderr, /^routeshift: .+\n/);
  }
});

t.test('migrate --json over HTTP: exit 0, phases timed, metrics included; the maps end right', async (t) => {
  const h = await hosts(t);
  const r = await cli(['migrate', 'x', '--from', h.A, '--to', h.B, '--dest-dev', 'vx-b', '--state-dir', h.stateDir, '--announce', 'exec', '--announce-exec', '/bin/true', '--json', ...fast]);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { kind: string; outcome: string; phases: Record<string, number>; metrics: { migrations: Record<string, number> } };
  t.equal(out.outcome, 'done');
  t.same(Object.keys(out.phases), ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'DRAIN_FLOWS', 'STOP', 'ANNOUNCE']);
  t.equal(out.kind, 'MigrationResult');
  t.same(out.metrics.migrations, { done: 1 }, 'the run\'s migrations by outcome');
  t.notOk(h.a.apps.has('x'));
  t.same(h.b.apps.get('x')?.action, { type: 'local' });
});

t.test('migrate with human output: one line per phase when not a terminal', async (t) => {
  const h = await hosts(t);
  const r = await cli(['migrate', 'x', '--from', h.A, '--to', h.B, '--dest-dev', 'vx-b', '--state-dir', h.stateDir, ...fast]);
  t.equal(r.code, 0, r.stderr);
  for (const s of ['PREPARE', 'START', 'DELIVER', 'READY', 'SWITCH', 'STOP', 'ANNOUNCE']) t.match(r.stdout, new RegExp(`✓ ${s}\\s+[\\d.]+ (µs|ms|s)\\n`));
  t.notMatch(r.stdout, /\r/, 'no terminal control characters in a pipe');
  t.match(r.stdout, /x now runs on http:\/\/127\.0\.0\.1/);
});

t.test('migrate that cannot become ready → exit 1, rolled back', async (t) => {
  const h = await hosts(t);
  const r = await cli(['migrate', 'x', '--from', h.A, '--to', h.B, '--dest-dev', 'vx-b', '--state-dir', h.stateDir, '--probe', 'tcp:127.0.0.1:1', '--ready-timeout-ms', '300', ...fast]);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stdout, /rolling back/);
  t.match(r.stdout, /x stays on .*did not become ready/);
  t.same(h.a.apps.get('x')?.action, { type: 'local' });
  t.equal(h.b.deliveries.size, 0);
});

t.test('migrate whose roll-forward fails → exit 3 and the --resume hint; --resume then completes', async (t) => {
  const h = await hosts(t);
  h.b.fault = (c) => {
    if (c.method === 'putApp') throw new AgentUnreachableError(h.b.url, 'putApp', 'down');
  };
  const r = await cli(['migrate', 'x', '--from', h.A, '--to', h.B, '--dest-dev', 'vx-b', '--state-dir', h.stateDir, '--attempts', '1', ...fast]);
  t.equal(r.code, 3, r.stderr);
  t.match(r.stdout, /NEEDS ATTENTION: ANNOUNCE: .*\n.*routeshift migrate x --resume/);
  const st = await cli(['status', h.A, '--state-dir', h.stateDir]);
  t.match(st.stdout, /unfinished: x .* at ANNOUNCE \[failed\]/);
  h.b.fault = undefined;
  const r2 = await cli(['migrate', 'x', '--resume', '--state-dir', h.stateDir, '--json']);
  t.equal(r2.code, 0, r2.stderr);
  t.match(JSON.parse(r2.stdout), { outcome: 'done', decision: 'roll-forward' });
  t.same(h.b.apps.get('x')?.action, { type: 'local' });
  t.same(h.a.apps.get('x')?.action, { type: 'forward', tunnel: '192.0.2.2' }, 'no announce hook: the source keeps forwarding');
});

t.test('a second migration of the same app is refused naming the holder', async (t) => {
  const h = await hosts(t);
  const held = acquireLock(h.stateDir, 'x', 'J-other');
  t.teardown(() => held.release());
  const r = await cli(['migrate', 'x', '--from', h.A, '--to', h.B, '--dest-dev', 'v', '--state-dir', h.stateDir]);
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`x is being migrated by another controller: pid ${process.pid} .*journal J-other`));
  t.equal(h.a.calls.length, 0);
});

t.test('drain --dry-run prints the plan and changes nothing; drain moves everything; status shows it', async (t) => {
  const h = await hosts(t);
  const dry = await cli(['drain', h.A, '--to', h.B, '--dry-run']);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /plan: drain .* \(2 apps\)\n\s+x\s+10\.200\.0\.10:udp\/5000\s+→ http:\/\/127.*dev vx-a/);
  t.equal(h.a.apps.get('x')?.action.type, 'local');
  const r = await cli(['drain', h.A, '--to', h.B, '--state-dir', h.stateDir, '--json', ...fast]);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { outcome: string; switchMode: string; leftLocal: string[] };
  t.match(out, { outcome: 'done', switchMode: 'batch', leftLocal: [] });
  const st = await cli(['status', h.A, h.B, '--json']);
  t.equal(st.code, 0, st.stdout);
  const s = JSON.parse(st.stdout) as { agents: { apps: { name: string }[] }[] };
  t.equal(s.agents.length, 2, 'both agents reported');
  t.same(s.agents[1]?.apps.map((a) => a.name).sort(), ['x', 'y']);
  const down = await cli(['status', 'http://127.0.0.1:9']);
  t.equal(down.code, 1);
  t.match(down.stdout, /unreachable/);
});

t.test('the one exit-code table: outcomes and error classes', async (t) => {
  t.same(
    (['done', 'rolled-back', 'partial', 'failed'] as const).map(exitCodeOfOutcome),
    [ExitCode.Ok, ExitCode.Failed, ExitCode.Failed, ExitCode.NeedsAttention],
    'done 0, rolled back (all or some apps) 1, needs attention 3',
  );
  const cases: [unknown, number][] = [
    [new UsageError('bad flag'), 2],
    [new InvalidNameError('bad name', 'expected …'), 2],
    [new AgentRefusedError('http://a', 'PUT /v1/apps/x', 400, 'dev: expected an interface name', 'dev'), 2],
    [new AgentRefusedError('http://a', 'PUT /v1/apps/x', 409, 'conflict', 'address'), 1],
    [new AgentFailedError('http://a', 'POST /v1/batch', 500, 'ENOSPC', undefined), 1],
    [new AgentUnreachableError('http://a', 'GET /status', 'down'), 1],
    [new LockHeldError('x', { pid: 1, startTime: '1', host: 'h', journal: 'J', since: 's' }), 1],
    [new ResumeUndecidedError('cannot tell'), 3],
    [new Error('anything else'), 1],
    ['not even an Error', 1],
  ];
  for (const [err, code] of cases) t.equal(exitCodeOfError(err), code, `${(err as Error).name ?? typeof err} → ${code}`);
});

t.test('app: a name or entry the model refuses is bad usage (2); removing an unknown app fails (1)', async (t) => {
  const h = await hosts(t);
  const badName = await cli(['app', 'add', 'bad name', '--agent', h.A, '--addr', '10.0.0.99', '--dev', 'v0']);
  t.equal(badName.code, 2, badName.stderr);
  t.match(badName.stderr, /^routeshift: invalid name "bad name": expected .*\nrun `routeshift --help` for usage\n$/);
  const badDev = await cli(['app', 'add', 'z', '--agent', h.A, '--addr', '10.0.0.99', '--dev', 'a-device-name-too-long']);
  t.equal(badDev.code, 2, badDev.stderr);
  t.match(badDev.stderr, /HTTP 400: dev: expected an interface name .*\(field dev\)/);
  t.notOk(h.a.apps.has('z'));
  const rm = await cli(['app', 'rm', 'nope', '--agent', h.A]);
  t.equal(rm.code, 1, rm.stderr);
  t.match(rm.stderr, /no app named nope/);
});
