/**
 * What a journal record may hold: one table, `RECORD_FIELDS`, of every
 * record type and its fields with their types. Reading a journal checks
 * each record against it (`recordProblem`), so resume never acts on a
 * field that is missing or of the wrong type.
 *
 * The table is typed against the record interfaces in journal.ts: a field
 * added to (or removed from) a record type there does not compile until it
 * is added here, with `req` for a field that is always present and `opt`
 * for an optional one. A record with a field the table does not name is
 * refused: an older controller does not guess at a newer one's journal.
 */
import type { AnnounceSpec } from './announce.js';
import type { Facts, FlowDrainFacts, JournalRecord, PreserveOptions, Timing } from './journal.js';
import { STEPS } from './machine.js';
import type { DriverSpec, ProbeSpec } from '../workload/driver.js';
import { parseAction, parseName, type AppView } from '../model/entry.js';
import { FieldError } from '../model/errors.js';

/** Checks one value; answers what is wrong with it (prefixed by its field path), or undefined. */
type Check = (value: unknown, path: string) => string | undefined;

interface Required {
  readonly optional: false;
  readonly check: Check;
}
interface Optional {
  readonly optional: true;
  readonly check: Check;
}
const req = (check: Check): Required => ({ optional: false, check });
const opt = (check: Check): Optional => ({ optional: true, check });

/** One spec per field of T (except the tag): optional exactly where T's field is. */
type FieldsOf<T, Tag extends keyof T> = { [K in Exclude<keyof T, Tag>]-?: undefined extends T[K] ? Optional : Required };
type Fields = Readonly<Record<string, Required | Optional>>;

// ------------------------------------------------------------- the checks

const say = (path: string, what: string): string => `${path}: ${what}`;

const text: Check = (v, p) => (typeof v === 'string' && v.length > 0 ? undefined : say(p, 'expected a non-empty string'));
const anyString: Check = (v, p) => (typeof v === 'string' ? undefined : say(p, 'expected a string'));

function int(min: number): Check {
  return (v, p) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= min ? undefined : say(p, `expected an integer ≥ ${min}`));
}

function num(min: number): Check {
  return (v, p) => (typeof v === 'number' && Number.isFinite(v) && v >= min ? undefined : say(p, `expected a number ≥ ${min}`));
}

function oneOf(...values: readonly (string | number)[]): Check {
  return (v, p) => (values.includes(v as string | number) ? undefined : say(p, `expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}`));
}

function either(what: string, ...checks: Check[]): Check {
  return (v, p) => (checks.some((c) => c(v, p) === undefined) ? undefined : say(p, `expected ${what}`));
}

function arrayOf(item: Check): Check {
  return (v, p) => {
    if (!Array.isArray(v)) return say(p, 'expected an array');
    for (let i = 0; i < v.length; i++) {
      const problem = item(v[i], `${p}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The fields of `o` against `fields`; `open` objects (an agent's answer kept as is) may hold more. */
function fieldsProblem(o: Record<string, unknown>, fields: Fields, path: string, open = false): string | undefined {
  for (const [name, spec] of Object.entries(fields)) {
    const at = path ? `${path}.${name}` : name;
    if (!(name in o) || o[name] === undefined) {
      if (spec.optional) continue;
      return say(at, 'missing');
    }
    const problem = spec.check(o[name], at);
    if (problem) return problem;
  }
  if (!open) {
    const extra = Object.keys(o).find((k) => !(k in fields));
    if (extra !== undefined) return say(path ? `${path}.${extra}` : extra, 'unknown field');
  }
  return undefined;
}

function object(fields: Fields, open = false): Check {
  return (v, p) => (isObject(v) ? fieldsProblem(v, fields, p, open) : say(p, 'expected an object'));
}

/** An object whose `tag` field picks its fields. */
function tagged(tag: string, variants: Readonly<Record<string, Fields>>): Check {
  return (v, p) => {
    if (!isObject(v)) return say(p, 'expected an object');
    const kind = v[tag];
    const fields = typeof kind === 'string' && Object.hasOwn(variants, kind) ? variants[kind] : undefined;
    if (!fields) return say(`${p}.${tag}`, `expected one of ${Object.keys(variants).map((k) => JSON.stringify(k)).join(', ')}`);
    return fieldsProblem(v, { ...fields, [tag]: req(anyString) }, p);
  };
}

/** A check by one of the model's validators (they throw a FieldError naming what is wrong). */
function byModel(parse: (v: unknown) => unknown, what: string): Check {
  return (v, p) => {
    try {
      parse(v);
      return undefined;
    } catch (err) {
      return say(p, err instanceof FieldError ? err.reason : `expected ${what}`);
    }
  };
}

const appName = byModel((v) => parseName(v), 'an app name');

const agentUrl: Check = (v, p) => (typeof v === 'string' && URL.canParse(v) ? undefined : say(p, 'expected an agent URL'));

const isoTime: Check = (v, p) =>
  typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v) && !Number.isNaN(Date.parse(v)) ? undefined : say(p, 'expected an ISO-8601 UTC time');

const step = oneOf(...STEPS);
const proto = either('a protocol name or number', anyString, int(0));

// ----------------------------------------------------- nested structures

const probeFields: FieldsOf<ProbeSpec, never> = {
  proto: req(oneOf('udp', 'tcp')),
  address: opt(text),
  port: req(int(0)),
  timeoutMs: opt(num(0)),
  netns: opt(text),
};

type DriverVariants = { [K in DriverSpec['kind']]: FieldsOf<Extract<DriverSpec, { kind: K }>, 'kind'> };
const driverVariants: DriverVariants = {
  none: { probe: opt(object(probeFields)) },
  'netns-process': {
    sourceNetns: req(text),
    destNetns: req(text),
    command: req(text),
    probe: opt(object(probeFields)),
    stateDir: req(text),
    killAfterMs: opt(num(0)),
  },
  exec: { start: opt(anyString), probe: opt(anyString), stop: opt(anyString), timeoutMs: opt(num(0)) },
};

type AnnounceVariants = { [K in AnnounceSpec['kind']]: FieldsOf<Extract<AnnounceSpec, { kind: K }>, 'kind'> };
const announceVariants: AnnounceVariants = {
  none: {},
  'netns-route': { netns: req(text), via: req(arrayOf(text)), dev: opt(text) },
  exec: { script: req(text), timeoutMs: opt(num(0)) },
  bgp: {},
};

const timingFields: FieldsOf<Timing, never> = {
  readyTimeoutMs: req(num(0)),
  probeIntervalMs: req(num(0)),
  stopGraceMs: req(num(0)),
  announceGraceMs: req(num(0)),
  forwardAttempts: req(int(1)),
};

/** What the controller reads of a source entry it journaled (steps.ts: workload app, rollback, destination entry). */
type OriginalRead = Pick<AppView, 'name' | 'address' | 'proto' | 'port' | 'dev' | 'mac' | 'action'>;

/** The source entry as its agent answered it: the fields the controller reads are checked; the agent's others are kept as they are. */
const originalFields: FieldsOf<OriginalRead, never> = {
  name: req(appName),
  address: req(text),
  proto: req(proto),
  port: req(int(0)),
  dev: req(text),
  mac: req(either('a MAC or null', anyString, (v, p) => (v === null ? undefined : say(p, 'null')))),
  action: req(byModel((v) => parseAction(v), 'an action')),
};

const preserveFields: FieldsOf<PreserveOptions, never> = {
  maxDrainMs: req(num(0)),
  idleMs: req(num(0)),
  lingerMs: req(num(0)),
  pollMs: req(num(0)),
};

const flowFields: FieldsOf<FlowDrainFacts, never> = {
  atStart: req(int(0)),
  cut: req(int(0)),
  waitedMs: req(num(0)),
};

const factsFields: FieldsOf<Facts, never> = {
  original: opt(object(originalFields, true)),
  tunnel: opt(text),
  flows: opt(object(flowFields)),
  generations: opt(object({ delivery: opt(int(0)), switched: opt(int(0)) })),
};

// ------------------------------------------------------------- the table

type RecordTable = { [T in JournalRecord['type']]: FieldsOf<Extract<JournalRecord, { type: T }>, 'type'> };

/** Every record type and its fields. Each record also has `seq` and `at` (STORED_FIELDS). */
export const RECORD_FIELDS: RecordTable = {
  open: {
    journal: req(text),
    kind: req(oneOf('migrate', 'drain')),
    pid: req(int(1)),
    host: req(text),
    driver: req(tagged('kind', driverVariants)),
    announce: req(tagged('kind', announceVariants)),
    timing: req(object(timingFields)),
    preserve: opt(object(preserveFields)),
  },
  plan: { app: req(appName), from: req(agentUrl), to: req(agentUrl), toIndex: req(int(0)), destDev: req(text), destMac: opt(text) },
  enter: { app: req(appName), state: req(step), attempt: opt(int(1)), deadline: opt(isoTime) },
  done: { app: req(appName), state: req(step), ms: req(num(0)), facts: opt(object(factsFields)) },
  rollback: { app: req(appName), from: req(step), error: req(anyString) },
  undo: { app: req(appName), state: req(step) },
  undone: { app: req(appName), state: req(step), ms: req(num(0)) },
  end: { app: req(appName), outcome: req(oneOf('done', 'rolled-back', 'failed')), direction: opt(oneOf('forward', 'back')), error: opt(anyString) },
};

/** What the writer adds to every record. */
const STORED_FIELDS: Fields = { seq: req(int(0)), at: req(isoTime) };

/** What is wrong with one parsed line as a journal record, or undefined when it is a valid one. */
export function recordProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'expected a JSON object';
  const type = value.type;
  if (typeof type !== 'string' || !Object.hasOwn(RECORD_FIELDS, type)) {
    return say('type', `expected one of ${Object.keys(RECORD_FIELDS).map((k) => JSON.stringify(k)).join(', ')}`);
  }
  const fields: Fields = RECORD_FIELDS[type as JournalRecord['type']];
  return fieldsProblem(value, { type: req(anyString), ...STORED_FIELDS, ...fields }, '');
}
