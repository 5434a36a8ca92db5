/**
 * The child side of test/lib/tcp-sessions.ts: run as a process in the
 * client namespace. It imports nothing but Node's own modules, so a
 * rebuild of dist/ while a test runs cannot break it half-way.
 */
import { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import type { SessionOptions, SessionReport, SessionsReport } from './tcp-sessions.js';


function sessionsMain(o: SessionOptions): void {
  const t0 = Date.now();
  let closing = false;
  let mark = Infinity;
  const reports: SessionReport[] = [];
  const sockets: Socket[] = [];
  const finish = (): void => {
    process.stdout.write(JSON.stringify({ sessions: reports, closeAtMs: closeAt } satisfies SessionsReport) + '\n', () => process.exit(0));
  };
  let closeAt = 0;
  const close = (): void => {
    if (closing) return;
    closing = true;
    closeAt = Date.now();
    let open = 0;
    sockets.forEach((s, i) => {
      const r = reports[i];
      if (!r || r.closedMs !== undefined) return;
      open++;
      s.end(); // FIN: the server closes its side in answer
    });
    if (!open) finish();
    setTimeout(finish, 5000); // bounded: a peer that never closes still lets us report
  };
  setTimeout(close, o.maxMs);
  process.on('SIGUSR2', close);
  process.on('SIGTERM', close);
  process.on('SIGUSR1', () => (mark = Date.now())); // "count requests from now on"
  let ready = 0;
  for (let i = 0; i < o.conns; i++) {
    const r: SessionReport = { i, sport: 0, openedMs: 0, requests: 0, answers: 0, servers: {}, bytesSent: 0, bytesReceived: 0, bytesAnswered: 0, requestsAfter: 0 };
    reports.push(r);
    const s = new Socket();
    sockets.push(s);
    s.setNoDelay(true);
    let buf = '';
    let timer: NodeJS.Timeout | undefined;
    let pending = false;
    const fail = (why: string): void => {
      if (r.error === undefined) {
        r.error = why;
        r.errorAtMs = Date.now();
      }
      clearTimeout(timer);
      s.destroy();
    };
    const ask = (): void => {
      if (closing || r.error !== undefined) return;
      const line = `q${r.requests}\n`;
      r.requests++;
      if (Date.now() >= mark) r.requestsAfter++;
      r.bytesSent += line.length;
      pending = true;
      s.write(line);
      timer = setTimeout(() => fail('TIMEOUT'), o.timeoutMs);
    };
    s.on('connect', () => {
      r.openedMs = Date.now();
      r.sport = s.localPort ?? 0;
      ask();
    });
    s.on('data', (d: Buffer) => {
      r.bytesReceived += d.length;
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const server = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        r.bytesAnswered += nl + 1;
        r.servers[server] = (r.servers[server] ?? 0) + 1;
        r.answers++;
        if (!pending) continue; // an answer nobody asked for: counted, and answers > requests shows it
        pending = false;
        clearTimeout(timer);
        if (r.answers === 1 && ++ready === o.conns) process.stdout.write(JSON.stringify({ ready: true, inMs: Date.now() - t0 }) + '\n');
        setTimeout(ask, o.intervalMs);
      }
    });
    s.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    s.on('close', () => {
      r.closedMs = Date.now();
      clearTimeout(timer);
      if (!closing && r.error === undefined) r.error = 'CLOSED';
      if (closing && reports.every((x) => x.closedMs !== undefined)) finish();
    });
    s.connect({ host: o.to, port: o.port });
  }
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  sessionsMain(JSON.parse(process.argv[2] ?? '{}') as SessionOptions);
}
