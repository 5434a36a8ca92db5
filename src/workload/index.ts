/**
 * Workload drivers: build one from its journal-able description.
 *
 * Future work, deliberately not shipped: a `criu` driver that checkpoints the
 * app on the source and restores it on the destination (true state transfer,
 * including established TCP connections). CRIU does not work on this
 * kernel, so a stub would only pretend. See README.md.
 */
import type { DriverSpec, WorkloadDriver } from './driver.js';
import { ExecDriver } from './exec.js';
import { NetnsProcessDriver } from './netns-process.js';
import { NoneDriver } from './none.js';

export * from './driver.js';
export { netnsProcessProblem, type NetnsProcessProblem } from './netns-process.js';

export const DRIVER_KINDS = ['none', 'netns-process', 'exec'] as const;

export function createDriver(spec: DriverSpec): WorkloadDriver {
  switch (spec.kind) {
    case 'none':
      return new NoneDriver(spec.probe);
    case 'netns-process':
      return new NetnsProcessDriver(spec);
    case 'exec':
      return new ExecDriver(spec);
  }
}
