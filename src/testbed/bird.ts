/**
 * Real BGP speakers for test topologies: one BIRD 2 per network namespace,
 * each with its own configuration, control socket and log in a directory
 * of the caller's, run in the foreground as our child and stopped by its
 * PID. Configurations for the two roles of the e2e test: the fabric router
 * (eBGP with every host, its kernel table fed from BGP) and a host (eBGP
 * with the router, exporting only the routes of the agent's include file).
 * Timers are short so that sessions come up in a second or two.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BirdControl, BirdError } from '../agent/bird-control.js';

/** Where Debian's bird2 puts the daemon; undefined when it is not installed. */
export function birdBinary(): string | undefined {
  for (const p of ['/usr/sbin/bird', '/usr/bin/bird']) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v bird'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

// Speakers never outlive the process that started them.
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export interface BirdSpeakerOptions {
  /** The network namespace BIRD runs in. */
  netns: string;
  /** Directory for bird.conf, the control socket (bird.ctl) and bird.log. */
  dir: string;
  config: string;
  readyTimeoutMs?: number;
}

export class BirdSpeaker {
  readonly control: BirdControl;

  private constructor(
    readonly child: ChildProcess,
    readonly socket: string,
    readonly log: string,
  ) {
    this.control = new BirdControl(socket, 5000);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  static async start(o: BirdSpeakerOptions): Promise<BirdSpeaker> {
    const bird = birdBinary();
    if (!bird) throw new Error('BIRD 2 is not installed (Debian package bird2; scripts/setup.sh installs it)');
    const conf = join(o.dir, 'bird.conf');
    const socket = join(o.dir, 'bird.ctl');
    const log = join(o.dir, 'bird.log');
    writeFileSync(conf, o.config);
    // `ip netns exec` execs BIRD itself: the child's PID is BIRD's. -f: stay in the foreground, our child.
    const child = spawn('ip', ['netns', 'exec', o.netns, bird, '-f', '-c', conf, '-s', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    child.once('exit', () => running.delete(child));
    const speaker = new BirdSpeaker(child, socket, log);
    const deadline = Date.now() + (o.readyTimeoutMs ?? 10_000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`bird in ${o.netns} exited (${child.exitCode ?? child.signalCode}): ${stderr.trim()}`);
      try {
        await speaker.control.command('show status');
        return speaker;
      } catch (err) {
        if (!(err instanceof BirdError) || Date.now() > deadline) {
          await speaker.stop();
          throw new Error(`bird in ${o.netns} did not answer on ${socket}: ${(err as Error).message} ${stderr.trim()}`);
        }
      }
      await sleep(50);
    }
  }

  /** Each protocol's state and info (`show protocols`), e.g. {hostA: 'up Established'}. */
  async protocols(): Promise<Record<string, string>> {
    const reply = await this.control.command('show protocols');
    const out: Record<string, string> = {};
    for (const l of reply.lines) {
      if (l.code !== 1002) continue;
      // name, protocol, table, state, since, info
      const [name, , , ...rest] = l.text.trim().split(/\s+/);
      if (name) out[name] = rest.join(' ');
    }
    return out;
  }

  /** Wait (bounded) until every named BGP protocol is Established. */
  async waitEstablished(names: readonly string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    while (Date.now() < deadline) {
      last = await this.protocols();
      if (names.every((n) => /Established/.test(last[n] ?? ''))) return;
      await sleep(100);
    }
    throw new Error(`BGP sessions not established within ${timeoutMs} ms: ${JSON.stringify(last)} (log ${this.log})`);
  }

  /** The routes BIRD holds for one prefix, as `show route PREFIX all` prints them (for test messages). */
  async routes(prefix: string): Promise<string> {
    try {
      const r = await this.control.command(`show route ${prefix} all`);
      return r.lines.map((l) => l.text).join('\n');
    } catch (err) {
      if (err instanceof BirdError && err.code === 8001) return '';
      throw err;
    }
  }

  async stop(timeoutMs = 5000): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    await done;
    clearTimeout(timer);
  }
}

export interface BgpPeer {
  /** BIRD protocol name (a symbol). */
  name: string;
  address: string;
  asn: number;
}

const TIMERS = 'connect delay time 1; connect retry time 1; error wait time 1, 3; hold time 9; keepalive time 3;';

/** The fabric router: eBGP with each host, everything learnt goes to the kernel (routes `proto bird`), nothing sent back. */
export function routerConfig(o: { routerId: string; asn: number; peers: readonly BgpPeer[]; log: string }): string {
  const six = o.peers.some((p) => p.address.includes(':'));
  return [
    `router id ${o.routerId};`,
    `log "${o.log}" all;`,
    'protocol device { scan time 10; }',
    'protocol kernel kernel4 { ipv4 { import none; export all; }; }',
    ...(six ? ['protocol kernel kernel6 { ipv6 { import none; export all; }; }'] : []),
    ...o.peers.map(
      (p) =>
        `protocol bgp ${p.name} { local as ${o.asn}; neighbor ${p.address} as ${p.asn}; ${TIMERS} ` +
        `${p.address.includes(':') ? 'ipv6' : 'ipv4'} { import all; export none; }; }`,
    ),
    '',
  ].join('\n');
}

/**
 * A host: the agent's include file (static protocols STEM4/STEM6) and eBGP
 * sessions to the router exporting exactly those; nothing to the kernel.
 */
export function hostConfig(o: { routerId: string; asn: number; peers: readonly BgpPeer[]; include: string; protocolStem: string; log: string }): string {
  return [
    `router id ${o.routerId};`,
    `log "${o.log}" all;`,
    'protocol device { scan time 10; }',
    `include "${o.include}";`,
    ...o.peers.map((p) => {
      const v6 = p.address.includes(':');
      return (
        `protocol bgp ${p.name} { local as ${o.asn}; neighbor ${p.address} as ${p.asn}; ${TIMERS} ` +
        `${v6 ? 'ipv6' : 'ipv4'} { import none; export where proto = "${o.protocolStem}${v6 ? 6 : 4}"; }; }`
      );
    }),
    '',
  ].join('\n');
}
