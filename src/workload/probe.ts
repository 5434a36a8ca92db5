/**
 * Health probes: one UDP datagram that must be echoed back, or one TCP
 * connection that must be accepted, within a timeout. When the probe must
 * run inside a network namespace (the app's address is only reachable
 * there), it runs as a tiny child process under `ip netns exec` — Node
 * cannot switch namespaces itself. That child is bash when bash has its
 * network redirections (/dev/udp, /dev/tcp; checked once): it starts in
 * ~10 ms where Node takes ~150 ms of CPU, which a drain probing 50 apps,
 * 16 at a time, on a busy host pays many times over. Otherwise it is Node
 * running probe-main.js.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export const PROBE_PAYLOAD = 'routeshift-probe';

/** One UDP round trip: resolves true when any datagram comes back from the target. */
export function probeUdp(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('message', (_msg, rinfo) => {
      if (rinfo.port === port) finish(true);
    });
    // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket: not ready.
    sock.on('error', () => finish(false));
    sock.connect(port, address, () => sock.send(PROBE_PAYLOAD, (err) => err && finish(false)));
  });
}

/** One TCP connection: resolves true when the target accepts it. */
export function probeTcp(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.once('connect', () => finish(true));
    sock.once('error', () => finish(false));
    sock.connect({ host: address, port });
  });
}

export function probe(proto: 'udp' | 'tcp', address: string, port: number, timeoutMs: number): Promise<boolean> {
  return proto === 'udp' ? probeUdp(address, port, timeoutMs) : probeTcp(address, port, timeoutMs);
}

const PROBE_MAIN = fileURLToPath(new URL('./probe-main.js', import.meta.url));

/** How long a probe child may take to start before it counts as hung. */
export const PROBE_STARTUP_ALLOWANCE_MS = 15_000;

/**
 * The probes as bash commands. UDP: the socket is connected, so only an
 * answer from the target's address and port is read, and an ICMP port
 * unreachable fails the read at once; the read's timeout starts after the
 * send, so start-up is not counted. TCP: connect, under coreutils `timeout`
 * (bash has no connect timeout).
 */
function shellProbe(proto: 'udp' | 'tcp', address: string, port: number, secs: string): string[] {
  return proto === 'udp'
    ? ['bash', '-c', `exec 3<>"/dev/udp/$1/$2" && printf '%s' '${PROBE_PAYLOAD}' >&3 && IFS= read -r -t "$3" -N 1 _ <&3`, 'probe', address, String(port), secs]
    : ['timeout', '-s', 'KILL', secs, 'bash', '-c', 'exec 3<>"/dev/tcp/$1/$2"', 'probe', address, String(port)];
}

let shellProbes: { udp: boolean; tcp: boolean } | undefined;

/** Can bash run the probes here? (Opens a UDP socket to 127.0.0.1:9 without sending; looks for `timeout`.) */
function shellCan(): { udp: boolean; tcp: boolean } {
  if (!shellProbes) {
    const ok = (file: string, args: string[]): boolean => {
      try {
        execFileSync(file, args, { stdio: 'ignore', timeout: 5000 });
        return true;
      } catch {
        return false;
      }
    };
    const udp = ok('bash', ['-c', 'exec 3<>/dev/udp/127.0.0.1/9']);
    shellProbes = { udp, tcp: udp && ok('timeout', ['--version']) };
  }
  return shellProbes;
}

/** Run `probe` inside a network namespace; false on any failure, bounded by timeout + PROBE_STARTUP_ALLOWANCE_MS. */
export function probeInNetns(netns: string, proto: 'udp' | 'tcp', address: string, port: number, timeoutMs: number): Promise<boolean> {
  const secs = (Math.max(1, timeoutMs) / 1000).toFixed(3);
  const argv = shellCan()[proto]
    ? ['netns', 'exec', netns, ...shellProbe(proto, address, port, secs)]
    : ['netns', 'exec', netns, process.execPath, PROBE_MAIN, proto, address, String(port), String(timeoutMs)];
  return new Promise((resolve) => {
    const child = spawn('ip', argv, { stdio: 'ignore' });
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      resolve(ok);
    };
    // The guard only catches a hung child. The child's start-up is not part
    // of the probe's timeout and takes seconds when many probes start at
    // once on a busy host (a drain probes 16 apps at a time): a tight guard
    // killed every such attempt before it could probe, so READY never came.
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      finish(false);
    }, timeoutMs + PROBE_STARTUP_ALLOWANCE_MS);
    child.on('error', () => finish(false));
    child.on('exit', (code) => finish(code === 0));
  });
}
