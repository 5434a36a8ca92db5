/**
 * `routeshift maps`: the data plane's pinned maps decoded, read straight
 * from bpffs with the codecs of src/datapath (no agent needed: this is for
 * when it is down). Names come from the agent's own pinned name map, so
 * entries read as the API shows them: addresses as text, actions by name.
 * An entry that does not decode (maps of another routeshift version) is
 * listed with the reason instead of ending the listing.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, perCpu, rawBytes, u32, type Codec } from '../bpf/index.js';
import { metaValueCodec, ownerCodec, type MetaValue } from '../datapath/meta.js';
import {
  DROP_REASONS,
  EVENTS,
  appKeyCodec,
  appStatsCodec,
  configCodec,
  counterCodec,
  deliverValueCodec,
  redirectValueCodec,
  sumAppStats,
  sumCounters,
  type AppKey,
  type AppStats,
  type Counter,
} from '../datapath/structs.js';
import { UsageError } from './common.js';

export interface CounterText {
  packets: string;
  bytes: string;
}

export interface MapTarget {
  ifindex: number;
  /** The device's name as the agent recorded it (the index may be of another namespace). */
  dev: string | null;
  dmac: string;
  smac: string;
  path: string;
  slowPath: string;
}

export interface RedirectRow extends AppKey {
  /** null: a placeholder the agent keeps for an address that has only port entries. */
  name: string | null;
  appId: number;
  action: string;
  tunnel?: string;
  target?: MapTarget;
  counters: { local: CounterText; forward: CounterText };
}

export interface DeliverRow extends AppKey {
  name: string | null;
  appId: number;
  target: MapTarget;
  counters: { deliver: CounterText };
}

export interface Undecoded {
  map: string;
  key: string;
  error: string;
}

export interface MapsDump {
  pinDir: string;
  owner: { uplink: string; ifindex: number; netns: string; pinDir: string } | null;
  config: { tunnel: { v4: string | null; v6: string | null }; mtu: number; skbCsum: boolean; uplinkTx: string } | null;
  redirect: RedirectRow[];
  deliver: DeliverRow[];
  drops: Record<string, CounterText>;
  events: Record<string, CounterText>;
  undecoded: Undecoded[];
}

const text = (c: Counter): CounterText => ({ packets: c.packets.toString(), bytes: c.bytes.toString() });

function openIfPinned<K, V>(dir: string, name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> | undefined {
  const path = join(dir, name);
  return existsSync(path) ? BpfMap.openPinned(path, key, value) : undefined;
}

function byName(a: { name: string | null; address: string }, b: { name: string | null; address: string }): number {
  const x = a.name ?? `~${a.address}`;
  const y = b.name ?? `~${b.address}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Read every routeshift map pinned in `pinDir`. */
export function readPinnedMaps(pinDir: string): MapsDump {
  if (!existsSync(join(pinDir, 'rs_redirect'))) throw new UsageError(`no routeshift maps are pinned in ${pinDir} (no rs_redirect there): give the agent's --pin-dir`);
  const undecoded: Undecoded[] = [];
  const maps: BpfMap<unknown, unknown>[] = [];
  const open = <K, V>(m: BpfMap<K, V> | undefined): BpfMap<K, V> | undefined => {
    if (m) maps.push(m as BpfMap<unknown, unknown>);
    return m;
  };
  try {
    const meta = open(openIfPinned(pinDir, 'rs_app_meta', u32, metaValueCodec));
    const owner = open(openIfPinned(pinDir, 'rs_owner', u32, ownerCodec))?.lookup(0);
    const config = open(openIfPinned(pinDir, 'rs_config', u32, configCodec))?.lookup(0);
    const stats = open(openIfPinned(pinDir, 'rs_app_stats', u32, perCpu(appStatsCodec)));
    const names = new Map<number, MetaValue>();
    if (meta) for (const [id, v] of meta.entries()) names.set(id, v);
    const statsOf = (appId: number): AppStats | undefined => {
      const perCpuStats = stats?.lookup(appId);
      return perCpuStats ? sumAppStats(perCpuStats) : undefined;
    };
    const zero: Counter = { packets: 0n, bytes: 0n };
    const targetOf = (t: { ifindex: number; dmac: string; smac: string; path: string; slowPath: string }, appId: number): MapTarget => ({
      ifindex: t.ifindex,
      dev: names.get(appId)?.dev ?? null,
      dmac: t.dmac,
      smac: t.smac,
      path: t.path,
      slowPath: t.slowPath,
    });

    // Keys and values raw, decoded one by one: one bad entry is reported, not fatal.
    const rawEntries = (name: string, valueSize: number): [Buffer, Buffer][] => {
      const m = open(openIfPinned(pinDir, name, rawBytes(appKeyCodec.size), rawBytes(valueSize)));
      return m ? [...m.entries()] : [];
    };
    const redirect: RedirectRow[] = [];
    for (const [k, v] of rawEntries('rs_redirect', redirectValueCodec.size)) {
      try {
        const key = appKeyCodec.decode(k, 0);
        const value = redirectValueCodec.decode(v, 0);
        const s = statsOf(value.appId);
        redirect.push({
          name: value.action === 'ports-only' ? null : (names.get(value.appId)?.name ?? null),
          ...key,
          appId: value.appId,
          action: value.action,
          ...('tunnel' in value ? { tunnel: value.tunnel } : {}),
          ...('ifindex' in value ? { target: targetOf(value, value.appId) } : {}),
          counters: { local: text(s?.local ?? zero), forward: text(s?.forward ?? zero) },
        });
      } catch (err) {
        undecoded.push({ map: 'rs_redirect', key: k.toString('hex'), error: (err as Error).message });
      }
    }
    const deliver: DeliverRow[] = [];
    for (const [k, v] of rawEntries('rs_deliver', deliverValueCodec.size)) {
      try {
        const key = appKeyCodec.decode(k, 0);
        const value = deliverValueCodec.decode(v, 0);
        deliver.push({
          name: names.get(value.appId)?.name ?? null,
          ...key,
          appId: value.appId,
          target: targetOf(value, value.appId),
          counters: { deliver: text(statsOf(value.appId)?.deliver ?? zero) },
        });
      } catch (err) {
        undecoded.push({ map: 'rs_deliver', key: k.toString('hex'), error: (err as Error).message });
      }
    }
    const counters = (name: string, labels: readonly string[]): Record<string, CounterText> => {
      const m = open(openIfPinned(pinDir, name, u32, perCpu(counterCodec)));
      const out: Record<string, CounterText> = {};
      if (!m) return out;
      labels.forEach((label, i) => {
        const v = m.lookup(i);
        out[label] = text(v ? sumCounters(v) : zero);
      });
      return out;
    };
    return {
      pinDir,
      owner: owner ? { uplink: owner.uplink, ifindex: owner.ifindex, netns: owner.netns.toString(), pinDir: owner.pinDir } : null,
      config: config ? { tunnel: { v4: config.tunnelAddr4, v6: config.tunnelAddr6 }, mtu: config.mtu, skbCsum: config.skbCsum, uplinkTx: config.uplinkTx } : null,
      redirect: redirect.sort(byName),
      deliver: deliver.sort(byName),
      drops: counters('rs_drops', DROP_REASONS),
      events: counters('rs_events', EVENTS),
      undecoded,
    };
  } finally {
    for (const m of maps) m.close();
  }
}

function keyText(k: AppKey): string {
  return `${k.address.includes(':') ? `[${k.address}]` : k.address}${k.proto === 'any' ? '' : `:${String(k.proto)}${k.port ? `/${k.port}` : ''}`}`;
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
}

export function mapsText(d: MapsDump): string {
  const out: string[] = [];
  const o = d.owner;
  const c = d.config;
  out.push(`${d.pinDir}: ${o ? `uplink ${o.uplink} (ifindex ${o.ifindex}, netns inode ${o.netns})` : 'no owner record'}`);
  if (c) out.push(`  tunnel ${c.tunnel.v4 ?? '-'} / ${c.tunnel.v6 ?? '-'}, mtu ${c.mtu || 'of the route'}, out of the uplink by ${c.uplinkTx}${c.skbCsum ? ', partial checksums checked' : ''}`);
  out.push(`rs_redirect: ${d.redirect.length} entries`);
  if (d.redirect.length) {
    out.push(
      ...table(
        ['NAME', 'KEY', 'ID', 'ACTION', 'DEV', 'PATH', 'LOCAL PKTS', 'FORWARD PKTS'],
        d.redirect.map((r) => [
          r.name ?? '(ports only)',
          keyText(r),
          String(r.appId),
          r.action === 'forward' || r.action === 'preserve' ? `${r.action.toUpperCase()} → ${r.tunnel ?? '?'}` : r.action.toUpperCase(),
          r.target ? (r.target.dev ?? `ifindex ${r.target.ifindex}`) : '-',
          r.target ? r.target.path : '-',
          r.counters.local.packets,
          r.counters.forward.packets,
        ]),
      ),
    );
  }
  out.push(`rs_deliver: ${d.deliver.length} entries`);
  if (d.deliver.length) {
    out.push(
      ...table(
        ['NAME', 'KEY', 'ID', 'DEV', 'PATH', 'DELIVERED PKTS'],
        d.deliver.map((r) => [r.name ?? '?', keyText(r), String(r.appId), r.target.dev ?? `ifindex ${r.target.ifindex}`, r.target.path, r.counters.deliver.packets]),
      ),
    );
  }
  const nonZero = (m: Record<string, CounterText>) => Object.entries(m).filter(([, v]) => v.packets !== '0').map(([k, v]) => `${k} ${v.packets}`);
  out.push(`drops: ${nonZero(d.drops).join(', ') || 'none'}`);
  out.push(`passed to the kernel: ${nonZero(d.events).join(', ') || 'none'}`);
  for (const u of d.undecoded) out.push(`undecoded ${u.map} key ${u.key}: ${u.error}`);
  return out.join('\n') + '\n';
}
