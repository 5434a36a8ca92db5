/**
 * The release artifact installs and runs without a clone: scripts/release.sh
 * builds the npm package tarball; `npm install -g --prefix TMP` installs it
 * (dependencies from the npm cache or registry, the native addon built by
 * the package's install script against the system libbpf); the installed
 * `routeshift` runs, and starts an agent — as uid 65534 with only the
 * capabilities the systemd unit grants, in a namespace of its own — that
 * finds its BPF objects in the installed package, loads and attaches its
 * program and answers /healthz.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_CAPABILITIES } from '../src/agent/capabilities.js';
import { repoRoot } from '../src/bpf/native.js';
import { CHILD_ENV } from './lib/e2e.js';
import { apiGet, attachedXdp, createSandbox, runAs, startAgent } from './lib/unprivileged-agent.js';

const NEEDED = AGENT_CAPABILITIES.map((n) => n.capability);

/** Run a command to its end; `env -u` keeps tap's NODE_OPTIONS hook out of npm and its scripts. */
function sh(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync('env', ['-u', 'NODE_OPTIONS', cmd, ...args], {
    encoding: 'utf8',
    cwd: opts.cwd ?? repoRoot(),
    env: { ...CHILD_ENV, ...opts.env },
    timeout: opts.timeoutMs ?? 240_000,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const work = mkdtempSync(join(tmpdir(), 'rs-install-'));
chmodSync(work, 0o755); // the agent's user runs the installed package from here
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const prefix = join(work, 'prefix');
let tarball = '';

t.test('scripts/release.sh builds one tarball with what an install needs, and nothing host-built', async (t) => {
  const r = sh('bash', ['scripts/release.sh', join(work, 'out')]);
  t.equal(r.status, 0, `release.sh exits 0 (${r.stderr.trim().split('\n').slice(-3).join(' | ')})`);
  tarball = r.stdout.trim().split('\n').at(-1) ?? '';
  t.ok(tarball.endsWith('.tgz') && existsSync(tarball), `it prints the tarball's path (${tarball})`);
  const files = sh('tar', ['-tzf', tarball]).stdout.trim().split('\n');
  t.comment(`${files.length} files`);
  for (const f of ['bpf/uplink.o', 'bpf/watch.o', 'dist/src/cli/main.js', 'binding.gyp', 'native/addon.cc', 'scripts/install-native.mjs',
    'deploy/routeshift-agent@.service', 'deploy/sysusers.d/routeshift.conf', 'npm-shrinkwrap.json']) {
    t.ok(files.includes(`package/${f}`), `carries ${f}`);
  }
  t.same(files.filter((f) => f.endsWith('.node')), [], 'no host-built addon');
  t.same(files.filter((f) => /\/(test|bench)\//.test(f) && !f.endsWith('dist/bench/names.js')), [], 'no tests, no benchmarks');
  t.same(files.filter((f) => f.endsWith('.map') || f.endsWith('.ts')), [], 'no sources maps or TypeScript');
  t.ok(files.length < 200, `a small package (${files.length} files)`);
});

t.test('npm install -g --prefix installs it and puts routeshift on PATH', async (t) => {
  if (!tarball) return t.fail('no tarball');
  mkdirSync(prefix, { recursive: true });
  const r = sh('npm', ['install', '-g', '--prefix', prefix, '--allow-scripts=routeshift', '--prefer-offline', '--no-audit', '--no-fund', tarball]);
  t.equal(r.status, 0, `npm install exits 0 (${r.stderr.trim().split('\n').slice(-5).join(' | ')})`);
  const bin = join(prefix, 'bin', 'routeshift');
  t.ok(lstatSync(bin).isSymbolicLink(), 'bin/routeshift is the npm bin link');
  t.match(readlinkSync(bin), /routeshift\/dist\/src\/cli\/main\.js$/, 'to the CLI');
  const pkg = join(prefix, 'lib', 'node_modules', 'routeshift');
  t.ok(existsSync(join(pkg, 'build', 'Release', 'routeshift_native.node')), 'the native addon was built at install');
  const help = sh(bin, ['--help'], { env: { PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` } });
  t.equal(help.status, 0, 'routeshift --help exits 0');
  t.match(help.stdout, /routeshift agent/, 'and lists the agent command');

  // The install script's refusal when the libbpf headers are missing (pkg-config finds no libbpf).
  const empty = join(work, 'no-pkgconfig');
  mkdirSync(empty);
  const refused = sh(process.execPath, [join(pkg, 'scripts', 'install-native.mjs')], { cwd: pkg, env: { PKG_CONFIG_LIBDIR: empty, PKG_CONFIG_PATH: empty } });
  t.equal(refused.status, 1, 'the install script fails without libbpf headers');
  t.match(refused.stderr, /libbpf headers are missing/, 'saying what is missing');
  t.match(refused.stderr, /apt-get install -y libbpf-dev pkg-config g\+\+ make python3/, 'and which Debian packages to install');
});

t.test('the installed routeshift runs an agent (uid 65534, the unit\'s capabilities) in a namespace', async (t) => {
  const bin = join(prefix, 'bin', 'routeshift');
  if (!existsSync(bin)) return t.fail('not installed');
  const sb = createSandbox('rsin');
  t.teardown(() => sb.destroy());
  const agent = await startAgent(sb, NEEDED, [bin]);
  t.teardown(() => void agent.stop());
  t.equal(agent.ready.adopted, false, 'ready, with a fresh data plane');
  t.same(apiGet(sb, agent.ready.url, '/healthz'), { status: 200, body: { ok: true } }, '/healthz answers');
  const status = apiGet(sb, agent.ready.url, '/status').body as { hook: { programId: number } };
  t.ok(status.hook.programId > 0, 'it loaded its program (from the installed package\'s bpf/uplink.o)');
  t.equal(attachedXdp(sb), status.hook.programId, 'and attached it to the uplink');
  t.equal(await agent.stop(), 0, 'SIGTERM by PID: exits 0');
  const cleanup = runAs(sb, NEEDED, [bin, 'agent', '--uplink', sb.uplink, '--pin-dir', sb.pinDir, '--cleanup']);
  t.equal(cleanup.status, 0, `routeshift agent --cleanup exits 0 (${cleanup.stderr.trim()})`);
  t.equal(attachedXdp(sb), 0, 'nothing left attached');
});
