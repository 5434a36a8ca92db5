/**
 * What the agent answers about its entries: the API views (src/model/entry.ts
 * AppView, DeliveryView) read from the maps, listings in pages, and the
 * per-entry series /metrics reads. Reads only.
 */
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind } from '../datapath/meta.js';
import type { Target } from '../datapath/structs.js';
import { NotFoundError } from '../model/errors.js';
import { DEFAULT_PAGE, type Action, type AppView, type CounterView, type DeliveryView, type PageQuery, type PathView, type UplinkTx } from '../model/entry.js';
import type { Catalog, Entry } from './catalog.js';

const FIRST_PAGE: PageQuery = { limit: DEFAULT_PAGE, cursor: null };

function pathView(t: Target): PathView {
  return t.path === 'xdp' && t.slowPath !== 'xdp' ? { via: t.path, slowVia: t.slowPath } : { via: t.path };
}

function counter(c: { packets: bigint; bytes: bigint }): CounterView {
  return { packets: c.packets.toString(), bytes: c.bytes.toString() };
}

export class EntryViews {
  constructor(
    private readonly dp: HostDatapath,
    private readonly catalog: Catalog,
  ) {}

  /**
   * One page of the entries of a kind, sorted by name within the page, and
   * the cursor of the next page (null after the last). Pages follow the
   * meta map's own order, so a million entries are listed without ever
   * holding them all; entries changed while a listing is paged through may
   * be missed or seen twice.
   */
  #page(kind: EntryKind, { limit, cursor }: PageQuery): { entries: Entry[]; next: string | null } {
    const out: Entry[] = [];
    let token = cursor;
    do {
      const page = this.dp.meta.page(token, limit - out.length);
      for (const [appId, meta] of page.entries) if (meta.kind === kind) out.push({ appId, meta });
      token = page.next;
    } while (token && out.length < limit);
    out.sort((a, b) => (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0));
    return { entries: out, next: token ? token.toString('hex') : null };
  }

  listApps(query: PageQuery = FIRST_PAGE): { apps: AppView[]; next: string | null } {
    const { entries, next } = this.#page('app', query);
    const tx = this.dp.getConfig().uplinkTx;
    return { apps: entries.map((e) => this.#appView(e, tx)), next };
  }

  getApp(name: string): AppView {
    const e = this.catalog.entry('app', name);
    if (!e) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
    return this.#appView(e, this.dp.getConfig().uplinkTx);
  }

  listDeliveries(query: PageQuery = FIRST_PAGE): { deliveries: DeliveryView[]; next: string | null } {
    const { entries, next } = this.#page('delivery', query);
    return { deliveries: entries.map((e) => this.#deliveryView(e)), next };
  }

  getDelivery(name: string): DeliveryView {
    const e = this.catalog.entry('delivery', name);
    if (!e) throw new NotFoundError(`no delivery named ${JSON.stringify(name)}`);
    return this.#deliveryView(e);
  }

  /** Per-entry packet/byte counters without building whole views (for /metrics). */
  *counters(limit: number): IterableIterator<{ name: string; kind: EntryKind; stats: ReturnType<HostDatapath['appStats']> }> {
    let n = 0;
    for (const [appId, meta] of this.dp.meta.entries()) {
      if (n++ >= limit) return;
      yield { name: meta.name, kind: meta.kind, stats: this.dp.appStats(appId) };
    }
  }

  /** Each entry's delivery path now, up to a limit (for /metrics). */
  *paths(limit: number): IterableIterator<{ name: string; kind: EntryKind; path: string }> {
    let n = 0;
    const tx = this.dp.getConfig().uplinkTx;
    for (const [, meta] of this.dp.meta.entries()) {
      if (n++ >= limit) return;
      const v = meta.kind === 'delivery' ? this.dp.deliver.lookup(meta.key) : this.dp.redirect.lookup(meta.key);
      const path = !v ? 'none' : 'path' in v ? v.path : v.action === 'forward' ? `forward-${tx}` : 'none';
      yield { name: meta.name, kind: meta.kind, path };
    }
  }

  /** The devices entries deliver into, with how many entries each (the path keeper watches them). */
  devices(): ReadonlyMap<string, number> {
    return this.catalog.devices;
  }

  #entryView(e: Entry, path: PathView): Omit<AppView, 'action' | 'counters'> {
    const { key } = e.meta;
    return {
      name: e.meta.name,
      address: key.address,
      proto: key.proto,
      port: key.port,
      dev: e.meta.dev,
      mac: e.meta.mac,
      macSource: e.meta.macSource,
      appId: e.appId,
      path,
    };
  }

  #appView(e: Entry, tx: UplinkTx): AppView {
    const v = this.dp.redirect.lookup(e.meta.key);
    const stats = this.dp.appStats(e.appId);
    const action: Action = v?.action === 'forward' ? { type: 'forward', tunnel: v.tunnel } : { type: 'local' };
    const path: PathView = v?.action === 'local' ? pathView(v) : { via: tx };
    return { ...this.#entryView(e, path), action, counters: { local: counter(stats.local), forward: counter(stats.forward) } };
  }

  #deliveryView(e: Entry): DeliveryView {
    const v = this.dp.deliver.lookup(e.meta.key);
    const stats = this.dp.appStats(e.appId);
    return { ...this.#entryView(e, v ? pathView(v) : { via: 'kernel' }), counters: { deliver: counter(stats.deliver) } };
  }

}
