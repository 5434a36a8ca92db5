/**
 * Shared setup of the e2e tests (test/e2e-*.test.ts): real `routeshift
 * agent` processes driving hosts A and B of a namespace topology
 * (src/testbed/topology.ts), the real controller (library or CLI), real
 * applications, and traffic whose accounting does not depend on where the
 * application runs.
 *
 * The pieces:
 *
 * - **the application** (`APP_PL`, perl, so that 50 of them start in
 *   milliseconds and cost ~5 MB each): on one port it records every
 *   sequence-numbered UDP datagram it receives (a bit set), echoes one in
 *   ECHO_EVERY of them and every other datagram (the controller's `udp:`
 *   readiness probe), and serves TCP, answering every line with the name
 *   of the network namespace it runs in — "the server tells which host it
 *   is". Bounded in time; on SIGTERM (the driver's STOP, or the test) it
 *   prints the sequence numbers it received as ranges, then exits.
 * - **the accounting** (`account()`): loss is computed over the union of
 *   what the app received on A and on B, duplicates over their
 *   intersection (and within each). It is done at the apps, not at the
 *   client: a client that receives 20k echoes/s on two busy cores drops
 *   them in its own socket buffer, which says nothing about the data plane.
 * - **the client** (this file run as a child process in the client
 *   namespace, see `main` at the bottom):
 *   - `flows`: sequence-numbered UDP streams to several destinations at
 *     given rates, each on its own socket; it counts the sampled echoes and
 *     lists the gaps between them (the client-visible blackout, an upper
 *     bound: its own scheduling stalls count too). Bounded by count and
 *     time, stopped early by SIGTERM.
 *   - `tcp-loop`: opens connections one after the other, sends a line,
 *     records which namespace answered (or the error) with timestamps.
 *   - `tcp-hold`: one connection opened and used, then used again on
 *     SIGUSR1; prints what happened to the second use.
 *
 * Every process started here is tracked by PID and killed by that PID in
 * teardown; namespaces, pinned maps and temp files are removed by exact
 * name. This module must not import tap (it runs as a child tool too).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensureBpffs } from '../../src/bpf/index.js';
import { leaseNoteFile } from '../../src/agent/lease.js';
import { repoRoot } from '../../src/bpf/native.js';
import { HttpAgentClient, type AgentApi, type AgentConnector, type App, type Delivery } from '../../src/controller/agent-client.js';
import type { AnnounceSpec } from '../../src/controller/announce.js';
import type { Timing } from '../../src/controller/journal.js';
import { AgentProcess } from '../../src/testbed/agent-process.js';
import { uniquePrefix, type Netns } from '../../src/testbed/netns.js';
import { Topology, type AppNode, type AppPlacement, type TopologyOptions } from '../../src/testbed/topology.js';
import { onStdoutLines } from '../../src/testbed/traffic.js';
import { SeqStats, makePayload, parsePayload, type SeqReport } from '../../src/testbed/udp-tool.js';
import { parseIPv4, parseIPv6 } from '../../src/model/address.js';
import type { DriverSpec, ProbeSpec, WorkloadApp, WorkloadHost } from '../../src/workload/driver.js';
import { NetnsProcessDriver, killRecordedApps } from '../../src/workload/netns-process.js';

export const CLI = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
const SELF = fileURLToPath(import.meta.url);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The environment of the processes these tests start (the CLI, the client
 * tool): without tap's NODE_OPTIONS, which would load its process-tracking
 * hook into every one of them and their children (the controller's probes)
 * — doubling the start-up of each `routeshift` run on a busy host.
 */
export const CHILD_ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'));

/** What the helpers need of a tap test (kept structural: this module does not import tap). */
export interface TestLike {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

// ------------------------------------------------------------ the app --

/**
 * Apps echo every ECHO_EVERY-th sequence packet: enough for the client to
 * see the stream (gaps at 0.5 ms resolution at 20k pps) without the client
 * itself — not the data plane — becoming what drops packets when two test
 * files share two cores. Loss is accounted at the apps (account()).
 */
export const ECHO_EVERY = 10;

/** Every app exits by itself after this long, whatever happens to the test. */
export const APP_MAX_SECONDS = 300;

/**
 * `perl app.pl PORT MAX_SECONDS [ECHO_EVERY [ADDRESS]]`: UDP echo + TCP
 * "which namespace am I" on ADDRESS:PORT, until SIGTERM or MAX_SECONDS.
 * ADDRESS defaults to every address of both families (`::` with V6Only off,
 * IO::Socket::IP; `0.0.0.0` where the kernel has no IPv6); an app given its
 * own address (the drain's `{address}`) is reached on that address only.
 *
 * UDP: every datagram that is not a sequence packet (the controller's
 * readiness probe) is echoed; of the sequence packets ("RSEQ", see
 * src/testbed/udp-tool.ts) every ECHO_EVERY-th is echoed (default 1 = all)
 * and every one is recorded in a bit set. TCP: every line gets the
 * namespace's name back.
 *
 * First line: ready (with its namespace); last line on exit: sequence
 * datagrams received, duplicates among them, the received sequence numbers
 * as ranges, TCP connections accepted.
 */
export const APP_PL = String.raw`use strict; use warnings;
use IO::Socket::IP; use IO::Select;
use Socket qw(SOL_SOCKET SO_RCVBUF MSG_DONTWAIT);
my ($port, $max, $every, $bind) = @ARGV; $max ||= 120; $every ||= 1;
my $me = qx(ip netns identify $$); chomp $me; $me ||= '?';
# No ADDRESS: every address of both families ('::' dual-stack, else 0.0.0.0 where IPv6 is absent).
my @any = (defined $bind && length $bind) ? ($bind) : ('::', '0.0.0.0');
sub sock { my ($proto, @more) = @_; my $err = '';
  for my $a (@any) {
    my $s = IO::Socket::IP->new(LocalHost => $a, LocalService => $port, Proto => $proto, ($a eq '::' ? (V6Only => 0) : ()), @more);
    return $s if $s; $err .= " [$a] $@";
  }
  die "$proto $port:$err
"; }
my $u = sock('udp');
setsockopt($u, SOL_SOCKET, SO_RCVBUF, 4 << 20);
my $l = sock('tcp', Listen => 128, ReuseAddr => 1);
$l->blocking(0);
my $sel = IO::Select->new($u, $l);
my ($nu, $dup, $nt, $stop, $bits) = (0, 0, 0, 0, '');
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
my $end = time + $max;
$| = 1;
print qq({"ready":true,"netns":"$me","pid":$$}
);
while (!$stop && time < $end) {
  for my $fh ($sel->can_read(0.1)) {
    if ($fh == $u) {
      for (1 .. 512) {
        my $peer = recv($u, my $buf, 65535, MSG_DONTWAIT);
        last unless defined $peer && length $peer;
        if (length($buf) >= 8 && substr($buf, 0, 4) eq 'RSEQ') {
          my $seq = unpack('N', substr($buf, 4, 4));
          next if $seq >= 50_000_000;
          $nu++;
          if (vec($bits, $seq, 1)) { $dup++ } else { vec($bits, $seq, 1) = 1 }
          next if $seq % $every;
        }
        send($u, $buf, 0, $peer);
      }
    } elsif ($fh == $l) {
      while (my $c = $l->accept) { $c->blocking(0); $sel->add($c); $nt++; }
    } else {
      my $r = sysread($fh, my $buf, 4096);
      if (!defined $r) { next if $!{EAGAIN}; }
      if (!$r) { $sel->remove($fh); close $fh; next; }
      my $k = ($buf =~ tr/
//);
      syswrite($fh, "$me
" x $k) if $k;
    }
  }
}
my @r; my $b = unpack('b*', $bits);
while ($b =~ /1+/g) { push @r, '[' . $-[0] . ',' . ($+[0] - 1) . ']'; }
print qq({"udp":$nu,"dup":$dup,"tcp":$nt,"netns":"$me","ended":") . ($stop ? 'signal' : 'deadline') . qq(","ranges":[) . join(',', @r) . qq(]}
);
`;

export interface AppReport {
  /** Sequence datagrams received (with duplicates). */
  udp: number;
  /** Sequence numbers received more than once by this app. */
  dup: number;
  tcp: number;
  netns: string;
  ended: string;
  /** The sequence numbers received, as [first, last] ranges. */
  ranges: [number, number][];
}

/** The last report line an app wrote to a log file (the netns-process driver's log), if any. */
export function lastAppReport(log: string): AppReport | undefined {
  if (!existsSync(log)) return undefined;
  const lines = readFileSync(log, 'utf8').trim().split('\n').reverse();
  for (const l of lines) {
    if (l.startsWith('{"udp"')) return JSON.parse(l) as AppReport;
  }
  return undefined;
}

export interface Accounting {
  sent: number;
  /** Distinct sequence numbers < sent received by any of the apps. */
  served: number;
  lost: number;
  /** Received by two apps, or twice by one. */
  duplicated: number;
  /** Distinct sequence numbers each app received. */
  perApp: number[];
  /** Never received (at most 20 ranges). */
  missing: [number, number][];
}

/**
 * Loss over the union of what the app received wherever it ran (on A and
 * on B): every sequence number < sent must have been received by exactly one.
 *
 * `base`: the flow's first sequence number (FlowSpec.seqBase), when several
 * flows reach one app with disjoint sequence ranges; only [base, base + sent)
 * is accounted then, and `dup` — the app's duplicates over all its flows —
 * is counted only for base 0 (the single-flow case it describes).
 */
export function account(sent: number, reports: readonly (AppReport | undefined)[], base = 0): Accounting {
  const count = new Uint8Array(sent);
  let duplicated = 0;
  const perApp: number[] = [];
  for (const r of reports) {
    let n = 0;
    if (base === 0) duplicated += r?.dup ?? 0;
    for (const [a, b] of r?.ranges ?? []) {
      for (let i = Math.max(a, base) - base; i <= b - base && i < sent; i++) {
        if (count[i]) duplicated++;
        else count[i] = 1;
        n++;
      }
    }
    perApp.push(n);
  }
  const missing: [number, number][] = [];
  let served = 0;
  for (let i = 0; i < sent; i++) {
    if (count[i]) {
      served++;
      continue;
    }
    let j = i;
    while (j + 1 < sent && !count[j + 1]) j++;
    if (missing.length < 20) missing.push([i, j]);
    i = j;
  }
  return { sent, served, lost: sent - served, duplicated, perApp, missing };
}

// --------------------------------------------------------- client tool --

export interface FlowSpec {
  to: string;
  port: number;
  /** Packets per second. */
  rate: number;
  /** The app echoes every N-th sequence packet (its ECHO_EVERY); default 1. */
  echoEvery?: number;
  /**
   * First sequence number (default 0; a multiple of echoEvery): flows that
   * reach the same app process need disjoint ranges, e.g. one from the
   * client and one from the remote. Reports still count 0..sent-1.
   */
  seqBase?: number;
  /**
   * Bind to this source address (one of the sending namespace's). The
   * report then lists the packets whose complete UDP checksum is, by chance,
   * the value a partial checksum holds (FlowReport.pseudoOnly).
   */
  src?: string;
}

export interface FlowsOptions {
  flows: FlowSpec[];
  /** Hard cap on sending time (each flow also stops at rate × maxMs). */
  maxMs: number;
  /** After sending stops, wait this long for the last echoes. */
  echoWaitMs: number;
  size?: number;
}

export interface FlowReport {
  to: string;
  port: number;
  /** Sequence numbers 0..sent-1 were sent. */
  sent: number;
  errors: number;
  /** Echoes (of every echoEvery-th packet): what the client saw; loss is accounted at the apps (see account()). */
  echo: SeqReport;
  /** Every gap between two consecutive echoes of at least GAP_FLOOR_MS (at most 5000), in arrival order. */
  gaps: { atMs: number; gapMs: number }[];
  /**
   * With FlowSpec.src: the packets (0-based, like `sent`; at most 1000)
   * whose complete checksum equals the pseudo-header sum alone — see
   * checksumLooksPartial.
   */
  pseudoOnly?: number[];
}

/** 16-bit big-endian words summed (an odd last byte padded with zero). */
function sum16(b: Uint8Array, acc = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) acc += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (b.length & 1) acc += (b[b.length - 1] as number) << 8;
  return acc;
}

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * Whether a UDP datagram's complete checksum (as a sender without checksum
 * offload computes it) equals what a partial one holds — the folded
 * pseudo-header sum that a sender with offload leaves for the NIC to finish
 * (CHECKSUM_PARTIAL). The data plane cannot tell such a packet from a
 * partial one (bpf/out.h, rs_csum_partial) and sends it by the slow path,
 * which delivers it too: about one datagram in 65,536.
 */
export function checksumLooksPartial(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): boolean {
  const v6 = src.includes(':');
  const len = 8 + payload.length;
  const pseudo = sum16(v6 ? parseIPv6(src) : parseIPv4(src)) + sum16(v6 ? parseIPv6(dst) : parseIPv4(dst)) + 17 + len;
  let check = ~fold16(pseudo + sport + dport + len + sum16(payload)) & 0xffff;
  if (check === 0) check = 0xffff; // UDP sends a computed 0 as 0xffff
  return check === fold16(pseudo);
}

/** Gaps between echoes shorter than this are not listed one by one. */
export const GAP_FLOOR_MS = 2;

/**
 * The largest gap between echoes that overlaps [at - window, at + window]
 * (e.g. the blackout around SWITCH), or `GAP_FLOOR_MS` as an upper bound when none was listed.
 */
export function gapAround(f: FlowReport, at: number, window = 50): { gapMs: number; listed: boolean } {
  let best = 0;
  for (const g of f.gaps) {
    if (g.atMs >= at - window && g.atMs - g.gapMs <= at + window) best = Math.max(best, g.gapMs);
  }
  return best ? { gapMs: best, listed: true } : { gapMs: GAP_FLOOR_MS, listed: false };
}

export interface FlowsReport {
  flows: FlowReport[];
  startAtMs: number;
  /** When sending stopped. */
  stopAtMs: number;
  ratePps: number;
}

function flowsMain(o: FlowsOptions): void {
  const now = (): number => performance.timeOrigin + performance.now();
  const start = now();
  const state = o.flows.map((f) => {
    const sock: UdpSocket = createSocket(f.to.includes(':') ? 'udp6' : 'udp4');
    const max = Math.ceil((f.rate * o.maxMs) / 1000);
    const base = f.seqBase ?? 0;
    const st = { f, sock, sent: 0, errors: 0, stats: new SeqStats(), max, last: 0, gaps: [] as { atMs: number; gapMs: number }[], pseudoOnly: [] as number[], sport: 0 };
    sock.on('message', (msg) => {
      const p = parsePayload(msg);
      if (!p || p.seq < base) return;
      const at = now();
      st.stats.add(p.seq - base, p.sentNs, at);
      if (st.last && at - st.last >= GAP_FLOOR_MS && st.gaps.length < 5000) st.gaps.push({ atMs: at, gapMs: at - st.last });
      st.last = at;
    });
    sock.on('error', () => st.errors++);
    return st;
  });
  let stopping = false;
  let stopAt = 0;
  const finish = (): void => {
    if (stopping) return;
    stopping = true;
    stopAt = now();
    setTimeout(() => {
      const total = state.reduce((n, s) => n + s.sent, 0);
      const report: FlowsReport = {
        flows: state.map((s) => {
          const every = s.f.echoEvery ?? 1;
          const stats = s.stats.report(Math.ceil(s.sent / every));
          // SeqStats counts "lost" against 0..expected-1; with sampling the echoed numbers are multiples of `every`.
          return { to: s.f.to, port: s.f.port, sent: s.sent, errors: s.errors, echo: stats, gaps: s.gaps, ...(s.f.src ? { pseudoOnly: s.pseudoOnly } : {}) };
        }),
        startAtMs: start,
        stopAtMs: stopAt,
        ratePps: (total * 1000) / Math.max(1, stopAt - start),
      };
      process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
    }, o.echoWaitMs);
  };
  process.once('SIGTERM', finish);
  process.once('SIGINT', finish);
  let bound = 0;
  const tick = (): void => {
    if (stopping) return;
    const t = now();
    if (t - start >= o.maxMs || state.every((s) => s.sent >= s.max)) return finish();
    let soonest = 50;
    for (const s of state) {
      const due = Math.min(s.max, Math.floor(((t - start) * s.f.rate) / 1000) + 1);
      // Send errors arrive as the socket's 'error' event (counted above).
      for (let burst = 0; s.sent < due && burst < 1024; burst++) {
        const payload = makePayload((s.f.seqBase ?? 0) + s.sent, o.size ?? 64);
        if (s.f.src && s.pseudoOnly.length < 1000 && checksumLooksPartial(s.f.src, s.f.to, s.sport, s.f.port, payload)) s.pseudoOnly.push(s.sent);
        s.sent++;
        s.sock.send(payload, s.f.port, s.f.to);
      }
      soonest = Math.min(soonest, start + (s.sent * 1000) / s.f.rate - now());
    }
    // Bursts paced by a timer (≥ 1 ms: ~20 packets at 20k pps), never a busy loop:
    // spinning on setImmediate cost a whole core, which the apps under test need.
    setTimeout(tick, Math.max(1, soonest));
  };
  for (const s of state) {
    s.sock.bind({ port: 0, ...(s.f.src ? { address: s.f.src } : {}) }, () => {
      s.sport = s.sock.address().port;
      // Echoes must not be lost in our own socket while this process is starved of CPU.
      try {
        s.sock.setRecvBufferSize(8 << 20);
      } catch {
        /* capped by rmem_max */
      }
      if (++bound === state.length) {
        process.stdout.write(JSON.stringify({ ready: true }) + '\n');
        tick();
      }
    });
  }
}

export interface TcpLoopOptions {
  to: string;
  port: number;
  maxConns: number;
  maxMs: number;
  /** Per connection. */
  timeoutMs: number;
}

export interface TcpConn {
  i: number;
  /** connect() called (epoch ms). */
  startMs: number;
  endMs: number;
  /** The namespace the server said it runs in. */
  server?: string;
  /** Error code (ECONNREFUSED, ECONNRESET, TIMEOUT, CLOSED…). */
  error?: string;
}

function tcpOnce(to: string, port: number, timeoutMs: number, i: number): Promise<TcpConn> {
  return new Promise((resolve) => {
    const startMs = Date.now();
    const s = new Socket();
    let buf = '';
    let done = false;
    const end = (r: { server?: string; error?: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ i, startMs, endMs: Date.now(), ...r });
    };
    const timer = setTimeout(() => end({ error: 'TIMEOUT' }), timeoutMs);
    s.setNoDelay(true);
    s.on('connect', () => s.write('hello\n'));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) end({ server: buf.slice(0, nl) });
    });
    s.on('error', (err: NodeJS.ErrnoException) => end({ error: err.code ?? err.message }));
    s.on('close', () => end({ error: 'CLOSED' }));
    s.connect({ host: to, port });
  });
}

async function tcpLoopMain(o: TcpLoopOptions): Promise<void> {
  const conns: TcpConn[] = [];
  let stop = false;
  process.once('SIGTERM', () => (stop = true));
  const t0 = Date.now();
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  for (let i = 0; i < o.maxConns && !stop && Date.now() - t0 < o.maxMs; i++) {
    conns.push(await tcpOnce(o.to, o.port, o.timeoutMs, i));
  }
  process.stdout.write(JSON.stringify({ conns }) + '\n', () => process.exit(0));
}

export interface TcpHoldReport {
  first: TcpConn;
  /** The second use of the same connection, after SIGUSR1. */
  second?: { atMs: number; endMs: number; server?: string; error?: string };
}

function tcpHoldMain(o: { to: string; port: number; timeoutMs: number; maxMs: number }): void {
  const s = new Socket();
  s.setNoDelay(true);
  const startMs = Date.now();
  let buf = '';
  let phase: 'first' | 'idle' | 'second' | 'done' = 'first';
  const report: TcpHoldReport = { first: { i: 0, startMs, endMs: 0 } };
  let timer: NodeJS.Timeout | undefined;
  const out = (): void => {
    phase = 'done';
    clearTimeout(timer);
    clearTimeout(cap);
    s.destroy();
    process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
  };
  const cap = setTimeout(out, o.maxMs);
  const settle = (r: { server?: string; error?: string }): void => {
    if (phase === 'first') {
      report.first = { ...report.first, endMs: Date.now(), ...r };
      if (r.error) return out();
      phase = 'idle';
      process.stdout.write(JSON.stringify({ established: report.first }) + '\n');
    } else if (phase === 'second' && report.second) {
      report.second = { ...report.second, endMs: Date.now(), ...r };
      out();
    } else if (phase === 'idle' && r.error) {
      // Something happened to the idle connection before it was used again.
      report.second = { atMs: Date.now(), endMs: Date.now(), error: `while idle: ${r.error}` };
      out();
    }
  };
  s.on('data', (d: Buffer) => {
    buf += d.toString();
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      settle({ server: line });
    }
  });
  s.on('error', (err: NodeJS.ErrnoException) => settle({ error: err.code ?? err.message }));
  s.on('close', () => settle({ error: 'CLOSED' }));
  s.on('connect', () => s.write('hello\n'));
  process.on('SIGUSR1', () => {
    if (phase !== 'idle') return;
    phase = 'second';
    report.second = { atMs: Date.now(), endMs: 0 };
    s.write('again\n');
    timer = setTimeout(() => settle({ error: 'TIMEOUT' }), o.timeoutMs);
  });
  s.connect({ host: o.to, port: o.port });
}

// -------------------------------------------- client tool, parent side --

/** A child process whose stdout is JSON lines; resolves `ready` on the first, `report` on the last. */
export interface ToolProcess<R> {
  readonly pid: number;
  /** Lines seen so far. */
  readonly lines: string[];
  readonly report: Promise<R>;
  /** SIGTERM (or another signal) to this PID, if still running. */
  signal(sig?: NodeJS.Signals): void;
  /** Resolves on the first line matching. */
  waitLine(re: RegExp, timeoutMs?: number): Promise<string>;
}

const tracked = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of tracked) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
});

/** Kill (by PID) every process started through this module that still runs. */
export function killTracked(): void {
  for (const c of tracked) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

function watch<R>(child: ChildProcess, what: string): ToolProcess<R> {
  if (child.pid === undefined) throw new Error(`could not start ${what}`);
  tracked.add(child);
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let stderr = '';
  onStdoutLines(child, (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const report = closed.then((code) => {
    tracked.delete(child);
    const last = [...lines].reverse().find((l) => l.startsWith('{') && !l.includes('"ready"'));
    if (!last) throw new Error(`${what} ended (exit ${code}) without a report: ${stderr.trim()}`);
    return JSON.parse(last) as R;
  });
  report.catch(() => undefined);
  const pid = child.pid;
  return {
    pid,
    lines,
    report,
    signal(sig: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, sig);
    },
    waitLine(re: RegExp, timeoutMs = 10_000) {
      const hit = lines.find((l) => re.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${re} within ${timeoutMs} ms; stderr: ${stderr.trim()}`)), timeoutMs);
        const w = {
          re,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(w);
        void closed.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(new Error(`${what} exited before printing a line matching ${re}; stderr: ${stderr.trim()}`));
          }
        });
      });
    },
  };
}

/**
 * The client runs at a higher priority (nice -10): it generates the load,
 * and must keep its rate while two test files share two cores — otherwise
 * "20k packets/s" would silently become whatever it got scheduled for.
 */
function tool<R>(ns: Netns, mode: string, opts: object): ToolProcess<R> {
  return watch<R>(ns.spawn('nice', ['-n', '-10', process.execPath, SELF, mode, JSON.stringify(opts)], { env: CHILD_ENV }), `client ${mode}`);
}

/** Start UDP flows from `ns`; resolves once its sockets are bound and sending began. */
export async function startFlows(ns: Netns, opts: FlowsOptions): Promise<ToolProcess<FlowsReport>> {
  const p = tool<FlowsReport>(ns, 'flows', opts);
  await p.waitLine(/"ready"/);
  return p;
}

export async function startTcpLoop(ns: Netns, opts: TcpLoopOptions): Promise<ToolProcess<{ conns: TcpConn[] }>> {
  const p = tool<{ conns: TcpConn[] }>(ns, 'tcp-loop', opts);
  await p.waitLine(/"ready"/);
  return p;
}

/** One connection, established and used once; `p.signal('SIGUSR1')` uses it again. */
export async function startTcpHold(ns: Netns, opts: { to: string; port: number; timeoutMs: number; maxMs: number }): Promise<{ p: ToolProcess<TcpHoldReport>; first: TcpConn }> {
  const p = tool<TcpHoldReport>(ns, 'tcp-hold', opts);
  const line = await p.waitLine(/"established"|"first"/);
  const parsed = JSON.parse(line) as { established?: TcpConn; first?: TcpConn };
  const first = parsed.established ?? parsed.first;
  if (!first?.server) throw new Error(`tcp-hold: the first use failed: ${line}`);
  return { p, first };
}

/** Start the perl app directly (not through a driver) in a namespace (on `bind` only, when given). */
export async function startApp(ns: Netns, script: string, port: number, maxSeconds: number, echoEvery = ECHO_EVERY, bind?: string): Promise<ToolProcess<AppReport>> {
  const p = watch<AppReport>(ns.spawn('perl', [script, String(port), String(maxSeconds), String(echoEvery), ...(bind ? [bind] : [])]), `app in ${ns.name}`);
  await p.waitLine(/"ready"/);
  return p;
}

// ------------------------------------------------------------ the CLI --

export interface CliRun extends ToolProcess<unknown> {
  /** Exit code (null when killed) and everything printed. */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Run `routeshift ARGS…` as a child process (stdout a pipe: one line per finished phase). */
export function runCli(args: string[], timeoutMs = 60_000): CliRun {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: CHILD_ENV });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  const w = watch<unknown>(child, `routeshift ${args[0] ?? ''}`);
  return Object.assign(w, { done });
}

/** The JSON a CLI run printed (from its first `{`), or an error showing what it printed instead. */
export function cliJson<T>(what: string, out: { code: number | null; stdout: string; stderr: string }): T {
  try {
    return JSON.parse(out.stdout.slice(out.stdout.indexOf('{'))) as T;
  } catch {
    throw new Error(`${what} printed no JSON (exit ${out.code}): ${out.stdout.slice(0, 2000)} ${out.stderr}`);
  }
}

// ------------------------------------------------------------ the bed --

/** How the netns-process driver runs the app (defaults: APP_PL on `port` in namespaces `<prefix>-{app}A` → `<prefix>-{app}B`). */
export interface DriverOpts {
  port: number;
  command?: string;
  /** null: no readiness probe; default udp:PORT. */
  probe?: ProbeSpec | null;
  srcNetns?: string;
  dstNetns?: string;
}

export interface BedOptions {
  /** Namespace prefix tag (≤ 5 chars); a unique suffix is added. */
  tag: string;
  apps: AppPlacement[];
  hosts?: string[];
  /** Extra agent arguments (e.g. ['--xdp-mode', 'generic']). */
  agentArgs?: string[];
  /** More agent arguments per host (e.g. its own --bird-include). */
  hostAgentArgs?: (host: string) => string[];
  /** Topology options passed through (default: IPv4 only, the plain routed host). */
  topology?: Pick<TopologyOptions, 'ipv6' | 'appLink' | 'prepared' | 'peerXdp' | 'offloads' | 'staticNeighbours'>;
}

/**
 * One topology (client, fabric, hosts, app namespaces), one shared token,
 * a real agent per host, a controller state directory — all removed in
 * teardown, also when the test fails.
 */
export class Bed {
  readonly agents: Record<string, AgentProcess> = {};
  readonly app: string;
  readonly stateDir: string;
  readonly tokenFile: string;
  private readonly clients = new Map<string, HttpAgentClient>();
  private hostAgentArgs: ((host: string) => string[]) | undefined;

  private constructor(
    readonly topo: Topology,
    readonly dir: string,
    private readonly agentArgs: string[],
  ) {
    this.app = join(dir, 'app.pl');
    writeFileSync(this.app, APP_PL);
    this.stateDir = join(dir, 'state');
    this.tokenFile = join(dir, 'token');
    writeFileSync(this.tokenFile, randomBytes(24).toString('hex') + '\n', { mode: 0o600 });
  }

  static async create(t: TestLike, o: BedOptions): Promise<Bed> {
    ensureBpffs();
    const dir = mkdtempSync(join(tmpdir(), `rs-${o.tag}-`));
    let topo: Topology;
    try {
      topo = Topology.create({ prefix: uniquePrefix(o.tag), apps: o.apps, hosts: o.hosts ?? ['A', 'B'], ...o.topology, ipv6: o.topology?.ipv6 ?? false });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const bed = new Bed(topo, dir, o.agentArgs ?? []);
    bed.hostAgentArgs = o.hostAgentArgs;
    t.teardown(() => bed.destroy());
    try {
      for (const h of Object.keys(topo.hosts)) await bed.startAgent(h);
    } catch (err) {
      // Bed.create at a test file's top level: a throw here ends the file before any teardown runs.
      await bed.destroy();
      throw err;
    }
    return bed;
  }

  pinDir(host: string): string {
    return `/sys/fs/bpf/${this.topo.prefix}-${host}`;
  }

  /**
   * Start (or restart) the agent of one host. A restart listens on the
   * port it had before by default, so journals that name its URL stay valid.
   */
  async startAgent(host: string, o: { samePort?: boolean } = {}): Promise<AgentProcess> {
    const old = this.agents[host];
    const listen = old && (o.samePort ?? true) ? new URL(old.url).host : '127.0.0.1:0';
    const a = await AgentProcess.start({
      netns: this.topo.host(host).ns.name,
      pinDir: this.pinDir(host),
      tokenFile: this.tokenFile,
      listen,
      logFile: join(this.dir, `agent-${host}.log`),
      args: [...this.agentArgs, ...(this.hostAgentArgs?.(host) ?? [])],
    });
    this.agents[host] = a;
    this.clients.delete(host);
    return a;
  }

  url(host: string): string {
    const a = this.agents[host];
    if (!a) throw new Error(`no agent for host ${host}`);
    return a.url;
  }

  /** The real HTTP client of one host's agent. */
  client(host: string): AgentApi {
    let c = this.clients.get(host);
    if (!c) {
      c = new HttpAgentClient(this.url(host), { token: readFileSync(this.tokenFile, 'utf8').trim(), timeoutMs: 30_000 });
      this.clients.set(host, c);
    }
    return c;
  }

  /** Connector for the controller library: real HTTP clients with the shared token. */
  readonly connect: AgentConnector = (url) => new HttpAgentClient(url, { token: readFileSync(this.tokenFile, 'utf8').trim(), timeoutMs: 30_000 });

  /** Announce hook that moves the fabric's route to `host` (of an IPv4 app; `6`: of an IPv6 app). */
  announceTo(host: string, family: 4 | 6 = 4): AnnounceSpec {
    const h = this.topo.host(host);
    return { kind: 'netns-route', netns: this.topo.fabric.name, via: [family === 4 ? h.addr4 : h.addr6], dev: h.fabricDev };
  }

  /** The netns-process driver spec running APP_PL on `port` in the app's namespaces ({app}A → {app}B). */
  driverSpec(opts: DriverOpts): Extract<DriverSpec, { kind: 'netns-process' }> {
    const probe = opts.probe === undefined ? { proto: 'udp' as const, port: opts.port } : opts.probe;
    return {
      kind: 'netns-process',
      sourceNetns: opts.srcNetns ?? `${this.topo.prefix}-{app}A`,
      destNetns: opts.dstNetns ?? `${this.topo.prefix}-{app}B`,
      command: opts.command ?? `perl ${this.app} ${opts.port} ${APP_MAX_SECONDS} ${ECHO_EVERY}`,
      ...(probe ? { probe } : {}),
      stateDir: this.stateDir,
      killAfterMs: 1000,
    };
  }

  /** The CLI flags equivalent to driverSpec + announceTo (for `routeshift migrate|drain`). */
  cliFlags(o: DriverOpts & { timing: Timing }): string[] {
    const spec = this.driverSpec(o);
    const ann = this.announceTo('B') as Extract<AnnounceSpec, { kind: 'netns-route' }>;
    return [
      '--token-file', this.tokenFile,
      '--state-dir', this.stateDir,
      '--driver', 'netns-process',
      '--src-netns', spec.sourceNetns,
      '--dst-netns', spec.destNetns,
      '--cmd', spec.command,
      '--probe', `udp:${o.port}`,
      '--announce', 'netns-route',
      '--announce-netns', ann.netns,
      '--announce-via', ann.via.join(','),
      ...(ann.dev ? ['--announce-dev', ann.dev] : []),
      '--ready-timeout-ms', String(o.timing.readyTimeoutMs),
      '--probe-interval-ms', String(o.timing.probeIntervalMs),
      '--stop-grace-ms', String(o.timing.stopGraceMs),
      '--announce-grace-ms', String(o.timing.announceGraceMs),
      '--attempts', String(o.timing.forwardAttempts),
    ];
  }

  /** The driver the controller would build from driverSpec (to start/stop/inspect apps like it does). */
  driver(port: number | DriverOpts): NetnsProcessDriver {
    return new NetnsProcessDriver(this.driverSpec(typeof port === 'number' ? { port } : port));
  }

  /** Register an app's redirect entry (LOCAL) on its host's agent (for its IPv6 address: family 6). */
  async registerLocal(node: AppNode, name = node.name, family: 4 | 6 = 4): Promise<App> {
    return this.client(node.host).putApp(name, { address: family === 4 ? node.addr4 : node.addr6, dev: node.hostDev, action: { type: 'local' } });
  }

  /** Where the fabric routes an address now (the next hop), or undefined. */
  fabricRoute(addr: string): string | undefined {
    const v6 = addr.includes(':');
    const [r] = JSON.parse(this.topo.fabric.ip(v6 ? '-6' : '-4', '-j', 'route', 'show', `${addr}/${v6 ? 128 : 32}`)) as { gateway?: string }[];
    return r?.gateway;
  }

  async destroy(): Promise<void> {
    killTracked();
    // Wait for the agents to be gone before their log directory is removed.
    await Promise.all(Object.values(this.agents).map((a) => a.stop('SIGKILL', 2000).catch(() => undefined)));
    // Apps the netns-process driver started (recorded under the state dir): stop exactly those PIDs.
    killRecordedApps(this.stateDir);
    this.topo.destroy();
    for (const h of Object.keys(this.topo.hosts)) {
      rmSync(this.pinDir(h), { recursive: true, force: true });
      rmSync(leaseNoteFile(this.pinDir(h)), { force: true }); // an agent killed while it granted leases leaves its restart note
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}


// ---------------------------------------------------------- diagnosis --

/**
 * When packets went missing: where were they dropped? Agent drop counters
 * and entries, UDP socket errors in the app namespaces, veth drop counters.
 */
export async function diagnose(bed: Bed, t: TestLike, apps: AppNode[]): Promise<void> {
  for (const h of Object.keys(bed.agents)) {
    try {
      const st = (await bed.agents[h]?.request('GET', '/status'))?.json as { drops?: unknown } | undefined;
      const apps = await bed.client(h).listApps();
      const dels = await bed.client(h).listDeliveries();
      t.comment(`agent ${h}: drops ${JSON.stringify(st?.drops)}; apps ${JSON.stringify(apps.map((a) => [a.name, a.action.type, a.counters]))}; deliveries ${JSON.stringify(dels.map((d) => [d.name, d.counters]))}`);
    } catch (err) {
      t.comment(`agent ${h}: ${(err as Error).message}`);
    }
  }
  try {
    const c = bed.topo.client.ns;
    t.comment(`client: ${c.exec('nstat', '-az', 'UdpInDatagrams', 'UdpRcvbufErrors', 'UdpInErrors', 'UdpNoPorts', 'UdpSndbufErrors').replace(/\s+/g, ' ')}`);
    t.comment(`client eth0: ${c.exec('ethtool', '-S', 'eth0').split('\n').filter((l) => /drop|xdp/.test(l) && !/: 0$/.test(l)).join(' ').replace(/\s+/g, ' ')}`);
    t.comment(`fabric cl: ${bed.topo.fabric.exec('ethtool', '-S', 'cl').split('\n').filter((l) => /drop|xdp/.test(l) && !/: 0$/.test(l)).join(' ').replace(/\s+/g, ' ')}`);
    t.comment(`softnet_stat (processed dropped squeezed per cpu): ${readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n').map((l) => l.split(' ').slice(0, 3).map((x) => parseInt(x, 16)).join('/')).join(' ')}`);
  } catch (err) {
    t.comment(`client: ${(err as Error).message}`);
  }
  for (const a of apps) {
    try {
      t.comment(`${a.ns.name}: ${a.ns.exec('nstat', '-az', 'UdpInDatagrams', 'UdpRcvbufErrors', 'UdpInErrors', 'UdpNoPorts', 'UdpSndbufErrors').replace(/\s+/g, ' ')}`);
      const h = bed.topo.host(a.host);
      const stats = h.ns.exec('ethtool', '-S', a.hostDev).split('\n').filter((l) => /drop|xdp/.test(l) && !/: 0$/.test(l));
      t.comment(`${h.ns.name} ${a.hostDev}: ${stats.join(' ').replace(/\s+/g, ' ')}`);
    } catch (err) {
      t.comment(`${a.ns.name}: ${(err as Error).message}`);
    }
  }
}

// ------------------------------------------------- state of one app ---

/** Everything that says where an app lives, read from the real agents, the fabric and the driver. */
export interface Placement {
  source: App | undefined;
  sourceDelivery: Delivery | undefined;
  dest: App | undefined;
  destDelivery: Delivery | undefined;
  route: string | undefined;
  runningOnSource: boolean;
  runningOnDest: boolean;
}

export function workloadApp(name: string, addr: string): WorkloadApp {
  return { name, address: addr, proto: 'any', port: 0, migrationId: 'test' };
}

export const SOURCE: WorkloadHost = { role: 'source', agentUrl: 'source', index: 0 };
export const DEST: WorkloadHost = { role: 'destination', agentUrl: 'dest', index: 0 };

export async function placement(bed: Bed, name: string, addr: string, port: number, from = 'A', to = 'B'): Promise<Placement> {
  const d = bed.driver(port);
  const wa = workloadApp(name, addr);
  const [source, dest, srcDel, dstDel] = await Promise.all([
    bed.client(from).getApp(name),
    bed.client(to).getApp(name),
    bed.client(from).listDeliveries(),
    bed.client(to).listDeliveries(),
  ]);
  return {
    source,
    sourceDelivery: srcDel.find((x) => x.name === name),
    dest,
    destDelivery: dstDel.find((x) => x.name === name),
    route: bed.fabricRoute(addr),
    runningOnSource: d.running(wa, SOURCE) !== undefined,
    runningOnDest: d.running(wa, DEST) !== undefined,
  };
}

/** Human summary of a placement, for test messages. */
export function describePlacement(p: Placement): string {
  const act = (a: App | undefined): string => (!a ? 'none' : a.action.type === 'local' ? 'LOCAL' : `FORWARD(${a.action.tunnel})`);
  return `A: ${act(p.source)}${p.sourceDelivery ? ' + delivery' : ''}; B: ${act(p.dest)}${p.destDelivery ? ' + delivery' : ''}; fabric route via ${p.route ?? 'none'}`;
}

// ------------------------------------------------- app x, A → B -----

export interface StreamResult<T> {
  value: T;
  flows: FlowsReport;
  flow: FlowReport;
  onA: AppReport | undefined;
  onB: AppReport | undefined;
  x: Accounting;
}

const noteCtx = { log: (): void => undefined };

/**
 * App x of MIGRATION_APPS, moved from A to B: put it back on A between
 * scenarios, run a stream through a scenario, and check which of the two
 * consistent end states (moved, or rolled back) the real system is in.
 */
export class XHarness {
  readonly xA: AppNode;
  readonly xB: AppNode;
  readonly X: WorkloadApp;
  readonly driver: NetnsProcessDriver;

  constructor(
    readonly bed: Bed,
    readonly port: number,
  ) {
    this.xA = bed.topo.app('x', 'A');
    this.xB = bed.topo.app('x', 'B');
    this.X = workloadApp('x', this.xA.addr4);
    this.driver = bed.driver(port);
  }

  /** The log the netns-process driver writes X's output to, on A or B. */
  log(host: 'A' | 'B'): string {
    return join(this.bed.stateDir, 'workload', `${(host === 'A' ? this.xA : this.xB).ns.name}--x.log`);
  }

  /**
   * X lives on A: LOCAL entry, the app running there (started through the
   * driver, so that STOP stops it), the fabric's route via A; nothing on B.
   * Returns A's entry.
   */
  async reset(): Promise<App> {
    await this.driver.stop(this.X, DEST, noteCtx);
    await this.driver.stop(this.X, SOURCE, noteCtx);
    for (const h of ['A', 'B'] as const) rmSync(this.log(h), { force: true });
    const b = this.bed.client('B');
    await b.deleteApp('x');
    await b.deleteDelivery('x');
    this.bed.topo.announce('x', 'A');
    const entry = await this.bed.registerLocal(this.xA);
    await this.driver.start(this.X, SOURCE, noteCtx);
    await waitForFile(this.log('A'), /"ready"/);
    return entry;
  }

  /**
   * A 20k pps (default) stream to X from before `during` starts to after it
   * ends; then X is stopped wherever it runs so that both copies report what
   * they received, and loss is accounted over their union.
   */
  async stream<T>(during: () => Promise<T>, o: { rate?: number; leadMs?: number; tailMs?: number } = {}): Promise<StreamResult<T>> {
    const flows = await startFlows(this.bed.topo.client.ns, {
      flows: [{ to: this.xA.addr4, port: this.port, rate: o.rate ?? 20_000, echoEvery: ECHO_EVERY }],
      maxMs: 90_000,
      echoWaitMs: 300,
    });
    let value: T;
    try {
      await sleep(o.leadMs ?? 300);
      value = await during();
      await sleep(o.tailMs ?? 300);
    } finally {
      flows.signal();
    }
    const report = await flows.report;
    await sleep(100);
    await this.driver.stop(this.X, SOURCE, noteCtx);
    await this.driver.stop(this.X, DEST, noteCtx);
    const onA = lastAppReport(this.log('A'));
    const onB = lastAppReport(this.log('B'));
    const flow = report.flows[0];
    if (!flow) throw new Error('no flow report');
    return { value, flows: report, flow, onA, onB, x: account(flow.sent, [onA, onB]) };
  }

  async placement(): Promise<Placement> {
    return placement(this.bed, 'x', this.xA.addr4, this.port);
  }

  /** The state after a completed migration (read after stream(), which stops the apps: so "ran" comes from the reports). */
  checkMoved(t: TestLike & Asserts, p: Placement): void {
    const d = describePlacement(p);
    t.equal(p.source, undefined, `A has no entry for x (${d})`);
    t.equal(p.sourceDelivery, undefined, 'A has no delivery for x');
    t.equal(p.dest?.action.type, 'local', 'B has x LOCAL');
    t.equal(p.dest?.dev, this.xB.hostDev, "…on x's veth on B");
    t.equal(p.destDelivery, undefined, 'B has no delivery left for x');
    t.equal(p.route, this.bed.topo.host('B').addr4, 'the fabric routes x to B');
  }

  /** The state after a rollback: A's entry exactly as it was, nothing on B, route via A. */
  checkRolledBack(t: TestLike & Asserts, p: Placement, original: App): void {
    const d = describePlacement(p);
    // The generation moves when SWITCH is undone (two writes): the entry is the same, its write count is not.
    const strip = (a: App | undefined): Omit<App, 'counters' | 'generation'> | undefined => {
      if (!a) return undefined;
      const { counters: _c, generation: _g, ...rest } = a;
      return rest;
    };
    t.same(strip(p.source), strip(original), `A's entry for x is back exactly as it was: LOCAL (${d})`);
    t.equal(p.dest, undefined, 'B has no entry for x');
    t.equal(p.destDelivery, undefined, 'B has no delivery for x');
    t.equal(p.route, this.bed.topo.host('A').addr4, 'the fabric still routes x to A');
  }
}

/** The assertions the helpers use (structural, so this module need not import tap). */
export interface Asserts {
  equal(found: unknown, wanted: unknown, message: string): boolean;
  same(found: unknown, wanted: unknown, message: string): boolean;
  ok(v: unknown, message: string): boolean;
}

/** Wait (bounded) until a file exists and matches: e.g. an app's ready line in its log. */
export async function waitForFile(path: string, re: RegExp, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (existsSync(path) && re.test(readFileSync(path, 'utf8'))) return;
    await sleep(20);
  }
  throw new Error(`${path}: nothing matching ${re} within ${timeoutMs} ms`);
}

/** One-line summary of a stream's accounting for test comments. */
export function describeStream(r: StreamResult<unknown>): string {
  const f = r.flow;
  const secs = (r.flows.stopAtMs - r.flows.startAtMs) / 1000;
  return (
    `sent ${f.sent} (${Math.round(f.sent / secs)} pps), received on A ${r.x.perApp[0]}, on B ${r.x.perApp[1]}, ` +
    `lost ${r.x.lost}, duplicated ${r.x.duplicated}, client-side max echo gap ${f.echo.maxGapMs.toFixed(1)} ms` +
    (r.x.missing.length ? `; missing ${JSON.stringify(r.x.missing)}` : '')
  );
}

// --------------------------------------------------------------- main --

function main(): void {
  const [mode, json] = process.argv.slice(2);
  const opts = JSON.parse(json ?? '{}') as never;
  switch (mode) {
    case 'flows':
      return flowsMain(opts);
    case 'tcp-loop':
      void tcpLoopMain(opts);
      return;
    case 'tcp-hold':
      return tcpHoldMain(opts);
    default:
      process.stderr.write('usage: e2e.js flows|tcp-loop|tcp-hold JSON\n');
      process.exit(2);
  }
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) main();
