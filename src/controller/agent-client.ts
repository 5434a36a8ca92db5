/**
 * Typed client of one agent's HTTP API (docs/agent-api.md).
 *
 * The controller only ever talks to agents through the `AgentApi` interface,
 * so its state machine runs against real agents and, in the controller's
 * unit tests, against an in-memory double that fails on purpose
 * (test/lib/memory-agent.ts). `HttpAgentClient` is the real implementation:
 * bearer token, TLS with a CA and client certificate of its own
 * (agent-transport.ts; credentials.ts picks them), a timeout on every
 * request, and errors that say which
 * agent, which request, which HTTP status and what the agent itself said —
 * split into three classes because the controller reacts
 * differently to each (unreachable: state unknown; refused: our request was
 * wrong and changed nothing; failed: the agent's kernel said no, nothing changed).
 */

import type { MigrationReportBody } from '../model/migration-report.js';
import { FieldError } from '../model/errors.js';
import type { AnnouncementBatchBody, AnnouncementList } from '../model/announcement.js';
import { AgentTransport, TransportError, type TransportTls } from './agent-transport.js';
import { parseName, type LeaseBody, type LeaseGrant, type LeaseView, type ProbeBody, type ProbeView, type WriteGuard, type Action, type AppBody, type AppView, type DeliveryBody, type DeliveryView, type FlowsView, type OpBody, type StatusView } from '../model/entry.js';

// The wire vocabulary is the model's (src/model/entry.ts); these are its
// names as the controller has always used them.
export type { Action, FlowsView, Proto } from '../model/entry.js';
export type App = AppView;
export type Delivery = DeliveryView;
export type AppSpec = AppBody;
export type DeliverySpec = DeliveryBody;
export type Op = OpBody;
export type AgentStatus = StatusView;
export type { LeaseBody, LeaseGrant, LeaseView, ProbeBody, ProbeView, WriteGuard } from '../model/entry.js';

/** Options of a batch: the lease owner its ops are made for, and whether to answer each op's entry generation. */
export interface BatchOptions {
  owner?: string;
  generations?: boolean;
}

/** Everything the controller needs from one agent. */
export interface AgentApi {
  /** The agent's base URL, used in every message about it. */
  readonly url: string;
  health(): Promise<boolean>;
  status(): Promise<AgentStatus>;
  listApps(): Promise<App[]>;
  /** undefined when the agent has no app of that name (404). */
  getApp(name: string): Promise<App | undefined>;
  /** Writes take a guard: the lease owner they are made for, and a condition on the entry's generation (412 when it moved). */
  putApp(name: string, spec: AppSpec, guard?: WriteGuard): Promise<App>;
  setAction(name: string, action: Action, guard?: WriteGuard): Promise<App>;
  /** false when there was nothing to delete (404): deleting is idempotent for the controller. */
  deleteApp(name: string, guard?: WriteGuard): Promise<boolean>;
  listDeliveries(): Promise<Delivery[]>;
  putDelivery(name: string, spec: DeliverySpec, guard?: WriteGuard): Promise<Delivery>;
  deleteDelivery(name: string, guard?: WriteGuard): Promise<boolean>;
  /** All ops validated first, then applied with batched map updates, all or nothing. */
  batch(ops: readonly Op[], opts?: BatchOptions): Promise<{ applied: number; generations?: number[] }>;
  /** Lease names to an owner, all or none (409 naming the holder: AgentRefusedError with `holder`). */
  takeLeases(req: LeaseBody): Promise<LeaseGrant>;
  /** Give up an owner's leases (of `names`, or all); answers how many went. */
  releaseLeases(owner: string, names?: readonly string[]): Promise<number>;
  listLeases(): Promise<LeaseView[]>;
  /** Probe, from the agent's host, the app behind its delivery entry `name`. */
  probe(req: ProbeBody): Promise<ProbeView>;
  /** The preserve action's old flows of an app (GET /v1/apps/:name/flows); agents that predate it lack it. */
  flows?(name: string, query: FlowQuery): Promise<FlowsView>;
  /** Hand the source agent the outcome and phase durations of migrations that left it (it counts them on /metrics); agents that predate it lack it. */
  reportMigrations?(report: MigrationReportBody): Promise<number>;
}

/** How the source agent tells live flows from gone ones (src/agent/flows.ts). */
export interface FlowQuery {
  idleMs: number;
  lingerMs: number;
}

/** Connects to the agent at a URL; tests pass a factory of in-memory agents. */
export type AgentConnector = (url: string) => AgentApi;

/** Base class: every agent error names the agent and the request. */
export class AgentError extends Error {
  constructor(
    readonly agent: string,
    readonly request: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * No answer (connection refused, DNS, timeout, reset). Whether the request
 * was applied is UNKNOWN: the caller must read the state back to know.
 */
export class AgentUnreachableError extends AgentError {
  override readonly name = 'AgentUnreachableError';
}

/** The agent answered with an HTTP status outside 2xx. */
export class AgentHttpError extends AgentError {
  constructor(
    agent: string,
    request: string,
    readonly status: number,
    /** The agent's own `error` text, if it sent one. */
    readonly agentMessage: string | undefined,
    /** The JSON path of the offending field, if the agent named one. */
    readonly field: string | undefined,
  ) {
    super(
      agent,
      request,
      `agent ${agent}: ${request} → HTTP ${status}${agentMessage ? `: ${agentMessage}` : ''}${field ? ` (field ${field})` : ''}`,
    );
  }
}

/** 4xx: the request was refused (bad input, unknown name, conflict, auth); nothing changed. */
export class AgentRefusedError extends AgentHttpError {
  override readonly name = 'AgentRefusedError';
}

/** 5xx: the agent accepted the request but could not apply it (kernel refused); nothing changed. */
export class AgentFailedError extends AgentHttpError {
  override readonly name = 'AgentFailedError';
}

/** The answer was 2xx but not the JSON the API documents: the agent and controller disagree. */
export class AgentProtocolError extends AgentError {
  override readonly name = 'AgentProtocolError';
}

export interface HttpAgentClientOptions {
  /** Bearer token; without it every request but /healthz gets 401. */
  token?: string;
  /** Per-request timeout. Default 5000 ms. */
  timeoutMs?: number;
  /** https:// agents: the CA to verify them by (default: the system's) and a client certificate (agents run with --client-ca). */
  tls?: TransportTls;
  /** Sent without a token: why, appended to a 401 so the user learns how to give one. */
  noTokenHint?: string;
}

/** A name the agent would refuse: bad input (field `name`), with the name in the message. */
export class InvalidNameError extends FieldError {
  override readonly name = 'InvalidNameError';
  constructor(value: string, reason: string) {
    super('name', reason);
    this.message = `invalid name ${JSON.stringify(value)}: ${reason}`;
  }
}

/** Refuse a name the agent would refuse (the model's rule), before it becomes part of a URL path. */
export function checkName(name: string): string {
  try {
    return parseName(name);
  } catch (err) {
    if (err instanceof FieldError) throw new InvalidNameError(name, err.reason);
    throw err;
  }
}

/** Normalise a user-given agent URL (`host:port` gets `http://`; no trailing slash). */
export function normaliseAgentUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new Error(`invalid agent URL ${JSON.stringify(raw)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`agent URL ${raw} must be http:// or https://`);
  return u.href.replace(/\/+$/, '');
}

export class HttpAgentClient implements AgentApi {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly noTokenHint: string | undefined;
  private readonly transport: AgentTransport;

  constructor(url: string, opts: HttpAgentClientOptions = {}) {
    this.url = normaliseAgentUrl(url);
    this.token = opts.token;
    this.noTokenHint = opts.token ? undefined : opts.noTokenHint;
    if (opts.tls && !this.url.startsWith('https:')) throw new Error(`agent URL ${this.url}: a CA or client certificate needs https://`);
    this.transport = new AgentTransport(this.url, { timeoutMs: opts.timeoutMs ?? 5000, ...(opts.tls ? { tls: opts.tls } : {}) });
  }

  async health(): Promise<boolean> {
    try {
      const r = await this.request<{ ok?: unknown }>('GET', '/healthz');
      return r.body?.ok === true;
    } catch (err) {
      if (err instanceof AgentError) return false;
      throw err;
    }
  }

  async status(): Promise<AgentStatus> {
    const r = await this.request<AgentStatus>('GET', '/status');
    return expectObject(this.url, 'GET /status', r.body, ['tunnel', 'uplink']);
  }

  async listApps(): Promise<App[]> {
    return this.#listAll<App>('/v1/apps', 'apps');
  }

  async getApp(name: string): Promise<App | undefined> {
    const req = `GET /v1/apps/${checkName(name)}`;
    const r = await this.request<App>('GET', `/v1/apps/${name}`, undefined, [404]);
    if (r.status === 404) return undefined;
    return expectObject(this.url, req, r.body, ['name', 'action', 'address']);
  }

  async putApp(name: string, spec: AppSpec, guard?: WriteGuard): Promise<App> {
    const r = await this.request<App>('PUT', `/v1/apps/${checkName(name)}${guardQuery(guard)}`, spec);
    return expectObject(this.url, `PUT /v1/apps/${name}`, r.body, ['name', 'action']);
  }

  async setAction(name: string, action: Action, guard?: WriteGuard): Promise<App> {
    const r = await this.request<App>('POST', `/v1/apps/${checkName(name)}/action${guardQuery(guard)}`, action);
    return expectObject(this.url, `POST /v1/apps/${name}/action`, r.body, ['name', 'action']);
  }

  async deleteApp(name: string, guard?: WriteGuard): Promise<boolean> {
    const r = await this.request('DELETE', `/v1/apps/${checkName(name)}${guardQuery(guard)}`, undefined, [404]);
    return r.status !== 404;
  }

  async listDeliveries(): Promise<Delivery[]> {
    return this.#listAll<Delivery>('/v1/deliveries', 'deliveries');
  }

  /** Every page of a listing (the agent pages them: 10,000 per page), sorted by name. */
  async #listAll<T extends { name: string }>(path: string, field: 'apps' | 'deliveries'): Promise<T[]> {
    const out: T[] = [];
    let cursor: string | null = null;
    for (let pages = 0; ; pages++) {
      if (pages > 100_000) throw new Error(`agent ${this.url}: GET ${path} did not end after 100,000 pages`);
      const url = cursor ? `${path}?cursor=${encodeURIComponent(cursor)}` : path;
      const req = `GET ${url}`;
      const r: { body?: Record<string, unknown> } = await this.request<Record<string, unknown>>('GET', url);
      const body: Record<string, unknown> = expectObject(this.url, req, r.body, [field]);
      for (const item of expectArray<T>(this.url, req, body[field] as T[] | undefined)) out.push(item);
      // The cursor is the agent's to read; an agent that does not page answers without `next`.
      cursor = typeof body.next === 'string' && body.next !== '' ? body.next : null;
      if (!cursor) break;
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async putDelivery(name: string, spec: DeliverySpec, guard?: WriteGuard): Promise<Delivery> {
    const r = await this.request<Delivery>('PUT', `/v1/deliveries/${checkName(name)}${guardQuery(guard)}`, spec);
    return expectObject(this.url, `PUT /v1/deliveries/${name}`, r.body, ['name']);
  }

  async deleteDelivery(name: string, guard?: WriteGuard): Promise<boolean> {
    const r = await this.request('DELETE', `/v1/deliveries/${checkName(name)}${guardQuery(guard)}`, undefined, [404]);
    return r.status !== 404;
  }

  async batch(ops: readonly Op[], opts: BatchOptions = {}): Promise<{ applied: number; generations?: number[] }> {
    const r = await this.request<{ applied: number; generations?: number[] }>('POST', '/v1/batch', { ops, ...opts });
    const body = expectObject(this.url, 'POST /v1/batch', r.body, ['applied']);
    if (typeof body.applied !== 'number') throw new AgentProtocolError(this.url, 'POST /v1/batch', `agent ${this.url}: POST /v1/batch answered without a numeric "applied"`);
    if (opts.generations && !(Array.isArray(body.generations) && body.generations.length === ops.length)) {
      throw new AgentProtocolError(this.url, 'POST /v1/batch', `agent ${this.url}: POST /v1/batch answered without one generation per op`);
    }
    return body;
  }

  async takeLeases(req: LeaseBody): Promise<LeaseGrant> {
    const r = await this.request<LeaseGrant>('POST', '/v1/leases', req);
    return expectObject(this.url, 'POST /v1/leases', r.body, ['owner', 'names', 'ttlMs']);
  }

  async releaseLeases(owner: string, names?: readonly string[]): Promise<number> {
    const path = `/v1/leases/${encodeURIComponent(owner)}${names ? `?names=${names.map(checkName).join(',')}` : ''}`;
    const r = await this.request<{ released: number }>('DELETE', path);
    const body = expectObject(this.url, `DELETE ${path}`, r.body, ['released']);
    return body.released;
  }

  async listLeases(): Promise<LeaseView[]> {
    const r = await this.request<{ leases: LeaseView[] }>('GET', '/v1/leases');
    return expectArray(this.url, 'GET /v1/leases', expectObject(this.url, 'GET /v1/leases', r.body, ['leases']).leases);
  }

  async reportMigrations(report: MigrationReportBody): Promise<number> {
    const r = await this.request<{ recorded: number }>('POST', '/v1/migrations', report);
    return expectObject(this.url, 'POST /v1/migrations', r.body, ['recorded']).recorded;
  }

  async probe(req: ProbeBody): Promise<ProbeView> {
    const r = await this.request<ProbeView>('POST', '/v1/probe', req);
    return expectObject(this.url, 'POST /v1/probe', r.body, ['ok', 'address', 'dev']);
  }

  async flows(name: string, query: FlowQuery): Promise<FlowsView> {
    const path = `/v1/apps/${checkName(name)}/flows?idleMs=${Math.round(query.idleMs)}&lingerMs=${Math.round(query.lingerMs)}`;
    const r = await this.request<FlowsView>('GET', path);
    const body = expectObject(this.url, `GET ${path}`, r.body, ['active', 'action']);
    if (typeof body.active !== 'number') throw new AgentProtocolError(this.url, `GET ${path}`, `agent ${this.url}: GET ${path} answered without a numeric "active"`);
    return body;
  }

  /** BGP announcements through the agent's BIRD (agents started with --bird-include): one reconfiguration for the whole batch. */
  async changeAnnouncements(batch: AnnouncementBatchBody): Promise<{ announced: number; withdrawn: number }> {
    const r = await this.request<{ announced: number; withdrawn: number }>('POST', '/v1/announcements', batch);
    return expectObject(this.url, 'POST /v1/announcements', r.body, ['announced', 'withdrawn']);
  }

  async listAnnouncements(): Promise<AnnouncementList> {
    const r = await this.request<AnnouncementList>('GET', '/v1/announcements');
    return expectObject(this.url, 'GET /v1/announcements', r.body, ['announcements', 'bird']);
  }

  /**
   * One request. `okStatuses` lists non-2xx statuses the caller handles itself
   * (404 on reads and deletes), so they come back instead of being thrown.
   */
  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    okStatuses: readonly number[] = [],
  ): Promise<{ status: number; body: T | undefined }> {
    const what = `${method} ${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: { status: number; text: string };
    try {
      res = await this.transport.send(method, this.url + path, headers, body === undefined ? undefined : JSON.stringify(body));
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      const msg = err.answered ? `agent ${this.url}: ${what}: answer cut off: ${err.reason}` : `agent ${this.url} unreachable: ${what}: ${err.reason}`;
      throw new AgentUnreachableError(this.url, what, msg);
    }
    const text = res.text;
    const ok = res.status >= 200 && res.status < 300;
    let parsed: unknown;
    if (text.length) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (ok || okStatuses.includes(res.status)) {
      if (text.length && parsed === undefined && ok) {
        throw new AgentProtocolError(this.url, what, `agent ${this.url}: ${what}: HTTP ${res.status} with a body that is not JSON`);
      }
      return { status: res.status, body: parsed as T | undefined };
    }
    const errBody = (parsed ?? {}) as { error?: unknown; field?: unknown };
    let agentMessage = typeof errBody.error === 'string' ? errBody.error : text.slice(0, 200) || undefined;
    if (res.status === 401 && this.noTokenHint) agentMessage = `${agentMessage ?? 'unauthorized'} (${this.noTokenHint})`;
    const field = typeof errBody.field === 'string' ? errBody.field : undefined;
    const Cls = res.status >= 500 ? AgentFailedError : AgentRefusedError;
    throw new Cls(this.url, what, res.status, agentMessage, field);
  }
}

/** `?owner=…&ifGeneration=…` of a single-entry write (empty without a guard). */
function guardQuery(guard: WriteGuard | undefined): string {
  const q = new URLSearchParams();
  if (guard?.owner !== undefined) q.set('owner', guard.owner);
  if (guard?.ifGeneration !== undefined) q.set('ifGeneration', String(guard.ifGeneration));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function expectObject<T>(agent: string, request: string, body: T | undefined, keys: readonly string[]): T {
  if (typeof body !== 'object' || body === null) {
    throw new AgentProtocolError(agent, request, `agent ${agent}: ${request} answered without a JSON object`);
  }
  for (const k of keys) {
    if (!(k in body)) throw new AgentProtocolError(agent, request, `agent ${agent}: ${request} answered without "${k}"`);
  }
  return body;
}

function expectArray<T>(agent: string, request: string, v: T[] | undefined): T[] {
  if (!Array.isArray(v)) throw new AgentProtocolError(agent, request, `agent ${agent}: ${request} answered without a list`);
  return v;
}
