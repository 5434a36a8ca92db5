/**
 * Desired state from etcd (docs/etcd.md): the agent's host keys
 * (`<prefix>hosts/<host>/…`, src/etcd/layout.ts) are the entries its maps
 * must hold. A full sync reads them all at one revision R and diffs them
 * against the store (create, update, delete); a watch from R+1 then brings
 * each change, coalesced for a few milliseconds and applied as one batch
 * through the store (the one write path). Across a reconnect the watch
 * resumes after the last revision applied; when etcd compacted that away,
 * a full sync starts over.
 *
 * The data plane never waits for etcd: while etcd is unreachable the maps
 * keep what they hold and this loop retries with backoff. An entry whose
 * value does not validate, or that the store refuses, is reported (status
 * key, metric, log) and left as the maps hold it; the others are applied.
 * The agent's report lives in `<prefix>hosts/<host>/status` under a lease
 * it keeps alive, so the report of a dead agent expires.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { EtcdClient, EtcdRequestError, type KeyValue, type WatchBatch, type WatchEnd } from '../etcd/client.js';
import { DEFAULT_STATUS_TTL_SECONDS, KeyLayout, type EntryKind } from '../etcd/layout.js';
import type { EntryError, EtcdStatusReport } from '../etcd/status.js';
import { protoNumber, parseAppBody, parseDeliveryBody, parseName, type AppSpec, type AppView, type BatchOp, type DeliveryView, type EntrySpec, type PageQuery } from '../model/entry.js';
import { NotFoundError } from '../model/errors.js';
import { MAX_PAGE } from '../model/entry.js';
import type { EntryStore } from './store.js';

/** Who the store's log names for writes from here. */
export const ETCD_SOURCE = 'etcd';
/** Changes arriving within this long are applied as one batch. */
export const DEFAULT_COALESCE_MS = 5;
/** At most this many entry errors are listed in the status key (all are counted). */
const MAX_LISTED_ERRORS = 100;
/** Unflushed changes beyond this make the watch wait for the store. */
const MAX_PENDING = 10_000;

export interface EtcdSourceOptions {
  client: EtcdClient;
  layout: KeyLayout;
  hostId: string;
  store: EntryStore;
  log: Logger;
  /** The status key's lease TTL (seconds). */
  statusTtlSeconds?: number;
  coalesceMs?: number;
  /** Where the etcd metrics are registered (the agent's /metrics). */
  registry?: Registry;
  /** What the agent says about itself in the status key (data plane, counts). */
  health: () => Record<string, unknown>;
  /** Reconnect backoff bounds (ms). */
  backoffMs?: { min: number; max: number };
  /** The agent's API URL, published in the status key so a controller finds the read API from the host id. */
  url?: string;
}

// The status key's shape is shared with the controller (src/controller/etcd-agent.ts): src/etcd/status.ts.
export type { EntryError, EtcdStatusReport } from '../etcd/status.js';

type Desired = { kind: EntryKind; name: string; key: string; revision: number } & ({ value: string } | { deleted: true });

const entryId = (kind: EntryKind | 'key', name: string): string => `${kind}/${name}`;

function sameKey(spec: EntrySpec, view: AppView | DeliveryView): boolean {
  return spec.key.address === view.address && protoNumber(spec.key.proto) === protoNumber(view.proto) && spec.key.port === view.port;
}

/** Whether the store's entry is what the spec asks for (unchanged entries are not rewritten). */
function sameEntry(spec: EntrySpec, view: AppView | DeliveryView): boolean {
  const mac = spec.mac === undefined ? view.macSource === 'resolved' : view.macSource === 'given' && view.mac === spec.mac;
  return sameKey(spec, view) && spec.dev === view.dev && mac;
}

function sameApp(spec: AppSpec, view: AppView): boolean {
  const a = spec.action;
  const b = view.action;
  const action = a.type === b.type && (a.type === 'local' || (b.type !== 'local' && a.tunnel === b.tunnel));
  return action && sameEntry(spec, view);
}

export class EtcdSource {
  readonly #o: EtcdSourceOptions;
  readonly #hostPrefix: string;
  readonly #statusKey: string;
  readonly #ttl: number;
  readonly #errors = new Map<string, EntryError>();
  /** Watched changes not yet applied, by entry (the newest wins). */
  #pending = new Map<string, Desired>();
  #pendingRevision = 0;
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #applied = 0;
  #caughtUp = false;
  #fullSyncs = 0;
  #lastFullSync: EtcdStatusReport['lastFullSync'] = null;
  #stopped = false;
  /** A change could not be reconciled for a reason other than the entry itself: read everything again. */
  #resyncWanted = false;
  #endPause: (() => void) | undefined;
  #cancelWatch: (() => void) | undefined;
  #run: Promise<void> | undefined;
  #statusRun: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #statusDirty = true;
  #lease: string | undefined;
  readonly #metrics: { errors: Gauge; revision: Gauge; connected: Gauge; syncs: Counter } | undefined;

  constructor(opts: EtcdSourceOptions) {
    this.#o = opts;
    this.#hostPrefix = opts.layout.host(opts.hostId);
    this.#statusKey = opts.layout.status(opts.hostId);
    this.#ttl = opts.statusTtlSeconds ?? DEFAULT_STATUS_TTL_SECONDS;
    const registers = opts.registry ? [opts.registry] : undefined;
    this.#metrics = registers && {
      errors: new Gauge({ name: 'routeshift_etcd_entry_errors', help: 'Entries etcd asks this agent for that it could not apply (invalid value or refused by the store): listed in the status key.', registers }),
      revision: new Gauge({ name: 'routeshift_etcd_applied_revision', help: 'The etcd revision up to which this agent applied its host keys.', registers }),
      connected: new Gauge({ name: 'routeshift_etcd_connected', help: '1 while the agent watches its host keys in etcd, 0 while it retries (the maps keep what they hold).', registers }),
      syncs: new Counter({ name: 'routeshift_etcd_full_syncs_total', help: 'Full reads of the host keys, by reason (start, compacted: the watch\'s revision was compacted away, retry: after a failed sync).', labelNames: ['reason'], registers }),
    };
  }

  /** The key this agent watches. */
  get watching(): string {
    return this.#hostPrefix;
  }

  get appliedRevision(): number {
    return this.#applied;
  }

  /** Start syncing and reporting; never waits for etcd (the agent serves and forwards meanwhile). */
  start(): void {
    if (this.#run) return;
    this.#run = this.#loop();
    this.#statusRun = this.#statusLoop();
  }

  /** Stop watching, apply nothing more, withdraw the status key (its lease). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelWatch?.();
    this.#endPause?.();
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#wake?.();
    await this.#run;
    await this.#statusRun;
    await this.#flushing;
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease) await this.#o.client.leaseRevoke(lease).catch((err: Error) => this.#o.log.warn({ err: err.message }, 'could not revoke the status lease: the status key expires with it'));
  }

  /** The report the status key holds now. */
  report(): EtcdStatusReport {
    const errors = [...this.#errors.values()];
    return {
      host: this.#o.hostId,
      state: !this.#caughtUp ? 'syncing' : errors.length ? 'degraded' : 'ok',
      appliedRevision: this.#applied,
      fullSyncs: this.#fullSyncs,
      lastFullSync: this.#lastFullSync,
      errorCount: errors.length,
      errors: errors.slice(0, MAX_LISTED_ERRORS),
      health: this.#o.health(),
      ...(this.#o.url ? { url: this.#o.url } : {}),
      updatedAt: new Date().toISOString(),
    };
  }

  // ------------------------------------------------------------ the loop --

  async #loop(): Promise<void> {
    const { min, max } = this.#o.backoffMs ?? { min: 200, max: 5_000 };
    let delay = min;
    let sync: 'start' | 'compacted' | 'retry' | undefined = 'start';
    while (!this.#stopped) {
      try {
        if (sync) {
          await this.#fullSync(sync);
          sync = undefined;
        }
        const end = await this.#watchOnce(() => (delay = min));
        if (this.#stopped) break;
        this.#setConnected(false);
        if (this.#resyncWanted) {
          this.#resyncWanted = false;
          sync = 'retry';
        }
        if (end.reason === 'canceled') continue; // only #flushNow cancels while running: resync at once
        if (end.reason === 'compacted') {
          this.#o.log.warn({ resumeFrom: this.#applied + 1, compactRevision: end.compactRevision, endpoint: end.endpoint }, 'etcd compacted the revisions the watch would resume from: reading every host key again');
          sync = 'compacted';
          continue;
        }
        this.#o.log.warn({ err: end.error.message, resumeFrom: this.#applied + 1, retryInMs: delay }, 'etcd watch lost: the maps keep their entries; retrying');
      } catch (err) {
        if (this.#stopped) break;
        this.#setConnected(false);
        if (sync === undefined) sync = 'retry';
        this.#o.log.warn({ err: (err as Error).message, retryInMs: delay }, 'etcd sync failed: the maps keep their entries; retrying');
      }
      await this.#pause(delay * (0.75 + Math.random() / 2));
      delay = Math.min(max, delay * 2);
    }
  }

  /** Wait `ms`, or less when stopped. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#endPause = done;
    });
  }

  /** Read every host key at one revision and make the store hold exactly them. */
  async #fullSync(reason: 'start' | 'compacted' | 'retry'): Promise<void> {
    // Watched changes not applied yet are covered by this read (one being applied finishes first).
    await this.#flushing;
    this.#pending.clear();
    this.#pendingRevision = 0;
    const read = await this.#o.client.rangeAll(this.#hostPrefix);
    const desired = new Map<string, Desired>();
    for (const kv of read.kvs) {
      const d = this.#desired(kv, false);
      if (d) desired.set(entryId(d.kind, d.name), d);
    }
    // What the store holds and etcd no longer names is deleted.
    for (const kind of ['app', 'delivery'] as const) {
      for (const name of this.#storeNames(kind)) {
        const id = entryId(kind, name);
        if (!desired.has(id)) desired.set(id, { kind, name, key: this.#o.layout.entry(this.#o.hostId, kind, name), revision: read.revision, deleted: true });
      }
    }
    this.#errors.clear();
    await this.#reconcile([...desired.values()]);
    this.#applied = read.revision;
    this.#fullSyncs++;
    this.#lastFullSync = { reason, revision: read.revision, at: new Date().toISOString() };
    this.#metrics?.syncs.inc({ reason });
    this.#caughtUp = true;
    this.#changed();
    this.#o.log.info({ revision: read.revision, keys: read.kvs.length, reason, entries: this.#o.store.counts, errors: this.#errors.size }, 'etcd full sync done');
  }

  /** Watch from the revision after the last applied until the watch ends; changes go through #flushNow. */
  async #watchOnce(onCreated: () => void): Promise<WatchEnd> {
    const w = this.#o.client.watch({ key: this.#hostPrefix, prefix: true, startRevision: this.#applied + 1 }, (b) => this.#onBatch(b));
    this.#cancelWatch = () => w.cancel();
    if (this.#stopped) w.cancel();
    w.created.then(
      () => {
        onCreated();
        this.#setConnected(true);
        this.#o.log.info({ endpoint: this.#o.client.endpoint, key: this.#hostPrefix, from: this.#applied + 1 }, 'watching host keys in etcd');
      },
      () => undefined,
    );
    const end = await w.ended;
    this.#cancelWatch = undefined;
    // Changes already received are applied before resuming (or dropped: a full sync reads them again).
    if (end.reason === 'compacted') this.#pending.clear();
    else await this.#flushNow();
    return end;
  }

  #onBatch(b: WatchBatch): Promise<void> | void {
    for (const e of b.events) {
      const d = this.#desired(e.kv, e.type === 'delete');
      if (d) this.#pending.set(entryId(d.kind, d.name), d);
      this.#pendingRevision = Math.max(this.#pendingRevision, e.kv.modRevision);
    }
    // A progress notification (no events) says everything up to its revision was sent.
    if (!b.events.length) this.#pendingRevision = Math.max(this.#pendingRevision, b.revision);
    if (this.#pending.size >= MAX_PENDING) return this.#flushNow();
    if (!this.#flushTimer) this.#flushTimer = setTimeout(() => void this.#flushNow(), this.#o.coalesceMs ?? DEFAULT_COALESCE_MS);
  }

  /** Apply the watched changes gathered so far, as one batch. */
  #flushNow(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#flushing = this.#flushing.then(async () => {
      const changes = [...this.#pending.values()];
      const upTo = this.#pendingRevision;
      this.#pending = new Map();
      try {
        if (changes.length) await this.#reconcile(changes);
      } catch (err) {
        // Not an entry's fault (those are reported one by one): start over from a full read rather than skip changes.
        this.#o.log.error({ err: (err as Error).message, changes: changes.length }, 'could not reconcile changes from etcd: reading every host key again');
        this.#resyncWanted = true;
        this.#cancelWatch?.();
        return;
      }
      if (upTo > this.#applied) {
        this.#applied = upTo;
        this.#changed();
      }
    });
    return this.#flushing;
  }

  /** A host key as a desired entry; status and unknown keys are not entries (undefined). */
  #desired(kv: KeyValue, deleted: boolean): Desired | undefined {
    const k = this.#o.layout.read(this.#o.hostId, kv.key);
    if (k.type !== 'entry') return undefined;
    const base = { kind: k.kind, name: k.name, key: kv.key, revision: kv.modRevision };
    return deleted ? { ...base, deleted: true } : { ...base, value: kv.value };
  }

  // ------------------------------------------------------- the store side --

  #storeNames(kind: EntryKind): string[] {
    const names: string[] = [];
    let cursor: Buffer | null = null;
    do {
      const q: PageQuery = { limit: MAX_PAGE, cursor };
      const page: { entries: readonly { name: string }[]; next: string | null } =
        kind === 'app' ? (({ apps, next }) => ({ entries: apps, next }))(this.#o.store.listApps(q)) : (({ deliveries, next }) => ({ entries: deliveries, next }))(this.#o.store.listDeliveries(q));
      for (const e of page.entries) names.push(e.name);
      cursor = page.next === null ? null : Buffer.from(page.next, 'hex');
    } while (cursor);
    return names;
  }

  #current(kind: EntryKind, name: string): AppView | DeliveryView | undefined {
    try {
      return kind === 'app' ? this.#o.store.getApp(name) : this.#o.store.getDelivery(name);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Turn desired entries into the ops that make the store hold them, and apply those. */
  async #reconcile(changes: readonly Desired[]): Promise<void> {
    const deletes: { op: BatchOp; d: Desired }[] = [];
    const puts: { op: BatchOp; d: Desired }[] = [];
    for (const d of changes) {
      const id = entryId(d.kind, d.name);
      try {
        parseName(d.name, 'name');
      } catch (err) {
        if ('deleted' in d) this.#errors.delete(entryId('key', d.name));
        else this.#fail({ kind: 'key', name: d.name, revision: d.revision, error: `key ${d.key}: ${(err as Error).message}` });
        continue;
      }
      const now = this.#current(d.kind, d.name);
      if ('deleted' in d) {
        this.#errors.delete(id);
        if (now) deletes.push({ op: { op: d.kind === 'app' ? 'delete-app' : 'delete-delivery', name: d.name }, d });
        continue;
      }
      let body: unknown;
      try {
        body = JSON.parse(d.value);
      } catch {
        this.#fail({ kind: d.kind, name: d.name, revision: d.revision, error: 'the value is not JSON (expected an entry spec: docs/etcd.md)' });
        continue;
      }
      try {
        const spec = d.kind === 'app' ? parseAppBody(body) : parseDeliveryBody(body);
        const same = now && (d.kind === 'app' ? sameApp(spec as AppSpec, now as AppView) : sameEntry(spec, now));
        if (same) {
          this.#errors.delete(id);
          continue;
        }
        // The store keeps a name's key for its life: a new address (or port) is the old entry deleted and a new one put, in one batch.
        if (now && !sameKey(spec, now)) deletes.push({ op: { op: d.kind === 'app' ? 'delete-app' : 'delete-delivery', name: d.name }, d });
        puts.push({ op: d.kind === 'app' ? { op: 'put-app', name: d.name, spec: spec as AppSpec } : { op: 'put-delivery', name: d.name, spec }, d });
      } catch (err) {
        this.#fail({ kind: d.kind, name: d.name, revision: d.revision, error: (err as Error).message });
      }
    }
    // Deletes first: a put may take the key a deleted entry held.
    const ops = [...deletes, ...puts];
    if (ops.length) await this.#apply(ops);
    this.#changed();
  }

  /** One batch; when the store refuses it, op by op, so one bad entry does not hold back the others. */
  async #apply(ops: readonly { op: BatchOp; d: Desired }[]): Promise<void> {
    const { store, log } = this.#o;
    try {
      await store.batch({ length: ops.length, at: (i) => ops[i]!.op }, ETCD_SOURCE);
      for (const { d } of ops) this.#errors.delete(entryId(d.kind, d.name));
      return;
    } catch (err) {
      if (ops.length === 1) {
        const { d } = ops[0]!;
        this.#fail({ kind: d.kind, name: d.name, revision: d.revision, error: (err as Error).message });
        return;
      }
      log.warn({ err: (err as Error).message, ops: ops.length }, 'the store refused the batch from etcd: applying its changes one by one');
    }
    for (const one of ops) await this.#apply([one]);
  }

  #fail(e: EntryError): void {
    this.#errors.set(entryId(e.kind, e.name), e);
    this.#o.log.warn({ kind: e.kind, name: e.name, revision: e.revision, err: e.error }, 'entry from etcd not applied: the maps keep what they hold for it');
  }

  // ------------------------------------------------------ the status key --

  #setConnected(up: boolean): void {
    this.#metrics?.connected.set(up ? 1 : 0);
  }

  #changed(): void {
    this.#metrics?.errors.set(this.#errors.size);
    this.#metrics?.revision.set(this.#applied);
    this.#statusDirty = true;
    this.#wake?.();
  }

  /**
   * Keep the status key: written under a lease when something changed (at
   * most every 100 ms), the lease renewed every third of its TTL, a new
   * lease (and the key again) when the old one expired (etcd was away for
   * longer than the TTL).
   */
  async #statusLoop(): Promise<void> {
    const { client, log } = this.#o;
    const renewEveryMs = (this.#ttl * 1000) / 3;
    let renewedAt = 0;
    let failing = false;
    while (!this.#stopped) {
      try {
        if (!this.#lease) {
          this.#lease = (await client.leaseGrant(this.#ttl)).id;
          this.#statusDirty = true;
          renewedAt = Date.now();
        } else if (Date.now() - renewedAt >= renewEveryMs) {
          const ttl = await client.leaseKeepAlive(this.#lease);
          renewedAt = Date.now();
          if (ttl <= 0) {
            this.#lease = undefined;
            continue;
          }
        }
        if (this.#statusDirty && !this.#stopped) {
          this.#statusDirty = false;
          await client.put(this.#statusKey, JSON.stringify(this.report()), { lease: this.#lease });
        }
        if (failing) log.info({ key: this.#statusKey }, 'status key written again');
        failing = false;
      } catch (err) {
        this.#statusDirty = true;
        if (err instanceof EtcdRequestError && /lease not found/.test(err.etcdMessage)) this.#lease = undefined;
        if (!failing) log.warn({ err: (err as Error).message, key: this.#statusKey }, 'cannot write the status key: retrying');
        failing = true;
      }
      const wait = failing ? 1_000 : Math.max(100, renewEveryMs - (Date.now() - renewedAt));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = () => setTimeout(done, 100); // coalesce a burst of changes into one write
      });
      this.#wake = undefined;
    }
  }
}
