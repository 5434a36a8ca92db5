/**
 * The credentials file: parsing (every refusal names the file and the
 * field), permissions, matching by exact origin with the default entry
 * filling what an entry leaves out, command-line overrides winning, and the
 * CLI turning every bad case into one line and exit 2 before any request.
 */
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CredentialsError,
  agentOrigin,
  credentialsPath,
  loadCredentials,
  parseCredentials,
  resolveCredentials,
  type CredentialsFile,
} from '../src/controller/credentials.js';
import { makeCerts } from './lib/certs.js';
import { runCli, type CliRun } from './lib/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'rsct-cred-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const certs = makeCerts(tmp);

function secret(name: string, text: string, mode = 0o600): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}
const tokA = secret('token-a', 'token-of-agent-a\n');
const tokDefault = secret('token-default', 'token-of-the-fleet\n');

function file(obj: unknown, name = `cred-${Math.random().toString(36).slice(2)}.json`, mode = 0o600): string {
  return secret(name, typeof obj === 'string' ? obj : JSON.stringify(obj), mode);
}

const refused = (fn: () => unknown, re: RegExp) => {
  try {
    fn();
  } catch (err) {
    return err instanceof CredentialsError && re.test(err.message) ? true : `${String(err)} does not match ${re}`;
  }
  return 'did not throw';
};

t.test('parse: origins normalised, relative paths anchored at the file, default entry kept', async (t) => {
  const path = join(tmp, 'sub', 'c.json');
  const f = parseCredentials(
    JSON.stringify({
      agents: { 'https://Agent-A.example:7450/': { tokenFile: 'tokens/a' }, 'http://127.0.0.1:7450': { noToken: true }, 'https://[FD00::1]:443': { token: 'x' } },
      default: { caFile: '/etc/ca.pem', clientCert: 'c.pem', clientKey: 'c.key' },
    }),
    path,
  );
  t.same([...f.agents.keys()], ['https://agent-a.example:7450', 'http://127.0.0.1:7450', 'https://[fd00::1]']);
  t.same(f.agents.get('https://agent-a.example:7450'), { tokenFile: join(tmp, 'sub', 'tokens', 'a') });
  t.same(f.agents.get('http://127.0.0.1:7450'), { noToken: true });
  t.same(f.default, { caFile: '/etc/ca.pem', clientCert: join(tmp, 'sub', 'c.pem'), clientKey: join(tmp, 'sub', 'c.key') });
  t.equal(agentOrigin('https://[fd00::1]:443/x'), 'https://[fd00::1]', 'an agent URL matches by origin, default port dropped as in the key');
});

t.test('parse: every bad file is one message naming the file and what is wrong', async (t) => {
  const p = '/etc/rs/c.json';
  const cases: [string, RegExp][] = [
    ['{"agents": {', /^credentials file \/etc\/rs\/c\.json: not valid JSON: /],
    ['[]', /expected a JSON object/],
    ['{"agent": {}}', /unknown field "agent" \(known: agents, default\)/],
    ['{"agents": []}', /"agents" must be an object/],
    ['{"agents": {"10.0.0.1:7450": {"token": "x"}}}', /agents key "10\.0\.0\.1:7450": expected an origin/],
    ['{"agents": {"https://h:1/api": {"token": "x"}}}', /agents key "https:\/\/h:1\/api": expected an origin/],
    ['{"agents": {"https://u:p@h:1": {"token": "x"}}}', /expected an origin/],
    ['{"agents": {"ftp://h:1": {"token": "x"}}}', /expected an origin/],
    ['{"agents": {"https://H:1": {}, "https://h:1": {}}}', /names https:\/\/h:1 a second time/],
    ['{"agents": {"https://h:1": {"tokenfile": "x"}}}', /agents "https:\/\/h:1": unknown field "tokenfile" \(known: token, tokenFile, noToken, caFile, clientCert, clientKey\)/],
    ['{"agents": {"https://h:1": "secret"}}', /agents "https:\/\/h:1": expected an object/],
    ['{"agents": {"https://h:1": {"token": "x", "tokenFile": "y"}}}', /give one of "token", "tokenFile", "noToken", not "token" and "tokenFile"/],
    ['{"agents": {"https://h:1": {"token": ""}}}', /"token" must be a non-empty string/],
    ['{"agents": {"https://h:1": {"token": 5}}}', /"token" must be a non-empty string/],
    ['{"agents": {"https://h:1": {"noToken": false}}}', /"noToken" can only be true/],
    ['{"agents": {"https://h:1": {"clientCert": "c.pem"}}}', /"clientCert" and "clientKey" go together/],
    ['{"agents": {"http://h:1": {"caFile": "ca.pem"}}}', /only apply to https:\/\/ agents/],
    ['{"default": {"tokenFile": "a", "oops": 1}}', /"default": unknown field "oops"/],
  ];
  for (const [text, re] of cases) t.equal(refused(() => parseCredentials(text, p), re), true, text);
});

t.test('load: absent default file is no file; an explicit one must exist; permissions like ssh', async (t) => {
  t.equal(loadCredentials({ path: join(tmp, 'nope.json'), explicit: false }), undefined, 'no default file: nothing to read');
  t.equal(refused(() => loadCredentials({ path: join(tmp, 'nope.json'), explicit: true }), /cannot read credentials file .*nope\.json: ENOENT/), true);
  t.equal(refused(() => loadCredentials({ path: tmp, explicit: true }), /cannot read credentials file .*: EISDIR/), true);
  const withToken = { agents: { 'https://h:1': { token: 'inline-secret' } } };
  t.equal(refused(() => loadCredentials({ path: file(withToken, 'wide-token.json', 0o644), explicit: true }), /holds tokens and is readable by group or others \(mode 0644\); chmod 600 /), true);
  t.ok(loadCredentials({ path: file(withToken, 'tight-token.json', 0o600), explicit: true }), 'mode 0600 with an inline token is fine');
  const noSecret = { agents: { 'https://h:1': { tokenFile: tokA } }, default: { caFile: certs.ca } };
  t.ok(loadCredentials({ path: file(noSecret, 'readable.json', 0o644), explicit: true }), 'readable by others is fine when it holds no token');
  t.equal(refused(() => loadCredentials({ path: file(noSecret, 'writable.json', 0o664), explicit: true }), /writable by group or others \(mode 0664\)/), true);
});

t.test('path: --credentials, then $ROUTESHIFT_CREDENTIALS, then XDG or ~/.config', async (t) => {
  t.same(credentialsPath('/x/c.json', { ROUTESHIFT_CREDENTIALS: '/y' }), { path: '/x/c.json', explicit: true });
  t.same(credentialsPath(undefined, { ROUTESHIFT_CREDENTIALS: '/y/c.json' }), { path: '/y/c.json', explicit: true });
  t.same(credentialsPath(undefined, { XDG_CONFIG_HOME: '/cfg' }), { path: '/cfg/routeshift/credentials.json', explicit: false });
  t.same(credentialsPath(undefined, {}), { path: join(homedir(), '.config', 'routeshift', 'credentials.json'), explicit: false });
});

t.test('resolve: exact origin, the default filling each part the entry leaves out, flags winning', async (t) => {
  const f: CredentialsFile = parseCredentials(
    JSON.stringify({
      agents: {
        'https://127.0.0.1:7450': { tokenFile: tokA },
        'https://127.0.0.1:7451': { caFile: certs.otherCa },
        'http://127.0.0.1:7452': { noToken: true },
        'https://127.0.0.1:7453': { token: 'inline', clientCert: certs.strangerClient.cert, clientKey: certs.strangerClient.key },
      },
      default: { tokenFile: tokDefault, caFile: certs.ca, clientCert: certs.client.cert, clientKey: certs.client.key },
    }),
    join(tmp, 'resolve.json'),
  );
  const a = resolveCredentials('https://127.0.0.1:7450/', f, {}, f.path);
  t.equal(a.token, 'token-of-agent-a', 'its own token');
  t.ok(a.tls?.ca?.equals(readFileSync(certs.ca)), 'the default CA');
  t.ok(a.tls?.cert && a.tls.key, 'the default client certificate');
  t.same(a.sources, { token: `entry https://127.0.0.1:7450 of ${f.path}`, ca: `default entry of ${f.path}`, client: `default entry of ${f.path}` });

  const b = resolveCredentials('https://127.0.0.1:7451', f, {}, f.path);
  t.equal(b.token, 'token-of-the-fleet', 'no token in its entry: the default one');
  t.equal(b.sources.ca, `entry https://127.0.0.1:7451 of ${f.path}`, 'its own CA wins over the default');

  const other = resolveCredentials('https://127.0.0.1:9999', f, {}, f.path);
  t.equal(other.token, 'token-of-the-fleet', 'another port is another agent: the default entry');

  const insecure = resolveCredentials('http://127.0.0.1:7452', f, {}, f.path);
  t.equal(insecure.token, undefined, 'noToken: no token sent');
  t.equal(insecure.tls, undefined, 'the default CA has nothing to do on http://');

  const d = resolveCredentials('https://127.0.0.1:7453', f, {}, f.path);
  t.equal(d.token, 'inline');
  t.equal(d.sources.client, `entry https://127.0.0.1:7453 of ${f.path}`);

  const flags = resolveCredentials('https://127.0.0.1:7450', f, { tokenFile: tokDefault, caFile: certs.otherCa, clientCert: certs.expiredClient.cert, clientKey: certs.expiredClient.key }, f.path);
  t.equal(flags.token, 'token-of-the-fleet', '--token-file wins over the entry');
  t.same(flags.sources, { token: '--token-file', ca: '--ca-file', client: '--client-cert/--client-key' });
});

t.test('resolve: a URL nobody gave a token for goes without one (an --insecure agent needs none); the hint names the URL and the file searched', async (t) => {
  const noDefault = parseCredentials(JSON.stringify({ agents: { 'https://h:1': { tokenFile: tokA } } }), '/etc/rs/c.json');
  const none = resolveCredentials('https://h:2', noDefault, {}, noDefault.path);
  t.equal(none.token, undefined, 'no token sent');
  t.match(none.noTokenHint, /^no token was sent: \/etc\/rs\/c\.json has no entry for https:\/\/h:2 and no default entry; give --token-file/);
  const caOnly = parseCredentials(JSON.stringify({ default: { caFile: certs.ca } }), '/etc/rs/c.json');
  t.match(resolveCredentials('https://h:2', caOnly, {}, caOnly.path).noTokenHint, /its default entry gives no token/);
  t.match(resolveCredentials('https://h:2', undefined, {}, '/root/.config/routeshift/credentials.json').noTokenHint, /no credentials file at \/root\/\.config\/routeshift\/credentials\.json/);
  t.equal(resolveCredentials('https://h:1', noDefault, {}, noDefault.path).noTokenHint, undefined, 'a token found: no hint');
});

t.test('resolve: the files an entry names are read and checked at once', async (t) => {
  const wide = secret('token-wide', 'abc\n', 0o644);
  const empty = secret('token-empty', '\n');
  const notPem = secret('not-a-ca.pem', 'hello\n');
  const check = (entry: Record<string, unknown>, re: RegExp, url = 'https://h:1') => {
    const f = parseCredentials(JSON.stringify({ agents: { [agentOrigin(url)]: entry } }), join(tmp, 'x.json'));
    return refused(() => resolveCredentials(url, f, {}, f.path), re);
  };
  t.equal(check({ tokenFile: wide }, /token file \(entry https:\/\/h:1 of .*\) .*token-wide is accessible by group or others \(mode 0644\); chmod 600/), true);
  t.equal(check({ tokenFile: empty }, /token file .*token-empty .* is empty/), true);
  t.equal(check({ tokenFile: join(tmp, 'gone') }, /cannot read token file .*gone: ENOENT/), true);
  t.equal(check({ token: 'x', caFile: notPem }, /CA file .*not-a-ca\.pem .* holds no PEM certificate/), true);
  t.equal(check({ token: 'x', clientCert: certs.client.cert, clientKey: certs.strangerClient.key }, /client key .* does not belong to certificate/), true);
  const wideKey = secret('wide.key', readFileSync(certs.client.key, 'utf8'), 0o640);
  t.equal(check({ token: 'x', clientCert: certs.client.cert, clientKey: wideKey }, /client key .*wide\.key is accessible by group or others \(mode 0640\)/), true);
  t.equal(check({ token: 'x', clientCert: notPem, clientKey: certs.client.key }, /client certificate .*not-a-ca\.pem .* is not a PEM certificate/), true);
  t.equal(refused(() => resolveCredentials('http://h:1', undefined, { tokenFile: tokA, caFile: certs.ca }, '-'), /agent http:\/\/h:1: --ca-file needs an https:\/\/ agent URL/), true);
});

/** The CLI, isolated from the caller's environment (its own HOME, no token variable). */
const cli = (args: string[], env: Record<string, string> = {}): Promise<CliRun> => runCli(args, { env, isolatedHome: join(tmp, 'home'), timeoutMs: 30_000 });

t.test('CLI: bad credentials → exit 2, one line naming the problem, before any request', async (t) => {
  // Port 9 on loopback: nothing listens; a request would say ECONNREFUSED instead.
  const url = 'https://127.0.0.1:9';
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['status', url, '--credentials', file('{"agents": ')], {}, /credentials file .*: not valid JSON/],
    [['app', 'list', '--agent', url], { ROUTESHIFT_CREDENTIALS: file({ agents: { [url]: { tokn: 'x' } } }) }, /unknown field "tokn"/],
    [['migrate', 'x', '--from', url, '--to', 'https://127.0.0.1:10', '--dest-dev', 'v', '--credentials', join(tmp, 'missing.json')], {}, /cannot read credentials file .*missing\.json: ENOENT/],
    [['status', url, '--token-file', secret('cli-wide', 'abc', 0o644)], {}, /token file \(--token-file\) .*cli-wide is accessible by group or others/],
    [['status', url], { ROUTESHIFT_TOKEN_FILE: secret('env-wide', 'abc', 0o644) }, /token file \(\$ROUTESHIFT_TOKEN_FILE\)/],
    [['status', url, '--token-file', tokA, '--client-cert', certs.client.cert], {}, /--client-cert and --client-key go together/],
    [['status', 'http://127.0.0.1:9', '--token-file', tokA, '--ca-file', certs.ca], {}, /--ca-file needs an https:\/\/ agent URL/],
  ];
  for (const [args, env, re] of cases) {
    const r = await cli(args, env);
    t.equal(r.code, 2, `${args.join(' ')} → exit 2 (${r.stderr.trim()})`);
    t.match(r.stderr, re);
    t.notMatch(r.stderr, /ECONNREFUSED/, 'no request was sent');
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('--help says which wins', async (t) => {
  for (const cmd of [['status'], ['migrate'], ['drain'], ['app', 'list']]) {
    const r = await cli([...cmd, '--help']);
    t.match(r.stdout, /--token-file, --ca-file, --client-cert\/--client-key win over the credentials file/, `${cmd.join(' ')} --help`);
    for (const flag of ['--credentials', '--token-file', '--ca-file', '--client-cert', '--client-key']) t.match(r.stdout, flag);
  }
});
