/**
 * Typed client of one agent's HTTP API (docs/agent-api.md).
 *
 * The controller only ever talks to agents through the `AgentApi` interface,
 * so its state machine runs against real agents and, in the controller's
 * unit tests, against an in-memory double that fails on purpose
 * (test/lib/memory-agent.ts). `HttpAgentClient` is the real implementation:
 * bearer token, a timeout on every request, and errors that say which
 * agent, which request, which HTTP status and what the agent itself said —
 * split into three classes because the controller reacts
 * differently to each (unreachable: state unknown; refused: our request was
 * wrong and changed nothing; failed: the agent's kernel said no, nothing changed).
 */

import { FieldError } from '../model/errors.js';
import { parseName, type Action, type AppBody, type AppView, type DeliveryBody, type DeliveryView, type OpBody, type StatusView } from '../model/entry.js';

// The wire vocabulary is the model's (src/model/entry.ts); these are its
// names as the controller has always used them.
export type { Action, Proto } from '../model/entry.js';
export type App = AppView;
export type Delivery = DeliveryView;
export type AppSpec = AppBody;
export type DeliverySpec = DeliveryBody;
export type Op = OpBody;
export type AgentStatus = StatusView;

/** Everything the controller needs from one agent. */
export interface AgentApi {
  /** The agent's base URL, used in every message about it. */
  readonly url: string;
  health(): Promise<boolean>;
  status(): Promise<AgentStatus>;
  listApps(): Promise<App[]>;
  /** undefined when the agent has no app of that name (404). */
  getApp(name: string): Promise<App | undefined>;
  putApp(name: string, spec: AppSpec): Promise<App>;
  setAction(name: string, action: Action): Promise<App>;
  /** false when there was nothing to delete (404): deleting is idempotent for the controller. */
  deleteApp(name: string): Promise<boolean>;
  listDeliveries(): Promise<Delivery[]>;
  putDelivery(name: string, spec: DeliverySpec): Promise<Delivery>;
  deleteDelivery(name: string): Promise<boolean>;
  /** All ops validated first, then applied with batched map updates, all or nothing. */
  batch(ops: readonly Op[]): Promise<{ applied: number }>;
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
  private readonly timeoutMs: number;

  constructor(url: string, opts: HttpAgentClientOptions = {}) {
    this.url = normaliseAgentUrl(url);
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 5000;
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

  async putApp(name: string, spec: AppSpec): Promise<App> {
    const r = await this.request<App>('PUT', `/v1/apps/${checkName(name)}`, spec);
    return expectObject(this.url, `PUT /v1/apps/${name}`, r.body, ['name', 'action']);
  }

  async setAction(name: string, action: Action): Promise<App> {
    const r = await this.request<App>('POST', `/v1/apps/${checkName(name)}/action`, action);
    return expectObject(this.url, `POST /v1/apps/${name}/action`, r.body, ['name', 'action']);
  }

  async deleteApp(name: string): Promise<boolean> {
    const r = await this.request('DELETE', `/v1/apps/${checkName(name)}`, undefined, [404]);
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

  async putDelivery(name: string, spec: DeliverySpec): Promise<Delivery> {
    const r = await this.request<Delivery>('PUT', `/v1/deliveries/${checkName(name)}`, spec);
    return expectObject(this.url, `PUT /v1/deliveries/${name}`, r.body, ['name']);
  }

  async deleteDelivery(name: string): Promise<boolean> {
    const r = await this.request('DELETE', `/v1/deliveries/${checkName(name)}`, undefined, [404]);
    return r.status !== 404;
  }

  async batch(ops: readonly Op[]): Promise<{ applied: number }> {
    const r = await this.request<{ applied: number }>('POST', '/v1/batch', { ops });
    const body = expectObject(this.url, 'POST /v1/batch', r.body, ['applied']);
    if (typeof body.applied !== 'number') throw new AgentProtocolError(this.url, 'POST /v1/batch', `agent ${this.url}: POST /v1/batch answered without a numeric "applied"`);
    return body;
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
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new AgentUnreachableError(this.url, what, `agent ${this.url} unreachable: ${what}: ${describeFetchError(err, this.timeoutMs)}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new AgentUnreachableError(this.url, what, `agent ${this.url}: ${what}: answer cut off: ${describeFetchError(err, this.timeoutMs)}`);
    }
    let parsed: unknown;
    if (text.length) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (res.ok || okStatuses.includes(res.status)) {
      if (text.length && parsed === undefined && res.ok) {
        throw new AgentProtocolError(this.url, what, `agent ${this.url}: ${what}: HTTP ${res.status} with a body that is not JSON`);
      }
      return { status: res.status, body: parsed as T | undefined };
    }
    const errBody = (parsed ?? {}) as { error?: unknown; field?: unknown };
    const agentMessage = typeof errBody.error === 'string' ? errBody.error : text.slice(0, 200) || undefined;
    const field = typeof errBody.field === 'string' ? errBody.field : undefined;
    const Cls = res.status >= 500 ? AgentFailedError : AgentRefusedError;
    throw new Cls(this.url, what, res.status, agentMessage, field);
  }
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
    // Node's fetch hides the socket error in `cause` (ECONNREFUSED, ENOTFOUND…).
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code) return cause.code;
    if (cause?.message) return cause.message;
    return err.message;
  }
  return String(err);
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
