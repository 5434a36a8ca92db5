/**
 * What the agent needs to know about an interface on its host: index and
 * MAC of the device, and the MAC of a neighbour on it (the application).
 * Read with `ip -j`, in the agent's own network namespace.
 */
import { execFileSync } from 'node:child_process';
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
    const entries = ipJson<{ dst: string; lladdr?: string; state?: string[] }[]>(['neigh', 'show', 'to', address, 'dev', dev]) ?? [];
    const hit = entries.find((e) => e.lladdr && !e.state?.includes('FAILED') && !e.state?.includes('INCOMPLETE'));
    if (!hit?.lladdr) {
      throw new FieldError(field, `no neighbour entry for ${address} on ${dev}: give the application's MAC in "mac"`);
    }
    return hit.lladdr;
  },
};
