/**
 * An in-memory agent implementing `AgentApi` with the semantics of
 * docs/agent-api.md (404 on unknown names, 409 when two names claim one
 * key, idempotent writes, all-or-nothing batches).
 *
 * Why it exists: the controller's state machine, journal, resume and drain
 * logic are tested against it while the real agent is being written; the
 * same tests can later be pointed at real agents through `AgentConnector`.
 * It also lets tests inject failures (unreachable, refused, failed) at any
 * call, and records every call so tests can check the order of map changes.
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
  type Proto,
  AgentFailedError,
  AgentRefusedError,
  AgentUnreachableError,
  checkName,
} from './agent-client.js';

export type MemoryAgentMethod = Exclude<keyof AgentApi, 'url'>;

export interface MemoryCall {
  method: MemoryAgentMethod;
  name?: string;
  /** A copy of the body the call carried. */
  body?: unknown;
}

/**
 * Called before every method; throw from it to make the call fail.
 * Returning 'after' applies the call and then throws unreachable — the
 * "applied but the answer was lost" case the controller must survive.
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

  private refuse(method: string, status: number, msg: string): never {
    throw new AgentRefusedError(this.url, method, status, msg, undefined);
  }

  async health(): Promise<boolean> {
    return !this.down;
  }

  async status(): Promise<AgentStatus> {
    const c: MemoryCall = { method: 'status' };
    if (this.enter(c)) this.lost(c);
    return {
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
    };
  }

  async listApps(): Promise<App[]> {
    const c: MemoryCall = { method: 'listApps' };
    const lost = this.enter(c);
    const out = [...this.apps.values()].map((a) => structuredClone(a));
    if (lost) this.lost(c);
    return out;
  }

  async getApp(name: string): Promise<App | undefined> {
    const c: MemoryCall = { method: 'getApp', name };
    if (this.enter(c)) this.lost(c);
    const a = this.apps.get(name);
    return a && structuredClone(a);
  }

  async putApp(name: string, spec: AppSpec): Promise<App> {
    const c: MemoryCall = { method: 'putApp', name, body: structuredClone(spec) };
    const lost = this.enter(c);
    const app = this.applyPutApp(name, spec);
    if (lost) this.lost(c);
    return app;
  }

  async setAction(name: string, action: Action): Promise<App> {
    const c: MemoryCall = { method: 'setAction', name, body: structuredClone(action) };
    const lost = this.enter(c);
    const app = this.applySetAction(name, action);
    if (lost) this.lost(c);
    return app;
  }

  async deleteApp(name: string): Promise<boolean> {
    const c: MemoryCall = { method: 'deleteApp', name };
    const lost = this.enter(c);
    const had = this.apps.delete(checkName(name));
    if (lost) this.lost(c);
    return had;
  }

  async listDeliveries(): Promise<Delivery[]> {
    const c: MemoryCall = { method: 'listDeliveries' };
    if (this.enter(c)) this.lost(c);
    return [...this.deliveries.values()].map((d) => structuredClone(d));
  }

  async putDelivery(name: string, spec: DeliverySpec): Promise<Delivery> {
    const c: MemoryCall = { method: 'putDelivery', name, body: structuredClone(spec) };
    const lost = this.enter(c);
    const d = this.applyPutDelivery(name, spec);
    if (lost) this.lost(c);
    return d;
  }

  async deleteDelivery(name: string): Promise<boolean> {
    const c: MemoryCall = { method: 'deleteDelivery', name };
    const lost = this.enter(c);
    const had = this.deliveries.delete(checkName(name));
    if (lost) this.lost(c);
    return had;
  }

  async batch(ops: readonly Op[]): Promise<{ applied: number }> {
    const c: MemoryCall = { method: 'batch', body: structuredClone(ops) };
    const lost = this.enter(c);
    // All or nothing: apply to copies, swap in only when every op succeeded.
    const apps = new Map([...this.apps].map(([k, v]) => [k, structuredClone(v)]));
    const deliveries = new Map([...this.deliveries].map(([k, v]) => [k, structuredClone(v)]));
    const saved = { apps: new Map(this.apps), deliveries: new Map(this.deliveries) };
    this.swap(apps, deliveries);
    try {
      for (const op of ops) {
        switch (op.op) {
          case 'put-app': {
            const { op: _o, name, ...spec } = op;
            this.applyPutApp(name, spec);
            break;
          }
          case 'set-action':
            this.applySetAction(op.name, op.action);
            break;
          case 'delete-app':
            this.apps.delete(op.name);
            break;
          case 'put-delivery': {
            const { op: _o, name, ...spec } = op;
            this.applyPutDelivery(name, spec);
            break;
          }
          case 'delete-delivery':
            this.deliveries.delete(op.name);
            break;
          default:
            this.refuse('batch', 400, `unknown op ${JSON.stringify((op as { op: unknown }).op)}`);
        }
      }
    } catch (err) {
      this.swap(saved.apps, saved.deliveries);
      throw err;
    }
    if (lost) this.lost(c);
    return { applied: ops.length };
  }

  private swap(apps: Map<string, App>, deliveries: Map<string, Delivery>): void {
    this.apps.clear();
    for (const [k, v] of apps) this.apps.set(k, v);
    this.deliveries.clear();
    for (const [k, v] of deliveries) this.deliveries.set(k, v);
  }

  private key(address: string, proto: Proto, port: number): string {
    return `${address}|${proto}|${port}`;
  }

  private applyPutApp(name: string, spec: AppSpec): App {
    checkName(name);
    const proto = spec.proto ?? 'any';
    const port = spec.port ?? 0;
    if (proto === 'any' && port !== 0) this.refuse('putApp', 400, 'port must be 0 when proto is any');
    const k = this.key(spec.address, proto, port);
    for (const a of this.apps.values()) {
      if (a.name !== name && this.key(a.address, a.proto, a.port) === k) this.refuse('putApp', 409, `${k} already claimed by app ${a.name}`);
    }
    const old = this.apps.get(name);
    const app: App = {
      name,
      address: spec.address,
      proto,
      port,
      dev: spec.dev,
      mac: spec.mac ?? '02:00:00:00:00:01',
      macSource: spec.mac ? 'given' : 'resolved',
      action: spec.action ?? { type: 'local' },
      appId: old?.appId ?? this.nextId++,
      path: { via: spec.action?.type === 'forward' ? 'xdp-tx' : 'xdp' },
      counters: old?.counters ?? { local: zero(), forward: zero() },
    };
    this.apps.set(name, app);
    return structuredClone(app);
  }

  private applySetAction(name: string, action: Action): App {
    const a = this.apps.get(name);
    if (!a) this.refuse('setAction', 404, `no app ${name}`);
    if (action.type === 'forward' && !action.tunnel) this.refuse('setAction', 400, 'forward needs a tunnel');
    a.action = structuredClone(action);
    return structuredClone(a);
  }

  private applyPutDelivery(name: string, spec: DeliverySpec): Delivery {
    checkName(name);
    const proto = spec.proto ?? 'any';
    const port = spec.port ?? 0;
    const k = this.key(spec.address, proto, port);
    for (const d of this.deliveries.values()) {
      if (d.name !== name && this.key(d.address, d.proto, d.port) === k) this.refuse('putDelivery', 409, `${k} already claimed by delivery ${d.name}`);
    }
    const old = this.deliveries.get(name);
    const d: Delivery = {
      name,
      address: spec.address,
      proto,
      port,
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
