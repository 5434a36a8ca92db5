/**
 * Agent start-up and shutdown: take the uplink's lock, load (or adopt) the
 * data plane, configure this host's tunnel addresses, serve the API.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { destination, pino, type Logger } from 'pino';
import { enterNetns, inNetns, netnsInode, type XdpMode } from '../bpf/index.js';
import { canonicalAddress, parseAddress } from '../model/address.js';
import { HostDatapath, defaultPinDir } from '../datapath/host.js';
import type { Config } from '../datapath/structs.js';
import type { StatusView } from '../model/entry.js';
import { buildInfo } from '../model/version.js';
import { EntryStore } from './store.js';
import { SystemLinks } from './links.js';
import { PathKeeper, uplinkFacts, withUplinkFacts } from './paths.js';
import { AGENT_CAPABILITIES, NETNS_CAPABILITY, describeMissing, effectiveCapabilities, missingCapabilities } from './capabilities.js';
import { PidLock, agentLockName, uplinkLockName } from './lock.js';
import { LeaseTable, leaseNoteFile } from './lease.js';
import { AGENT_NODE_FLAGS, RELEASE_AFTER_OPS, releaseMemory, youngGenerationCapped } from './memory.js';
import { createMetrics } from './metrics.js';
import { buildServer } from './server.js';
import { BgpAnnouncer, type BgpOptions } from './bgp.js';
import { FlowCensus } from './flows.js';
import { loadOrCreateToken } from './token.js';
import { loadServerTls, type TlsFiles } from './tls.js';
import { EtcdSource } from './etcd-source.js';
import { EtcdClient } from '../etcd/client.js';
import { KeyLayout, parseHostId } from '../etcd/layout.js';

export { DEFAULT_LISTEN, DEFAULT_TOKEN_FILE } from './defaults.js';
const VERSION = buildInfo().version;

export interface AgentOptions {
  uplink: string;
  listen: string;
  tokenFile: string;
  insecure: boolean;
  pinDir?: string;
  /** This host's tunnel addresses (v4 and/or v6); default: the uplink's global addresses. */
  tunnelAddrs?: string[];
  mtu?: number;
  xdpMode: XdpMode;
  capacity?: number;
  /** Entries of each flow table of the preserve action. */
  flowCapacity?: number;
  replace: boolean;
  detachOnExit: boolean;
  /** HTTPS; with clientCaFile, mTLS (client certificates required). */
  tls?: TlsFiles;
  logger?: Logger;
  /**
   * Run the data plane side in this network namespace while serving the API
   * from the current one (hosts of a test topology or the demo).
   */
  netns?: string;
  /** How often the delivery paths are checked against the devices (default 1000 ms). */
  pathCheckMs?: number;
  /** Where the restart note of the leases is kept (lease.ts); default beside the agent's lock under /run/routeshift. */
  leaseNoteFile?: string;
  /** Announce apps over BGP through this host's BIRD (--bird-include, --bird-socket, --bird-protocol). */
  bgp?: BgpOptions;
  /** Take the entries from etcd (--etcd, --host-id, --etcd-prefix): the API's entry writes are then refused. */
  etcd?: EtcdSettings;
}

export interface EtcdSettings {
  endpoints: readonly string[];
  hostId: string;
  /** Default /routeshift/v1/ (src/etcd/layout.ts). */
  prefix?: string;
  /** The status key's lease (seconds, default 10). */
  statusTtlSeconds?: number;
}

export interface RunningAgent {
  url: string;
  tokenGenerated: boolean;
  tokenFile: string | undefined;
  datapath: HostDatapath;
  store: EntryStore;
  server: FastifyInstance;
  /** The etcd source of the entries (etcd mode only). */
  etcd?: EtcdSource;
  /** Stop serving; leaves the data plane forwarding unless detach. */
  close(detach?: boolean): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new Error(`--listen ${JSON.stringify(listen)}: expected ADDR:PORT, e.g. 127.0.0.1:7450`);
  return { host: m[1]!, port };
}

/** localhost, ::1 or 127.0.0.0/8 — a literal address, not a name that merely starts with 127. */
function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIPv4(host) && host.startsWith('127.');
}

/** The uplink's global IPv4 and IPv6 addresses, the default tunnel endpoints. */
function uplinkAddresses(uplink: string): string[] {
  const out = execFileSync('ip', ['-j', 'addr', 'show', 'dev', uplink], { encoding: 'utf8' });
  const [link] = JSON.parse(out) as { addr_info?: { family: string; local: string; scope: string }[] }[];
  const addrs = (link?.addr_info ?? []).filter((a) => a.scope === 'global');
  const v4 = addrs.find((a) => a.family === 'inet');
  const v6 = addrs.find((a) => a.family === 'inet6');
  return [v4?.local, v6?.local].filter((a): a is string => a !== undefined);
}

/**
 * The kernel path of FORWARD (bpf/uplink.c rs_forward_kernel: an unresolved
 * next hop, a driver without XDP metadata) hands the stack packets whose
 * source is this host's own tunnel address; IPv4 takes them only with
 * accept_local on the uplink.
 */
function allowOwnSource(uplink: string, log: Logger): void {
  const path = `/proc/sys/net/ipv4/conf/${uplink}/accept_local`;
  try {
    if (readFileSync(path, 'utf8').trim() === '1') return;
    writeFileSync(path, '1');
    log.info({ uplink, sysctl: `net.ipv4.conf.${uplink}.accept_local=1` }, 'set so the stack routes packets the data plane encapsulated from this host\'s address');
  } catch (err) {
    log.warn({ uplink, err: (err as Error).message }, `cannot set net.ipv4.conf.${uplink}.accept_local=1: forwarding through the stack (unresolved next hops) will not work`);
  }
}

export function tunnelConfig(addrs: readonly string[], mtu: number): Config {
  const config: Config = { tunnelAddr4: null, tunnelAddr6: null, mtu, skbCsum: false, uplinkTx: 'xdp-tx', metaCookie: 0 };
  for (const a of addrs) {
    const family = parseAddress(a).family;
    if (family === 4) config.tunnelAddr4 = canonicalAddress(a);
    else config.tunnelAddr6 = canonicalAddress(a);
  }
  return config;
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log =
    opts.logger ??
    pino({ name: 'routeshift-agent', level: process.env.ROUTESHIFT_LOG_LEVEL ?? 'info' }, destination(2));
  const missing = missingCapabilities(effectiveCapabilities(), opts.netns ? [...AGENT_CAPABILITIES, NETNS_CAPABILITY] : AGENT_CAPABILITIES);
  if (missing.length) throw new Error(describeMissing(missing));
  const { host, port } = parseListen(opts.listen);
  // Read before anything is attached: a bad --bird-include stops the start with nothing changed.
  const bgp = opts.bgp ? BgpAnnouncer.open(opts.bgp, log.child({ component: 'bgp' })) : undefined;
  if (opts.insecure && !isLoopback(host)) {
    throw new Error(`--insecure serves without a token, so it only listens on loopback; ${host} is not`);
  }
  const tls = opts.tls ? loadServerTls(opts.tls) : undefined;
  // Checked before anything is attached, like the files above.
  const etcd = opts.etcd ? { client: new EtcdClient(opts.etcd.endpoints), layout: new KeyLayout(opts.etcd.prefix), hostId: parseHostId(opts.etcd.hostId) } : undefined;
  const pinDir = opts.pinDir ?? defaultPinDir(opts.uplink, opts.netns);
  const lock = PidLock.acquire(agentLockName(pinDir), `uplink ${opts.uplink} (pin dir ${pinDir})`);
  let uplinkLock: PidLock | undefined;
  let dp: HostDatapath | undefined;
  try {
    // One agent per uplink too, whatever its pin dir: two would take the hook from each other.
    const inode = opts.netns ? inNetns(opts.netns, netnsInode) : netnsInode();
    uplinkLock = PidLock.acquire(uplinkLockName(inode, opts.uplink), `uplink ${opts.uplink} (network namespace ${inode})`);
    const token = opts.insecure ? undefined : loadOrCreateToken(opts.tokenFile);
    const inHost = <T>(fn: () => T): T => (opts.netns ? inNetns(opts.netns, fn) : fn());
    dp = inHost(() => HostDatapath.open({
      uplink: opts.uplink,
      pinDir,
      xdpMode: opts.xdpMode,
      ...(opts.capacity ? { capacity: opts.capacity } : {}),
      ...(opts.flowCapacity ? { flowCapacity: opts.flowCapacity } : {}),
      replaceForeign: opts.replace,
    }));
    const addressed = tunnelConfig(opts.tunnelAddrs ?? inHost(() => uplinkAddresses(opts.uplink)), opts.mtu ?? 0);
    if (!addressed.tunnelAddr4 && !addressed.tunnelAddr6) {
      throw new Error(`uplink ${opts.uplink} has no global address: give --tunnel-addr`);
    }
    const datapathNow = dp;
    const current = dp.getConfig();
    const facts = inHost(() => uplinkFacts(datapathNow.ifindex, datapathNow.xdpMode));
    const wanted = withUplinkFacts({ ...addressed, metaCookie: current.metaCookie }, facts);
    if (JSON.stringify(current) !== JSON.stringify(wanted)) {
      dp.setConfig(wanted);
      log.info({ before: current, after: wanted, uplink: facts.why }, 'data plane config set');
    }
    if (dp.xdpMode !== opts.xdpMode) {
      log.warn(
        { running: dp.xdpMode, asked: opts.xdpMode },
        `kept the running data plane's XDP mode (${dp.xdpMode}): changing it means detaching, a gap in forwarding; ` +
          'stop the agent, `routeshift agent --cleanup`, and start it with the mode wanted',
      );
    }
    inHost(() => allowOwnSource(opts.uplink, log));
    const links = new SystemLinks(dp.xdpMode, opts.uplink);
    // Beside the agent's lock: how long leases granted before a restart may still run (lease.ts).
    const leases = new LeaseTable({ noteFile: opts.leaseNoteFile ?? leaseNoteFile(pinDir) });
    if (leases.graceMs > 0) log.info({ graceMs: Math.round(leases.graceMs) }, 'leases granted before the restart may still run: only renewals and writes with an owner until then');
    const store = new EntryStore(dp, log.child({ component: 'entries' }), links, leases);
    const paths = new PathKeeper(dp, store, links, log.child({ component: 'paths' }), opts.pathCheckMs);
    const metrics = createMetrics(dp, store);
    const started = Date.now();
    const datapath = dp;
    const status = (): StatusView => ({
      uplink: opts.uplink,
      ifindex: datapath.ifindex,
      hook: {
        type: 'xdp+tc',
        mode: datapath.xdpMode,
        modeAsked: opts.xdpMode,
        programId: datapath.program.id,
        attachedProgramId: datapath.attachedProgramId(),
        tcProgramId: datapath.tcProgram.id,
        uplinkTx: datapath.getConfig().uplinkTx,
        checksPartialChecksums: datapath.getConfig().skbCsum,
      },
      devices: paths.devices(),
      tunnel: { v4: datapath.getConfig().tunnelAddr4, v6: datapath.getConfig().tunnelAddr6, mtu: datapath.getConfig().mtu },
      pinDir,
      adopted: datapath.adopted,
      adoptedFrom: datapath.adoption,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      entries: store.counts,
      capacity: { apps: datapath.redirect.info.maxEntries, deliveries: datapath.deliver.info.maxEntries },
      drops: Object.fromEntries(Object.entries(datapath.dropCounts()).map(([k, v]) => [k, v.packets.toString()])),
      version: VERSION,
    });
    const entriesFrom = etcd ? `etcd at ${etcd.client.endpoints.join(',')} (keys ${etcd.layout.host(etcd.hostId)})` : undefined;
    const server = buildServer({ store, leases, metrics, status, flows: new FlowCensus(dp), token: token?.token, logger: log, ...(tls ? { tls } : {}), ...(bgp ? { bgp } : {}), ...(entriesFrom ? { entriesFrom } : {}) });
    await server.listen({ host, port });
    // The listening socket stays where it was opened; everything after acts in the host.
    if (opts.netns) enterNetns(opts.netns);
    await paths.start();
    const addr = server.server.address();
    const boundPort = typeof addr === 'object' && addr ? addr.port : port;
    const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
    // Never awaited: the data plane and the API do not wait for etcd (etcd-source.ts retries by itself).
    const source = etcd
      ? new EtcdSource({
          ...etcd,
          url,
          store,
          log: log.child({ component: 'etcd' }),
          registry: metrics.registry,
          ...(opts.etcd?.statusTtlSeconds ? { statusTtlSeconds: opts.etcd.statusTtlSeconds } : {}),
          health: () => {
            const s = status();
            return { uplink: s.uplink, mode: s.hook.mode, attached: s.hook.attachedProgramId === s.hook.programId, entries: s.entries, capacity: s.capacity, tunnel: s.tunnel, version: s.version, uptimeSeconds: s.uptimeSeconds };
          },
        })
      : undefined;
    source?.start();
    // Adopting many pinned entries reads them all (twice, with the path check): hand that memory back.
    if (store.counts.apps + store.counts.deliveries >= RELEASE_AFTER_OPS) releaseMemory();
    log.info({ url, uplink: opts.uplink, pinDir, adopted: dp.adopted, mode: dp.xdpMode, entries: store.counts, clientCertificates: tls?.clientCa ? 'required' : 'no' }, 'agent ready');
    if (!youngGenerationCapped()) {
      log.warn({ flags: AGENT_NODE_FLAGS }, 'node runs without the agent\'s flags: after large batches RSS stays ~30 MB higher (start it as `node --max-semi-space-size=2 …`)');
    }
    let closed = false;
    return {
      url,
      tokenGenerated: token?.generated ?? false,
      tokenFile: token?.path,
      datapath,
      store,
      server,
      ...(source ? { etcd: source } : {}),
      async close(detach = opts.detachOnExit) {
        if (closed) return;
        closed = true;
        await source?.stop();
        await paths.stop();
        await server.close();
        if (detach) datapath.detach();
        datapath.close();
        uplinkLock?.release();
        lock.release();
      },
    };
  } catch (err) {
    if (dp) {
      const fresh = !dp.adopted;
      dp.close();
      // A first start that failed half-way takes back what it attached and pinned.
      if (fresh) {
        if (opts.netns) inNetns(opts.netns, () => HostDatapath.cleanup(opts.uplink, pinDir));
        else HostDatapath.cleanup(opts.uplink, pinDir);
      }
    }
    uplinkLock?.release();
    lock.release();
    throw err;
  }
}
