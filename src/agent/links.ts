/**
 * What the agent needs to know about an interface on its host: index and
 * MAC of the device, and the MAC of a neighbour on it (the application).
 * Read by syscall or from /proc in the agent's own network namespace (IPv6
 * neighbours with `ip -j`).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { ifindexOf, macOf } from '../bpf/index.js';
import { FieldError } from './errors.js';

export interface LinkInfo {
  ifindex: number;
  mac: string;
}

function ipJson<T>(args: string[]): T | undefined {
  try {
    return JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as T;
  } catch {
    return undefined;
  }
}

export interface LinkResolver {
  link(dev: string, field: string): LinkInfo;
  neighbourMac(address: string, dev: string, field: string): string;
}

const ATF_COM = 0x2;
const ATF_PERM = 0x4;

/**
 * IPv4 neighbours from /proc/thread-self/net/arp: the table of this
 * thread's namespace (the agent's main thread may have entered a host's),
 * read without spawning a process, so a drain of 1,000 apps does not start
 * 1,000 `ip` processes.
 */
function arpMac(address: string, dev: string): string | undefined {
  return arpTable().get(`${address} ${dev}`);
}

let arpCache: Map<string, string> | undefined;

/**
 * The table, read once per synchronous turn: a request (one batch of up to
 * a million ops) is applied in one turn, so it reads /proc once, and the
 * next request sees a fresh table.
 */
function arpTable(): Map<string, string> {
  if (arpCache) return arpCache;
  const table = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync('/proc/thread-self/net/arp', 'utf8');
  } catch {
    /* no table: every lookup misses */
  }
  for (const line of text.split('\n').slice(1)) {
    const [ip, , flags, mac, , device] = line.trim().split(/\s+/);
    if (ip && device && mac && mac !== '00:00:00:00:00:00' && Number(flags) & (ATF_COM | ATF_PERM)) table.set(`${ip} ${device}`, mac);
  }
  arpCache = table;
  queueMicrotask(() => (arpCache = undefined));
  return table;
}

/** IPv6 neighbours have no /proc table: ask iproute2. */
function ndMac(address: string, dev: string): string | undefined {
  const entries = ipJson<{ dst: string; lladdr?: string; state?: string[] }[]>(['-6', 'neigh', 'show', 'to', address, 'dev', dev]) ?? [];
  return entries.find((e) => e.lladdr && !e.state?.includes('FAILED') && !e.state?.includes('INCOMPLETE'))?.lladdr;
}

export const systemLinks: LinkResolver = {
  link(dev, field) {
    let ifindex: number;
    try {
      ifindex = ifindexOf(dev);
    } catch {
      throw new FieldError(field, `interface ${JSON.stringify(dev)} does not exist on this host`);
    }
    // Both answers come from syscalls in the agent's namespace: no process is
    // spawned on the path of an entry change (SWITCH must take microseconds).
    let mac: string;
    try {
      mac = macOf(dev);
    } catch {
      throw new FieldError(field, `interface ${dev} has no MAC address`);
    }
    return { ifindex, mac };
  },
  neighbourMac(address, dev, field) {
    const mac = isIPv4(address) ? arpMac(address, dev) : ndMac(address, dev);
    if (!mac) {
      throw new FieldError(field, `no neighbour entry for ${address} on ${dev}: give the application's MAC in "mac"`);
    }
    return mac;
  },
};
