/**
 * An agent run as it runs under the systemd unit: a non-root user holding
 * only the given capabilities (setpriv sets the bounding, inheritable and
 * ambient sets, so nothing else can come back), in a network namespace of
 * its own with a veth uplink, pinning into a bpffs mounted for it at a temp
 * path (owned by that user, as the unit's ExecStartPre makes
 * /sys/fs/bpf/routeshift), with its own /run/routeshift (a bind mount in
 * the mount namespace `ip netns exec` gives it, as RuntimeDirectory= does).
 *
 * Everything is made under one temp dir and a unique namespace name and
 * removed by exact name; agents are killed by their PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CAPABILITY_BITS, type CapabilityName } from '../../src/agent/capabilities.js';
import { Netns, run, uniquePrefix } from '../../src/testbed/netns.js';
import { CHILD_ENV } from './e2e.js';

/** The unprivileged user the agents run as (nobody: no files of its own anywhere else). */
export const AGENT_UID = 65534;
const UPLINK = 'up0';
const UPLINK_ADDR = '10.231.0.1';
const LOCK_DIR = '/run/routeshift';

export interface Sandbox {
  ns: Netns;
  uplink: string;
  /** The uplink's address: the agent's tunnel address. */
  uplinkAddr: string;
  dir: string;
  bpffs: string;
  pinDir: string;
  tokenFile: string;
  destroy(): void;
}

/** A namespace with a veth uplink, a bpffs, a lock dir and a token dir, all for AGENT_UID. */
export function createSandbox(tag: string): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), `rs-${tag}-`));
  chmodSync(dir, 0o755); // the agent's user walks through it
  const bpffs = join(dir, 'bpffs');
  const runDir = join(dir, 'run');
  const etc = join(dir, 'etc');
  for (const d of [bpffs, runDir, etc]) mkdirSync(d);
  let ns: Netns | undefined;
  let mounted = false;
  const destroy = (): void => {
    if (mounted) spawnSync('umount', [bpffs], { stdio: 'ignore' });
    mounted = false;
    ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    run('mount', ['-t', 'bpf', 'bpf', bpffs]);
    mounted = true;
    for (const d of [bpffs, runDir, etc]) chownSync(d, AGENT_UID, AGENT_UID);
    mkdirSync(LOCK_DIR, { recursive: true }); // the mount point of the agent's own
    ns = Netns.create(uniquePrefix(tag));
    ns.ip('link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'peer0');
    ns.ip('addr', 'add', `${UPLINK_ADDR}/24`, 'dev', UPLINK);
    ns.ip('link', 'set', UPLINK, 'up');
    ns.ip('link', 'set', 'peer0', 'up');
  } catch (err) {
    destroy();
    throw err;
  }
  return { ns, uplink: UPLINK, uplinkAddr: UPLINK_ADDR, dir, bpffs, pinDir: join(bpffs, 'pins'), tokenFile: join(etc, 'token'), destroy };
}

/** setpriv's spelling of a capability set: -all,+bpf,+net_admin… */
function setprivCaps(caps: readonly CapabilityName[]): string {
  return ['-all', ...caps.map((c) => `+${c.slice(4).toLowerCase()}`)].join(',');
}

/** The command line that runs `argv` in the sandbox as AGENT_UID with exactly `caps`. */
function sandboxed(sb: Sandbox, caps: readonly CapabilityName[], argv: readonly string[]): string[] {
  const set = setprivCaps(caps);
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return [
    'netns', 'exec', sb.ns.name, 'sh', '-c',
    // tap's process tracking puts its hook back into NODE_OPTIONS of every child; it would write
    // into .tap/ as the agent's user, which may not.
    `unset NODE_OPTIONS; mount --bind '${join(sb.dir, 'run')}' ${LOCK_DIR} && exec setpriv --reuid=${AGENT_UID} --regid=${AGENT_UID} --clear-groups ` +
      `--inh-caps=${set} --ambient-caps=${set} --bounding-set=${set} -- ${quoted}`,
  ];
}

/** The agent's options for this sandbox. */
export function agentArgs(sb: Sandbox): string[] {
  return ['agent', '--uplink', sb.uplink, '--listen', '127.0.0.1:0', '--pin-dir', sb.pinDir, '--token-file', sb.tokenFile];
}

export interface Ready {
  ready: boolean;
  url: string;
  pid: number;
  adopted: boolean;
}

export interface RunningAgent {
  child: ChildProcess;
  ready: Ready;
  log(): string;
  /** SIGTERM by PID, then the exit code (or signal). */
  stop(): Promise<number | string>;
}

const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of started) if (c.pid) process.kill(c.pid, 'SIGKILL');
});

/**
 * Start `argv` (a `routeshift` command: the installed bin, or node + the
 * repo's CLI) with agentArgs in the sandbox and wait for its ready line.
 * `ip netns exec`, sh and setpriv each exec the next: the child's PID is the agent's.
 */
export async function startAgent(sb: Sandbox, caps: readonly CapabilityName[], argv: readonly string[], timeoutMs = 60_000): Promise<RunningAgent> {
  const child = spawn('ip', sandboxed(sb, caps, [...argv, ...agentArgs(sb)]), { stdio: ['ignore', 'pipe', 'pipe'], env: CHILD_ENV });
  started.add(child);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => {
    started.delete(child);
    resolve(code ?? signal ?? 'unknown');
  }));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const log = (): string => stderr;
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`agent not ready within ${timeoutMs} ms: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as Ready);
      } catch {
        reject(new Error(`agent printed ${line}`));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code}) before it was ready: ${stderr.slice(-2000)}`));
    });
  });
  return {
    child,
    ready,
    log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGTERM');
      return exited;
    },
  };
}

/** Run a `routeshift` command to its end in the sandbox as AGENT_UID with `caps`. */
export function runAs(sb: Sandbox, caps: readonly CapabilityName[], argv: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ip', sandboxed(sb, caps, argv), { encoding: 'utf8', env: CHILD_ENV, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A process' uid and effective capability set (/proc/PID/status). */
export function credentials(pid: number): { uid: number; capEff: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
  return { uid, capEff };
}

/** The bit mask of a list of capabilities. */
export function capMask(caps: readonly CapabilityName[]): bigint {
  return caps.reduce((m, c) => m | (1n << BigInt(CAPABILITY_BITS[c])), 0n);
}

/** GET a path of the agent's API with its token, from inside the sandbox (the agent listens on its loopback). */
export function apiGet(sb: Sandbox, url: string, path: string): { status: number; body: unknown } {
  const token = readFileSync(sb.tokenFile, 'utf8').trim();
  const out = sb.ns.exec('curl', '-sS', '--max-time', '10', '-H', `authorization: Bearer ${token}`, '-w', '\n%{http_code}', `${url}${path}`);
  const nl = out.lastIndexOf('\n');
  return { status: Number(out.slice(nl + 1)), body: JSON.parse(out.slice(0, nl)) as unknown };
}

/** The id of the XDP program attached to the sandbox's uplink (0: none). */
export function attachedXdp(sb: Sandbox): number {
  const [link] = JSON.parse(sb.ns.ip('-j', '-d', 'link', 'show', 'dev', sb.uplink)) as { xdp?: { prog?: { id: number } } }[];
  return link?.xdp?.prog?.id ?? 0;
}
