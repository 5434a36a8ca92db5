/**
 * The controller's `AgentApi` for an agent that takes its entries from etcd
 * (`routeshift agent --etcd … --host-id ID`, docs/etcd.md): writes go to the
 * host's keys in etcd, reads to the agent's HTTP API.
 *
 * Writes. Every write (one entry, or a batch) is one etcd txn over the
 * host's keys. An entry's generation is its key's mod_revision: a write
 * with `ifGeneration` compares it, and every txn also compares the
 * mod_revision of each key it read (the entry, and the name's owner record)
 * so nothing it decided on moved in between. The owner rule: an app name's
 * owner record `<prefix>leases/<name>` is created create-if-absent under an
 * etcd lease (`takeLeases`); a write of a name whose record names another
 * owner is refused (409, naming the holder). After the txn at revision R the
 * client waits until the host's status key reports `appliedRevision ≥ R`
 * (bounded), then looks at the status key's errors: an entry the agent
 * could not apply is put back as it was in etcd and reported as a refusal.
 *
 * Reads (apps, deliveries, status, probe, flows) go to the agent's HTTP API
 * at the URL its status key publishes (or one given), with the generation
 * of an entry taken from etcd, the one the writes compare.
 */
import { EtcdClient, type Compare, type KeyValue, type TxnOp } from '../etcd/client.js';
import { KeyLayout, parseHostId, type EntryKind } from '../etcd/layout.js';
import type { EtcdStatusReport } from '../etcd/status.js';
import { parseAppBody, parseDeliveryBody, type AppBody } from '../model/entry.js';
import type { MigrationReportBody } from '../model/migration-report.js';
import type { AnnouncementBatchBody } from '../model/announcement.js';
import type { AnnouncementApi } from './announce.js';
import {
  AgentFailedError,
  AgentRefusedError,
  AgentUnreachableError,
  checkName,
  type Action,
  type AgentApi,
  type AgentConnector,
  type AgentStatus,
  type App,
  type AppSpec,
  type BatchOptions,
  type Delivery,
  type DeliverySpec,
  type FlowQuery,
  type FlowsView,
  type LeaseBody,
  type LeaseGrant,
  type LeaseView,
  type Op,
  type ProbeBody,
  type ProbeView,
  type WriteGuard,
} from './agent-client.js';

/** How a host is named where a URL is expected (journals, messages, `--from`): `etcd:<host-id>`. */
export const ETCD_AGENT_SCHEME = 'etcd:';
/** Default bound on waiting for the agent to apply a write. */
export const DEFAULT_APPLY_TIMEOUT_MS = 10_000;
/** etcd's default --max-txn-ops is 128; a name takes at most two compares (entry, owner record). */
const NAMES_PER_TXN = 64;
/** A txn whose compares failed because a key moved under it is decided again this many times. */
const TXN_ATTEMPTS = 5;
const POLL_MS = 25;

export const etcdAgentId = (host: string): string => `${ETCD_AGENT_SCHEME}${parseHostId(host)}`;

/** The host id of an `etcd:<host>` agent id, or undefined for any other URL. */
export function etcdHostOf(id: string): string | undefined {
  return id.startsWith(ETCD_AGENT_SCHEME) && !id.startsWith(`${ETCD_AGENT_SCHEME}//`) ? parseHostId(id.slice(ETCD_AGENT_SCHEME.length)) : undefined;
}

/** The value of an owner record: exact bytes, so a txn can compare it. */
const ownerRecord = (owner: string): string => JSON.stringify({ owner });

function recordOwner(kv: KeyValue | undefined): string | undefined {
  if (!kv) return undefined;
  try {
    const o = JSON.parse(kv.value) as { owner?: unknown };
    return typeof o.owner === 'string' ? o.owner : '(unreadable owner record)';
  } catch {
    return '(unreadable owner record)';
  }
}

export interface EtcdAgentClientOptions {
  etcd: EtcdClient;
  layout: KeyLayout;
  host: string;
  /** HTTP clients of agents' read APIs (credentials and timeouts as for HTTP agents). */
  readers: AgentConnector;
  /** The agent's API URL; default: the one its status key publishes. */
  url?: string;
  applyTimeoutMs?: number;
}

/** One key change a write decided on, and what the key held before (for putting it back). */
interface KeyChange {
  kind: EntryKind;
  name: string;
  key: string;
  /** undefined: delete. */
  value: string | undefined;
  before: KeyValue | undefined;
}

export class EtcdAgentClient implements AgentApi {
  readonly url: string;
  readonly host: string;
  readonly #o: EtcdAgentClientOptions;
  readonly #timeoutMs: number;

  constructor(o: EtcdAgentClientOptions) {
    this.host = parseHostId(o.host);
    this.url = etcdAgentId(this.host);
    this.#o = o;
    this.#timeoutMs = o.applyTimeoutMs ?? DEFAULT_APPLY_TIMEOUT_MS;
  }

  // ---------------------------------------------------------------- reads --

  async health(): Promise<boolean> {
    try {
      return await (await this.#reader('GET /healthz')).health();
    } catch (err) {
      if (err instanceof AgentUnreachableError) return false;
      throw err;
    }
  }

  async status(): Promise<AgentStatus> {
    return (await this.#reader('GET /status')).status();
  }

  async getApp(name: string): Promise<App | undefined> {
    return this.#getEntry('app', name, (r) => r.getApp(name));
  }

  async listApps(): Promise<App[]> {
    return this.#listEntries('app', (r) => r.listApps());
  }

  async listDeliveries(): Promise<Delivery[]> {
    return this.#listEntries('delivery', (r) => r.listDeliveries());
  }

  async probe(req: ProbeBody): Promise<ProbeView> {
    return (await this.#reader('POST /v1/probe')).probe(req);
  }

  async flows(name: string, query: FlowQuery): Promise<FlowsView> {
    const r = await this.#reader(`GET /v1/apps/${name}/flows`);
    if (!r.flows) throw new AgentFailedError(this.url, 'flows', 501, 'the agent has no flows API', undefined);
    return r.flows(name, query);
  }

  async reportMigrations(report: MigrationReportBody): Promise<number> {
    const r = await this.#reader('POST /v1/migrations');
    return r.reportMigrations ? r.reportMigrations(report) : 0;
  }

  /** BGP announcements through the agent's BIRD: the agent's API serves them in etcd mode too. */
  async changeAnnouncements(batch: AnnouncementBatchBody): Promise<{ announced: number; withdrawn: number }> {
    const r = (await this.#reader('POST /v1/announcements')) as AgentApi & Partial<AnnouncementApi>;
    if (typeof r.changeAnnouncements !== 'function') throw new AgentFailedError(this.url, 'POST /v1/announcements', 501, `the client of host ${this.host}'s API cannot ask it for BGP announcements`, undefined);
    return r.changeAnnouncements(batch);
  }

  /** The owner records in etcd (leases are per app name, shared by every host). */
  async listLeases(): Promise<LeaseView[]> {
    const read = await this.#etcd('list owner records', () => this.#o.etcd.rangeAll(this.#o.layout.leases()));
    const out: LeaseView[] = [];
    for (const kv of read.kvs) {
      const ttl = kv.lease !== '0' ? await this.#etcd('lease timetolive', () => this.#o.etcd.leaseTimeToLive(kv.lease)) : 0;
      out.push({ name: kv.key.slice(this.#o.layout.leases().length), owner: recordOwner(kv) ?? '', remainingMs: Math.max(0, ttl) * 1000 });
    }
    return out;
  }

  // --------------------------------------------------------------- writes --

  async putApp(name: string, spec: AppSpec, guard?: WriteGuard): Promise<App> {
    const revision = await this.#write([{ op: 'put-app', name, ...spec, ...ifGen(guard) }], guard?.owner);
    return this.#viewAfter('app', name, revision, (r) => r.getApp(name));
  }

  async setAction(name: string, action: Action, guard?: WriteGuard): Promise<App> {
    const revision = await this.#write([{ op: 'set-action', name, action, ...ifGen(guard) }], guard?.owner);
    return this.#viewAfter('app', name, revision, (r) => r.getApp(name));
  }

  async deleteApp(name: string, guard?: WriteGuard): Promise<boolean> {
    return (await this.#write([{ op: 'delete-app', name, ...ifGen(guard) }], guard?.owner, { missingIsNothing: true })) > 0;
  }

  async putDelivery(name: string, spec: DeliverySpec, guard?: WriteGuard): Promise<Delivery> {
    const revision = await this.#write([{ op: 'put-delivery', name, ...spec, ...ifGen(guard) }], guard?.owner);
    return this.#viewAfter('delivery', name, revision, async (r) => (await r.listDeliveries()).find((d) => d.name === name));
  }

  async deleteDelivery(name: string, guard?: WriteGuard): Promise<boolean> {
    return (await this.#write([{ op: 'delete-delivery', name, ...ifGen(guard) }], guard?.owner, { missingIsNothing: true })) > 0;
  }

  async batch(ops: readonly Op[], opts: BatchOptions = {}): Promise<{ applied: number; generations?: number[] }> {
    const generations: number[] = [];
    // Within etcd's txn limit one txn; beyond it, one txn per chunk of names (each all or nothing).
    for (let i = 0; i < ops.length; i += NAMES_PER_TXN) {
      const chunk = ops.slice(i, i + NAMES_PER_TXN);
      const revision = await this.#write(chunk, opts.owner);
      for (const op of chunk) generations.push(op.op === 'delete-app' || op.op === 'delete-delivery' ? 0 : revision);
    }
    return { applied: ops.length, ...(opts.generations ? { generations } : {}) };
  }

  // --------------------------------------------------------------- leases --

  /**
   * Claim every name for `owner`, all or none: names the owner holds are
   * renewed (their etcd lease kept alive), the others created together in
   * one txn, each only if absent, under a new etcd lease of the TTL.
   */
  async takeLeases(req: LeaseBody): Promise<LeaseGrant> {
    const names = req.names.map(checkName);
    const ttlSeconds = Math.max(2, Math.ceil(req.ttlMs / 1000));
    for (let attempt = 0; ; attempt++) {
      const read = await this.#readKeys(names.map((n) => this.#o.layout.lease(n)));
      const absent: string[] = [];
      const renew = new Set<string>();
      for (const name of names) {
        const kv = read.get(this.#o.layout.lease(name));
        const owner = recordOwner(kv);
        if (owner === undefined) absent.push(name);
        else if (owner === req.owner) renew.add(kv!.lease);
        else throw this.#leaseHeld('POST /v1/leases', name, owner, kv!, req.owner);
      }
      let expired = false;
      for (const id of renew) {
        if (id === '0') continue;
        // 0: expired meanwhile, taking its records with it: read again and create them.
        if ((await this.#etcd('lease keepalive', () => this.#o.etcd.leaseKeepAlive(id))) <= 0) expired = true;
      }
      if (expired && attempt < TXN_ATTEMPTS) continue;
      if (!absent.length) return { owner: req.owner, names: names.length, ttlMs: ttlSeconds * 1000 };
      const lease = await this.#etcd('lease grant', () => this.#o.etcd.leaseGrant(ttlSeconds));
      const keys = absent.map((n) => this.#o.layout.lease(n));
      const r = await this.#etcd('txn (owner records)', () =>
        this.#o.etcd.txn(
          keys.map((key): Compare => ({ key, target: 'CREATE', result: 'EQUAL', createRevision: 0 })),
          keys.map((key): TxnOp => ({ put: { key, value: ownerRecord(req.owner), lease: lease.id } })),
        ),
      );
      if (r.succeeded) return { owner: req.owner, names: names.length, ttlMs: ttlSeconds * 1000 };
      await this.#o.etcd.leaseRevoke(lease.id).catch(() => undefined);
      // Someone created one meanwhile: read again (it names the holder, or it is ours after all).
      if (attempt >= TXN_ATTEMPTS) throw new AgentUnreachableError(this.url, 'POST /v1/leases', `host ${this.host}: owner records kept changing under ${TXN_ATTEMPTS} attempts`);
    }
  }

  async releaseLeases(owner: string, names?: readonly string[]): Promise<number> {
    let list = names?.map(checkName);
    if (!list) {
      const all = await this.#etcd('list owner records', () => this.#o.etcd.rangeAll(this.#o.layout.leases()));
      list = all.kvs.filter((kv) => recordOwner(kv) === owner).map((kv) => kv.key.slice(this.#o.layout.leases().length));
    }
    let released = 0;
    for (const name of list) {
      const key = this.#o.layout.lease(name);
      const r = await this.#etcd('txn (release)', () => this.#o.etcd.txn([{ key, target: 'VALUE', result: 'EQUAL', value: ownerRecord(owner) }], [{ deleteRange: { key } }]));
      if (r.succeeded) released++;
    }
    return released;
  }

  // ------------------------------------------------------------ internals --

  /**
   * Decide and commit one txn of `ops` (with compares on every key read),
   * wait until the agent applied it, and put back what it could not apply.
   * Answers the txn's revision (0: nothing to write, with `missingIsNothing`).
   */
  async #write(ops: readonly Op[], owner: string | undefined, o: { missingIsNothing?: boolean } = {}): Promise<number> {
    const what = ops.length === 1 ? `${ops[0]!.op} ${ops[0]!.name}` : `batch of ${ops.length}`;
    for (let attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
      const names = [...new Set(ops.map((op) => checkName(op.name)))];
      const entryKeys = ops.map((op) => this.#o.layout.entry(this.host, opKind(op), op.name));
      const leaseKeys = names.map((n) => this.#o.layout.lease(n));
      const read = await this.#readKeys([...new Set([...entryKeys, ...leaseKeys])]);
      for (const name of names) {
        const kv = read.get(this.#o.layout.lease(name));
        const holder = recordOwner(kv);
        if (holder !== undefined && holder !== owner) throw this.#leaseHeld(what, name, holder, kv!, owner);
      }
      // Each op against the value before it (a batch may touch one key twice: the later op sees the earlier one).
      const changes = new Map<string, KeyChange>();
      for (const [i, op] of ops.entries()) {
        const key = entryKeys[i]!;
        const before = read.get(key);
        const now = changes.has(key) ? changes.get(key)!.value : before?.value;
        if (op.ifGeneration !== undefined && !changes.has(key)) {
          const generation = before?.modRevision ?? 0;
          if (generation !== op.ifGeneration) {
            throw new AgentRefusedError(this.url, what, 412, `${opKind(op)} ${JSON.stringify(op.name)} on host ${this.host}: its generation is ${generation}, not ${op.ifGeneration} (written since); nothing was changed`, undefined);
          }
        }
        const value = this.#nextValue(op, now, what, o.missingIsNothing === true);
        if (value === null) continue; // a delete of nothing
        changes.set(key, { kind: opKind(op), name: op.name, key, value, before: changes.get(key)?.before ?? before });
      }
      const effective = [...changes.values()].filter((c) => !(c.value === undefined && c.before === undefined));
      if (!effective.length) return 0;
      const compares: Compare[] = [
        ...[...changes.values()].map((c): Compare => ({ key: c.key, target: 'MOD', result: 'EQUAL', modRevision: c.before?.modRevision ?? 0 })),
        ...leaseKeys.map((key): Compare => ({ key, target: 'MOD', result: 'EQUAL', modRevision: read.get(key)?.modRevision ?? 0 })),
      ];
      const txnOps = effective.map((c): TxnOp => (c.value === undefined ? { deleteRange: { key: c.key } } : { put: { key: c.key, value: c.value } }));
      const r = await this.#etcd(`txn (${what})`, () => this.#o.etcd.txn(compares, txnOps));
      if (!r.succeeded) continue; // a key moved between the read and the txn: decide again
      await this.#applied(r.revision, effective, what);
      return r.revision;
    }
    throw new AgentUnreachableError(this.url, what, `host ${this.host}: ${what}: its keys kept changing under ${TXN_ATTEMPTS} attempts; nothing was written`);
  }

  /** The key's value after `op` (undefined: deleted; null: a delete of nothing that is no error). */
  #nextValue(op: Op, now: string | undefined, what: string, missingIsNothing: boolean): string | undefined | null {
    const refuse = (status: number, msg: string, field?: string): never => {
      throw new AgentRefusedError(this.url, what, status, msg, field);
    };
    switch (op.op) {
      case 'put-app':
      case 'put-delivery': {
        const { op: _op, name: _name, ifGeneration: _if, ...body } = op;
        try {
          if (op.op === 'put-app') parseAppBody(body);
          else parseDeliveryBody(body);
        } catch (err) {
          refuse(400, (err as Error).message);
        }
        return JSON.stringify(body);
      }
      case 'set-action': {
        if (now === undefined) return refuse(404, `no app named ${JSON.stringify(op.name)} on host ${this.host} (etcd key ${this.#o.layout.entry(this.host, 'app', op.name)})`);
        let body: AppBody;
        try {
          body = parseAppBodyJson(now);
        } catch (err) {
          return refuse(409, `app ${JSON.stringify(op.name)} on host ${this.host}: its etcd value is not a valid entry (${(err as Error).message}); write it whole`);
        }
        const next = { ...body, action: op.action };
        try {
          parseAppBody(next);
        } catch (err) {
          refuse(400, (err as Error).message, 'action');
        }
        return JSON.stringify(next);
      }
      case 'delete-app':
      case 'delete-delivery':
        if (now === undefined) return missingIsNothing ? null : refuse(404, `no ${opKind(op) === 'app' ? 'app' : 'delivery'} named ${JSON.stringify(op.name)} on host ${this.host}`);
        return undefined;
    }
  }

  /** Wait until the agent reports `revision` applied; an entry it could not apply is put back in etcd and refused. */
  async #applied(revision: number, changes: readonly KeyChange[], what: string): Promise<void> {
    const report = await this.#waitApplied(revision, what);
    const failed = report.errors.filter((e) => e.revision >= revision && changes.some((c) => c.kind === e.kind && c.name === e.name));
    if (!failed.length) return;
    // Put back what this txn wrote, where nobody wrote since.
    const back = await this.#etcd('txn (put back)', () =>
      this.#o.etcd.txn(
        changes.map((c): Compare => ({ key: c.key, target: 'MOD', result: 'EQUAL', modRevision: revision })),
        changes.map((c): TxnOp => (c.before ? { put: { key: c.key, value: c.before.value } } : { deleteRange: { key: c.key } })),
      ),
    );
    if (back.succeeded) await this.#waitApplied(back.revision, what).catch(() => undefined);
    const list = failed.map((e) => `${e.kind} ${JSON.stringify(e.name)}: ${e.error}`).join('; ');
    throw new AgentRefusedError(
      this.url,
      what,
      409,
      `the agent of host ${this.host} could not apply ${list}; ${back.succeeded ? 'etcd holds the entries as before again' : 'the keys were written again since: etcd holds the newer values'}`,
      undefined,
    );
  }

  async #status(what: string): Promise<EtcdStatusReport | undefined> {
    const kv = await this.#etcd(`read the status key (${what})`, () => this.#o.etcd.get(this.#o.layout.status(this.host)));
    if (!kv) return undefined;
    try {
      return JSON.parse(kv.value) as EtcdStatusReport;
    } catch {
      return undefined;
    }
  }

  /** The status report once it says `revision` is applied; bounded, then AgentUnreachableError naming the host. */
  async #waitApplied(revision: number, what: string): Promise<EtcdStatusReport> {
    const deadline = Date.now() + this.#timeoutMs;
    let last: EtcdStatusReport | undefined;
    for (;;) {
      last = await this.#status(what);
      if (last && last.appliedRevision >= revision) return last;
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const key = this.#o.layout.status(this.host);
    const seen = last ? `it reports revision ${last.appliedRevision} applied (state ${last.state}, ${last.updatedAt})` : `status key ${key} absent: is the agent running with --etcd … --host-id ${this.host}?`;
    throw new AgentUnreachableError(this.url, what, `host ${this.host}: its agent did not apply etcd revision ${revision} within ${this.#timeoutMs} ms (${seen}); the change is in etcd and the agent applies it when it can`);
  }

  /** The agent's HTTP read API: the URL given, or the one its status key publishes. */
  async #reader(what: string): Promise<AgentApi> {
    if (this.#o.url) return this.#o.readers(this.#o.url);
    const report = await this.#status(what);
    if (!report) throw new AgentUnreachableError(this.url, what, `host ${this.host}: no status key ${this.#o.layout.status(this.host)} in etcd: is its agent running with --etcd … --host-id ${this.host}?`);
    if (!report.url) throw new AgentUnreachableError(this.url, what, `host ${this.host}: its status key names no API URL (an older agent): give it as ${this.host}=URL`);
    return this.#o.readers(report.url);
  }

  async #getEntry<T extends App | Delivery>(kind: EntryKind, name: string, read: (r: AgentApi) => Promise<T | undefined>): Promise<T | undefined> {
    const kv = await this.#etcd(`get ${kind} ${name}`, () => this.#o.etcd.get(this.#o.layout.entry(this.host, kind, checkName(name))));
    if (!kv) return undefined;
    return this.#viewAfter(kind, name, kv.modRevision, read);
  }

  /** The agent's view of an entry once it applied `revision`, with the etcd generation. */
  async #viewAfter<T extends App | Delivery>(kind: EntryKind, name: string, revision: number, read: (r: AgentApi) => Promise<T | undefined>): Promise<T> {
    const what = `GET ${kind} ${name}`;
    const report = await this.#waitApplied(revision, what);
    const view = await read(await this.#reader(what));
    if (!view) {
      const e = report.errors.find((x) => x.kind === kind && x.name === name);
      throw new AgentFailedError(this.url, what, 500, `host ${this.host}: etcd holds ${kind} ${JSON.stringify(name)} but its agent does not${e ? `: ${e.error}` : ''}`, undefined);
    }
    return { ...view, generation: revision };
  }

  async #listEntries<T extends App | Delivery>(kind: EntryKind, read: (r: AgentApi) => Promise<T[]>): Promise<T[]> {
    const prefix = `${this.#o.layout.host(this.host)}${kind === 'app' ? 'apps' : 'deliveries'}/`;
    const desired = await this.#etcd(`list ${kind}s`, () => this.#o.etcd.rangeAll(prefix));
    const what = `list ${kind}s`;
    await this.#waitApplied(Math.max(0, ...desired.kvs.map((kv) => kv.modRevision)), what);
    const byName = new Map(desired.kvs.map((kv) => [kv.key.slice(prefix.length), kv.modRevision]));
    const views = await read(await this.#reader(what));
    // What etcd no longer names is on its way out of the maps: not listed.
    return views.filter((v) => byName.has(v.name)).map((v) => ({ ...v, generation: byName.get(v.name)! }));
  }

  /** Several keys read at one revision (one txn of ranges). */
  async #readKeys(keys: readonly string[]): Promise<Map<string, KeyValue>> {
    const out = new Map<string, KeyValue>();
    for (let i = 0; i < keys.length; i += 2 * NAMES_PER_TXN) {
      const part = keys.slice(i, i + 2 * NAMES_PER_TXN);
      const r = await this.#etcd('read keys', () => this.#o.etcd.txn([], part.map((key): TxnOp => ({ range: { key } }))));
      r.ranges.forEach((kvs) => kvs[0] && out.set(kvs[0].key, kvs[0]));
    }
    return out;
  }

  #leaseHeld(what: string, name: string, holder: string, kv: KeyValue, owner: string | undefined): AgentRefusedError {
    return new AgentRefusedError(
      this.url,
      what,
      409,
      `${JSON.stringify(name)} is leased by ${JSON.stringify(holder)} (etcd key ${kv.key}): ${owner ? `owner ${JSON.stringify(owner)}` : 'a write without an owner'} is refused; nothing was changed`,
      undefined,
    );
  }

  /** An etcd call; etcd unreachable is this host unreachable (whether a write landed is unknown: read back). */
  async #etcd<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof AgentUnreachableError || err instanceof AgentRefusedError) throw err;
      throw new AgentUnreachableError(this.url, what, `host ${this.host}: ${what}: ${(err as Error).message}`);
    }
  }
}

const opKind = (op: Op): EntryKind => (op.op === 'put-delivery' || op.op === 'delete-delivery' ? 'delivery' : 'app');
const ifGen = (guard: WriteGuard | undefined): { ifGeneration?: number } => (guard?.ifGeneration === undefined ? {} : { ifGeneration: guard.ifGeneration });

function parseAppBodyJson(value: string): AppBody {
  const body = JSON.parse(value) as unknown;
  parseAppBody(body);
  return body as AppBody;
}

export interface EtcdConnectorOptions {
  etcd: EtcdClient;
  layout: KeyLayout;
  /** HTTP clients, for `http(s)://` agents and for the read API of etcd hosts. */
  readers: AgentConnector;
  /** Read API URLs by host id (`--from HOST=URL`), instead of the status key's. */
  urls?: ReadonlyMap<string, string>;
  applyTimeoutMs?: number;
}

/** A connector for `etcd:<host>` agents (one client per host); any other URL goes to `readers`. */
export function etcdConnector(o: EtcdConnectorOptions): AgentConnector {
  const cache = new Map<string, AgentApi>();
  return (id) => {
    const host = etcdHostOf(id);
    if (host === undefined) return o.readers(id);
    let c = cache.get(host);
    if (!c) {
      const url = o.urls?.get(host);
      c = new EtcdAgentClient({ etcd: o.etcd, layout: o.layout, host, readers: o.readers, ...(url ? { url } : {}), ...(o.applyTimeoutMs ? { applyTimeoutMs: o.applyTimeoutMs } : {}) });
      cache.set(host, c);
    }
    return c;
  };
}
