/**
 * Driver `netns-process`: runs the application as a command inside a given
 * network namespace (`ip netns exec NS sh -c "exec CMD"`).
 *
 * The process outlives the controller (a CLI run ends, the app must not),
 * so the PID it started — with its start time, see src/os/process.ts — is recorded
 * in a small file under the state directory. That record is how `stop`, a
 * rollback, or a resumed controller find the process again, and the only
 * process `stop` ever signals is the one recorded there. `ip netns exec` and
 * `sh -c "exec …"` both exec rather than fork, so the PID we spawn IS the
 * app's PID; a command that forks and exits is not supported (its children
 * would not be ours to kill).
 *
 * The record is written twice: before the spawn, an intent with a random
 * tag that the process carries in its environment (ROUTESHIFT_APP_TAG);
 * after it, the PID. A controller killed between the two leaves an intent:
 * the next start, stop or cleanup finds the process by its tag instead of
 * starting a second copy or leaving an orphan.
 *
 * Ready = the recorded process is alive and, if a probe is configured, the
 * probe answers (run inside the app's namespace unless the probe names
 * another one). A process that already exited makes `probe` throw, so READY
 * fails at once instead of waiting for its timeout.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFileDurably } from '../os/files.js';
import { join } from 'node:path';
import type { DriverContext, DriverSpec, WorkloadApp, WorkloadDriver, WorkloadHost } from './driver.js';
import { identify, isAlive, terminate, type ProcessIdentity } from '../os/process.js';
import { runProbe } from './run-probe.js';
import { expand, templateVars } from './template.js';

/** The driver's spec (driver.ts), without its kind. */
export type NetnsProcessOptions = Omit<Extract<DriverSpec, { kind: 'netns-process' }>, 'kind'>;

interface ProcessRecord extends ProcessIdentity {
  netns: string;
  command: string;
  startedAt: string;
  log: string;
  /** In the process's environment as ROUTESHIFT_APP_TAG. */
  tag?: string;
}

/** What is written before the spawn: everything but the PID. */
type Intent = Omit<ProcessRecord, 'pid' | 'startTime'> & { tag: string };

const TAG_VAR = 'ROUTESHIFT_APP_TAG';

/**
 * The process carrying `tag` in its environment, if one runs: the earliest
 * started of them (the app; its children inherit the tag).
 */
export function findTagged(tag: string): ProcessIdentity | undefined {
  const needle = `${TAG_VAR}=${tag}`;
  let found: ProcessIdentity | undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'latin1');
    } catch {
      continue; // exited, or a kernel thread
    }
    if (!environ.split('\0').includes(needle)) continue;
    const id = identify(Number(entry));
    if (id && isAlive(id) && (!found || BigInt(id.startTime) < BigInt(found.startTime))) found = id;
  }
  return found;
}

const TAG_RETRIES = 5;
const TAG_RETRY_MS = 20;

/** Block this thread for `ms` (a record lookup is synchronous; this runs only for an intent without its process). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** The option of a netns-process driver a problem is in, and what is wrong with it. */
export interface NetnsProcessProblem {
  option: 'sourceNetns' | 'destNetns' | 'command';
  reason: string;
}

/**
 * What is wrong with a netns-process driver's options before any app is
 * known (undefined: nothing), so bad input is refused before a migration
 * starts instead of when START expands it: an unknown placeholder, or a
 * namespace name that is not one even with a plain app's values in it.
 */
export function netnsProcessProblem(o: Pick<NetnsProcessOptions, 'sourceNetns' | 'destNetns' | 'command'>): NetnsProcessProblem | undefined {
  const app: WorkloadApp = { name: 'app', address: '10.0.0.1', proto: 'udp', port: 1, migrationId: 'check' };
  const on = (role: WorkloadHost['role']): Record<string, string> => templateVars(app, { role, agentUrl: 'http://check', index: 0 });
  const checks: [NetnsProcessProblem['option'], string, WorkloadHost['role'], boolean][] = [
    ['sourceNetns', o.sourceNetns, 'source', true],
    ['destNetns', o.destNetns, 'destination', true],
    ['command', o.command, 'destination', false],
  ];
  for (const [option, template, role, isNetns] of checks) {
    let value: string;
    try {
      value = expand(template, on(role));
    } catch (err) {
      return { option, reason: (err as Error).message };
    }
    if (isNetns && !NETNS_RE.test(value)) {
      return { option, reason: `${JSON.stringify(template)} does not make a network namespace name (1-64 of A-Z a-z 0-9 _ . -, placeholders allowed)` };
    }
  }
  return undefined;
}

/**
 * SIGKILL every process a netns-process driver with this state dir has
 * recorded and that is still that exact process (pid and start time): for
 * cleanup after an interrupted run, when no migration will stop them.
 */
export function killRecordedApps(stateDir: string): void {
  const dir = join(stateDir, 'workload');
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!f.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Partial<ProcessRecord>;
      const id = typeof rec.pid === 'number' ? (rec as ProcessIdentity) : rec.tag ? findTagged(rec.tag) : undefined;
      if (id && isAlive(id)) process.kill(id.pid, 'SIGKILL');
    } catch {
      /* unreadable record, or the process just ended */
    }
  }
}

export class NetnsProcessDriver implements WorkloadDriver {
  readonly kind = 'netns-process';
  private readonly dir: string;

  constructor(private readonly opts: NetnsProcessOptions) {
    this.dir = join(opts.stateDir, 'workload');
  }

  /** The namespace the app lives in on that host. */
  netnsOf(app: WorkloadApp, host: WorkloadHost): string {
    const ns = expand(host.role === 'source' ? this.opts.sourceNetns : this.opts.destNetns, templateVars(app, host));
    if (!NETNS_RE.test(ns)) throw new Error(`invalid network namespace name ${JSON.stringify(ns)}`);
    return ns;
  }

  private recordPath(app: WorkloadApp, ns: string): string {
    return join(this.dir, `${ns}--${app.name}.json`);
  }

  /** The live process we started for this app in this namespace, if any. */
  running(app: WorkloadApp, host: WorkloadHost): ProcessRecord | undefined {
    const rec = this.readRecord(this.recordPath(app, this.netnsOf(app, host)));
    return rec && isAlive(rec) ? rec : undefined;
  }

  async start(app: WorkloadApp, host: WorkloadHost, ctx: DriverContext): Promise<void> {
    const ns = this.netnsOf(app, host);
    const path = this.recordPath(app, ns);
    const old = this.readRecord(path);
    if (old && isAlive(old)) {
      ctx.log(`${app.name} already running in ${ns} (pid ${old.pid})`);
      return;
    }
    mkdirSync(this.dir, { recursive: true });
    const command = expand(this.opts.command, templateVars(app, host));
    const log = join(this.dir, `${ns}--${app.name}.log`);
    const intent: Intent = { tag: randomBytes(12).toString('hex'), netns: ns, command, startedAt: new Date().toISOString(), log };
    writeFileDurably(path, JSON.stringify(intent) + '\n');
    const logFd = openSync(log, 'a');
    let pid: number;
    try {
      const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `exec ${command}`], {
        // Own session: the app survives the controller's terminal going away.
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, [TAG_VAR]: intent.tag },
      });
      pid = await new Promise<number>((resolve, reject) => {
        child.once('error', (err) => reject(new Error(`cannot start ${app.name} in ${ns}: ${err.message}`)));
        child.once('spawn', () => resolve(child.pid ?? -1));
      });
      child.unref();
    } finally {
      closeSync(logFd);
    }
    const id = identify(pid);
    if (!id) {
      rmSync(path, { force: true });
      throw new Error(`${app.name} in ${ns} exited at once (see ${log})`);
    }
    const rec: ProcessRecord = { ...intent, ...id };
    writeFileDurably(path, JSON.stringify(rec) + '\n');
    ctx.log(`started ${app.name} in ${ns} (pid ${id.pid})`);
  }

  async probe(app: WorkloadApp, host: WorkloadHost, _ctx: DriverContext): Promise<boolean> {
    const ns = this.netnsOf(app, host);
    const rec = this.readRecord(this.recordPath(app, ns));
    if (!rec) throw new Error(`${app.name} was never started in ${ns}`);
    if (!isAlive(rec)) throw new Error(`${app.name} (pid ${rec.pid}) in ${ns} is not running any more (see ${rec.log})`);
    if (!this.opts.probe) return true;
    return runProbe(this.opts.probe, app, host, ns);
  }

  async stop(app: WorkloadApp, host: WorkloadHost, ctx: DriverContext): Promise<void> {
    const ns = this.netnsOf(app, host);
    const path = this.recordPath(app, ns);
    const rec = this.readRecord(path);
    if (!rec) {
      // Not ours (started before routeshift managed it): we never guess a PID.
      ctx.log(`no process of ${app.name} started by routeshift in ${ns}; nothing stopped`);
      return;
    }
    const how = await terminate(rec, this.opts.killAfterMs ?? 2000);
    rmSync(path, { force: true });
    ctx.log(how === 'not-running' ? `${app.name} in ${ns} had already exited` : `stopped ${app.name} in ${ns} (pid ${rec.pid}, ${how})`);
  }

  /**
   * The record of this app's process. An intent (a controller died between
   * spawn and record) is completed from the process carrying its tag, or
   * removed when no such process runs.
   */
  private readRecord(path: string): ProcessRecord | undefined {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const r = JSON.parse(text) as Partial<ProcessRecord>;
    if (typeof r.pid === 'number' && typeof r.startTime === 'string') return r as ProcessRecord;
    if (typeof r.tag !== 'string') throw new Error(`corrupt process record ${path}`);
    let id = findTagged(r.tag);
    // A process in the middle of an exec (ip -> sh -> the app) briefly shows an
    // empty environ: look again for a moment before deciding it never started.
    for (let i = 0; !id && i < TAG_RETRIES; i++) {
      sleepSync(TAG_RETRY_MS);
      id = findTagged(r.tag);
    }
    if (!id) {
      rmSync(path, { force: true });
      return undefined;
    }
    const rec = { ...(r as Intent), ...id };
    writeFileDurably(path, JSON.stringify(rec) + '\n');
    return rec;
  }
}
