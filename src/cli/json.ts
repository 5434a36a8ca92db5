/**
 * Every `--json` output of the CLI: one versioned object per run,
 * `{"apiVersion": "routeshift/v1", "kind": K, …fields of K}`, errors included
 * (`kind: "Error"`). The shapes are data (KINDS, SHAPES): the commands build
 * their output with `jsonDocument`, `test/cli-json.test.ts` checks real
 * outputs against them, and docs/json.md is rendered from them
 * (`renderJsonDoc`; the same test keeps the file in step).
 *
 * Within routeshift/v1 a field is never removed, renamed or retyped; new
 * fields may appear. Objects the CLI builds are closed (exactly the fields
 * listed); objects it passes on from the agent API or the controller are
 * open (at least the fields listed), and say where the rest is defined.
 */
import { AgentFailedError, AgentProtocolError, AgentRefusedError, AgentUnreachableError } from '../controller/agent-client.js';
import { LockHeldError } from '../controller/journal.js';
import { ResumeUndecidedError } from '../controller/resume.js';
import { FieldError } from '../model/errors.js';
import { UsageError } from './common.js';
import { exitCodeOfError } from './exit.js';

export const API_VERSION = 'routeshift/v1';

// ------------------------------------------------------------ the types --

export type Type =
  | { t: 'string' | 'integer' | 'number' | 'boolean' | 'decimal' }
  /** Any JSON object: one defined in full elsewhere (the field's doc says where). */
  | { t: 'object' }
  | { t: 'enum'; of: readonly string[] }
  | { t: 'array'; of: Type }
  | { t: 'map'; of: Type }
  | { t: 'nullable'; of: Type }
  | { t: 'either'; of: readonly Type[] }
  | { t: 'ref'; shape: ShapeName };

export interface Field {
  type: Type;
  doc: string;
  optional?: boolean;
}

export interface Shape {
  doc: string;
  fields: Readonly<Record<string, Field>>;
  /** Open objects carry at least `fields`; this says where the others are defined. */
  open?: string;
}

const str: Type = { t: 'string' };
const int: Type = { t: 'integer' };
const num: Type = { t: 'number' };
const bool: Type = { t: 'boolean' };
const dec: Type = { t: 'decimal' };
const obj: Type = { t: 'object' };
const oneOf = (...of: string[]): Type => ({ t: 'enum', of });
const arr = (of: Type): Type => ({ t: 'array', of });
const map = (of: Type): Type => ({ t: 'map', of });
const nul = (of: Type): Type => ({ t: 'nullable', of });
const either = (...of: Type[]): Type => ({ t: 'either', of });
const ref = (shape: ShapeName): Type => ({ t: 'ref', shape });
const f = (type: Type, doc: string): Field => ({ type, doc });
const opt = (type: Type, doc: string): Field => ({ type, doc, optional: true });

const OUTCOMES = ['done', 'rolled-back', 'failed'] as const;

// ----------------------------------------------------- shared shapes --

export type ShapeName =
  | 'Counter'
  | 'Action'
  | 'EntryPath'
  | 'App'
  | 'AppCounters'
  | 'Delivery'
  | 'DeliveryCounters'
  | 'AgentStatus'
  | 'Tunnel'
  | 'EntryCounts'
  | 'AgentReport'
  | 'Unfinished'
  | 'DamagedJournal'
  | 'MigrationResult'
  | 'MapTarget'
  | 'RedirectRow'
  | 'DeliverRow'
  | 'MapsOwner'
  | 'MapsConfig'
  | 'Undecoded'
  | 'DrainDestination'
  | 'PlanItem'
  | 'Skipped'
  | 'PlanStep'
  | 'DrainPlanObject'
  | 'ControllerMetrics'
  | 'PhaseSeconds';

export const SHAPES: Readonly<Record<ShapeName, Shape>> = {
  Counter: {
    doc: 'A 64-bit counter pair, as decimal strings.',
    fields: { packets: f(dec, 'packets'), bytes: f(dec, 'bytes (frame length as received)') },
  },
  Action: {
    doc: "What an app entry does with its packets: `local`, or `forward` to another host's `tunnel` address.",
    open: 'docs/agent-api.md (Action)',
    fields: { type: f(str, '`local` or `forward` (more may come)'), tunnel: opt(str, 'forward: the remote tunnel address') },
  },
  EntryPath: {
    doc: "How an entry's packets go now.",
    open: 'docs/agent-api.md',
    fields: { via: f(str, '`xdp`, `tc-peer`, `tc`, `kernel`; FORWARD: `xdp-tx`, `xdp-redirect`, `tc`'), slowVia: opt(str, 'the path of packets with a partial checksum') },
  },
  App: {
    doc: 'An app (redirect) entry as the agent answers it.',
    open: 'docs/agent-api.md (App)',
    fields: {
      name: f(str, 'the app name'),
      address: f(str, 'IPv4 or IPv6 address'),
      proto: f(either(str, int), '`any`, `tcp`, `udp`, `icmp`… or an IP protocol number'),
      port: f(int, '0 = the whole address'),
      dev: f(str, "the app's interface on the agent's host"),
      mac: f(nul(str), "the app's MAC"),
      action: f(ref('Action'), 'LOCAL or FORWARD'),
      appId: f(int, 'the counters slot'),
      path: f(ref('EntryPath'), 'delivery path'),
      generation: f(int, "moves with every write of the entry (the agent's write counter then); a conditional write (`ifGeneration`) names it"),
      counters: f(ref('AppCounters'), 'per action'),
    },
  },
  AppCounters: {
    doc: "An app's counters per action.",
    open: 'docs/agent-api.md',
    fields: { local: f(ref('Counter'), 'delivered on this host'), forward: f(ref('Counter'), 'tunnelled to another host') },
  },
  Delivery: {
    doc: 'A delivery entry (destination role) as the agent answers it.',
    open: 'docs/agent-api.md (Delivery)',
    fields: {
      name: f(str, 'the app name'),
      address: f(str, 'inner destination address'),
      proto: f(either(str, int), 'as App'),
      port: f(int, 'as App'),
      dev: f(str, "the app's interface on this host"),
      mac: f(nul(str), "the app's MAC"),
      appId: f(int, 'the counters slot'),
      path: f(ref('EntryPath'), 'delivery path'),
      generation: f(int, 'as App'),
      counters: f(ref('DeliveryCounters'), 'received through the tunnel'),
    },
  },
  DeliveryCounters: {
    doc: "A delivery's counters.",
    open: 'docs/agent-api.md',
    fields: { deliver: f(ref('Counter'), 'received through the tunnel and delivered') },
  },
  AgentStatus: {
    doc: "An agent's `GET /status`.",
    open: 'docs/agent-api.md (GET /status)',
    fields: {
      uplink: f(str, 'the interface XDP is attached to'),
      ifindex: f(int, "the uplink's index"),
      tunnel: f(ref('Tunnel'), "the host's tunnel endpoints"),
      pinDir: f(str, 'where the maps are pinned'),
      uptimeSeconds: f(num, 'since the agent started'),
      entries: f(ref('EntryCounts'), 'entries in the maps'),
      capacity: f(ref('EntryCounts'), 'map sizes'),
      version: f(str, "the agent's version"),
    },
  },
  Tunnel: {
    doc: "A host's tunnel endpoints.",
    open: 'docs/agent-api.md (GET /status)',
    fields: { v4: f(nul(str), 'IPv4 tunnel address'), v6: f(nul(str), 'IPv6 tunnel address') },
  },
  EntryCounts: {
    doc: 'A count per map.',
    fields: { apps: f(int, 'redirect map'), deliveries: f(int, 'delivery map') },
  },
  AgentReport: {
    doc: 'What one agent answered to `status`.',
    fields: {
      url: f(str, 'the agent'),
      ok: f(bool, 'it answered'),
      error: opt(str, 'why not, when it did not'),
      status: opt(ref('AgentStatus'), 'its status'),
      apps: opt(arr(ref('App')), 'its app entries'),
      deliveries: opt(arr(ref('Delivery')), 'its delivery entries'),
    },
  },
  Unfinished: {
    doc: 'A migration whose journal shows no successful end.',
    open: 'src/controller/unfinished.ts',
    fields: {
      app: f(str, 'the app'),
      journal: f(str, 'its journal file'),
      state: f(str, 'the last state entered'),
    },
  },
  DamagedJournal: {
    doc: 'A journal that fails its checks.',
    open: 'src/controller/unfinished.ts (DamagedJournal)',
    fields: {
      journal: f(str, 'its id'),
      path: f(str, 'its file'),
      reason: f(str, 'what is wrong, line by line'),
      apps: f(arr(str), 'apps its valid lines plan'),
    },
  },
  MigrationResult: {
    doc: 'How one app\'s migration ended.',
    open: 'src/controller/machine.ts (MigrationResult)',
    fields: {
      app: f(str, 'the app'),
      journal: f(str, 'the journal file of the run'),
      from: f(str, 'source agent URL'),
      to: f(str, 'destination agent URL'),
      outcome: f(oneOf(...OUTCOMES), '`done`, `rolled-back`, or `failed` (needs attention)'),
      state: f(str, 'the last state'),
      phases: f(map(num), 'milliseconds per step (PREPARE … ANNOUNCE)'),
      rollback: f(map(num), 'milliseconds per undo, when rolled back'),
      totalMs: f(num, 'wall clock'),
      error: opt(str, 'what failed'),
      flows: opt(obj, '--preserve-connections: `{atStart, cut, waitedMs}` of DRAIN_FLOWS (src/controller/journal.ts FlowDrainFacts)'),
      flowProgress: opt(arr(obj), 'DRAIN_FLOWS: `{elapsedMs, active}` each time the count of old flows open on the source changed'),
      notes: f(arr(str), 'what the run noticed on the way'),
    },
  },
  MapTarget: {
    doc: 'Where a LOCAL or delivery entry sends packets on the host (decoded from the map value).',
    fields: {
      ifindex: f(int, "the device's index"),
      dev: f(nul(str), "the device's name as the agent recorded it"),
      dmac: f(str, 'destination MAC written into frames'),
      smac: f(str, 'source MAC written into frames'),
      path: f(str, '`xdp`, `tc-peer`, `tc` or `kernel`'),
      slowPath: f(str, 'the path of packets with a partial checksum'),
    },
  },
  RedirectRow: {
    doc: 'An `rs_redirect` entry (source role).',
    fields: {
      name: f(nul(str), 'the app; null for a placeholder the agent keeps for an address with only port entries'),
      address: f(str, 'IPv4 or IPv6 address'),
      proto: f(either(str, int), 'as App'),
      port: f(int, 'as App'),
      appId: f(int, 'the counters slot'),
      action: f(str, '`local`, `forward`, `preserve`, or `ports-only` (the placeholder)'),
      tunnel: opt(str, 'forward, preserve: the remote tunnel address'),
      target: opt(ref('MapTarget'), 'local, preserve: the device on this host'),
      counters: f(ref('AppCounters'), 'summed over CPUs'),
    },
  },
  DeliverRow: {
    doc: 'An `rs_deliver` entry (destination role).',
    fields: {
      name: f(nul(str), 'the app'),
      address: f(str, 'inner destination address'),
      proto: f(either(str, int), 'as App'),
      port: f(int, 'as App'),
      appId: f(int, 'the counters slot'),
      target: f(ref('MapTarget'), 'the device on this host'),
      counters: f(ref('DeliveryCounters'), 'summed over CPUs'),
    },
  },
  MapsOwner: {
    doc: 'Whose data plane the maps are (`rs_owner`).',
    fields: {
      uplink: f(str, 'the uplink they were made for'),
      ifindex: f(int, "the uplink's index"),
      netns: f(dec, "inode of the uplink's network namespace"),
      pinDir: f(str, 'the pin dir the agent used'),
    },
  },
  MapsConfig: {
    doc: 'The host configuration the programs read (`rs_config`).',
    fields: {
      tunnel: f(ref('Tunnel'), "this host's tunnel addresses"),
      mtu: f(int, 'outer MTU limit (0: the route MTU)'),
      skbCsum: f(bool, 'partial checksums are checked (a veth uplink)'),
      uplinkTx: f(str, 'how frames go back out of the uplink: `xdp-tx`, `xdp-redirect`, `tc`'),
    },
  },
  Undecoded: {
    doc: 'A map entry that does not decode (maps of another routeshift version).',
    fields: { map: f(str, 'the map'), key: f(str, 'its key, hex'), error: f(str, 'why') },
  },
  DrainDestination: {
    doc: 'A destination of a plan.',
    fields: { url: f(str, 'agent URL'), tunnel: f(ref('Tunnel'), 'where forwarded packets go') },
  },
  PlanItem: {
    doc: 'One app of a plan: where it goes.',
    open: 'src/controller/drain.ts (DrainPlanItem)',
    fields: {
      app: f(str, 'the app'),
      address: f(str, 'its address'),
      proto: f(either(str, int), 'its protocol'),
      port: f(int, 'its port (0 = whole address)'),
      sourceDev: f(str, 'its device on the source'),
      to: f(str, 'destination agent URL'),
      toIndex: f(int, 'position of the destination in --to'),
      destDev: f(str, 'its device on the destination'),
    },
  },
  Skipped: {
    doc: 'An entry a plan leaves as it is.',
    fields: { app: f(str, 'the app'), reason: f(str, 'why') },
  },
  PlanStep: {
    doc: 'A step of the migration protocol, as the plan would run it.',
    fields: {
      step: f(str, 'PREPARE … ANNOUNCE'),
      does: f(str, 'what it does'),
      undoes: f(str, 'what undoes it'),
      onFailure: f(oneOf('roll-back', 'roll-forward'), 'what a failure in it means'),
    },
  },
  DrainPlanObject: {
    doc: 'A drain plan, as in `DrainPlan` (inside a `DrainResult`).',
    open: 'src/controller/drain.ts (DrainPlan)',
    fields: {
      source: f(str, 'the host drained'),
      destinations: f(arr(ref('DrainDestination')), 'in --to order'),
      items: f(arr(ref('PlanItem')), 'apps to move'),
      skipped: f(arr(ref('Skipped')), 'entries left as they are'),
    },
  },
  ControllerMetrics: {
    doc: "The run's controller metrics (what `routeshift_migrations_total` and `routeshift_migration_phase_seconds` counted).",
    fields: {
      migrations: f(map(int), 'migrations by outcome'),
      phaseSeconds: f(map(ref('PhaseSeconds')), 'by phase (step, or BATCH_SWITCH)'),
    },
  },
  PhaseSeconds: {
    doc: 'Observations of one phase.',
    fields: { count: f(int, 'how many'), sum: f(num, 'seconds in all') },
  },
};

// ------------------------------------------------------------ errors --

interface ErrorCodeRow {
  code: string;
  doc: string;
  matches(err: unknown): boolean;
}

const refused = (statuses: readonly number[]) => (err: unknown) => err instanceof AgentRefusedError && statuses.includes(err.status);

/** The `code` of an Error document, by what ended the command: the first row that matches. */
const ERROR_CODES: readonly ErrorCodeRow[] = [
  { code: 'bad-usage', doc: 'a bad flag or argument', matches: (e) => e instanceof UsageError },
  { code: 'invalid-input', doc: 'input the model or the agent refused as malformed (HTTP 400), naming the field', matches: (e) => e instanceof FieldError || refused([400])(e) },
  { code: 'unauthorized', doc: 'the agent refused the credentials (HTTP 401/403)', matches: refused([401, 403]) },
  { code: 'not-found', doc: 'the agent has no such entry (HTTP 404)', matches: refused([404]) },
  { code: 'conflict', doc: 'the agent refused a conflicting write: another name owns the key, a lease is held (HTTP 409/412)', matches: refused([409, 412]) },
  { code: 'refused', doc: 'any other 4xx answer', matches: (e) => e instanceof AgentRefusedError },
  { code: 'agent-failed', doc: 'the agent failed (5xx): the kernel refused a change; nothing was changed', matches: (e) => e instanceof AgentFailedError },
  { code: 'unreachable', doc: 'no answer from an agent (refused, timeout, reset)', matches: (e) => e instanceof AgentUnreachableError },
  { code: 'protocol', doc: 'an agent answered something that is not the API', matches: (e) => e instanceof AgentProtocolError },
  { code: 'locked', doc: 'another controller is migrating the app', matches: (e) => e instanceof LockHeldError },
  { code: 'resume-undecided', doc: '`--resume` cannot tell which way to go; an operator must look', matches: (e) => e instanceof ResumeUndecidedError },
  { code: 'failed', doc: 'anything else', matches: () => true },
];

function errorCodes(): string[] {
  return ERROR_CODES.map((r) => r.code);
}

// ------------------------------------------------------------- kinds --

export interface Kind extends Shape {
  /** The commands (with their flags) that print it. */
  printedBy: readonly string[];
}

const MIGRATION_FIELDS = SHAPES.MigrationResult.fields;
const PLAN_FIELDS = SHAPES.DrainPlanObject.fields;

const KIND_LIST = {
  App: {
    printedBy: ['app add --json'],
    doc: 'The entry as the agent wrote it.',
    fields: { agent: f(str, 'agent URL'), app: f(ref('App'), 'the entry') },
  },
  AppList: {
    printedBy: ['app list --json'],
    doc: "An agent's app entries, sorted by name.",
    fields: { agent: f(str, 'agent URL'), items: f(arr(ref('App')), 'the entries') },
  },
  AppRemoved: {
    printedBy: ['app rm --json'],
    doc: 'An entry removed (its packets go to the kernel again).',
    fields: { agent: f(str, 'agent URL'), name: f(str, 'the app') },
  },
  MigrationPlan: {
    printedBy: ['migrate --dry-run --json'],
    doc: 'What `migrate` would do, read from the agents; nothing is changed. The shape of `DrainPlan`, with one item (none and a `skipped` reason when the app cannot move), and the steps.',
    fields: {
      ...PLAN_FIELDS,
      source: f(str, 'the source agent (where the app is LOCAL)'),
      app: f(str, 'the app'),
      driver: f(str, 'the workload driver (--driver)'),
      announce: f(str, 'the announce hook (--announce)'),
      steps: f(arr(ref('PlanStep')), 'the protocol, in order'),
    },
  },
  MigrationResult: {
    printedBy: ['migrate --json'],
    doc: 'How the migration ended.',
    open: 'src/controller/machine.ts (MigrationResult)',
    fields: { ...MIGRATION_FIELDS, metrics: f(ref('ControllerMetrics'), "the run's controller metrics") },
  },
  ResumeResult: {
    printedBy: ['migrate --resume --json'],
    doc: 'How a resumed migration ended.',
    open: 'src/controller/resume.ts (ResumeResult)',
    fields: {
      ...MIGRATION_FIELDS,
      decision: f(oneOf('nothing', 'roll-back', 'check-switch', 'roll-forward', 'finish'), 'what resume decided from the journal'),
      observed: opt(str, 'what the source entry showed, when the decision needed it'),
      metrics: f(ref('ControllerMetrics'), "the run's controller metrics"),
    },
  },
  DrainPlan: {
    printedBy: ['drain --dry-run --json'],
    doc: 'Which app would go where; nothing is changed.',
    open: 'src/controller/drain.ts (DrainPlan)',
    fields: PLAN_FIELDS,
  },
  DrainResult: {
    printedBy: ['drain --json'],
    doc: 'How the drain ended, per app.',
    open: 'src/controller/drain.ts (DrainResult)',
    fields: {
      source: f(str, 'the host drained'),
      journal: f(str, 'the journal file of the run'),
      plan: f(ref('DrainPlanObject'), 'the plan it ran'),
      outcome: f(oneOf('done', 'rolled-back', 'partial', 'failed'), 'over all apps'),
      apps: f(arr(ref('MigrationResult')), 'per app'),
      batches: f(map(num), 'milliseconds of each batched phase'),
      phaseMs: f(map(num), 'wall-clock milliseconds of every phase'),
      switchMode: f(oneOf('batch', 'per-app', 'none'), 'how SWITCH was applied'),
      leftLocal: f(arr(str), 'source entries still LOCAL (should be none)'),
      totalMs: f(num, 'wall clock'),
      metrics: f(ref('ControllerMetrics'), "the run's controller metrics"),
    },
  },
  Status: {
    printedBy: ['status --json'],
    doc: 'What each agent holds, and the migrations that did not finish.',
    open: 'src/controller/unfinished.ts (JournalReport)',
    fields: {
      agents: f(arr(ref('AgentReport')), 'in argument order'),
      unfinished: f(arr(ref('Unfinished')), 'migrations in --state-dir that did not finish: `--resume` them'),
      damaged: f(arr(ref('DamagedJournal')), 'journals in --state-dir that are damaged (`--resume` refuses while they are there)'),
      journalError: opt(str, 'why --state-dir could not be read'),
    },
  },
  Maps: {
    printedBy: ['maps --json'],
    doc: "A host's pinned maps, decoded (read from bpffs; no agent needed).",
    fields: {
      pinDir: f(str, 'where they are pinned'),
      owner: f(nul(ref('MapsOwner')), 'whose data plane they are'),
      config: f(nul(ref('MapsConfig')), 'what the programs read'),
      redirect: f(arr(ref('RedirectRow')), '`rs_redirect`, by name'),
      deliver: f(arr(ref('DeliverRow')), '`rs_deliver`, by name'),
      drops: f(map(ref('Counter')), 'by reason (`rs_drops`)'),
      events: f(map(ref('Counter')), 'packets passed to the kernel, by event (`rs_events`)'),
      undecoded: f(arr(ref('Undecoded')), 'entries that did not decode'),
    },
  },
  DemoResult: {
    printedBy: ['demo --json'],
    doc: 'The demo run (also written to its --out directory).',
    open: 'src/demo/scenario.ts (DemoResult)',
    fields: {
      routeshift: f(obj, 'the XDP run: streams, migration, drain (src/demo/scenario.ts)'),
      kernelBaseline: f(obj, 'the kernel route + VXLAN run (src/demo/scenario.ts)'),
      plot: f(str, 'SVG plot file'),
      resultFile: f(str, 'this result, as a file'),
    },
  },
  BenchResults: {
    printedBy: ['bench --json'],
    doc: 'The benchmarks that ran now (the --out file holds them merged with earlier runs of the others, without apiVersion and kind).',
    open: 'bench/harness.ts (BenchResults)',
    fields: {
      date: f(str, 'when the run started'),
      quick: f(bool, '--quick: small sizes, not figures to quote'),
      machine: f(obj, 'hostname, kernel, cpu, cpus, memGiB'),
      rows: f(arr(obj), 'one per figure: name, figure, baseline, ratio, goal, pass… (bench/harness.ts Row)'),
      broken: f(arr(obj), 'benchmarks that threw or produced no numbers: {name, error}'),
      durationsMs: f(map(num), 'wall clock per benchmark'),
    },
  },
  Error: {
    printedBy: ['any command with --json, when it fails before it has a result'],
    doc: 'Why the command failed. stderr has the same message in one line.',
    fields: {
      code: f(oneOf(...errorCodes()), 'what kind of failure (below)'),
      message: f(str, 'what is wrong'),
      exitCode: f(int, 'the exit code of the run (2 bad input, 1 failed with nothing changed, 3 needs attention)'),
      field: opt(str, 'the offending field, when the agent named one'),
      agent: opt(str, 'the agent, when one answered or failed to'),
      httpStatus: opt(int, "the agent's HTTP status, when it answered"),
    },
  },
} satisfies Record<string, Kind>;

export type KindName = keyof typeof KIND_LIST;
export const KINDS: Readonly<Record<KindName, Kind>> = KIND_LIST;

export function isKind(name: string): name is KindName {
  return Object.prototype.hasOwnProperty.call(KINDS, name);
}

// ------------------------------------------------------------ output --

export type JsonBody = Readonly<Record<string, unknown>>;

/** The text of one --json document (an object on one or more lines, newline-terminated). */
export function jsonDocument(kind: KindName, body: JsonBody): string {
  return `${JSON.stringify({ apiVersion: API_VERSION, kind, ...body }, null, 2)}\n`;
}

export function printJson(kind: KindName, body: JsonBody): void {
  process.stdout.write(jsonDocument(kind, body));
}

/** The body of an Error document for what ended a command. */
export function errorBody(err: unknown, message: string): JsonBody {
  const code = ERROR_CODES.find((r) => r.matches(err))!.code;
  const body: Record<string, unknown> = { code, message, exitCode: exitCodeOfError(err) };
  if (err instanceof FieldError) body.field = err.field;
  if (err instanceof AgentRefusedError || err instanceof AgentFailedError) {
    body.agent = err.agent;
    body.httpStatus = err.status;
    if (err.field) body.field = err.field;
  } else if (err instanceof AgentUnreachableError || err instanceof AgentProtocolError) {
    body.agent = err.agent;
  }
  return body;
}

/** Did the user ask for --json (read from the raw arguments: an error may come before yargs has parsed them)? */
export function wantsJson(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--json' || a === '--json=true');
}

// -------------------------------------------------------- controller metrics --

/** prom-client's JSON of one metric (`Registry.getMetricsAsJSON`), the parts read here. */
interface PromMetricJson {
  name: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

function isPromMetricJson(m: unknown): m is PromMetricJson {
  return typeof m === 'object' && m !== null && typeof (m as PromMetricJson).name === 'string' && Array.isArray((m as PromMetricJson).values);
}

/** The controller metrics of one run (ControllerMetrics.json()) as a plain object, without prom-client's internals. */
export function controllerMetricsBody(metrics: unknown): { migrations: Record<string, number>; phaseSeconds: Record<string, { count: number; sum: number }> } {
  const migrations: Record<string, number> = {};
  const phaseSeconds: Record<string, { count: number; sum: number }> = {};
  for (const m of Array.isArray(metrics) ? metrics : []) {
    if (!isPromMetricJson(m)) continue;
    for (const v of m.values) {
      if (m.name === 'routeshift_migrations_total') migrations[String(v.labels.outcome)] = v.value;
      if (m.name === 'routeshift_migration_phase_seconds') {
        const p = (phaseSeconds[String(v.labels.phase)] ??= { count: 0, sum: 0 });
        if (v.metricName === `${m.name}_count`) p.count = v.value;
        if (v.metricName === `${m.name}_sum`) p.sum = v.value;
      }
    }
  }
  return { migrations, phaseSeconds };
}

// ---------------------------------------------------------- checking --

function typeName(t: Type): string {
  switch (t.t) {
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      return t.t;
    case 'decimal':
      return 'decimal string';
    case 'object':
      return 'object';
    case 'enum':
      return t.of.map((v) => `\`"${v}"\``).join(' \\| ');
    case 'array':
      return `${typeName(t.of)}[]`;
    case 'map':
      return `{string: ${typeName(t.of)}}`;
    case 'nullable':
      return `${typeName(t.of)} \\| null`;
    case 'either':
      return t.of.map(typeName).join(' \\| ');
    case 'ref':
      return `[${t.shape}](#shape-${t.shape.toLowerCase()})`;
  }
}

function checkType(v: unknown, t: Type, path: string, out: string[]): void {
  const bad = (want: string) => out.push(`${path}: expected ${want}, got ${JSON.stringify(v)?.slice(0, 60)}`);
  switch (t.t) {
    case 'string':
      if (typeof v !== 'string') bad('a string');
      return;
    case 'integer':
      if (!Number.isInteger(v)) bad('an integer');
      return;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) bad('a number');
      return;
    case 'boolean':
      if (typeof v !== 'boolean') bad('a boolean');
      return;
    case 'decimal':
      if (typeof v !== 'string' || !/^\d+$/.test(v)) bad('a decimal string');
      return;
    case 'object':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('an object');
      return;
    case 'enum':
      if (typeof v !== 'string' || !t.of.includes(v)) bad(`one of ${t.of.join(', ')}`);
      return;
    case 'array':
      if (!Array.isArray(v)) {
        bad('an array');
        return;
      }
      v.forEach((x, i) => checkType(x, t.of, `${path}[${i}]`, out));
      return;
    case 'map':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        bad('an object');
        return;
      }
      for (const [k, x] of Object.entries(v)) checkType(x, t.of, `${path}.${k}`, out);
      return;
    case 'nullable':
      if (v !== null) checkType(v, t.of, path, out);
      return;
    case 'either': {
      const alone = t.of.map((o) => {
        const e: string[] = [];
        checkType(v, o, path, e);
        return e;
      });
      if (!alone.some((e) => e.length === 0)) bad(typeName(t).replace(/\\/g, ''));
      return;
    }
    case 'ref':
      checkShape(v, SHAPES[t.shape], path, out);
  }
}

function checkShape(v: unknown, shape: Shape, path: string, out: string[], extra: readonly string[] = []): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    out.push(`${path}: expected an object`);
    return;
  }
  const o = v as Record<string, unknown>;
  for (const [name, field] of Object.entries(shape.fields)) {
    if (o[name] === undefined) {
      if (!field.optional) out.push(`${path}.${name}: missing`);
      continue;
    }
    checkType(o[name], field.type, `${path}.${name}`, out);
  }
  if (!shape.open) {
    for (const k of Object.keys(o)) if (!(k in shape.fields) && !extra.includes(k)) out.push(`${path}.${k}: not in the schema (src/cli/json.ts)`);
  }
}

/** What is wrong with a --json document (parsed), against its kind; empty when it conforms. */
export function checkDocument(doc: unknown): string[] {
  const out: string[] = [];
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return ['the document is not a JSON object'];
  const o = doc as Record<string, unknown>;
  if (o.apiVersion !== API_VERSION) out.push(`apiVersion: expected ${API_VERSION}, got ${JSON.stringify(o.apiVersion)}`);
  if (typeof o.kind !== 'string' || !isKind(o.kind)) return [...out, `kind: ${JSON.stringify(o.kind)} is not a documented kind`];
  checkShape(o, KINDS[o.kind], o.kind, out, ['apiVersion', 'kind']);
  return out;
}

// -------------------------------------------------------------- docs --

function fieldTable(shape: Shape): string[] {
  const rows = ['| field | type | |', '|---|---|---|'];
  for (const [name, fd] of Object.entries(shape.fields)) rows.push(`| \`${name}\`${fd.optional ? ' (optional)' : ''} | ${typeName(fd.type)} | ${fd.doc} |`);
  return rows;
}

function openNote(shape: Shape): string[] {
  return shape.open ? ['', `Open: at least these fields; the others are defined in ${shape.open}.`] : [];
}

/** The generated part of docs/json.md. */
export function renderJsonDoc(): string {
  const out: string[] = ['## Kinds', ''];
  for (const [name, k] of Object.entries(KINDS)) {
    out.push(`### ${name}`, '', `Printed by: ${k.printedBy.map((c) => `\`${c}\``).join(', ')}. ${k.doc}`, '', ...fieldTable(k), ...openNote(k), '');
  }
  out.push('### Error codes', '', '| `code` | when |', '|---|---|');
  for (const r of ERROR_CODES) out.push(`| \`${r.code}\` | ${r.doc} |`);
  out.push('', '## Shapes', '');
  for (const [name, s] of Object.entries(SHAPES)) out.push(`### Shape: ${name}`, '', s.doc, '', ...fieldTable(s), ...openNote(s), '');
  return out.join('\n');
}
