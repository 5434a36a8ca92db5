/**
 * A real single-member etcd for tests and benchmarks (Debian's etcd-server):
 * on loopback, free ports, a temp data dir. start() waits until /health
 * says so; kill() ends it by its PID; restart() starts it again on the same
 * ports with the same data dir (its keys, revisions and leases kept), so
 * clients given its URL reconnect to it. destroy() kills it and removes the
 * data dir. A process that exits takes its etcds with it.
 *
 * It also listens on a Unix socket in its data dir (`socketUrl`): agents of
 * a test topology run inside host network namespaces, where the test's
 * loopback is not theirs, and a socket path is reachable from every one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const running = new Set<ChildProcess>();
const dataDirs = new Set<string>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

/** A port nothing listens on now (the kernel's pick), on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface EtcdServerOptions {
  /** How long start() waits for /health (default 30 s: a loaded machine). */
  readyTimeoutMs?: number;
  /** The binary (default `etcd` on PATH). */
  binary?: string;
}

export class EtcdServer {
  #child: ChildProcess | undefined;

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly opts: EtcdServerOptions,
  ) {}

  /** Where clients reach it. */
  get url(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Its Unix socket (etcd names it `localhost:<port>` in its working directory, the data dir). */
  get socketPath(): string {
    return join(this.dataDir, `localhost:${this.clientPort}`);
  }

  /** The endpoint for clients in other network namespaces (src/etcd/client.ts takes unix:///PATH). */
  get socketUrl(): string {
    return `unix://${this.socketPath}`;
  }

  get logFile(): string {
    return join(this.dataDir, 'etcd.log');
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  static async start(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
    const dataDir = mkdtempSync(join(tmpdir(), 'rs-etcd-'));
    dataDirs.add(dataDir);
    const clientPort = await freePort();
    let peerPort = await freePort();
    while (peerPort === clientPort) peerPort = await freePort();
    const etcd = new EtcdServer(dataDir, clientPort, peerPort, opts);
    await etcd.restart();
    return etcd;
  }

  /** Start it (again) with the same data dir and ports; resolves once /health is true. */
  async restart(): Promise<void> {
    if (this.running) throw new Error(`etcd (pid ${this.pid}) is running already`);
    const peer = `http://127.0.0.1:${this.peerPort}`;
    rmSync(this.socketPath, { force: true }); // left by a killed etcd
    const log = openSync(this.logFile, 'a');
    const child = spawn(
      this.opts.binary ?? 'etcd',
      [
        '--name', 'rs',
        '--data-dir', join(this.dataDir, 'data'),
        '--listen-client-urls', `${this.url},unix://localhost:${this.clientPort}`,
        '--advertise-client-urls', this.url,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `rs=${peer}`,
        '--initial-cluster-state', 'new',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
      ],
      { stdio: ['ignore', log, log], cwd: this.dataDir },
    );
    closeSync(log);
    running.add(child);
    child.once('exit', () => running.delete(child));
    this.#child = child;
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`cannot start etcd (${this.opts.binary ?? 'etcd'}): ${err.message}; install Debian's etcd-server (scripts/setup.sh)`)));
    });
    await spawned;
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (!this.running) throw new Error(`etcd exited during start-up: ${this.#logTail()}`);
      try {
        const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`etcd at ${this.url} not healthy within ${this.opts.readyTimeoutMs ?? 30_000} ms: ${this.#logTail()}`);
      }
      await sleep(100);
    }
  }

  /** End it by its PID (SIGKILL by default: a crash) and wait until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, signal);
    await gone;
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
    dataDirs.delete(this.dataDir);
  }

  #logTail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '(no log)';
    }
  }
}
