/**
 * Health probes: one UDP datagram that must be echoed back, or one TCP
 * connection that must be accepted, within a timeout. When the probe must
 * run inside a network namespace (the app's address is only reachable
 * there), it runs as a tiny child process under `ip netns exec` — Node
 * cannot switch namespaces itself.
 */
import { spawn } from 'node:child_process';
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

/** Run `probe` inside a network namespace; false on any failure, bounded by timeout + 2 s. */
export function probeInNetns(netns: string, proto: 'udp' | 'tcp', address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, PROBE_MAIN, proto, address, String(port), String(timeoutMs)], {
      stdio: 'ignore',
    });
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      resolve(ok);
    };
    // Node's own start-up takes a while; the guard only catches a hung child.
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      finish(false);
    }, timeoutMs + 2000);
    child.on('error', () => finish(false));
    child.on('exit', (code) => finish(code === 0));
  });
}
