/**
 * Driver `none`: the application is already running wherever it should
 * (started by something else, or stateless and always running on both
 * hosts). Start and stop do nothing; readiness is the optional probe, or
 * immediately true.
 */
import type { DriverContext, ProbeSpec, WorkloadApp, WorkloadDriver, WorkloadHost } from './driver.js';
import { runProbe } from './run-probe.js';

export class NoneDriver implements WorkloadDriver {
  readonly kind = 'none';
  /** A probe of the app's own address, run in no namespace of ours, proves nothing about the destination unless its agent runs it. */
  readonly agentProbe: ProbeSpec | undefined;
  constructor(private readonly probeSpec?: ProbeSpec) {
    this.agentProbe = probeSpec && probeSpec.address === undefined && probeSpec.netns === undefined ? probeSpec : undefined;
  }

  async start(): Promise<void> {}

  async probe(app: WorkloadApp, host: WorkloadHost, _ctx: DriverContext): Promise<boolean> {
    return this.probeSpec ? runProbe(this.probeSpec, app, host) : true;
  }

  async stop(): Promise<void> {}
}
