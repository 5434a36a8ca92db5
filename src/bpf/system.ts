/**
 * Host facts the BPF layer needs: bpffs mounted, interface indexes, and
 * running a piece of synchronous code inside a network namespace.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { addon, isErrno } from './native.js';

export const BPFFS = '/sys/fs/bpf';

function isBpffsMounted(dir: string): boolean {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((line) => {
    const [, target, fstype] = line.split(' ');
    return target === dir && fstype === 'bpf';
  });
}

/** Mount bpffs at /sys/fs/bpf when it is not mounted yet. Returns true if it mounted it. */
export function ensureBpffs(dir: string = BPFFS): boolean {
  if (isBpffsMounted(dir)) return false;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(`cannot mount bpffs at ${dir}: ${stderr || String(err)} (run as root)`);
  }
  return true;
}

/** statfs f_type of bpffs (linux/magic.h BPF_FS_MAGIC). */
const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * Whether `dir` (or, while it does not exist yet, its nearest existing
 * parent) is on a bpffs: an agent without CAP_SYS_ADMIN cannot mount one,
 * so a pin dir on a bpffs mounted for it must not ask for /sys/fs/bpf.
 */
export function isOnBpffs(dir: string): boolean {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return statfsSync(d).type === BPF_FS_MAGIC;
}

/**
 * Interface index by name in the calling thread's network namespace (also
 * inside inNetns, where /sys would still show the process' namespace).
 */
export function ifindexOf(name: string): number {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(name)) throw new Error(`invalid interface name ${JSON.stringify(name)}`);
  try {
    return addon().ifNameToIndex(name);
  } catch (err) {
    if (isErrno(err, 'ENODEV')) err.message = `interface ${name} does not exist`;
    throw err;
  }
}

/** An interface's MAC address in the calling thread's network namespace. */
export function macOf(name: string): string {
  return addon().ifHwAddr(name);
}

/** Run `fn` with this thread inside the named network namespace (/run/netns/NAME). */
export function inNetns<T>(name: string, fn: () => T): T {
  return addon().inNetns(`/run/netns/${name}`, fn);
}

/** Inode of the calling thread's network namespace: its identity while it exists. */
export function netnsInode(): bigint {
  return statSync('/proc/thread-self/ns/net', { bigint: true }).ino;
}

/** The `ip netns` name of the calling thread's network namespace, if it has one (/run/netns/NAME). */
export function netnsName(): string | undefined {
  const self = netnsInode();
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return undefined;
  }
  for (const n of names) {
    try {
      if (statSync(`/run/netns/${n}`, { bigint: true }).ino === self) return n;
    } catch {
      /* being deleted */
    }
  }
  return undefined;
}

export function possibleCpus(): number {
  return addon().possibleCpus();
}

export function libbpfVersion(): string {
  return addon().libbpfVersion();
}

/**
 * Move the calling (main) thread into the named network namespace for good.
 * Sockets opened before keep their namespace; later ones, child processes,
 * netlink and BPF test runs use the new one.
 */
export function enterNetns(name: string): void {
  addon().enterNetns(`/run/netns/${name}`);
}
