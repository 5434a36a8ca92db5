/**
 * What the agent answers about its entries: the API views (src/model/entry.ts
 * AppView, DeliveryView) read from the maps, listings in pages, and the
 * per-entry series /metrics reads. Reads only.
 */
import type { HostDatapath } from '../datapath/host.js';
import type { EntryKind } from '../datapath/meta.js';
import type { AppStats, DeliverValue, RedirectValue, Target } from '../datapath/structs.js';
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
    // A page's map reads in one call into the addon per map, not three per entry.
    const values = this.dp.redirect.lookupMany(entries.map((e) => e.meta.key));
    const stats = this.dp.appStatsMany(entries.map((e) => e.appId));
    return { apps: entries.map((e, i) => this.#appView(e, tx, { value: values[i], stats: stats[i]! })), next };
  }

  getApp(name: string): AppView {
    const e = this.catalog.entry('app', name);
    if (!e) throw new NotFoundError(`no app named ${JSON.stringify(name)}`);
    return this.#appView(e, this.dp.getConfig().uplinkTx);
  }

  listDeliveries(query: PageQuery = FIRST_PAGE): { deliveries: DeliveryView[]; next: string | null } {
    const { entries, next } = this.#page('delivery', query);
    const values = this.dp.deliver.lookupMany(entries.map((e) => e.meta.key));
    const stats = this.dp.appStatsMany(entries.map((e) => e.appId));
    return { deliveries: entries.map((e, i) => this.#deliveryView(e, { value: values[i], stats: stats[i]! })), next };
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
      generation: e.meta.generation,
    };
  }

  /** `read`: the entry's map value and counters, when a listing read them for its whole page. */
  #appView(e: Entry, tx: UplinkTx, read: { value: RedirectValue | undefined; stats: AppStats } = { value: this.dp.redirect.lookup(e.meta.key), stats: this.dp.appStats(e.appId) }): AppView {
    const { value: v, stats } = read;
    const action: Action =
      v?.action === 'forward' ? { type: 'forward', tunnel: v.tunnel } : v?.action === 'preserve' ? { type: 'preserve', tunnel: v.tunnel } : { type: 'local' };
    // preserve: the path into the device (old flows); new ones leave by the uplink
    const path: PathView = v?.action === 'local' || v?.action === 'preserve' ? pathView(v) : { via: tx };
    return { ...this.#entryView(e, path), action, counters: { local: counter(stats.local), forward: counter(stats.forward) } };
  }

  #deliveryView(e: Entry, read: { value: DeliverValue | undefined; stats: AppStats } = { value: this.dp.deliver.lookup(e.meta.key), stats: this.dp.appStats(e.appId) }): DeliveryView {
    const { value: v, stats } = read;
    return { ...this.#entryView(e, v ? pathView(v) : { via: 'kernel' }), counters: { deliver: counter(stats.deliver) } };
  }

}
