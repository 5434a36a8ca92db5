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
 * claim one key, writes idempotent by name, a batch all or nothing.
 */
import {
  type Action,
  type AgentApi,
  type AgentStatus,
  type App,
  type AppSpec,
  type Delivery,
  type DeliverySpec,
  type Op,
  AgentFailedError,
  AgentRefusedError,
  AgentUnreachableError,
} from '../../src/controller/agent-client.js';
import { type AppKey, type EntrySpec, type AppSpec as TypedAppSpec, keyString, parseAction, parseAppBody, parseBatchOp, parseDeliveryBody, parseName } from '../../src/model/entry.js';
import { ConflictError, FieldError, NotFoundError, isApiError } from '../../src/model/errors.js';

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
  private nextId = 1;

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

  async putApp(name: string, spec: AppSpec): Promise<App> {
    return this.call({ method: 'putApp', name, body: structuredClone(spec) }, () => this.applyPutApp(parseName(name), parseAppBody(spec)));
  }

  async setAction(name: string, action: Action): Promise<App> {
    return this.call({ method: 'setAction', name, body: structuredClone(action) }, () => this.applySetAction(parseName(name), parseAction(action, 'body')));
  }

  async deleteApp(name: string): Promise<boolean> {
    return this.call({ method: 'deleteApp', name }, () => this.apps.delete(parseName(name)));
  }

  async listDeliveries(): Promise<Delivery[]> {
    return this.call({ method: 'listDeliveries' }, () => [...this.deliveries.values()].map((d) => structuredClone(d)));
  }

  async putDelivery(name: string, spec: DeliverySpec): Promise<Delivery> {
    return this.call({ method: 'putDelivery', name, body: structuredClone(spec) }, () => this.applyPutDelivery(parseName(name), parseDeliveryBody(spec)));
  }

  async deleteDelivery(name: string): Promise<boolean> {
    return this.call({ method: 'deleteDelivery', name }, () => this.deliveries.delete(parseName(name)));
  }

  async batch(ops: readonly Op[]): Promise<{ applied: number }> {
    return this.call({ method: 'batch', body: structuredClone(ops) }, () => {
      // Every op is validated first; then all are applied to copies, swapped in only when every op succeeded.
      const typed = ops.map((op, i) => parseBatchOp(op, i));
      const saved = { apps: new Map(this.apps), deliveries: new Map(this.deliveries) };
      this.swap(
        new Map([...this.apps].map(([k, v]) => [k, structuredClone(v)])),
        new Map([...this.deliveries].map(([k, v]) => [k, structuredClone(v)])),
      );
      try {
        for (const [i, op] of typed.entries()) {
          const unknown = (kind: string) => new NotFoundError(`ops[${i}]: no ${kind} named ${JSON.stringify(op.name)}`);
          if (op.op === 'put-app') this.applyPutApp(op.name, op.spec);
          else if (op.op === 'set-action') this.applySetAction(op.name, op.action);
          else if (op.op === 'put-delivery') this.applyPutDelivery(op.name, op.spec);
          else if (op.op === 'delete-app' && !this.apps.delete(op.name)) throw unknown('app');
          else if (op.op === 'delete-delivery' && !this.deliveries.delete(op.name)) throw unknown('delivery');
        }
      } catch (err) {
        this.swap(saved.apps, saved.deliveries);
        throw err;
      }
      return { applied: ops.length };
    });
  }

  private swap(apps: Map<string, App>, deliveries: Map<string, Delivery>): void {
    this.apps.clear();
    for (const [k, v] of apps) this.apps.set(k, v);
    this.deliveries.clear();
    for (const [k, v] of deliveries) this.deliveries.set(k, v);
  }

  /** 409 when another name of the same kind holds the key. */
  private claim(kind: string, entries: Map<string, App | Delivery>, name: string, key: AppKey): void {
    const k = keyString(key);
    for (const e of entries.values()) {
      if (e.name !== name && keyString(e) === k) throw new ConflictError(`address: ${k} already belongs to ${kind} ${JSON.stringify(e.name)}`);
    }
  }

  private applyPutApp(name: string, spec: TypedAppSpec): App {
    this.claim('app', this.apps, name, spec.key);
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
      counters: old?.counters ?? { local: zero(), forward: zero() },
    };
    this.apps.set(name, app);
    return structuredClone(app);
  }

  private applySetAction(name: string, action: Action): App {
    const a = this.apps.get(name);
    if (!a) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
    a.action = structuredClone(action);
    return structuredClone(a);
  }

  private applyPutDelivery(name: string, spec: EntrySpec): Delivery {
    this.claim('delivery', this.deliveries, name, spec.key);
    const old = this.deliveries.get(name);
    const d: Delivery = {
      name,
      ...spec.key,
      dev: spec.dev,
      mac: spec.mac ?? '02:00:00:00:00:02',
      macSource: spec.mac ? 'given' : 'resolved',
      appId: old?.appId ?? this.nextId++,
      path: { via: 'xdp' },
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
