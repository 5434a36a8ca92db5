/**
 * The agent runs as a non-root user with exactly the capabilities of
 * src/agent/capabilities.ts, which are those the systemd unit grants:
 *
 * - the unit passes `systemd-analyze verify` without a warning and scores
 *   at most EXPOSURE_LIMIT in `systemd-analyze security --offline=true`;
 *   its bounding and ambient sets are AGENT_CAPABILITIES;
 * - an agent started under setpriv as uid 65534 with that bounding set (in
 *   a namespace, pinning into a bpffs owned by that user) loads and attaches
 *   its program, holds exactly those capabilities, restarts and adopts its
 *   state with them (no CAP_SYS_ADMIN: the program is found by its pin), and
 *   cleans up with them;
 * - with any one of them missing it refuses to start, naming it, and
 *   leaves nothing attached or pinned;
 * - CAP_SYS_ADMIN is accepted instead of CAP_BPF and CAP_PERFMON (the
 *   check's "or instead"), because the kernel accepts it.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_NODE_FLAGS } from '../src/agent/memory.js';
import { AGENT_CAPABILITIES, type CapabilityName } from '../src/agent/capabilities.js';
import { repoRoot } from '../src/bpf/native.js';
import { CLI } from './lib/e2e.js';
import { AGENT_UID, apiGet, attachedXdp, capMask, createSandbox, credentials, runAs, startAgent } from './lib/unprivileged-agent.js';

const UNIT = join(repoRoot(), 'deploy', 'routeshift-agent@.service');
/** systemd-analyze's scale: 0 (locked down) to 10 (unprotected); "OK" is below 4.5. */
const EXPOSURE_LIMIT = 4.0;
const NEEDED: CapabilityName[] = AGENT_CAPABILITIES.map((n) => n.capability);
const REPO_AGENT = [process.execPath, ...AGENT_NODE_FLAGS, CLI];

/** The values of `key=` lines of the unit, space-separated lists joined. */
function unitValues(key: string): string[] {
  return readFileSync(UNIT, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .flatMap((l) => l.slice(key.length + 1).trim().split(/\s+/))
    .filter(Boolean);
}

t.test('the unit verifies cleanly and scores low in systemd-analyze security', async (t) => {
  const verify = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
  t.equal(verify.status, 0, `systemd-analyze verify exits 0 (${verify.stderr.trim()})`);
  t.equal(verify.stderr.trim(), '', 'and says nothing (no unknown keys, no bad paths)');

  const sec = spawnSync('systemd-analyze', ['security', '--offline=true', `--threshold=${EXPOSURE_LIMIT * 10}`, UNIT], { encoding: 'utf8' });
  const score = /Overall exposure level for \S+: (\d+\.\d+) (\w+)/.exec(sec.stdout);
  t.ok(score, 'systemd-analyze security prints an overall exposure level');
  const level = Number(score?.[1]);
  const version = execFileSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  t.comment(`exposure ${level} ${score?.[2]} (limit ${EXPOSURE_LIMIT}; ${version})`);
  t.ok(level <= EXPOSURE_LIMIT, `exposure ${level} <= ${EXPOSURE_LIMIT}`);
  t.equal(sec.status, 0, `--threshold=${EXPOSURE_LIMIT * 10} holds (exit 0)`);

  t.same(unitValues('CapabilityBoundingSet').sort(), [...NEEDED].sort(), 'bounding set = what the agent checks for');
  t.same(unitValues('AmbientCapabilities').sort(), [...NEEDED].sort(), 'ambient set = the same');
  t.same(unitValues('User'), ['routeshift'], 'runs as the routeshift user');
  t.same(unitValues('NoNewPrivileges'), ['yes']);
  t.same(unitValues('ProtectSystem'), ['strict']);
  t.same(unitValues('RestrictAddressFamilies').sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
  const sysusers = readFileSync(join(repoRoot(), 'deploy', 'sysusers.d', 'routeshift.conf'), 'utf8');
  t.match(sysusers, /^u routeshift /m, 'deploy/sysusers.d makes that user');
});

t.test('an agent with exactly those capabilities as uid 65534: start, restart, cleanup', async (t) => {
  const sb = createSandbox('rslp');
  t.teardown(() => sb.destroy());

  const first = await startAgent(sb, NEEDED, REPO_AGENT);
  t.teardown(() => void first.stop());
  t.equal(first.ready.adopted, false, 'a fresh data plane');
  const creds = credentials(first.child.pid!);
  t.equal(creds.uid, AGENT_UID, 'runs as uid 65534');
  t.equal(creds.capEff.toString(16), capMask(NEEDED).toString(16), `effective set is exactly ${NEEDED.join(' ')}`);
  const status = apiGet(sb, first.ready.url, '/status').body as { hook: { programId: number; attachedProgramId: number }; pinDir: string };
  t.ok(status.hook.programId > 0, 'program loaded');
  t.equal(status.hook.attachedProgramId, status.hook.programId, 'and attached (as the agent sees it)');
  t.equal(attachedXdp(sb), status.hook.programId, 'and attached (as ip link sees it)');
  t.ok(existsSync(join(sb.pinDir, 'rs_redirect')), 'maps pinned in the bpffs of its user');
  const stopped = await first.stop();
  t.equal(stopped, 0, 'SIGTERM: exits 0');
  t.equal(attachedXdp(sb), status.hook.programId, 'the program stays attached');

  const second = await startAgent(sb, NEEDED, REPO_AGENT);
  t.teardown(() => void second.stop());
  t.equal(second.ready.adopted, true, 'restarted with the same capabilities, it adopts the pinned data plane');
  const after = apiGet(sb, second.ready.url, '/status').body as { hook: { programId: number; attachedProgramId: number } };
  t.equal(attachedXdp(sb), after.hook.programId, 'and attaches its program in place of the old one');
  t.equal(await second.stop(), 0);

  const cleanup = runAs(sb, NEEDED, [...REPO_AGENT, 'agent', '--uplink', sb.uplink, '--pin-dir', sb.pinDir, '--cleanup']);
  t.equal(cleanup.status, 0, `--cleanup with the same capabilities exits 0 (${cleanup.stderr.trim()})`);
  t.equal(attachedXdp(sb), 0, 'nothing attached after cleanup');
  t.notOk(existsSync(sb.pinDir), 'pins removed');
});

t.test('with one capability missing the agent refuses, naming it, and leaves nothing', async (t) => {
  const sb = createSandbox('rslq');
  t.teardown(() => sb.destroy());
  for (const missing of NEEDED) {
    const caps = NEEDED.filter((c) => c !== missing);
    const r = runAs(sb, caps, [...REPO_AGENT, 'agent', '--uplink', sb.uplink, '--listen', '127.0.0.1:0', '--pin-dir', sb.pinDir, '--token-file', sb.tokenFile]);
    t.not(r.status, 0, `without ${missing}: refused (exit ${r.status})`);
    t.match(r.stderr, new RegExp(`lacks ${missing}`), `the message names ${missing}`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.equal(attachedXdp(sb), 0, 'nothing attached');
    t.notOk(existsSync(sb.pinDir) && readdirSync(sb.pinDir).length > 0, 'nothing pinned');
  }
});

t.test('CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the kernel lets it', async (t) => {
  const sb = createSandbox('rslr');
  t.teardown(() => sb.destroy());
  const caps: CapabilityName[] = ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN'];
  const agent = await startAgent(sb, caps, REPO_AGENT);
  t.teardown(() => void agent.stop());
  t.equal(credentials(agent.child.pid!).capEff.toString(16), capMask(caps).toString(16), 'holds only CAP_SYS_ADMIN and CAP_NET_ADMIN');
  const status = apiGet(sb, agent.ready.url, '/status').body as { hook: { programId: number } };
  t.equal(attachedXdp(sb), status.hook.programId, 'and loads and attaches its program');
  t.equal(await agent.stop(), 0);
  t.equal(runAs(sb, caps, [...REPO_AGENT, 'agent', '--uplink', sb.uplink, '--pin-dir', sb.pinDir, '--cleanup']).status, 0, 'cleanup');
});
