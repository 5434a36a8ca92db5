/**
 * What a workload driver is: the part of a migration that starts, checks and
 * stops the application itself, on one host. The controller never touches
 * processes; it calls a driver at START (destination), READY (probe on the
 * destination) and STOP (source), and again at rollback (stop on the
 * destination).
 *
 * Every method must be idempotent — a controller that resumes after a crash
 * calls them again: `start` when the app already runs there does nothing,
 * `stop` when it is not running does nothing.
 */
import type { Proto } from '../model/entry.js';

/** The application being moved, as the drivers see it. */
export interface WorkloadApp {
  name: string;
  address: string;
  proto: Proto;
  port: number;
  /** The migration this call belongs to (for logs and hook environments). */
  migrationId: string;
}

/** Which host a call is about. */
export interface WorkloadHost {
  role: 'source' | 'destination';
  /** The host's agent URL: how an operator names the host. */
  agentUrl: string;
  /** Position of this destination in `--to` (0 for a single destination; 0 for the source). */
  index: number;
}

export interface DriverContext {
  /** Notes worth showing the operator (e.g. "no process of ours to stop; left running"). */
  log(message: string): void;
}

export interface WorkloadDriver {
  /** Driver name as given on the command line. */
  readonly kind: string;
  /** Start the app on `host`; resolve once it has been launched (readiness is `probe`'s job). */
  start(app: WorkloadApp, host: WorkloadHost, ctx: DriverContext): Promise<void>;
  /** true when the app on `host` is executing and answering; false (not an error) when not yet. */
  probe(app: WorkloadApp, host: WorkloadHost, ctx: DriverContext): Promise<boolean>;
  /** Stop the app on `host`, and only what this driver is responsible for. */
  stop(app: WorkloadApp, host: WorkloadHost, ctx: DriverContext): Promise<void>;
  /**
   * A network probe of the app's own address that the destination agent
   * runs instead of `probe`, from its host toward the app's device there:
   * a probe from the controller reaches whichever copy the network routes
   * to (the source's, until ANNOUNCE). Undefined: `probe` is asked.
   */
  readonly agentProbe?: ProbeSpec;
}

/** A health check of the app's address: one datagram echoed back, or one TCP connection accepted. */
export interface ProbeSpec {
  proto: 'udp' | 'tcp';
  /** Default: the app's address. */
  address?: string;
  port: number;
  /** Per attempt. Default 300 ms. */
  timeoutMs?: number;
  /** Run the probe inside this network namespace (template, see template.ts); default: the caller's. */
  netns?: string;
}

/**
 * A driver described as plain data: written to the migration journal so a
 * resumed controller rebuilds exactly the same driver.
 */
export type DriverSpec =
  | { kind: 'none'; probe?: ProbeSpec }
  | {
      kind: 'netns-process';
      /** Namespace of the app on the source / destination (templates: {app}, {index}). */
      sourceNetns: string;
      destNetns: string;
      /** Shell command line run as `sh -c "exec <command>"` (templates: {app} {address} {port} {proto}). */
      command: string;
      probe?: ProbeSpec;
      /** Where PID records and process logs are kept (so a resumed controller finds its processes). */
      stateDir: string;
      /** How long stop waits after SIGTERM before SIGKILL. Default 2000 ms. */
      killAfterMs?: number;
    }
  | {
      kind: 'exec';
      start?: string;
      probe?: string;
      stop?: string;
      /** Per hook run. Default 30000 ms. */
      timeoutMs?: number;
    };
