/**
 * The client's transport against a raw TCP server that misbehaves on
 * purpose: a kept-alive connection the agent closed as it was reused (sent
 * again on a fresh connection when the method is idempotent, never for
 * POST), and an answer cut off mid-body.
 */
import t from 'tap';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { AgentUnreachableError, HttpAgentClient } from '../src/controller/agent-client.js';

/** Each connection answers its first request, then drops the connection when the second arrives. */
let connections = 0;
let mode: 'drop-second' | 'cut-body' = 'drop-second';
const open = new Set<Socket>();
const server = createServer((socket: Socket) => {
  connections++;
  open.add(socket);
  socket.on('close', () => open.delete(socket));
  let requests = 0;
  let buffered = '';
  socket.on('data', (d: Buffer) => {
    buffered += d.toString();
    while (buffered.includes('\r\n\r\n')) {
      const end = buffered.indexOf('\r\n\r\n') + 4;
      const head = buffered.slice(0, end);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buffered.length < end + length) return;
      buffered = buffered.slice(end + length);
      requests++;
      if (mode === 'cut-body') {
        socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"ok":');
        socket.destroy();
        return;
      }
      if (requests >= 2) {
        socket.destroy();
        return;
      }
      const body = JSON.stringify({ apps: [], uplink: 'eth0', tunnel: {}, applied: 0 });
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    }
  });
});
t.before(() => new Promise<void>((r) => server.listen(0, '127.0.0.1', r)));
t.teardown(
  () =>
    new Promise<void>((r) => {
      // The clients' idle kept-alive connections would hold a net.Server's close forever.
      for (const s of open) s.destroy();
      server.close(() => r());
    }),
);
const url = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

t.test('a reused connection the agent closed: GET is sent again on a new one, POST is not', async (t) => {
  mode = 'drop-second';
  const c = new HttpAgentClient(url(), { token: 'tok' });
  const before = connections;
  await c.status();
  await c.status();
  t.equal(connections - before, 2, 'the second GET found its kept-alive connection closed and was sent on a fresh one');

  const p = new HttpAgentClient(url(), { token: 'tok' });
  await p.status();
  const err = await p.batch([]).catch((e: unknown) => e);
  t.ok(err instanceof AgentUnreachableError, 'a POST is never sent twice: the caller reads the state back');
  t.match((err as Error).message, /unreachable: POST \/v1\/batch: (ECONNRESET|EPIPE|socket hang up)/);
});

t.test('an answer cut off mid-body says so', async (t) => {
  mode = 'cut-body';
  const err = await new HttpAgentClient(url(), { token: 'tok' }).status().catch((e: unknown) => e);
  t.ok(err instanceof AgentUnreachableError);
  t.match((err as Error).message, /GET \/status: answer cut off: /);
});
