#!/usr/bin/env node
// npm "install" script: build the native addon (native/*.cc, binding.gyp)
// against the system libbpf with node-gyp. Checks the build tools and
// headers first, so that a host without them gets one message naming the
// Debian packages to install instead of a compiler error.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const APT = 'apt-get install -y libbpf-dev pkg-config g++ make python3';

function fail(what) {
  process.stderr.write(
    `routeshift: cannot build the native addon: ${what}\n` +
      `  on Debian 12, as root: ${APT}\n` +
      '  (libbpf-dev brings libelf-dev and zlib1g-dev; at run time the agent needs libbpf1, libelf1, zlib1g, iproute2)\n',
  );
  process.exit(1);
}

function found(cmd, args = ['--version']) {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

if (process.platform !== 'linux') fail(`routeshift runs on Linux only (this is ${process.platform})`);
if (!found('pkg-config')) fail('pkg-config is missing');
if (!found('pkg-config', ['--exists', 'libbpf'])) fail('libbpf headers are missing (pkg-config finds no libbpf)');
const includeDirs = execFileSync('pkg-config', ['--cflags-only-I', 'libbpf'], { encoding: 'utf8' })
  .split(/\s+/)
  .filter((f) => f.startsWith('-I'))
  .map((f) => f.slice(2));
if (![...includeDirs, '/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'bpf', 'libbpf.h')))) {
  fail('libbpf headers are missing (no bpf/libbpf.h)');
}
const missingTools = [['g++', 'g++'], ['make', 'make'], ['python3', 'python3']].filter(([cmd]) => !found(cmd));
if (missingTools.length) fail(`${missingTools.map(([, pkg]) => pkg).join(', ')} missing`);

// npm hands its own node-gyp to install scripts (npm_config_node_gyp); a
// checkout has it in node_modules; anything else finds it on PATH.
const gyp = process.env.npm_config_node_gyp;
const localGyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const [cmd, args] = gyp
  ? [process.execPath, [gyp, 'rebuild']]
  : existsSync(localGyp)
    ? [process.execPath, [localGyp, 'rebuild']]
    : ['node-gyp', ['rebuild']];
const built = spawnSync(cmd, [...args, '--jobs=max', '--loglevel=warn'], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) fail(`node-gyp rebuild failed (exit ${built.status ?? built.signal}); its output is above`);

// Load it once: a library mismatch shows here, not at the agent's first start.
const addonPath = join(root, 'build', 'Release', 'routeshift_native.node');
try {
  const addon = createRequire(import.meta.url)(addonPath);
  process.stderr.write(`routeshift: native addon built against libbpf ${addon.libbpfVersion()}\n`);
} catch (err) {
  fail(`the built addon does not load: ${err.message}`);
}
