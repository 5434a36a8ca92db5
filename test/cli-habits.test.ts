/**
 * The CLI's habits, as an operator meets them: `--version` from
 * package.json, `routeshift completion` (the bash script driven by a real
 * bash, the zsh script's shape), unknown flags named as such with a
 * suggestion (before any "missing required argument"), with --json,
 * bad usage as an Error document with exit 2, and bad --announce/--driver
 * values (names, templates) refused as bad usage before anything runs.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDocument } from '../src/cli/json.js';
import { closest, editDistance } from '../src/cli/flags.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/src/cli/main.js');
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'));
const tmp = mkdtempSync(join(tmpdir(), 'rs-habits-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv = ENV): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('--version prints the version of package.json', async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = cli(['--version']);
  t.equal(r.code, 0);
  t.equal(r.stdout.trim(), version);
});

t.test('completion: the bash script, run by bash, completes commands, subcommands and flags', async (t) => {
  const r = cli(['completion', 'bash']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /complete -o default -F _routeshift_completions routeshift/);
  const script = join(tmp, 'routeshift.bash');
  writeFileSync(script, r.stdout);
  // The script calls `routeshift`: put this build on PATH under that name.
  const bin = join(tmp, 'bin');
  spawnSync('mkdir', ['-p', bin]);
  writeFileSync(join(bin, 'routeshift'), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`);
  chmodSync(join(bin, 'routeshift'), 0o755);
  const complete = (words: string[]): string[] => {
    const line = words.map((w) => `'${w}'`).join(' ');
    const out = spawnSync(
      'bash',
      ['-c', `source ${script}; COMP_WORDS=(${line}); COMP_CWORD=${words.length - 1}; _routeshift_completions; printf '%s\\n' "\${COMPREPLY[@]}"`],
      { encoding: 'utf8', env: { ...ENV, PATH: `${bin}:${process.env.PATH ?? ''}` }, timeout: 60_000 },
    );
    t.equal(out.status, 0, out.stderr);
    return out.stdout.split('\n').filter(Boolean);
  };
  const top = complete(['routeshift', '']);
  for (const c of ['agent', 'app', 'migrate', 'drain', 'status', 'maps', 'completion']) t.ok(top.includes(c), `names the command ${c}`);
  t.same(complete(['routeshift', 'mi']), ['migrate'], 'a prefix narrows to its command');
  t.same(complete(['routeshift', 'app', '']).sort(), ['add', 'list', 'rm'], 'subcommands of app');
  t.ok(complete(['routeshift', 'migrate', 'x', '--dry']).includes('--dry-run'), 'flags of a command');
});

t.test('completion: the zsh script registers a completion function that asks routeshift', async (t) => {
  const r = cli(['completion', 'zsh']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^#compdef routeshift\n/);
  t.match(r.stdout, /SHELL=zsh routeshift --get-yargs-completions/);
  t.match(r.stdout, /compdef _routeshift routeshift/);
  // What the zsh script reads: "name:description" lines, one per command.
  const words = cli(['--get-yargs-completions', 'routeshift', ''], { ...ENV, SHELL: '/bin/zsh' });
  t.match(words.stdout, /^migrate:live-migrate one application/m);
  t.match(words.stdout, /^maps:/m);
  const zsh = spawnSync('zsh', ['-n'], { input: r.stdout, encoding: 'utf8' });
  if (zsh.error) t.comment('zsh is not installed: its syntax check is skipped');
  else t.equal(zsh.status, 0, `zsh -n: ${zsh.stderr}`);
  const bad = cli(['completion', 'fish']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown shell "fish" \(known: bash, zsh\)/);
});

t.test('an unknown flag is named, with the flag it looks like, before any missing one', async (t) => {
  const r = cli(['app', 'add', 'x', '--agnet', 'http://127.0.0.1:1', '--addr', '10.0.0.1', '--dev', 'v0']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^routeshift: Unknown argument: agnet \(did you mean --agent\?\)\n/);
  t.notMatch(r.stderr, /Missing required argument/);
  const typo = cli(['migrate', 'x', '--from', 'http://a:1', '--to', 'http://b:1', '--dest-dev', 'v', '--dryrun']);
  t.equal(typo.code, 2);
  t.match(typo.stderr, /Unknown argument: dryrun \(did you mean --dry-run\?\)/);
  const far = cli(['status', 'http://a:1', '--zzzzzzzz']);
  t.equal(far.code, 2);
  t.match(far.stderr, /Unknown argument: zzzzzzzz\n/, 'no suggestion when nothing is close');
  const neg = cli(['app', 'list', '--agent', 'http://127.0.0.1:1', '--no-jsno']);
  t.match(neg.stderr, /Unknown argument: no-jsno \(did you mean --json\?\)/);
  const ok = cli(['migrate', 'x', '--dryRun', '--resume']);
  t.match(ok.stderr, /--dry-run plans a new migration/, 'camel-case spellings of known flags are known');
  t.equal(editDistance('agnet', 'agent'), 1, 'a swap of neighbours is one edit');
  t.equal(closest('tokn-file', ['token-file', 'json']), 'token-file');
});

t.test('with --json, bad usage is an Error document (exit 2) and stderr keeps the one line', async (t) => {
  const r = cli(['app', 'add', 'x', '--agnet', 'http://127.0.0.1:1', '--addr', '10.0.0.1', '--dev', 'v0', '--json']);
  t.equal(r.code, 2);
  const doc = JSON.parse(r.stdout) as Record<string, unknown>;
  t.same(checkDocument(doc), [], 'the Error document matches its schema');
  t.match(doc, { kind: 'Error', code: 'bad-usage', exitCode: 2, message: 'Unknown argument: agnet (did you mean --agent?)' });
  t.match(r.stderr, /^routeshift: Unknown argument: agnet/);
  writeFileSync(join(tmp, 'token'), 'tok\n');
  const badAddr = cli(['app', 'add', 'x', '--agent', 'http://127.0.0.1:1', '--addr', 'nonsense', '--dev', 'v0', '--json', '--token-file', join(tmp, 'token')]);
  t.equal(badAddr.code, 2);
  t.match(JSON.parse(badAddr.stdout), { kind: 'Error', code: 'bad-usage', exitCode: 2, message: /--addr "nonsense": expected IP/ });
});

t.test('bad --announce / --driver values are bad usage (exit 2), refused before a journal is written', async (t) => {
  const stateDir = join(tmp, 'state');
  const token = join(tmp, 'token-600');
  writeFileSync(token, 'tok\n', { mode: 0o600 });
  // Agents that do not exist: a value checked only once the migration ran would end in exit 1 (rolled back).
  const migrate = (...extra: string[]) =>
    cli(['migrate', 'x', '--from', 'http://127.0.0.1:1', '--to', 'http://127.0.0.1:2', '--dest-dev', 'v0', '--state-dir', stateDir, '--token-file', token, ...extra]);
  const cases: [string[], RegExp][] = [
    [['--announce', 'bogus'], /Argument: announce, Given: "bogus"/],
    [['--driver', 'bogus'], /Argument: driver, Given: "bogus"/],
    [['--announce', 'netns-route', '--announce-netns', 'bad name!', '--announce-via', '10.0.0.1'], /--announce netns-route: invalid network namespace name "bad name!"/],
    [['--announce', 'netns-route', '--announce-netns', 'fab', '--announce-via', '10.0.0.1', '--announce-dev', 'a-device-name-too-long'], /invalid device name "a-device-name-too-long"/],
    [['--driver', 'netns-process', '--src-netns', 'bad/ns', '--dst-netns', 'b', '--cmd', 'sleep 1'], /--src-netns: "bad\/ns" does not make a network namespace name/],
    [['--driver', 'netns-process', '--src-netns', 'a', '--dst-netns', 'b-{bogus}', '--cmd', 'sleep 1'], /--dst-netns: unknown placeholder \{bogus\}/],
    [['--driver', 'netns-process', '--src-netns', 'a', '--dst-netns', 'b', '--cmd', 'app --port {prot}'], /--cmd: unknown placeholder \{prot\} .*known: \{app\}/],
  ];
  for (const [extra, message] of cases) {
    const r = migrate(...extra);
    t.equal(r.code, 2, `${extra.join(' ')}: exit 2 (${r.stderr.split('\n')[0]})`);
    t.match(r.stderr, message, '…naming the option and what is wrong');
  }
  const drain = cli(['drain', 'http://127.0.0.1:1', '--to', 'http://127.0.0.1:2', '--state-dir', stateDir, '--token-file', token,
    '--driver', 'netns-process', '--src-netns', 'a-{app}', '--dst-netns', 'b-{ap}', '--cmd', 'sleep 1']);
  t.equal(drain.code, 2, `drain takes the same checks: ${drain.stderr.split('\n')[0]}`);
  t.match(drain.stderr, /--dst-netns: unknown placeholder \{ap\}/);
  t.notOk(existsSync(join(stateDir, 'journal')), 'none of them wrote a journal');
  const good = migrate('--driver', 'netns-process', '--src-netns', 'a-{app}', '--dst-netns', 'b-{app}-{index}', '--cmd', 'app {address} {port}');
  t.equal(good.code, 1, `valid templates pass the checks; the absent agents then fail the run: exit 1 (${good.stderr.trim().split('\n').pop()})`);
  t.equal(readdirSync(join(stateDir, 'journal')).length, 1, '…which journaled its run');
});
