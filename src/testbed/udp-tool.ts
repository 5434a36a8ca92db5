/**
 * A bounded, sequence-numbered UDP sender and receiver, run as a child
 * process inside a network namespace by src/testbed/traffic.ts:
 *
 *   node udp-tool.js recv '{"port":9000,"family":4,"echo":false,"expect":1000,"idleMs":1000,"maxMs":10000}'
 *   node udp-tool.js send '{"to":"10.200.0.10","port":9000,"rate":1000,"count":1000,"maxMs":10000}'
 *
 * The receiver prints {"ready":true} once bound, then one JSON report line
 * when it ends (expected count reached, idle after the first packet, the
 * time cap, or SIGTERM). The sender prints one JSON report line. Both exit
 * 0 after reporting. Every loop is bounded by count and time.
 *
 * Payload: "RSEQ" | u32 seq | u64 send time (ns since the epoch) | padding.
 */
import { createSocket, type Socket } from 'node:dgram';
import { writeFileSync } from 'node:fs';

const MAGIC = 0x52534551; // "RSEQ"
const HEADER = 16;

export interface Gap {
  /** Sequence number received after the gap. */
  seq: number;
  /** Wall-clock time (ms since the epoch) the packet after the gap arrived. */
  atMs: number;
  gapMs: number;
}

export interface SeqReport {
  received: number;
  unique: number;
  duplicates: number;
  /** Expected (given, or highest seq + 1) minus unique. */
  lost: number;
  /** Packets that arrived with a lower seq than one already seen. */
  reordered: number;
  /** Largest gap between two consecutive arrivals, ms (0 with < 2 packets). */
  maxGapMs: number;
  /** The largest gaps, biggest first (at most 10). */
  gaps: Gap[];
  firstAtMs: number | null;
  lastAtMs: number | null;
  /** Mean one-way latency from the embedded send time, ms (same host clock). */
  meanLatencyMs: number | null;
  highestSeq: number;
  /** Why the receiver stopped. */
  ended?: 'expected' | 'idle' | 'maxMs' | 'signal';
}

const nowMs = (): number => performance.timeOrigin + performance.now();

/** Records sequence numbers and arrival times; shared by receiver and echo collector. */
export class SeqStats {
  #seen = new Uint8Array(1024);
  received = 0;
  unique = 0;
  duplicates = 0;
  reordered = 0;
  highest = -1;
  #last: number | null = null;
  first: number | null = null;
  #gaps: Gap[] = [];
  #latSum = 0;

  add(seq: number, sentNs: bigint, at = nowMs()): void {
    this.received++;
    if (seq >= this.#seen.length) {
      let n = this.#seen.length;
      while (n <= seq) n *= 2;
      const grown = new Uint8Array(n);
      grown.set(this.#seen);
      this.#seen = grown;
    }
    if (this.#seen[seq]) this.duplicates++;
    else {
      this.#seen[seq] = 1;
      this.unique++;
    }
    if (seq < this.highest) this.reordered++;
    else this.highest = seq;
    if (this.#last !== null) {
      const gap = at - this.#last;
      if (this.#gaps.length < 10 || gap > this.#gaps[this.#gaps.length - 1]!.gapMs) {
        this.#gaps.push({ seq, atMs: at, gapMs: gap });
        this.#gaps.sort((a, b) => b.gapMs - a.gapMs);
        if (this.#gaps.length > 10) this.#gaps.pop();
      }
    } else {
      this.first = at;
    }
    this.#last = at;
    this.#latSum += at - Number(sentNs) / 1e6;
  }

  /** One byte per sequence number up to the highest seen: 1 = received. */
  seen(): Uint8Array {
    return this.#seen.subarray(0, this.highest + 1);
  }

  report(expected?: number): SeqReport {
    const want = expected ?? this.highest + 1;
    return {
      received: this.received,
      unique: this.unique,
      duplicates: this.duplicates,
      lost: Math.max(0, want - this.unique),
      reordered: this.reordered,
      maxGapMs: this.#gaps[0]?.gapMs ?? 0,
      gaps: this.#gaps,
      firstAtMs: this.first,
      lastAtMs: this.#last,
      meanLatencyMs: this.received ? this.#latSum / this.received : null,
      highestSeq: this.highest,
    };
  }
}

export function parsePayload(buf: Buffer): { seq: number; sentNs: bigint } | null {
  if (buf.length < HEADER || buf.readUInt32BE(0) !== MAGIC) return null;
  return { seq: buf.readUInt32BE(4), sentNs: buf.readBigUInt64BE(8) };
}

export function makePayload(seq: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(HEADER, size));
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(seq, 4);
  b.writeBigUInt64BE(BigInt(Math.round(nowMs() * 1e6)), 8);
  return b;
}

// ------------------------------------------------------------- receiver --

export interface RecvOptions {
  port: number;
  family?: 4 | 6;
  bind?: string;
  /** Send every packet back to its sender. */
  echo?: boolean;
  /** Stop after this many unique packets. */
  expect?: number;
  /** Stop this long after the last packet (once one arrived). */
  idleMs?: number;
  /** Hard cap on the receiver's life. */
  maxMs: number;
  /** Socket receive buffer to ask for (capped by net.core.rmem_max); default 4 MiB. */
  rcvbuf?: number;
  /**
   * Write the received sequence numbers here on exit (one byte per seq), so
   * loss can be counted over the union of several receivers (an app on its
   * old and its new host).
   */
  seqFile?: string;
}

function recv(o: RecvOptions): void {
  const sock = createSocket({ type: o.family === 6 ? 'udp6' : 'udp4', reuseAddr: true });
  const stats = new SeqStats();
  let done = false;
  let idle: NodeJS.Timeout | undefined;
  const finish = (ended: SeqReport['ended']): void => {
    if (done) return;
    done = true;
    clearTimeout(cap);
    clearTimeout(idle);
    if (o.seqFile) writeFileSync(o.seqFile, stats.seen());
    process.stdout.write(JSON.stringify({ ...stats.report(o.expect), ended }) + '\n', () => {
      sock.close();
      process.exit(0);
    });
  };
  const cap = setTimeout(() => finish('maxMs'), o.maxMs);
  process.once('SIGTERM', () => finish('signal'));
  process.once('SIGINT', () => finish('signal'));
  sock.on('message', (msg, rinfo) => {
    const p = parsePayload(msg);
    if (done) return;
    if (!p) {
      // Not part of a stream (a health probe): answer it, count nothing.
      if (o.echo) sock.send(msg, rinfo.port, rinfo.address);
      return;
    }
    stats.add(p.seq, p.sentNs);
    if (o.echo) sock.send(msg, rinfo.port, rinfo.address);
    if (o.expect !== undefined && stats.unique >= o.expect) return finish('expected');
    if (o.idleMs) {
      clearTimeout(idle);
      idle = setTimeout(() => finish('idle'), o.idleMs);
    }
  });
  sock.on('error', (err) => {
    process.stderr.write(`udp-tool recv: ${err.message}\n`);
    process.exit(1);
  });
  sock.bind(o.port, o.bind ?? (o.family === 6 ? '::' : '0.0.0.0'), () => {
    // A receiver starved of CPU (parallel tests on 2 cores) must not lose
    // packets to a full socket buffer: the default (rmem_default, ~208 KB)
    // holds only ~50 frames that came through XDP (page-sized truesize).
    // Asked for rcvbuf, the kernel caps it at net.core.rmem_max.
    try {
      sock.setRecvBufferSize(o.rcvbuf ?? 4 * 1024 * 1024);
    } catch {
      /* keep the default */
    }
    process.stdout.write(JSON.stringify({ ready: true, rcvbuf: sock.getRecvBufferSize() }) + '\n');
  });
}

// --------------------------------------------------------------- sender --

export interface SendOptions {
  to: string;
  port: number;
  /** Packets per second. */
  rate: number;
  count: number;
  /** Hard cap on sending time; the report says how many were sent. */
  maxMs: number;
  /** UDP payload bytes (≥ 16). */
  size?: number;
  /** Wait this long after the last packet for echoes (receiver in echo mode). */
  echoWaitMs?: number;
}

export interface SendReport {
  sent: number;
  errors: number;
  durationMs: number;
  /** Achieved send rate. */
  ratePps: number;
  /** Replies, when echoWaitMs was given. */
  echo?: SeqReport;
  /** Wall-clock start, ms since the epoch. */
  startAtMs: number;
}

function send(o: SendOptions): void {
  const family = o.to.includes(':') ? 'udp6' : 'udp4';
  const sock: Socket = createSocket(family);
  const echo = o.echoWaitMs !== undefined ? new SeqStats() : undefined;
  let sent = 0;
  let errors = 0;
  let inFlight = 0;
  const start = nowMs();
  const deadline = start + o.maxMs;
  if (echo) {
    sock.on('message', (msg) => {
      const p = parsePayload(msg);
      if (p) echo.add(p.seq, p.sentNs);
    });
  }
  sock.on('error', () => errors++);
  const end = (): void => {
    const durationMs = nowMs() - start;
    const report: SendReport = {
      sent,
      errors,
      durationMs,
      ratePps: durationMs > 0 ? (sent * 1000) / durationMs : 0,
      startAtMs: start,
      ...(echo ? { echo: echo.report(sent) } : {}),
    };
    process.stdout.write(JSON.stringify(report) + '\n', () => {
      sock.close();
      process.exit(0);
    });
  };
  const tick = (): void => {
    const now = nowMs();
    if (sent >= o.count || now >= deadline) {
      const wait = (): void => {
        if (inFlight > 0 && nowMs() < deadline + 1000) return void setTimeout(wait, 1);
        setTimeout(end, echo ? (o.echoWaitMs ?? 0) : 0);
      };
      return wait();
    }
    const due = Math.min(o.count, Math.floor(((now - start) * o.rate) / 1000) + 1);
    let burst = 0;
    while (sent < due && burst < 256) {
      inFlight++;
      sock.send(makePayload(sent, o.size ?? 64), o.port, o.to, (err) => {
        inFlight--;
        if (err) errors++;
      });
      sent++;
      burst++;
    }
    // Behind (the burst cap stopped us): catch up at once. Otherwise sleep until
    // the next packet is due, at least 1 ms: at 20k pps that sends bursts of
    // ~20 per millisecond instead of spinning a core (this machine has two).
    if (sent < due) return void setImmediate(tick);
    const next = start + (sent * 1000) / o.rate - nowMs();
    setTimeout(tick, Math.min(Math.max(next, 1), 50));
  };
  sock.bind(0, () => {
    // Echoes arrive while the event loop is busy sending: give them room (capped by rmem_max).
    if (echo) {
      try {
        sock.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        /* keep the default */
      }
    }
    tick();
  });
}

// ----------------------------------------------------------------- main --

function main(): void {
  const [mode, json] = process.argv.slice(2);
  let opts: unknown;
  try {
    opts = JSON.parse(json ?? '');
  } catch {
    process.stderr.write('usage: udp-tool.js recv|send JSON-OPTIONS\n');
    process.exit(2);
  }
  if (mode === 'recv') recv(opts as RecvOptions);
  else if (mode === 'send') send(opts as SendOptions);
  else {
    process.stderr.write('usage: udp-tool.js recv|send JSON-OPTIONS\n');
    process.exit(2);
  }
}

// run only as a script, not when imported for its types and SeqStats
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) main();
