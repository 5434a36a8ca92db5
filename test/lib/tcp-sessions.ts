/**
 * Long-lived TCP sessions for the connection-preserving migration tests:
 * a child process (tcp-sessions-tool.ts) in the client namespace opens N
 * connections to the app (APP_PL in test/lib/e2e.ts answers every line with
 * the name of its network namespace), then on each one sends a request
 * line, waits for the answer, pauses `intervalMs`, and again — until
 * SIGUSR2 (or SIGTERM, or `maxMs`), when it closes every connection with a
 * FIN and reports, per connection: requests, answers by server, bytes both
 * ways, the first error and when it was closed.
 *
 * "No lost byte" is checked here: every answer is exactly one line naming
 * the server, so the bytes received must be the answers' lines and
 * nothing left over. The parent side tracks the child by PID and kills
 * that PID only.
 */
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../../src/testbed/netns.js';
import { onStdoutLines } from '../../src/testbed/traffic.js';
import { CHILD_ENV } from './e2e.js';

export interface SessionOptions {
  to: string;
  port: number;
  conns: number;
  intervalMs: number;
  /** Per answer: a request not answered in this long is an error (TIMEOUT). */
  timeoutMs: number;
  maxMs: number;
}

export interface SessionReport {
  i: number;
  /** Local port: the flow's 5-tuple for the data plane. */
  sport: number;
  openedMs: number;
  requests: number;
  answers: number;
  /** Answers by the namespace that gave them. */
  servers: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** Bytes of answers parsed (each line and its newline); equal to bytesReceived when nothing was lost or added. */
  bytesAnswered: number;
  /** Requests sent at or after this time (epoch ms) are counted in `requestsAfter`. */
  requestsAfter: number;
  error?: string;
  errorAtMs?: number;
  closedMs?: number;
}

export interface SessionsReport {
  sessions: SessionReport[];
  /** When SIGUSR2 (the close) arrived. */
  closeAtMs: number;
}

/** The child's script: Node's own modules only (tcp-sessions-tool.ts). */
const TOOL = join(dirname(fileURLToPath(import.meta.url)), 'tcp-sessions-tool.js');

// ----------------------------------------------------------- parent side --

export interface Sessions {
  readonly pid: number;
  /** Start counting requests as "after" (e.g. at SWITCH). */
  mark(): void;
  /** Close every connection (FIN) and report. */
  close(): Promise<SessionsReport>;
  kill(): void;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
});

/** Open the sessions from `ns`; resolves once every connection has had its first answer. */
export async function startSessions(ns: Netns, o: SessionOptions): Promise<Sessions> {
  const child = ns.spawn(process.execPath, [TOOL, JSON.stringify(o)], { env: CHILD_ENV });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start tcp-sessions');
  running.add(child);
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => (stderr += d));
  let onLine: (() => void) | undefined;
  onStdoutLines(child, (line) => {
    lines.push(line);
    onLine?.();
  });
  const closed = new Promise<void>((resolve) => child.on('close', () => (running.delete(child), resolve())));
  const signal = (sig: NodeJS.Signals): void => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, sig);
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcp-sessions: not every connection answered within 10 s; stderr: ${stderr.trim()}`)), 10_000);
    onLine = () => {
      if (lines.some((l) => l.includes('"ready"'))) {
        clearTimeout(timer);
        resolve();
      }
    };
    void closed.then(() => reject(new Error(`tcp-sessions exited early: ${lines.join(' ')} ${stderr.trim()}`)));
    onLine();
  });
  return {
    pid,
    mark: () => signal('SIGUSR1'),
    async close() {
      signal('SIGUSR2');
      await closed;
      const last = [...lines].reverse().find((l) => l.includes('"sessions"'));
      if (!last) throw new Error(`tcp-sessions ended without a report: ${stderr.trim()}`);
      return JSON.parse(last) as SessionsReport;
    },
    kill: () => signal('SIGKILL'),
  };
}
