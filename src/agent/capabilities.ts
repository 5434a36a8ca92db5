/**
 * The Linux capabilities the agent needs, checked at start-up against the
 * process' effective set, so that a missing one is named before anything
 * is loaded or attached (instead of an EPERM from deep inside libbpf).
 *
 * The kernel accepts CAP_SYS_ADMIN wherever it asks for CAP_BPF or
 * CAP_PERFMON (bpf_capable, perfmon_capable), so a requirement is "one of".
 */
import { readFileSync } from 'node:fs';

/** Capability numbers (linux/capability.h) of the ones routeshift cares about. */
export const CAPABILITY_BITS = {
  CAP_NET_ADMIN: 12,
  CAP_SYS_ADMIN: 21,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
} as const;

export type CapabilityName = keyof typeof CAPABILITY_BITS;

/** One need: the capability asked for, the others the kernel accepts instead, and why. */
export interface CapabilityNeed {
  capability: CapabilityName;
  orInstead: readonly CapabilityName[];
  why: string;
}

/**
 * What every agent needs, restarts included (measured: test/least-privilege.test.ts
 * starts, restarts and cleans up an agent with exactly these). A restart
 * knows the attached program by its pin (src/datapath/host.ts), so it needs
 * no CAP_SYS_ADMIN; adopting a program whose pins are gone does (by id).
 */
export const AGENT_CAPABILITIES: readonly CapabilityNeed[] = [
  { capability: 'CAP_BPF', orInstead: ['CAP_SYS_ADMIN'], why: 'load the BPF programs, create and pin their maps' },
  { capability: 'CAP_NET_ADMIN', orInstead: [], why: 'attach XDP and TC programs to the uplink, set its accept_local' },
  { capability: 'CAP_PERFMON', orInstead: ['CAP_SYS_ADMIN'], why: 'load the tp_btf watcher that counts failed transmits' },
];

/** What driving another network namespace (`--netns`) needs on top: setns(2). */
export const NETNS_CAPABILITY: CapabilityNeed = {
  capability: 'CAP_SYS_ADMIN',
  orInstead: [],
  why: 'enter the network namespace given with --netns',
};

/** A capability set as a bit mask (bit N = capability N). */
export type CapabilitySet = bigint;

/** The effective set of this process, from /proc/self/status (CapEff, hex). */
export function effectiveCapabilities(status: string = readFileSync('/proc/self/status', 'utf8')): CapabilitySet {
  const line = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  if (!line?.[1]) throw new Error('cannot read the effective capabilities (no CapEff line in /proc/self/status)');
  return BigInt(`0x${line[1]}`);
}

export function hasCapability(set: CapabilitySet, name: CapabilityName): boolean {
  return ((set >> BigInt(CAPABILITY_BITS[name])) & 1n) === 1n;
}

/** The needs `set` does not meet (empty: all met). */
export function missingCapabilities(set: CapabilitySet, needs: readonly CapabilityNeed[]): CapabilityNeed[] {
  return needs.filter((n) => !hasCapability(set, n.capability) && !n.orInstead.some((c) => hasCapability(set, c)));
}

/** The refusal for missing needs: each capability with what it is for, and how to grant them. */
export function describeMissing(missing: readonly CapabilityNeed[]): string {
  const names = [...new Set(missing.map((m) => m.capability))];
  const lines = missing.map((m) => `  ${m.capability}: ${m.why}`);
  return (
    `the agent lacks ${names.join(', ')}:\n${lines.join('\n')}\n` +
    `run it as root, or grant them (systemd: AmbientCapabilities=${names.join(' ')}; ` +
    `setpriv --ambient-caps=${names.map((n) => `+${n.slice(4).toLowerCase()}`).join(',')} …)`
  );
}
