/**
 * Run a real `routeshift agent` as a child process for one host of a test
 * topology (the API served on loopback, the data plane driven inside the
 * host's namespace), wait until it is ready, and stop it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { statSync } from 'node:fs';
import { PidLock, agentLockName, uplinkLockName } from '../agent/lock.js';
import { AGENT_NODE_FLAGS } from '../agent/memory.js';
import { repoRoot } from '../bpf/native.js';

export interface AgentProcessOptions {
  netns: string;
  uplink?: string;
  pinDir: string;
  tokenFile?: string;
  /** Default 127.0.0.1:0 (a free port on loopback). */
  listen?: string;
  args?: string[];
  /** Where the agent's stderr (JSON logs) goes; default: a file in a temp dir. */
  logFile?: string;
  readyTimeoutMs?: number;
}

/**
 * The agent's environment: ours without a test runner's loader hooks (tap's
 * NODE_OPTIONS imports TypeScript and process-tracking hooks into every
 * node child, which makes a start take seconds on a loaded machine).
 */
function agentEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const kept = (env.NODE_OPTIONS ?? '').split(/\s+/).filter((o) => o && !o.includes('@tapjs'));
  if (kept.length) env.NODE_OPTIONS = kept.join(' ');
  else delete env.NODE_OPTIONS;
  return env;
}

// Agents started here never outlive the process that started them, nor do
// the temp dirs made for their token and log (kept until exit: a restarted
// agent may reuse the token, a failed test's log is read until then).
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

export class AgentProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly tokenFile: string,
    readonly adopted: boolean,
    readonly logFile: string,
  ) {}

  get token(): string {
    return readFileSync(this.tokenFile, 'utf8').trim();
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  static async start(opts: AgentProcessOptions): Promise<AgentProcess> {
    // A temp dir only for what the caller did not place (removed at exit, above).
    const dir = opts.tokenFile && opts.logFile ? '' : mkdtempSync(join(tmpdir(), 'rs-agent-'));
    if (dir) tempDirs.add(dir);
    const tokenFile = opts.tokenFile ?? join(dir, 'token');
    const logFile = opts.logFile ?? join(dir, 'agent.log');
    const { openSync, closeSync } = await import('node:fs');
    const logFd = openSync(logFile, 'a');
    const child = spawn(
      process.execPath,
      [
        ...AGENT_NODE_FLAGS,
        join(repoRoot(), 'dist', 'src', 'cli', 'main.js'),
        'agent',
        '--uplink', opts.uplink ?? 'eth0',
        '--netns', opts.netns,
        '--listen', opts.listen ?? '127.0.0.1:0',
        '--pin-dir', opts.pinDir,
        '--token-file', tokenFile,
        ...(opts.args ?? []),
      ],
      { stdio: ['ignore', 'pipe', logFd], env: agentEnv() },
    );
    closeSync(logFd);
    running.add(child);
    child.once('exit', () => {
      running.delete(child);
      // A killed agent leaves its (free) lock files: tests use a fresh pin dir and namespace each, so remove them.
      PidLock.removeIfFree(agentLockName(opts.pinDir));
      try {
        PidLock.removeIfFree(uplinkLockName(statSync(`/run/netns/${opts.netns}`, { bigint: true }).ino, opts.uplink ?? 'eth0'));
      } catch {
        /* the namespace is gone already */
      }
    });
    const timeout = opts.readyTimeoutMs ?? 30_000;
    const ready = await new Promise<{ url: string; adopted: boolean }>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`agent for ${opts.netns} not ready within ${timeout} ms; log: ${logFile}`));
      }, timeout);
      const lines = createInterface({ input: child.stdout! });
      lines.once('line', (line) => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line) as { url: string; adopted: boolean });
        } catch {
          reject(new Error(`agent printed ${line}`));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        // This listener outlives start-up: an agent stopped later, after its log
        // was removed, must not throw here (an uncaught error in a listener).
        let tail = '';
        try {
          tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
        } catch {
          /* log gone */
        }
        reject(new Error(`agent for ${opts.netns} exited with ${code}: ${tail}`));
      });
    });
    return new AgentProcess(child, ready.url, tokenFile, ready.adopted, logFile);
  }

  /** Let the agent outlive this process (demo --keep); stop it later by its pid. */
  disown(): void {
    running.delete(this.child);
    this.child.stdout?.destroy();
    this.child.unref();
  }

  /** Send a signal and wait for the process to end. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const done = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await done;
    clearTimeout(timer);
    return code;
  }

  /** fetch against this agent with its token. */
  async request(method: string, path: string, body?: unknown, token: string | null = this.token): Promise<{ status: number; json: unknown; text: string }> {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON (metrics) */
    }
    return { status: res.status, json, text };
  }
}
