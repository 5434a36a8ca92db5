/**
 * A test double of an agent: `AgentApi` in memory.
 *
 * What it is for: the controller's tests that need an agent which fails on
 * purpose — unreachable, refusing, failing in its kernel, or applying a
 * request and then losing the answer — at any chosen call (`fault`,
 * `failOn`, `down`); which records every call, so a test can check the
 * order of the map changes across agents; and which needs no root, BPF or
 * network namespace, so those tests run anywhere in milliseconds. The
 * end-to-end tests drive real agents instead (test/lib/e2e.ts).
 *
 * It obeys the model's rules: names, bodies, actions and batch ops are
 * validated by src/model/entry.ts as the agent validates them, and a
 * refusal is the agent's (400 naming the field). On top of that, the store
 * rules of docs/agent-api.md: 404 for an unknown name, 409 when two names
 * claim one key or a name is given another key, 400 for FORWARD to the
 * agent's own tunnel address, writes idempotent by name, a batch all or nothing; leases
 * by the agent's own LeaseTable (src/agent/lease.ts: a write of a leased
 * name by another owner is 409), generations that move with every write
 * and conditional writes (412 when the entry moved). `probe` answers from
 * `probeAnswers` (default: every delivery's app answers).
 */
import { LeaseTable } from '../../src/agent/lease.js';
import {
  type Action,
  type AgentApi,
  type BatchOptions,
  type LeaseBody,
  type LeaseGrant,
  type LeaseView,
  type ProbeBody,
  type ProbeView,
  type WriteGuard,
  type AgentStatus,
  type App,
  type AppSpec,
  type FlowQuery,
  type FlowsView,
  type Delivery,
  type DeliverySpec,
  type Op,
  AgentFailedError,
  AgentRefusedError,
  AgentUnreachableError,
} from '../../src/controller/agent-client.js';
import {
  type AppKey,
  type BatchOp,
  type EntrySpec,
  type AppSpec as TypedAppSpec,
  keyString,
  parseAction,
  parseAppBody,
  parseBatchOp,
  parseDeliveryBody,
  parseLeaseBody,
  parseName,
  parseOwner,
  parseProbeBody,
} from '../../src/model/entry.js';
import { ConflictError, FieldError, NotFoundError, PreconditionFailedError, isApiError } from '../../src/model/errors.js';

export type MemoryAgentMethod = Exclude<keyof AgentApi, 'url'>;

export interface MemoryCall {
  method: MemoryAgentMethod;
  name?: string;
  /** A copy of the body the call carried. */
  body?: unknown;
}

/**
 * Called before every method; throw from it to make the call fail.
 * Returning 'lost-answer' applies the call and then throws unreachable —
 * the "applied but the answer was lost" case the controller must survive.
 */
export type FaultHook = (call: MemoryCall) => void | 'lost-answer';

const zero = () => ({ packets: '0', bytes: '0' });

export class MemoryAgent implements AgentApi {
  readonly apps = new Map<string, App>();
  readonly deliveries = new Map<string, Delivery>();
  readonly calls: MemoryCall[] = [];
  fault: FaultHook | undefined;
  /** The agent's leases, with the agent's own rules (no restart note: a memory agent never restarts). */
  readonly leases = new LeaseTable();
  /**
   * GET /v1/apps/:name/flows: the old-flow counts an app's polls answer, one
   * per poll, the last one repeated (default: none alive).
   */
  readonly flowCounts = new Map<string, number[]>();
  /** Whether the app behind a delivery answers the agent's probe. */
  probeAnswers: (name: string) => boolean = () => true;
  private nextId = 1;
  /** The write counter: an entry's generation is its value at the entry's last write (starting above what tests preset). */
  private generation = 1_000_000;

  constructor(
    readonly url: string,
    readonly tunnel: { v4?: string; v6?: string },
  ) {}

  /** Make every call fail as if the host were down, until `down = false`. */
  down = false;

  private enter(call: MemoryCall): boolean {
    this.calls.push(call);
    if (this.down) throw new AgentUnreachableError(this.url, call.method, `agent ${this.url} unreachable: ${call.method}: ECONNREFUSED`);
    return this.fault?.(call) === 'lost-answer';
  }

  private lost(call: MemoryCall): never {
    throw new AgentUnreachableError(this.url, call.method, `agent ${this.url} unreachable: ${call.method}: answer lost`);
  }

  /**
   * Run one call: record it, let the fault hook fail it, apply it, answer.
   * What the model or the store refuse is answered as the agent answers it
   * (FieldError 400 with its field, NotFoundError 404, ConflictError 409).
   */
  private call<T>(c: MemoryCall, apply: () => T): T {
    const lost = this.enter(c);
    let out: T;
    try {
      out = apply();
    } catch (err) {
      if (!isApiError(err)) throw err;
      throw new AgentRefusedError(this.url, c.method, err.status, err.message, err instanceof FieldError ? err.field : undefined);
    }
    if (lost) this.lost(c);
    return out;
  }

  async health(): Promise<boolean> {
    return !this.down;
  }

  async status(): Promise<AgentStatus> {
    return this.call<AgentStatus>({ method: 'status' }, () => ({
      uplink: 'mem0',
      ifindex: 1,
      hook: { type: 'memory', mode: 'memory', programId: 0, uplinkTx: 'xdp-tx', checksPartialChecksums: false },
      devices: {},
      tunnel: { v4: this.tunnel.v4 ?? null, v6: this.tunnel.v6 ?? null, mtu: 0 },
      pinDir: '/nonexistent',
      adopted: false,
      adoptedFrom: 'fresh',
      drops: {},
      uptimeSeconds: 1,
      entries: { apps: this.apps.size, deliveries: this.deliveries.size },
      capacity: { apps: 65536, deliveries: 65536 },
      version: 'memory',
    }));
  }

  async listApps(): Promise<App[]> {
    return this.call({ method: 'listApps' }, () => [...this.apps.values()].map((a) => structuredClone(a)));
  }

  async getApp(name: string): Promise<App | undefined> {
    return this.call({ method: 'getApp', name }, () => {
      const a = this.apps.get(parseName(name));
      return a && structuredClone(a);
    });
  }

  async putApp(name: string, spec: AppSpec, guard: WriteGuard = {}): Promise<App> {
    return this.call({ method: 'putApp', name, body: structuredClone(spec) }, () => {
      const op: BatchOp = { op: 'put-app', name: parseName(name), spec: parseAppBody(spec) };
      this.admit(op, guard, '');
      return this.applyPutApp(op.name, op.spec, '');
    });
  }

  async setAction(name: string, action: Action, guard: WriteGuard = {}): Promise<App> {
    return this.call({ method: 'setAction', name, body: structuredClone(action) }, () => {
      const op: BatchOp = { op: 'set-action', name: parseName(name), action: parseAction(action, 'body') };
      this.admit(op, guard, '');
      return this.applySetAction(op.name, op.action, '');
    });
  }

  async deleteApp(name: string, guard: WriteGuard = {}): Promise<boolean> {
    return this.call({ method: 'deleteApp', name }, () => {
      this.admit({ op: 'delete-app', name: parseName(name) }, guard, '');
      return this.apps.delete(name);
    });
  }

  async listDeliveries(): Promise<Delivery[]> {
    return this.call({ method: 'listDeliveries' }, () => [...this.deliveries.values()].map((d) => structuredClone(d)));
  }

  async putDelivery(name: string, spec: DeliverySpec, guard: WriteGuard = {}): Promise<Delivery> {
    return this.call({ method: 'putDelivery', name, body: structuredClone(spec) }, () => {
      const op: BatchOp = { op: 'put-delivery', name: parseName(name), spec: parseDeliveryBody(spec) };
      this.admit(op, guard, '');
      return this.applyPutDelivery(op.name, op.spec, '');
    });
  }

  async deleteDelivery(name: string, guard: WriteGuard = {}): Promise<boolean> {
    return this.call({ method: 'deleteDelivery', name }, () => {
      this.admit({ op: 'delete-delivery', name: parseName(name) }, guard, '');
      return this.deliveries.delete(name);
    });
  }

  async flows(name: string, query: FlowQuery): Promise<FlowsView> {
    return this.call({ method: 'flows', name, body: structuredClone(query) }, () => {
      const a = this.apps.get(parseName(name));
      if (!a) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
      const queue = this.flowCounts.get(name) ?? [];
      const active = (queue.length > 1 ? queue.shift() : queue[0]) ?? 0;
      return {
        app: name, action: a.action.type, active, closing: 0, closed: 0, idle: 0,
        pinned: String(active), sent: '0', refused: '0', evicted: '0',
        idleMs: query.idleMs, lingerMs: query.lingerMs, capacity: 65536,
      };
    });
  }

  async takeLeases(req: LeaseBody): Promise<LeaseGrant> {
    return this.call({ method: 'takeLeases', body: structuredClone(req) }, () => this.leases.grant(parseLeaseBody(req)));
  }

  async releaseLeases(owner: string, names?: readonly string[]): Promise<number> {
    return this.call({ method: 'releaseLeases', body: { owner, names } }, () => this.leases.release(parseOwner(owner), names?.map((n) => parseName(n))));
  }

  async listLeases(): Promise<LeaseView[]> {
    return this.call({ method: 'listLeases' }, () => this.leases.list());
  }

  async probe(req: ProbeBody): Promise<ProbeView> {
    return this.call({ method: 'probe', name: req.name, body: structuredClone(req) }, () => {
      const p = parseProbeBody(req);
      const d = this.deliveries.get(p.name);
      if (!d) throw new NotFoundError(`no delivery named ${JSON.stringify(p.name)}`);
      const ok = this.probeAnswers(p.name);
      return { ok, address: d.address, dev: d.dev, rttMs: ok ? 0.1 : null, ...(ok ? {} : { error: `no answer within ${p.timeoutMs} ms` }) };
    });
  }

  /**
   * The agent's checks before a write (src/agent/store.ts #admit): the
   * name's lease, then the condition on the committed entry's generation.
   */
  private admit(op: BatchOp, guard: WriteGuard, field: string): void {
    this.leases.checkWrite(op.name, guard.owner, field);
    if (guard.ifGeneration === undefined) return;
    const delivery = op.op === 'put-delivery' || op.op === 'delete-delivery';
    const e = delivery ? this.deliveries.get(op.name) : this.apps.get(op.name);
    if (!e && op.op !== 'put-app' && op.op !== 'put-delivery') return; // 404 follows
    const ok = guard.ifGeneration === 0 ? !e : e?.generation === guard.ifGeneration;
    if (!ok) throw new PreconditionFailedError(`${field ? `${field}: ` : ''}${op.name} is at generation ${e?.generation ?? 0}, not ${guard.ifGeneration}; nothing was changed`, e?.generation ?? 0);
  }

  async batch(ops: readonly Op[], opts: BatchOptions = {}): Promise<{ applied: number; generations?: number[] }> {
    return this.call({ method: 'batch', body: structuredClone(ops) }, () => {
      // Every op is validated and admitted first; then all are applied to copies, swapped in only when every op succeeded.
      const typed = ops.map((op, i) => parseBatchOp(op, i));
      const owner = opts.owner === undefined ? undefined : parseOwner(opts.owner);
      typed.forEach((op, i) => this.admit(op, { ...(owner ? { owner } : {}), ...(op.ifGeneration === undefined ? {} : { ifGeneration: op.ifGeneration }) }, ops.length > 1 ? `ops[${i}]` : ''));
      const saved = { apps: new Map(this.apps), deliveries: new Map(this.deliveries) };
      this.swap(
        new Map([...this.apps].map(([k, v]) => [k, structuredClone(v)])),
        new Map([...this.deliveries].map(([k, v]) => [k, structuredClone(v)])),
      );
      try {
        for (const [i, op] of typed.entries()) {
          const unknown = (kind: string) => new NotFoundError(`ops[${i}]: no ${kind} named ${JSON.stringify(op.name)}`);
          const field = ops.length > 1 ? `ops[${i}]` : '';
          if (op.op === 'put-app') this.applyPutApp(op.name, op.spec, field);
          else if (op.op === 'set-action') this.applySetAction(op.name, op.action, field);
          else if (op.op === 'put-delivery') this.applyPutDelivery(op.name, op.spec, field);
          else if (op.op === 'delete-app' && !this.apps.delete(op.name)) throw unknown('app');
          else if (op.op === 'delete-delivery' && !this.deliveries.delete(op.name)) throw unknown('delivery');
        }
      } catch (err) {
        this.swap(saved.apps, saved.deliveries);
        throw err;
      }
      if (!opts.generations) return { applied: ops.length };
      const gens = typed.map((op) => (op.op === 'put-delivery' || op.op === 'delete-delivery' ? this.deliveries : this.apps).get(op.name)?.generation ?? 0);
      return { applied: ops.length, generations: gens };
    });
  }

  private swap(apps: Map<string, App>, deliveries: Map<string, Delivery>): void {
    this.apps.clear();
    for (const [k, v] of apps) this.apps.set(k, v);
    this.deliveries.clear();
    for (const [k, v] of deliveries) this.deliveries.set(k, v);
  }

  /**
   * The agent's key rules (src/agent/plan.ts #putEntry), with its messages:
   * 409 when another name of the same kind holds the key, and 409 when the
   * name's entry has another key (an entry's address never changes in place).
   */
  private claim(kind: 'app' | 'delivery', entries: Map<string, App | Delivery>, name: string, key: AppKey, field: string): void {
    const k = keyString(key);
    const at = field ? `${field}.address` : 'address';
    for (const e of entries.values()) {
      if (e.name !== name && keyString(e) === k) throw new ConflictError(`${at}: ${k} already belongs to ${kind} ${JSON.stringify(e.name)}`);
    }
    const own = entries.get(name);
    if (own && keyString(own) !== k) {
      throw new ConflictError(`${at}: ${kind} ${JSON.stringify(name)} is ${keyString(own)}; delete it before giving the name another address`);
    }
  }

  /** The agent refuses FORWARD/PRESERVE to its own tunnel address (400 naming action.tunnel), on put-app and set-action alike. */
  private checkTunnel(action: Action, field: string): void {
    if (action.type === 'local') return;
    if (action.tunnel === this.tunnel.v4 || action.tunnel === this.tunnel.v6) {
      throw new FieldError(field ? `${field}.action.tunnel` : 'action.tunnel', `${action.tunnel} is this host's own tunnel address: forward to another host's`);
    }
  }

  private applyPutApp(name: string, spec: TypedAppSpec, field: string): App {
    this.claim('app', this.apps, name, spec.key, field);
    this.checkTunnel(spec.action, field);
    const old = this.apps.get(name);
    const app: App = {
      name,
      ...spec.key,
      dev: spec.dev,
      mac: spec.mac ?? '02:00:00:00:00:01',
      macSource: spec.mac ? 'given' : 'resolved',
      action: spec.action,
      appId: old?.appId ?? this.nextId++,
      path: { via: spec.action.type === 'forward' ? 'xdp-tx' : 'xdp' },
      generation: ++this.generation,
      counters: old?.counters ?? { local: zero(), forward: zero() },
    };
    this.apps.set(name, app);
    return structuredClone(app);
  }

  private applySetAction(name: string, action: Action, field: string): App {
    const a = this.apps.get(name);
    if (!a) throw new NotFoundError(`${field ? `${field}: ` : ''}no app named ${JSON.stringify(name)}`);
    this.checkTunnel(action, field);
    if (JSON.stringify(a.action) !== JSON.stringify(action)) a.generation = ++this.generation; // the agent's idempotent write leaves it
    a.action = structuredClone(action);
    return structuredClone(a);
  }

  private applyPutDelivery(name: string, spec: EntrySpec, field: string): Delivery {
    this.claim('delivery', this.deliveries, name, spec.key, field);
    const old = this.deliveries.get(name);
    const d: Delivery = {
      name,
      ...spec.key,
      dev: spec.dev,
      mac: spec.mac ?? '02:00:00:00:00:02',
      macSource: spec.mac ? 'given' : 'resolved',
      appId: old?.appId ?? this.nextId++,
      path: { via: 'xdp' },
      generation: ++this.generation,
      counters: old?.counters ?? { deliver: zero() },
    };
    this.deliveries.set(name, d);
    return structuredClone(d);
  }
}

/** A fault that fails one method (optionally for one name) with a given kind of error. */
export function failOn(
  agent: MemoryAgent,
  method: MemoryAgentMethod,
  kind: 'unreachable' | 'refused' | 'failed' | 'lost-answer',
  opts: { name?: string; times?: number } = {},
): void {
  let left = opts.times ?? Infinity;
  agent.fault = (call) => {
    if (call.method !== method || (opts.name !== undefined && call.name !== opts.name) || left <= 0) return;
    left--;
    if (kind === 'lost-answer') return 'lost-answer';
    if (kind === 'unreachable') throw new AgentUnreachableError(agent.url, method, `agent ${agent.url} unreachable: ${method}: injected`);
    const Cls = kind === 'refused' ? AgentRefusedError : AgentFailedError;
    throw new Cls(agent.url, method, kind === 'refused' ? 400 : 500, `injected ${kind}`, undefined);
  };
}
