/**
 * TLS and mTLS between the controller and real agents, with certificates
 * openssl makes here: agent A requires client certificates (--client-ca),
 * agent B serves HTTPS only; each has its own token. The client verifies
 * agents by the fleet CA, presents its certificate, and says in words why a
 * connection failed; the CLI finds each agent's token and certificates in a
 * credentials file, flags winning over it, and migrates an app over mTLS.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentRefusedError, AgentUnreachableError, HttpAgentClient } from '../src/controller/agent-client.js';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';
import { makeCerts } from './lib/certs.js';
import { runCli, type CliRun } from './lib/cli.js';

const prefix = uniquePrefix('rstls');
const pinA = `/sys/fs/bpf/${prefix}-a`;
const pinB = `/sys/fs/bpf/${prefix}-b`;
const hostA = Netns.create(`${prefix}-a`);
const hostB = Netns.create(`${prefix}-b`);
const fabric = Netns.create(`${prefix}-f`);
const appA = Netns.create(`${prefix}-xa`);
const appB = Netns.create(`${prefix}-xb`);
const tmp = mkdtempSync(join(tmpdir(), 'rs-tls-'));
t.teardown(() => {
  for (const ns of [hostA, hostB, fabric, appA, appB]) ns.delete();
  for (const p of [pinA, pinB, `${pinA}-refused`]) rmSync(p, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});
veth({ ns: hostA, dev: 'eth0', addrs: ['10.0.20.2/24'] }, { ns: fabric, dev: 'upa', addrs: ['10.0.20.1/24'] });
veth({ ns: hostB, dev: 'eth0', addrs: ['10.0.21.2/24'] }, { ns: fabric, dev: 'upb', addrs: ['10.0.21.1/24'] });
veth({ ns: hostA, dev: 'vxa' }, { ns: appA, dev: 'eth0', mac: '02:00:00:00:20:10', addrs: ['10.200.20.10/32'] });
veth({ ns: hostB, dev: 'vxb' }, { ns: appB, dev: 'eth0', mac: '02:00:00:00:21:10', addrs: ['10.200.20.10/32'] });

const certs = makeCerts(tmp);
const pem = (p: string): Buffer => readFileSync(p);

let a: AgentProcess;
let b: AgentProcess;
t.before(async () => {
  const tls = ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key];
  [a, b] = await Promise.all([
    AgentProcess.start({ netns: hostA.name, pinDir: pinA, args: [...tls, '--client-ca', certs.ca] }),
    AgentProcess.start({ netns: hostB.name, pinDir: pinB, args: tls }),
  ]);
});
t.teardown(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

const good = () => ({ ca: pem(certs.ca), cert: pem(certs.client.cert), key: pem(certs.client.key) });

async function failure(c: HttpAgentClient): Promise<Error> {
  const err = await c.status().then(
    () => new Error('the request succeeded'),
    (e: unknown) => e as Error,
  );
  return err;
}

t.test('mTLS agent: the fleet CA, a client certificate and the token get an answer', async (t) => {
  t.match(a.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const s = await new HttpAgentClient(a.url, { token: a.token, tls: good() }).status();
  t.equal(s.uplink, 'eth0');
  t.equal(s.tunnel.v4, '10.0.20.2');
});

t.test('the agent is verified: without the fleet CA, or with another, the client says so', async (t) => {
  const system = await failure(new HttpAgentClient(a.url, { token: a.token, tls: { cert: pem(certs.client.cert), key: pem(certs.client.key) } }));
  t.ok(system instanceof AgentUnreachableError);
  t.match(system.message, /unreachable: GET \/status: TLS: the agent's certificate is not signed by a trusted CA .*\[[A-Z_]+\]/);
  const other = await failure(new HttpAgentClient(a.url, { token: a.token, tls: { ...good(), ca: pem(certs.otherCa) } }));
  t.match(other.message, /not signed by a trusted CA/);
});

t.test('the agent with --client-ca refuses clients without a good certificate', async (t) => {
  // The agent answers 403 saying why (a refusal inside the TLS 1.3 handshake would reach the client as a bare reset).
  const none = await failure(new HttpAgentClient(a.url, { token: a.token, tls: { ca: pem(certs.ca) } }));
  t.ok(none instanceof AgentRefusedError, none.message);
  t.match(none.message, /GET \/status → HTTP 403: a client certificate is required \(the agent runs with --client-ca\)/);
  const stranger = await failure(new HttpAgentClient(a.url, { token: a.token, tls: { ca: pem(certs.ca), cert: pem(certs.strangerClient.cert), key: pem(certs.strangerClient.key) } }));
  t.ok(stranger instanceof AgentRefusedError, stranger.message);
  t.match(stranger.message, /HTTP 403: client certificate refused: not signed by the agent's --client-ca/);
  const expired = await failure(new HttpAgentClient(a.url, { token: a.token, tls: { ca: pem(certs.ca), cert: pem(certs.expiredClient.cert), key: pem(certs.expiredClient.key) } }));
  t.match(expired.message, /HTTP 403: client certificate refused: it has expired/);
  t.equal(await new HttpAgentClient(a.url, { tls: { ca: pem(certs.ca) } }).health(), false, 'even /healthz needs the certificate');
  const wrongToken = await failure(new HttpAgentClient(a.url, { token: b.token, tls: good() }));
  t.ok(wrongToken instanceof AgentRefusedError, 'a certificate does not replace the token');
  t.match(wrongToken.message, /HTTP 401/);
  const plain = await failure(new HttpAgentClient(a.url.replace('https:', 'http:'), { token: a.token }));
  t.ok(plain instanceof AgentUnreachableError, `plain HTTP to an HTTPS agent: ${plain.message}`);
  t.match(plain.message, /an agent serving https:\/\/ does this|is the agent serving https:\/\//);
});

t.test('TLS-only agent: the fleet CA is enough, a client certificate is not asked for', async (t) => {
  const s = await new HttpAgentClient(b.url, { token: b.token, tls: { ca: pem(certs.ca) } }).status();
  t.equal(s.tunnel.v4, '10.0.21.2');
  const s2 = await new HttpAgentClient(b.url, { token: b.token, tls: good() }).status();
  t.equal(s2.uplink, 'eth0', 'an offered certificate does no harm');
});

/** The CLI with only what the test gives it: no token variable, a HOME without credentials. */
const cli = (args: string[]): Promise<CliRun> => runCli(args, { isolatedHome: join(tmp, 'home') });

t.test('CLI: per-agent tokens and the fleet CA and client certificate from the credentials file', async (t) => {
  // Relative paths are relative to the file: the file sits beside the certificates.
  const creds = join(tmp, 'credentials.json');
  writeFileSync(
    creds,
    JSON.stringify({
      agents: { [a.url]: { tokenFile: a.tokenFile }, [b.url]: { tokenFile: b.tokenFile } },
      default: { caFile: 'fleet-ca.pem', clientCert: 'controller.pem', clientKey: 'controller.key' },
    }),
    { mode: 0o600 },
  );
  const c = ['--credentials', creds];

  const status = await cli(['status', a.url, b.url, '--json', ...c]);
  t.equal(status.code, 0, status.stderr);
  const reports = (JSON.parse(status.stdout) as { agents: { url: string; ok: boolean }[] }).agents;
  t.same(reports.map((r) => r.ok), [true, true], 'each agent answered with its own token');

  const add = await cli(['app', 'add', 'x', '--agent', a.url, '--addr', '10.200.20.10', '--dev', 'vxa', '--mac', '02:00:00:00:20:10', ...c]);
  t.equal(add.code, 0, add.stderr);
  t.match(add.stdout, /x: 10\.200\.20\.10 on vxa, LOCAL/);

  // Flags win over the file.
  const wrongCa = await cli(['app', 'list', '--agent', a.url, '--ca-file', certs.otherCa, ...c]);
  t.equal(wrongCa.code, 1);
  t.match(wrongCa.stderr, /^routeshift: agent https:\/\/127\.0\.0\.1:\d+ unreachable: GET \/v1\/apps: TLS: the agent's certificate is not signed by a trusted CA/);
  const stranger = await cli(['app', 'list', '--agent', a.url, '--client-cert', certs.strangerClient.cert, '--client-key', certs.strangerClient.key, ...c]);
  t.equal(stranger.code, 1);
  t.match(stranger.stderr, /HTTP 403: client certificate refused: not signed by the agent's --client-ca/);
  const otherToken = await cli(['status', a.url, '--token-file', b.tokenFile, ...c]);
  t.equal(otherToken.code, 1, '--token-file (B\'s token) wins over A\'s entry: A says 401');
  t.match(otherToken.stdout, /HTTP 401/);
  const noToken = await cli(['app', 'list', '--agent', b.url, '--ca-file', certs.ca]);
  t.equal(noToken.code, 1, 'no token anywhere: sent without one, the agent says 401');
  t.match(noToken.stderr, /HTTP 401: .*\(no token was sent: no credentials file at .*home\/\.config\/routeshift\/credentials\.json; give --token-file/, 'the 401 says where the CLI looked and how to give a token');
  for (const r of [wrongCa, stranger, noToken]) t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');

  const state = join(tmp, 'state');
  const migrate = await cli([
    'migrate', 'x', '--from', a.url, '--to', b.url, '--dest-dev', 'vxb', '--dest-mac', '02:00:00:00:21:10',
    '--state-dir', state, '--stop-grace-ms', '1', '--announce-grace-ms', '1', '--json', ...c,
  ]);
  t.equal(migrate.code, 0, migrate.stderr);
  t.equal((JSON.parse(migrate.stdout) as { outcome: string }).outcome, 'done', 'a whole migration over mTLS (A) and TLS (B)');
  const onB = await new HttpAgentClient(b.url, { token: b.token, tls: good() }).getApp('x');
  t.same(onB?.action, { type: 'local' }, 'x is LOCAL on B');

  const dry = await cli(['drain', b.url, '--to', a.url, '--dry-run', '--json', ...c]);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /"app":\s*"x"/, 'B, drained on paper, would send x back to A');
});

t.test('agent start-up refuses bad TLS options in one line and leaves nothing behind', async (t) => {
  const notPem = join(tmp, 'not.pem');
  writeFileSync(notPem, 'hello\n');
  const base = ['agent', '--uplink', 'eth0', '--netns', hostA.name, '--listen', '127.0.0.1:0', '--pin-dir', `${pinA}-refused`, '--token-file', join(tmp, 'refused-token')];
  const cases: [string[], number, RegExp][] = [
    [['--client-ca', certs.ca], 2, /--client-ca makes the agent check client certificates, which only HTTPS carries: give --tls-cert and --tls-key too/],
    [['--tls-cert', certs.server.cert, '--tls-key', certs.client.key], 1, /--tls-key .* is not the private key of --tls-cert/],
    [['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--client-ca', notPem], 1, /--client-ca .*not\.pem holds no PEM certificate/],
    [['--tls-cert', join(tmp, 'absent.pem'), '--tls-key', certs.server.key], 1, /cannot read --tls-cert .*absent\.pem: ENOENT/],
  ];
  for (const [extra, code, re] of cases) {
    const r = await cli([...base, ...extra]);
    t.equal(r.code, code, `${extra.join(' ')}: ${r.stderr.trim()}`);
    t.match(r.stderr, re);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  t.notOk(readFileSafe(join(tmp, 'refused-token')), 'no token was generated');
  t.equal((await new HttpAgentClient(a.url, { token: a.token, tls: good() }).status()).uplink, 'eth0', 'and the running agent on that uplink is untouched');
});

function readFileSafe(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}
