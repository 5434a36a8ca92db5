/**
 * Helpers the routeshift-level benchmarks share: CPU time from /proc/stat
 * and of tasks (schedstat),
 * the C helper (bench/out/update_c), a token file for agents, pin
 * directories, wall-clock time comparable across processes.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../src/bpf/native.js';
import { parseIPv4, parseMac } from '../src/model/address.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wall clock in ms since the epoch, the clock udp-tool stamps arrivals with. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

/** USER_HZ of /proc/stat (100 on Linux for every architecture we run on). */
const USER_HZ = 100;

/**
 * CPU time spent busy (user, nice, system, irq, softirq, steal — not idle
 * or iowait) summed over every CPU, in ns, from /proc/stat. Includes other
 * tenants of a shared machine: use over short windows, compare in one run.
 */
export function cpuBusyNs(cpu?: number): number {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const line = cpu === undefined ? lines[0]! : lines.find((l) => l.startsWith(`cpu${cpu} `)) ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1e9) / USER_HZ;
}

/** Softirq time alone (of one CPU, or of all), ns. */
export function cpuSoftirqNs(cpu?: number): number {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const line = cpu === undefined ? lines[0]! : lines.find((l) => l.startsWith(`cpu${cpu} `)) ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return ((f[6] ?? 0) * 1e9) / USER_HZ;
}

/** The pid of the kernel thread that runs deferred softirq work on `cpu` (ksoftirqd/N), if there is one. */
export function ksoftirqdPid(cpu: number): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === `ksoftirqd/${cpu}`) return Number(d);
    } catch {
      /* exited */
    }
  }
  return undefined;
}

/** Time a task has run on a CPU, ns (the scheduler's sum_exec_runtime, /proc/PID/schedstat); 0 when unknown. */
export function taskRuntimeNs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

export function updateCPath(): string {
  const p = join(repoRoot(), 'bench', 'out', 'update_c');
  if (!existsSync(p)) throw new Error(`${p} missing: build it with \`make -C bench\``);
  return p;
}

export function xdpgenPath(): string {
  const p = join(repoRoot(), 'bench', 'out', 'xdpgen');
  if (!existsSync(p)) throw new Error(`${p} missing: build it with \`make -C bench\``);
  return p;
}

export interface UpdateCResult {
  mode: 'single' | 'batch';
  n: number;
  ns: number;
  nsPerOp: number;
}

/** Run the C baseline (see bench/update_c.c). */
export function runUpdateC(args: { mode: 'single' | 'batch'; pin: string; n: number; arg: number; valueHex: string }): Promise<UpdateCResult> {
  return new Promise((resolve, reject) => {
    execFile(updateCPath(), [args.mode, args.pin, String(args.n), String(args.arg), args.valueHex], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`update_c ${args.mode} failed: ${stderr.trim() || err.message}`));
      try {
        resolve(JSON.parse(stdout.trim()) as UpdateCResult);
      } catch {
        reject(new Error(`update_c printed ${stdout.trim()}`));
      }
    });
  });
}

/** A fresh token file in a temp dir, shared by the agents of one benchmark. */
export function tokenDir(tag: string): { dir: string; tokenFile: string; token: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `rs-bench-${tag}-`));
  const tokenFile = join(dir, 'token');
  const token = randomBytes(32).toString('hex');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  return { dir, tokenFile, token, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A pin directory of our own under /sys/fs/bpf (removed by exact name). */
export function pinDirFor(prefix: string, host: string): string {
  return `/sys/fs/bpf/${prefix}-${host}`;
}

export function removePinDir(path: string): void {
  if (!path.startsWith('/sys/fs/bpf/rs')) throw new Error(`refusing to remove ${path}: not a benchmark pin dir`);
  rmSync(path, { recursive: true, force: true });
}

export function ppsObjectPath(): string {
  const p = join(repoRoot(), 'bench', 'pps.o');
  if (!existsSync(p)) throw new Error(`${p} missing: build it with \`make -C bench\``);
  return p;
}

/** Resident memory of a process, and its peak (VmHWM), in bytes. */
export function rssOf(pid: number): { rss: number; anon: number; file: number; shmem: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), shmem: kb('RssShmem'), peak: kb('VmHWM') };
}

export const fmtMs = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(2));

/** Internet checksum of a header (RFC 1071). */
function ipChecksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** What a generated Ethernet + IPv4 + UDP test frame carries. */
export interface Udp4Frame {
  dstMac: string;
  srcMac: string;
  src4: string;
  /** Dotted quad or its 4 bytes. */
  dst4: string | Buffer;
  sport: number;
  dport: number;
  /** Whole frame, Ethernet header included (default 64). */
  bytes?: number;
}

/** One Ethernet + IPv4 + UDP frame, IP checksum filled, UDP checksum 0 (none: allowed for IPv4). */
export function udp4Frame(o: Udp4Frame): Buffer {
  const f = Buffer.alloc(o.bytes ?? 64);
  parseMac(o.dstMac).copy(f, 0);
  parseMac(o.srcMac).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(f.length - 14, 2);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = 17;
  parseIPv4(o.src4).copy(ip, 12);
  (typeof o.dst4 === 'string' ? parseIPv4(o.dst4) : o.dst4).copy(ip, 16);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  const udp = f.subarray(34);
  udp.writeUInt16BE(o.sport, 0);
  udp.writeUInt16BE(o.dport, 2);
  udp.writeUInt16BE(udp.length, 4);
  return f;
}
