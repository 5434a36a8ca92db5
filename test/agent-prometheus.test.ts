/**
 * A real Prometheus server scrapes a real agent (bearer token) while real
 * packets hit an application's LOCAL entry; its query API must return the
 * per-app counter the kernel counted. promtool lints the exposition.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentProcess } from '../src/testbed/agent-process.js';
import { Netns, uniquePrefix, veth } from '../src/testbed/netns.js';

const PINGS = 25;
const prefix = uniquePrefix('rsprom');
const pinDir = `/sys/fs/bpf/${prefix}`;
const dir = mkdtempSync(join(tmpdir(), 'rs-prom-'));
const host = Netns.create(`${prefix}-h`);
const fabric = Netns.create(`${prefix}-f`);
const app = Netns.create(`${prefix}-x`);
t.teardown(() => {
  for (const ns of [host, fabric, app]) ns.delete();
  rmSync(pinDir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});
veth({ ns: fabric, dev: 'up0', addrs: ['10.0.10.1/24'] }, { ns: host, dev: 'eth0', addrs: ['10.0.10.2/24'] });
veth({ ns: host, dev: 'vx0' }, { ns: app, dev: 'eth0', mac: '02:00:00:00:00:10', addrs: ['10.200.0.10/32'] });
host.sysctl('net.ipv4.ip_forward', 1);
host.sysctl('net.ipv4.conf.vx0.proxy_arp', 1);
host.ip('route', 'add', '10.200.0.10/32', 'dev', 'vx0');
host.ip('neigh', 'add', '10.200.0.10', 'lladdr', '02:00:00:00:00:10', 'dev', 'vx0', 'nud', 'permanent');
app.ip('route', 'add', 'default', 'dev', 'eth0');
fabric.ip('route', 'add', '10.200.0.0/24', 'via', '10.0.10.2');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

t.test('Prometheus scrapes the per-app counter the kernel counted', async (t) => {
  // Generic XDP: redirects into the app's veth arrive whatever its peer runs.
  const agent = await AgentProcess.start({ netns: host.name, pinDir, args: ['--xdp-mode', 'generic'] });
  t.teardown(() => agent.stop());
  t.equal((await agent.request('PUT', '/v1/apps/x', { address: '10.200.0.10', dev: 'vx0' })).status, 201);
  const out = fabric.exec('ping', '-c', String(PINGS), '-i', '0.01', '-W', '1', '10.200.0.10');
  t.match(out, new RegExp(`${PINGS} packets transmitted, ${PINGS} received`), 'every ping answered through the LOCAL redirect');

  const port = await freePort();
  writeFileSync(join(dir, 'token'), agent.token, { mode: 0o600 });
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, scrape_timeout: 900ms }',
      'scrape_configs:',
      '  - job_name: routeshift',
      `    authorization: { type: Bearer, credentials_file: ${join(dir, 'token')} }`,
      `    static_configs: [{ targets: ['${new URL(agent.url).host}'] }]`,
    ].join('\n'),
  );
  const prom = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: 'ignore' },
  );
  t.teardown(() => {
    prom.kill('SIGKILL');
  });

  const query = encodeURIComponent('routeshift_app_packets_total{app="x",action="local"}');
  let value: string | undefined;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && value === undefined) {
    await new Promise((r) => setTimeout(r, 500));
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${query}`);
      const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
      value = body.data?.result?.[0]?.value[1];
    } catch {
      /* not up yet */
    }
  }
  t.equal(value, String(PINGS), `Prometheus reports ${PINGS} packets delivered locally to x`);

  const upRes = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=up`);
  t.match(await upRes.text(), /"value":\[[0-9.]+,"1"\]/, 'the scrape target is up (token accepted)');
});

t.test('promtool accepts the exposition', async (t) => {
  const agent = await AgentProcess.start({ netns: host.name, pinDir, args: ['--xdp-mode', 'generic'] });
  t.teardown(() => agent.stop());
  const metrics = (await agent.request('GET', '/metrics')).text;
  t.match(metrics, /routeshift_app_packets_total\{app="x",action="local",uplink="eth0"\} \d+/);
  const lint = execFileSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
  t.equal(lint.trim(), '', 'no lint findings');
});
