/**
 * The HTTP agent client against a real local HTTP server: bearer token,
 * 404 handling, and the three error classes (unreachable / refused /
 * failed), each message naming the agent, the request, the status and the
 * agent's own error text.
 */
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AgentFailedError,
  AgentProtocolError,
  AgentRefusedError,
  AgentUnreachableError,
  HttpAgentClient,
  normaliseAgentUrl,
} from '../src/controller/agent-client.js';

const seen: { method: string; url: string; auth?: string; body: string }[] = [];
const server = createServer((req: IncomingMessage, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('end', () => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), body });
    const send = (status: number, obj?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(obj === undefined ? '' : JSON.stringify(obj));
    };
    if (req.headers.authorization !== 'Bearer s3cret' && req.url !== '/healthz') return send(401, { error: 'missing or wrong token' });
    if (req.url === '/healthz') return send(200, { ok: true });
    if (req.url === '/v1/apps/x' && req.method === 'GET') return send(200, { name: 'x', address: '10.0.0.1', action: { type: 'local' } });
    if (req.url === '/v1/apps/nope') return send(404, { error: 'no app nope' });
    if (req.url === '/v1/apps/x/action') return send(200, { name: 'x', address: '10.0.0.1', action: JSON.parse(body) });
    if (req.url === '/v1/apps/dup') return send(409, { error: '10.0.0.1 any/0 already claimed by app x', field: 'address' });
    if (req.url === '/v1/batch') return send(500, { error: 'kernel refused: ENOSPC' });
    if (req.url === '/v1/apps') return send(200, { wrong: true });
    if (req.url === '/slow') return;
    send(404, { error: 'unknown path' });
  });
});

t.before(() => new Promise<void>((r) => server.listen(0, '127.0.0.1', r)));
t.teardown(() => new Promise<void>((r) => server.close(() => r())));
const url = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

t.test('sends the bearer token and JSON; answers are typed', async (t) => {
  const c = new HttpAgentClient(url(), { token: 's3cret' });
  t.equal(await c.health(), true);
  t.match(await c.getApp('x'), { name: 'x', action: { type: 'local' } });
  const app = await c.setAction('x', { type: 'forward', tunnel: '192.0.2.2' });
  t.same(app.action, { type: 'forward', tunnel: '192.0.2.2' });
  const post = seen.find((s) => s.url === '/v1/apps/x/action');
  t.equal(post?.auth, 'Bearer s3cret');
  t.same(JSON.parse(post?.body ?? ''), { type: 'forward', tunnel: '192.0.2.2' });
  t.equal(await c.getApp('nope'), undefined, '404 on a read is "absent", not an error');
  t.equal(await c.deleteApp('nope'), false, '404 on a delete is "nothing to delete"');
});

t.test('4xx → AgentRefusedError naming agent, request, status, agent error and field', async (t) => {
  const c = new HttpAgentClient(url(), { token: 's3cret' });
  const err = await c.putApp('dup', { address: '10.0.0.1', dev: 'v' }).catch((e: unknown) => e);
  t.ok(err instanceof AgentRefusedError);
  t.equal((err as AgentRefusedError).status, 409);
  t.equal((err as Error).message, `agent ${url()}: PUT /v1/apps/dup → HTTP 409: 10.0.0.1 any/0 already claimed by app x (field address)`);
  const unauth = await new HttpAgentClient(url()).listApps().catch((e: unknown) => e);
  t.ok(unauth instanceof AgentRefusedError);
  t.match((unauth as Error).message, /HTTP 401: missing or wrong token/);
});

t.test('5xx → AgentFailedError', async (t) => {
  const c = new HttpAgentClient(url(), { token: 's3cret' });
  const err = await c.batch([{ op: 'delete-app', name: 'x' }]).catch((e: unknown) => e);
  t.ok(err instanceof AgentFailedError);
  t.match((err as Error).message, /POST \/v1\/batch → HTTP 500: kernel refused: ENOSPC/);
});

t.test('no answer → AgentUnreachableError (refused connection, timeout)', async (t) => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const err = await new HttpAgentClient(`127.0.0.1:${port}`, { token: 's3cret' }).status().catch((e: unknown) => e);
  t.ok(err instanceof AgentUnreachableError);
  t.match((err as Error).message, new RegExp(`agent http://127.0.0.1:${port} unreachable: GET /status: ECONNREFUSED`));
  t.equal(await new HttpAgentClient(`127.0.0.1:${port}`).health(), false);

  const slow = new HttpAgentClient(url(), { token: 's3cret', timeoutMs: 150 });
  const t0 = Date.now();
  const err2 = await (slow as unknown as { request: (m: string, p: string) => Promise<unknown> }).request('GET', '/slow').catch((e: unknown) => e);
  t.ok(err2 instanceof AgentUnreachableError);
  t.match((err2 as Error).message, /no answer within 150 ms/);
  t.ok(Date.now() - t0 < 2000);
});

t.test('an answer that is not the documented shape → AgentProtocolError', async (t) => {
  const err = await new HttpAgentClient(url(), { token: 's3cret' }).listApps().catch((e: unknown) => e);
  t.ok(err instanceof AgentProtocolError);
  t.match((err as Error).message, /GET \/v1\/apps answered without "apps"/);
});

t.test('names and URLs are checked before any request', async (t) => {
  const c = new HttpAgentClient(url(), { token: 's3cret' });
  await t.rejects(c.getApp('../etc'), /invalid name/);
  t.equal(normaliseAgentUrl('10.0.0.1:7000'), 'http://10.0.0.1:7000');
  t.equal(normaliseAgentUrl('https://h:1/'), 'https://h:1');
  t.throws(() => normaliseAgentUrl('ftp://h'), /must be http/);
});
