/**
 * Network namespaces as test hosts: create, run commands in, connect with
 * veth pairs, and always delete (by exact name) when done — also when the
 * process is interrupted. Used by tests, the demo and benchmarks.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const live = new Set<string>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const name of live) deleteNetns(name);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const name of live) deleteNetns(name);
      process.kill(process.pid, sig);
    });
  }
}

/** Run a command; on failure throw with its stderr, not a stack of child_process internals. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(input === undefined ? {} : { input }),
    });
  } catch (err) {
    const e = err as { stderr?: string; status?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.status ?? '?'}): ${(e.stderr ?? '').trim()}`);
  }
}

function deleteNetns(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
  live.delete(name);
}

/** A short unique name prefix for one test file or demo run (veth names are ≤ 15 chars). */
export function uniquePrefix(tag: string): string {
  const rnd = Math.floor(Math.random() * 36 ** 3).toString(36).padStart(3, '0');
  return `${tag}${(process.pid % 1000).toString(36)}${rnd}`;
}

export class Netns {
  private constructor(readonly name: string) {}

  static create(name: string): Netns {
    if (!/^[A-Za-z0-9_.-]{1,40}$/.test(name)) throw new Error(`invalid netns name ${name}`);
    installExitHooks();
    run('ip', ['netns', 'add', name]);
    live.add(name);
    const ns = new Netns(name);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** Run a command inside the namespace and return its stdout. */
  exec(cmd: string, ...args: string[]): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args]);
  }

  ip(...args: string[]): string {
    return run('ip', ['-n', this.name, ...args]);
  }

  /** `ip -batch` inside the namespace: one process for many commands. */
  ipBatch(lines: readonly string[]): void {
    if (lines.length) run('ip', ['-n', this.name, '-batch', '-'], lines.join('\n') + '\n');
  }

  sysctl(key: string, value: string | number): void {
    this.exec('sysctl', '-qw', `${key}=${value}`);
  }

  spawn(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe', ...opts });
  }

  /** The link's index and MAC inside this namespace. */
  link(dev: string): { ifindex: number; mac: string; mtu: number } {
    const [l] = JSON.parse(this.ip('-j', 'link', 'show', 'dev', dev)) as { ifindex: number; address: string; mtu: number }[];
    if (!l) throw new Error(`no link ${dev} in ${this.name}`);
    return { ifindex: l.ifindex, mac: l.address, mtu: l.mtu };
  }

  delete(): void {
    deleteNetns(this.name);
  }

  /** Leave this namespace in place when the process exits (inspection, demo --keep). */
  keep(): void {
    live.delete(this.name);
  }
}

export interface VethEnd {
  ns: Netns;
  dev: string;
  /** Addresses with prefix length, e.g. 10.1.0.1/24 or fd00::1/64. */
  addrs?: string[];
  mac?: string;
}

/**
 * Connect two namespaces with a veth pair, bring both ends up, assign
 * addresses. Offloads stay the kernel's defaults (TX checksum offload on:
 * what a sender in another namespace really sends is partially
 * checksummed), or are turned off, so checksums are complete as a NIC's
 * wire delivers them.
 */
export function veth(a: VethEnd, b: VethEnd, opts: { offloads?: 'default' | 'off' } = {}): void {
  // Created inside the namespaces: the root namespace never sees the pair.
  a.ns.ip('link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns.name);
  for (const end of [a, b]) {
    if (end.mac) end.ns.ip('link', 'set', 'dev', end.dev, 'address', end.mac);
    for (const addr of end.addrs ?? []) end.ns.ip('addr', 'add', addr, 'dev', end.dev, ...(addr.includes(':') ? ['nodad'] : []));
    if (opts.offloads === 'off') end.ns.exec('ethtool', '-K', end.dev, 'tx', 'off', 'rx', 'off');
    end.ns.ip('link', 'set', 'dev', end.dev, 'up');
  }
}
