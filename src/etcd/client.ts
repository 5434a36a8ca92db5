/**
 * A small etcd v3 client over etcd's JSON gateway (grpc-gateway: HTTP/1.1
 * POST of JSON to /v3/…, keys and values base64, 64-bit numbers as decimal
 * strings; etcd 3.4 serves /v3/ and the older /v3beta/ alike, 3.5 only /v3/).
 * It covers what routeshift needs — range, put, delete, txn, leases, watch,
 * compaction — with no gRPC stack and no npm dependency (docs/etcd.md).
 *
 * Endpoints are tried in turn: a request that cannot reach one (refused,
 * reset, timed out, or etcd answering "unavailable") goes to the next, and
 * the client keeps using the one that answered. Every error names the
 * endpoint(s) it tried. Reconnecting with backoff is the caller's loop
 * (src/agent/etcd-source.ts): a unary call fails fast, a watch ends with a
 * reason.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';

/** A key and its value as etcd stores them (strings: routeshift keys and values are UTF-8). */
export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** 0: no lease. */
  lease: string;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
}

export interface RangeOptions {
  /** Every key starting with `key`. */
  prefix?: boolean;
  /** Read as of this revision (0 or absent: now). */
  revision?: number;
  /** At most this many keys (0: no limit); `more` says whether there were others. */
  limit?: number;
  /** Keys ≥ this one (with prefix: from here to the prefix's end); paging after a limited range. */
  fromKey?: string;
}

export interface RangeResult {
  /** The store's revision the range was read at. */
  revision: number;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

/** One comparison of a txn (target VALUE, VERSION, MOD, CREATE; result EQUAL, GREATER, LESS, NOT_EQUAL). */
export type Compare =
  | { key: string; target: 'VALUE'; result: CompareResult; value: string }
  | { key: string; target: 'VERSION'; result: CompareResult; version: number }
  | { key: string; target: 'MOD'; result: CompareResult; modRevision: number }
  | { key: string; target: 'CREATE'; result: CompareResult; createRevision: number };
export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { deleteRange: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** The kvs of each range op, in order (other ops: empty). */
  ranges: KeyValue[][];
}

export interface WatchOptions {
  key: string;
  prefix?: boolean;
  /** First revision to deliver (absent: only changes after now). */
  startRevision?: number;
  /** Ask etcd for progress notifications (empty responses carrying the revision). */
  progressNotify?: boolean;
}

/** One response of a watch: events (may be none: a progress notification) and the revision they reach. */
export interface WatchBatch {
  events: WatchEvent[];
  /** The store's revision when etcd sent it. */
  revision: number;
}

/** Why a watch ended. */
export type WatchEnd =
  | { reason: 'compacted'; compactRevision: number; endpoint: string }
  | { reason: 'error'; error: Error; endpoint: string }
  | { reason: 'canceled'; endpoint: string };

export interface Watch {
  /** Resolves when the watch ends (it never rejects). */
  readonly ended: Promise<WatchEnd>;
  /** Resolves once etcd confirmed the watch (rejects if it ended first). */
  readonly created: Promise<void>;
  cancel(): void;
}

/** etcd cannot be reached at any endpoint: every attempt, by endpoint. */
export class EtcdUnavailableError extends Error {
  constructor(
    readonly attempts: readonly { endpoint: string; reason: string }[],
    what: string,
  ) {
    super(`etcd ${what}: no endpoint answered (${attempts.map((a) => `${a.endpoint}: ${a.reason}`).join('; ')})`);
  }
}

/** etcd answered with an error (gRPC status `code`, e.g. 11 "required revision has been compacted"). */
export class EtcdRequestError extends Error {
  constructor(
    readonly endpoint: string,
    readonly code: number,
    readonly etcdMessage: string,
    what: string,
  ) {
    super(`etcd at ${endpoint}: ${what} refused: ${etcdMessage} (code ${code})`);
  }
}

/** gRPC codes the gateway reports. */
const GRPC_OUT_OF_RANGE = 11;
const GRPC_UNAVAILABLE = 14;
export const isCompactedError = (err: unknown): boolean => err instanceof EtcdRequestError && err.code === GRPC_OUT_OF_RANGE;

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Largest answer read into memory (a range of a host's keys is far below). */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: unknown): string => (typeof s === 'string' ? Buffer.from(s, 'base64').toString('utf8') : '');
const num = (s: unknown): number => (typeof s === 'string' || typeof s === 'number' ? Number(s) : 0);

/** The end of the range of keys starting with `prefix`: the prefix with its last byte raised (etcd's rule). */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]! += 1;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64'); // every key
}

type Json = Record<string, unknown>;

function keyValue(raw: unknown): KeyValue {
  const o = (raw ?? {}) as Json;
  return {
    key: unb64(o.key),
    value: unb64(o.value),
    createRevision: num(o.create_revision),
    modRevision: num(o.mod_revision),
    version: num(o.version),
    lease: typeof o.lease === 'string' ? o.lease : '0',
  };
}

const headerRevision = (o: Json): number => num((o.header as Json | undefined)?.revision);

function rangeBody(key: string, opts: RangeOptions): Json {
  const body: Json = { key: b64(opts.fromKey ?? key) };
  if (opts.prefix) body.range_end = prefixEnd(key);
  if (opts.revision) body.revision = String(opts.revision);
  if (opts.limit) body.limit = String(opts.limit);
  return body;
}

/**
 * Validate endpoint URLs once: http:// or https:// with no path, or
 * unix:///PATH — etcd's Unix socket on this machine (`--listen-client-urls
 * unix://…`), which a process in another network namespace reaches too.
 */
export function parseEndpoints(list: string | readonly string[]): string[] {
  const items = (typeof list === 'string' ? list.split(',') : [...list]).map((s) => s.trim()).filter(Boolean);
  if (!items.length) throw new Error('etcd: no endpoint given (expected URL[,URL…], e.g. http://127.0.0.1:2379)');
  return items.map((e) => {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new Error(`etcd endpoint ${JSON.stringify(e)}: not a URL (expected e.g. http://127.0.0.1:2379)`);
    }
    if (u.protocol === 'unix:') {
      if (!u.pathname.startsWith('/') || u.host) throw new Error(`etcd endpoint ${e}: expected unix:///ABSOLUTE/PATH of etcd's socket`);
      return `unix://${decodeURIComponent(u.pathname)}`;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`etcd endpoint ${e}: expected http://, https:// or unix:///PATH`);
    if (u.pathname !== '/' || u.search || u.hash) throw new Error(`etcd endpoint ${e}: expected no path (the client adds /v3/…)`);
    return `${u.protocol}//${u.host}`;
  });
}

export interface EtcdClientOptions {
  /** Per request and endpoint (default DEFAULT_REQUEST_TIMEOUT_MS). */
  timeoutMs?: number;
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly #timeoutMs: number;
  /** The endpoint that answered last: tried first. */
  #current = 0;

  constructor(endpoints: string | readonly string[], opts: EtcdClientOptions = {}) {
    this.endpoints = parseEndpoints(endpoints);
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /** The endpoint requests go to first. */
  get endpoint(): string {
    return this.endpoints[this.#current]!;
  }

  async range(key: string, opts: RangeOptions = {}): Promise<RangeResult> {
    const r = await this.#call('/v3/kv/range', rangeBody(key, opts), `range ${key}`);
    return { revision: headerRevision(r), kvs: ((r.kvs as unknown[]) ?? []).map(keyValue), more: r.more === true, count: num(r.count) };
  }

  /** Every key under `prefix` as of one revision, read in pages of `pageSize` keys. */
  async rangeAll(prefix: string, pageSize = 1000): Promise<RangeResult> {
    const first = await this.range(prefix, { prefix: true, limit: pageSize });
    const kvs = [...first.kvs];
    let more = first.more;
    while (more) {
      const last = kvs[kvs.length - 1]!.key;
      const page = await this.range(prefix, { prefix: true, limit: pageSize, revision: first.revision, fromKey: `${last}\0` });
      kvs.push(...page.kvs);
      more = page.more && page.kvs.length > 0;
    }
    return { revision: first.revision, kvs, more: false, count: kvs.length };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  /** Put a key; returns the revision it was written at. */
  async put(key: string, value: string, opts: { lease?: string } = {}): Promise<number> {
    const body: Json = { key: b64(key), value: b64(value) };
    if (opts.lease && opts.lease !== '0') body.lease = opts.lease;
    return headerRevision(await this.#call('/v3/kv/put', body, `put ${key}`));
  }

  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<{ revision: number; deleted: number }> {
    const body: Json = { key: b64(key) };
    if (opts.prefix) body.range_end = prefixEnd(key);
    const r = await this.#call('/v3/kv/deleterange', body, `delete ${key}`);
    return { revision: headerRevision(r), deleted: num(r.deleted) };
  }

  async txn(compare: readonly Compare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    const cmp = compare.map((c) => {
      const o: Json = { key: b64(c.key), target: c.target, result: c.result };
      if (c.target === 'VALUE') o.value = b64(c.value);
      if (c.target === 'VERSION') o.version = String(c.version);
      if (c.target === 'MOD') o.mod_revision = String(c.modRevision);
      if (c.target === 'CREATE') o.create_revision = String(c.createRevision);
      return o;
    });
    const op = (t: TxnOp): Json => {
      if ('put' in t) return { request_put: { key: b64(t.put.key), value: b64(t.put.value), ...(t.put.lease ? { lease: t.put.lease } : {}) } };
      if ('deleteRange' in t) return { request_delete_range: { key: b64(t.deleteRange.key), ...(t.deleteRange.prefix ? { range_end: prefixEnd(t.deleteRange.key) } : {}) } };
      return { request_range: rangeBody(t.range.key, { prefix: t.range.prefix }) };
    };
    const r = await this.#call('/v3/kv/txn', { compare: cmp, success: success.map(op), failure: failure.map(op) }, 'txn');
    const responses = ((r.responses as Json[] | undefined) ?? []).map((x) => ((x.response_range as Json | undefined)?.kvs as unknown[] | undefined ?? []).map(keyValue));
    return { succeeded: r.succeeded === true, revision: headerRevision(r), ranges: responses };
  }

  /** A lease of `ttlSeconds`; its id is a decimal string (64-bit). */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = await this.#call('/v3/lease/grant', { TTL: String(ttlSeconds) }, `lease grant (${ttlSeconds} s)`);
    if (typeof r.ID !== 'string') throw new Error(`etcd at ${this.endpoint}: lease grant answered no ID${typeof r.error === 'string' ? `: ${r.error}` : ''}`);
    return { id: r.ID, ttl: num(r.TTL) };
  }

  /** Renew a lease once; returns its TTL now (0: it had expired or never existed). */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.#call('/v3/lease/keepalive', { ID: id }, `lease keepalive ${id}`);
    return num(((r.result as Json | undefined) ?? r).TTL);
  }

  /** A lease's remaining TTL in seconds, without renewing it (-1 or 0: expired or unknown). */
  async leaseTimeToLive(id: string): Promise<number> {
    const r = await this.#call('/v3/lease/timetolive', { ID: id }, `lease timetolive ${id}`);
    return num(r.TTL);
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.#call('/v3/lease/revoke', { ID: id }, `lease revoke ${id}`);
    } catch (err) {
      if (err instanceof EtcdRequestError && /lease not found/.test(err.etcdMessage)) return; // gone already
      throw err;
    }
  }

  /** Compact the history up to `revision` (watches from before it are then canceled with compact_revision). */
  async compact(revision: number): Promise<void> {
    await this.#call('/v3/kv/compaction', { revision: String(revision), physical: true }, `compaction at ${revision}`);
  }

  /**
   * Watch a key or prefix from a revision. `onBatch` gets each response in
   * order (await it: the next is read after it resolves, so a slow consumer
   * applies back-pressure on the stream rather than buffering it). The watch
   * ends on cancel(), on compaction (`compacted`, with the oldest revision
   * still kept: the caller must read everything again), or on any error
   * (the connection lost, etcd gone); it does not reconnect by itself.
   */
  watch(opts: WatchOptions, onBatch: (batch: WatchBatch) => Promise<void> | void): Watch {
    const create: Json = { key: b64(opts.key) };
    if (opts.prefix) create.range_end = prefixEnd(opts.key);
    if (opts.startRevision) create.start_revision = String(opts.startRevision);
    if (opts.progressNotify) create.progress_notify = true;
    const endpoint = this.endpoint;
    let req: ClientRequest | undefined;
    let finish!: (end: WatchEnd) => void;
    let confirm!: () => void;
    let refuse!: (err: Error) => void;
    let done = false;
    const ended = new Promise<WatchEnd>((resolve) => {
      finish = (end) => {
        if (done) return;
        done = true;
        req?.destroy();
        if (end.reason !== 'canceled') this.#rotate(endpoint);
        refuse(end.reason === 'error' ? end.error : new Error(`etcd watch at ${endpoint} ended: ${end.reason}`));
        resolve(end);
      };
    });
    const created = new Promise<void>((resolve, reject) => {
      confirm = resolve;
      refuse = reject;
    });
    created.catch(() => undefined); // a caller that only awaits `ended` must not see an unhandled rejection
    const fail = (reason: string): void => finish({ reason: 'error', error: new Error(`etcd watch at ${endpoint}: ${reason}`), endpoint });
    req = this.#send(endpoint, '/v3/watch', { create_request: create }, (res) => {
      if (res.statusCode !== 200) {
        void readBody(res).then((text) => fail(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`), (e: Error) => fail(e.message));
        return;
      }
      res.socket.setKeepAlive(true, 5_000); // a dead peer is noticed even while no event comes
      res.on('error', (err) => fail(describeSocketError(err))); // also when cancel() destroys the request: then ignored
      const lines = createInterface({ input: res, crlfDelay: Infinity });
      lines.on('error', () => undefined); // readline re-emits the stream's error after the loop left: handled above
      void (async () => {
        try {
          for await (const line of lines) {
            if (done) break;
            if (!line.trim()) continue;
            const msg = JSON.parse(line) as Json;
            if (msg.error) {
              const e = msg.error as Json;
              fail(`${String(e.message ?? JSON.stringify(e))}`);
              break;
            }
            const r = (msg.result ?? {}) as Json;
            if (num(r.compact_revision) > 0) {
              finish({ reason: 'compacted', compactRevision: num(r.compact_revision), endpoint });
              break;
            }
            if (r.canceled === true) {
              fail(`canceled by etcd${typeof r.cancel_reason === 'string' ? `: ${r.cancel_reason}` : ''}`);
              break;
            }
            if (r.created === true) {
              confirm();
              continue;
            }
            const events = ((r.events as Json[] | undefined) ?? []).map((e) => ({ type: e.type === 'DELETE' ? ('delete' as const) : ('put' as const), kv: keyValue(e.kv) }));
            await onBatch({ events, revision: headerRevision(r) });
          }
          fail('the stream ended (etcd closed the connection)');
        } catch (err) {
          fail((err as Error).message);
        }
      })();
    });
    req.on('error', (err) => fail(describeSocketError(err)));
    // No timeout on an established watch: it is idle by nature (TCP keepalive above watches the peer).
    const connectTimer = setTimeout(() => fail(`no answer within ${this.#timeoutMs} ms`), this.#timeoutMs);
    void created.then(() => clearTimeout(connectTimer), () => clearTimeout(connectTimer));
    return {
      ended,
      created,
      cancel: () => finish({ reason: 'canceled', endpoint }),
    };
  }

  // ----------------------------------------------------------- the wire --

  /** Move on from an endpoint that failed (unless another call already did). */
  #rotate(failed: string): void {
    if (this.endpoints[this.#current] === failed) this.#current = (this.#current + 1) % this.endpoints.length;
  }

  async #call(path: string, body: Json, what: string): Promise<Json> {
    const attempts: { endpoint: string; reason: string }[] = [];
    // Every endpoint once; a reset is tried once more on the same endpoint (a pooled connection etcd closed while idle).
    let retryReset = true;
    for (let i = 0; i < this.endpoints.length; i++) {
      const endpoint = this.endpoint;
      try {
        const { status, text } = await this.#unary(endpoint, path, body);
        let json: Json;
        try {
          json = JSON.parse(text) as Json;
        } catch {
          throw new EtcdRequestError(endpoint, 0, `answered HTTP ${status} with no JSON: ${text.slice(0, 200)}`, what);
        }
        if (status === 200) return json;
        const code = num(json.code);
        const message = String(json.message ?? json.error ?? `HTTP ${status}`);
        if (code === GRPC_UNAVAILABLE) throw new Unreachable(message);
        throw new EtcdRequestError(endpoint, code, message, what);
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        if (retryReset && err.message === RESET) {
          retryReset = false;
          i--;
          continue;
        }
        attempts.push({ endpoint, reason: err.message });
        this.#rotate(endpoint);
      }
    }
    throw new EtcdUnavailableError(attempts, what);
  }

  #unary(endpoint: string, path: string, body: Json): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = this.#send(endpoint, path, body, (res) => {
        readBody(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), (e: Error) => reject(new Unreachable(e.message)));
      });
      req.setTimeout(this.#timeoutMs, () => req.destroy(new Unreachable(`no answer within ${this.#timeoutMs} ms`)));
      req.on('error', (err) => reject(err instanceof Unreachable ? err : new Unreachable(describeSocketError(err))));
    });
  }

  #send(endpoint: string, path: string, body: Json, onResponse: (res: IncomingMessage) => void): ClientRequest {
    const data = JSON.stringify(body);
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) };
    if (endpoint.startsWith('unix://')) {
      const req = httpRequest({ socketPath: endpoint.slice('unix://'.length), host: 'localhost', path, method: 'POST', headers }, onResponse);
      req.end(data);
      return req;
    }
    const url = new URL(path, endpoint);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers }, onResponse);
    req.end(data);
    return req;
  }
}

const RESET = 'connection reset';

/** A failure to reach an endpoint (the next one is tried). */
class Unreachable extends Error {}

function describeSocketError(err: NodeJS.ErrnoException): string {
  if (err instanceof Unreachable) return err.message;
  if (err.code === 'ECONNREFUSED') return 'connection refused (is etcd running there?)';
  if (err.code === 'ECONNRESET') return RESET;
  if (err.code === 'ENOTFOUND') return 'host not found';
  if (err.code === 'ENOENT') return 'no socket at that path (is etcd running there?)';
  return err.code ? `${err.code}: ${err.message}` : err.message;
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) res.destroy(new Error(`answer larger than ${MAX_BODY_BYTES} bytes`));
      else chunks.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('connection lost mid-answer')));
  });
}
