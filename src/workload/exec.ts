/**
 * Driver `exec`: the operator's own scripts start, probe and stop the app.
 *
 * Each script is run directly (shebang + execute bit) with these variables:
 *
 *   ROUTESHIFT_PHASE      start | probe | stop
 *   ROUTESHIFT_APP        the app's name
 *   ROUTESHIFT_ADDRESS    its address (IPv4 or IPv6)
 *   ROUTESHIFT_PROTO      any | tcp | udp | icmp
 *   ROUTESHIFT_PORT       0 = whole address
 *   ROUTESHIFT_ROLE       source | destination
 *   ROUTESHIFT_HOST       the host's agent URL
 *   ROUTESHIFT_HOST_INDEX position of the destination in --to (0 for one)
 *   ROUTESHIFT_MIGRATION  the migration's id (same for all calls of one migration)
 *
 * Exit 0 = success (for probe: ready). For start/stop any other exit fails
 * the step; for probe it means "not ready yet" and is asked again until the
 * ready timeout. A phase without a script succeeds (probe: ready). Scripts
 * must be idempotent: a resumed migration may call them again.
 */
import type { DriverContext, DriverSpec, WorkloadApp, WorkloadDriver, WorkloadHost } from './driver.js';
import { describeHookFailure, runHook } from './run-hook.js';

/** The driver's spec (driver.ts), without its kind. */
export type ExecDriverOptions = Omit<Extract<DriverSpec, { kind: 'exec' }>, 'kind'>;

function hookEnv(phase: string, app: WorkloadApp, host: WorkloadHost): Record<string, string> {
  return {
    ROUTESHIFT_PHASE: phase,
    ROUTESHIFT_APP: app.name,
    ROUTESHIFT_ADDRESS: app.address,
    ROUTESHIFT_PROTO: String(app.proto),
    ROUTESHIFT_PORT: String(app.port),
    ROUTESHIFT_ROLE: host.role,
    ROUTESHIFT_HOST: host.agentUrl,
    ROUTESHIFT_HOST_INDEX: String(host.index),
    ROUTESHIFT_MIGRATION: app.migrationId,
  };
}

export class ExecDriver implements WorkloadDriver {
  readonly kind = 'exec';
  private readonly timeoutMs: number;

  constructor(private readonly opts: ExecDriverOptions) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async start(app: WorkloadApp, host: WorkloadHost, _ctx: DriverContext): Promise<void> {
    await this.must('start', this.opts.start, app, host);
  }

  async probe(app: WorkloadApp, host: WorkloadHost, _ctx: DriverContext): Promise<boolean> {
    if (!this.opts.probe) return true;
    const r = await runHook(this.opts.probe, hookEnv('probe', app, host), this.timeoutMs);
    return r.code === 0;
  }

  async stop(app: WorkloadApp, host: WorkloadHost, _ctx: DriverContext): Promise<void> {
    await this.must('stop', this.opts.stop, app, host);
  }

  private async must(phase: string, script: string | undefined, app: WorkloadApp, host: WorkloadHost): Promise<void> {
    if (!script) return;
    const r = await runHook(script, hookEnv(phase, app, host), this.timeoutMs);
    if (r.code !== 0) throw new Error(`${phase} of ${app.name} on ${host.agentUrl}: ${describeHookFailure(script, r, this.timeoutMs)}`);
  }
}
