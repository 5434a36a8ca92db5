/**
 * Bounded traffic inside network namespaces, for tests, the demo and
 * benchmarks: a sequence-numbered UDP sender and receiver/echo (child
 * processes running src/testbed/udp-tool.js, reporting JSON: lost,
 * duplicated, reordered, largest gap), and ping.
 *
 * Every process is bounded in count and time, and is only ever signalled by
 * the pid it was started with.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';
import type { RecvOptions, SendOptions, SendReport, SeqReport } from './udp-tool.js';

export type { Gap, RecvOptions, SendOptions, SendReport, SeqReport } from './udp-tool.js';

const TOOL = fileURLToPath(new URL('./udp-tool.js', import.meta.url));

/** Call `onLine` for every complete line a child prints on stdout. */
export function onStdoutLines(child: ChildProcess, onLine: (line: string) => void): void {
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
  });
}

/** Collect a child's stdout lines; resolve on exit with them. */
function lines(child: ChildProcess, onLine?: (line: string) => void): Promise<{ lines: string[]; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    let stderr = '';
    onStdoutLines(child, (line) => {
      out.push(line);
      onLine?.(line);
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ lines: out, code, stderr }));
  });
}

function lastJson<T>(what: string, r: { lines: string[]; code: number | null; stderr: string }): T {
  const line = [...r.lines].reverse().find((l) => l.startsWith('{') && !l.includes('"ready"'));
  if (r.code !== 0 || !line) {
    throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim() || 'no report'}`);
  }
  return JSON.parse(line) as T;
}

export interface UdpReceiver {
  readonly pid: number;
  /** Resolves with the report when the receiver ends by itself. */
  readonly done: Promise<SeqReport>;
  /** Ask it to end now (SIGTERM to its pid) and return its report. */
  stop(): Promise<SeqReport>;
}

/** Start a receiver (or echo) in `ns`; resolves once it is bound. */
export function startUdpReceiver(ns: Netns, opts: RecvOptions): Promise<UdpReceiver> {
  const child = ns.spawn(process.execPath, [TOOL, 'recv', JSON.stringify(opts)]);
  const pid = child.pid;
  if (pid === undefined) return Promise.reject(new Error('could not start the UDP receiver'));
  return new Promise((resolve, reject) => {
    let ready = false;
    const finished = lines(child, (line) => {
      if (!ready && line.includes('"ready"')) {
        ready = true;
        resolve(receiver);
      }
    });
    const done = finished.then((r) => lastJson<SeqReport>('UDP receiver', r));
    const receiver: UdpReceiver = {
      pid,
      done,
      stop(): Promise<SeqReport> {
        if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGTERM');
        return done;
      },
    };
    finished.then(
      (r) => {
        if (!ready) reject(new Error(`UDP receiver ended before it was ready (exit ${r.code}): ${r.stderr.trim()}`));
      },
      (err: unknown) => reject(err),
    );
    done.catch(() => undefined); // reported through stop()/done by whoever awaits them
  });
}

/** Run a sender in `ns` to completion (count or maxMs) and return its report. */
export async function runUdpSender(ns: Netns, opts: SendOptions): Promise<SendReport> {
  const child = ns.spawn(process.execPath, [TOOL, 'send', JSON.stringify(opts)]);
  return lastJson<SendReport>('UDP sender', await lines(child));
}

export interface UdpStreamResult {
  sender: SendReport;
  receiver: SeqReport;
}

/**
 * One bounded stream: receiver in `to` on `port`, sender in `from` to
 * `addr`; the receiver stops once every packet came or `idleMs` after the
 * last one.
 */
export async function udpStream(
  from: Netns,
  to: Netns,
  opts: { addr: string; port: number; rate: number; count: number; maxMs: number; size?: number; idleMs?: number },
): Promise<UdpStreamResult> {
  const family = opts.addr.includes(':') ? 6 : 4;
  const rx = await startUdpReceiver(to, {
    port: opts.port,
    family,
    expect: opts.count,
    idleMs: opts.idleMs ?? 500,
    maxMs: opts.maxMs + 2000,
  });
  try {
    const sender = await runUdpSender(from, {
      to: opts.addr,
      port: opts.port,
      rate: opts.rate,
      count: opts.count,
      maxMs: opts.maxMs,
      ...(opts.size ? { size: opts.size } : {}),
    });
    let timer: NodeJS.Timeout | undefined;
    const receiver = await Promise.race([
      rx.done,
      new Promise<SeqReport>((resolve) => (timer = setTimeout(() => resolve(rx.stop()), (opts.idleMs ?? 500) + 1000))),
    ]).finally(() => clearTimeout(timer));
    return { sender, receiver };
  } catch (err) {
    await rx.stop().catch(() => undefined);
    throw err;
  }
}

// ----------------------------------------------------------------- ping --

export interface PingReport {
  transmitted: number;
  received: number;
  lossPct: number;
  rttAvgMs: number | null;
  output: string;
}

export interface PingOptions {
  count?: number;
  /** Seconds between requests (root may go down to 0.002). */
  interval?: number;
  /** Overall deadline in seconds. */
  deadline?: number;
  /** Per-reply timeout in seconds. */
  timeout?: number;
  size?: number;
}

/** ping from inside `ns`; never throws for loss (the report says it). */
export function ping(ns: Netns, addr: string, opts: PingOptions = {}): Promise<PingReport> {
  const count = opts.count ?? 5;
  const interval = opts.interval ?? 0.05;
  const deadline = opts.deadline ?? Math.ceil(count * interval + 3);
  const args = ['netns', 'exec', ns.name, 'ping', '-n', '-q', '-c', String(count), '-i', String(interval), '-w', String(deadline), '-W', String(opts.timeout ?? 1)];
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  args.push(addr);
  return new Promise((resolve) => {
    execFile('ip', args, { encoding: 'utf8', timeout: (deadline + 5) * 1000 }, (_err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
      const rtt = /= [\d.]+\/([\d.]+)\//.exec(output);
      const transmitted = m ? Number(m[1]) : 0;
      const received = m ? Number(m[2]) : 0;
      resolve({
        transmitted,
        received,
        lossPct: transmitted ? (100 * (transmitted - received)) / transmitted : 100,
        rttAvgMs: rtt ? Number(rtt[1]) : null,
        output,
      });
    });
  });
}
