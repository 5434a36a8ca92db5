/**
 * The agent's HTTP API (docs/agent-api.md) on fastify: bearer-token auth,
 * JSON in and out, every write through the one EntryStore path.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { StatusView } from '../model/entry.js';
import { isApiError } from '../model/errors.js';
import type { EntryStore, OpList } from './store.js';
import { batchOps, parseAction, parseAppBody, parseBatchOp, parseDeliveryBody, parseName, parsePageQuery } from '../model/entry.js';
import { RELEASE_AFTER_OPS, scheduleRelease } from './memory.js';
import type { AgentMetrics } from './metrics.js';
import { bearerMatches } from './token.js';

export interface ServerOptions {
  store: EntryStore;
  metrics: AgentMetrics;
  status: () => StatusView;
  /** undefined only with --insecure (loopback). */
  token: string | undefined;
  logger: Logger;
  tls?: { key: Buffer; cert: Buffer };
}

type NameParams = { Params: { name: string } };

/** How long a request (headers and body) may take: a slow sender cannot hold a connection open. */
export const REQUEST_TIMEOUT_MS = 60_000;
export const HEADERS_TIMEOUT_MS = 10_000;
/** Connections served at once; more are refused by the kernel's accept queue. */
export const MAX_CONNECTIONS = 256;
/** Longest error text the API answers with (it never echoes a whole megabyte field back). */
const MAX_ERROR_CHARS = 1024;

/** A request body this large is worth handing memory back for, whatever became of it. */
const LARGE_BODY_BYTES = 4 * 1024 * 1024;

const errorText = (s: string): string => (s.length <= MAX_ERROR_CHARS ? s : `${s.slice(0, MAX_ERROR_CHARS)}… (cut)`);

/** The documented shape for what Node's HTTP parser refuses before fastify sees a request (431, 400, 414). */
function clientErrorBody(code: number, reason: string): string {
  const body = JSON.stringify({ error: reason });
  return `HTTP/1.1 ${code} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false, // the agent logs entry changes and failures itself
    bodyLimit: 64 * 1024 * 1024, // a drain batch of 100k ops is ~15 MB
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 10_000,
    maxParamLength: 256, // a name is at most 48 bytes; longer ones get a 400 from the name rule, not a 414
    ...(opts.tls ? { https: opts.tls } : {}),
    clientErrorHandler: (err: NodeJS.ErrnoException & { code?: string }, socket) => {
      if (!socket.writable) return socket.destroy();
      const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const reason = code === 431 ? 'Request Header Fields Too Large' : code === 408 ? 'Request Timeout' : 'Bad Request';
      socket.end(clientErrorBody(code, reason));
    },
  });
  app.server.maxConnections = MAX_CONNECTIONS;
  app.server.headersTimeout = HEADERS_TIMEOUT_MS;

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.url === '/healthz' || opts.token === undefined) return;
    if (!bearerMatches(req.headers.authorization, opts.token)) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token' });
    }
  });

  app.setErrorHandler(async (err: unknown, _req, reply) => {
    if (isApiError(err)) {
      const body: { error: string; field?: string } = { error: errorText(err.message) };
      if ('field' in err) body.field = err.field;
      return reply.code(err.status).send(body);
    }
    const e = err as { statusCode?: number; message?: string; code?: string };
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      // fastify's own: malformed JSON, wrong content type, body too large.
      return reply.code(e.statusCode).send({ error: errorText(e.message ?? 'bad request') });
    }
    opts.logger.error({ err }, 'request failed');
    return reply.code(500).send({ error: errorText(e.message ?? String(err)), ...(e.code ? { code: e.code } : {}) });
  });

  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: errorText(`no route ${req.method} ${req.url}`) }));

  const { store } = opts;
  // Requests that leave tens of MB of garbage (a large batch, a full page of
  // a listing, a scrape of thousands of series): hand the memory back once
  // fastify is done with them (memory.ts).
  const large = new WeakSet<FastifyRequest>();
  const releaseAfter = (req: FastifyRequest, entries: number): void => {
    if (entries >= RELEASE_AFTER_OPS) large.add(req);
  };
  app.addHook('onResponse', async (req) => {
    // a large body leaves its garbage whether or not it was accepted
    if (large.has(req) || Number(req.headers['content-length'] ?? 0) >= LARGE_BODY_BYTES) scheduleRelease();
  });
  // Writes are serialized by the store itself (EntryStore), one at a time.
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/status', async () => opts.status());
  app.get('/metrics', async (req, reply) => {
    const text = await opts.metrics.render();
    const { apps, deliveries } = store.counts;
    releaseAfter(req, apps + deliveries);
    return reply.header('content-type', opts.metrics.contentType).send(text);
  });

  app.get('/v1/apps', async (req) => {
    const page = store.listApps(parsePageQuery(req.query));
    releaseAfter(req, page.apps.length);
    return page;
  });
  app.get<NameParams>('/v1/apps/:name', async (req) => store.getApp(parseName(req.params.name)));
  app.put<NameParams>('/v1/apps/:name', async (req, reply) => {
    const r = await store.putApp(parseName(req.params.name), parseAppBody(req.body), 'api');
    return reply.code(r.created ? 201 : 200).send(r.app);
  });
  app.post<NameParams>('/v1/apps/:name/action', async (req) => store.setAction(parseName(req.params.name), parseAction(req.body, 'body'), 'api'));
  app.delete<NameParams>('/v1/apps/:name', async (req, reply) => {
    await store.deleteApp(parseName(req.params.name), 'api');
    return reply.code(204).send();
  });

  app.get('/v1/deliveries', async (req) => {
    const page = store.listDeliveries(parsePageQuery(req.query));
    releaseAfter(req, page.deliveries.length);
    return page;
  });
  app.get<NameParams>('/v1/deliveries/:name', async (req) => store.getDelivery(parseName(req.params.name)));
  app.put<NameParams>('/v1/deliveries/:name', async (req, reply) => {
    const r = await store.putDelivery(parseName(req.params.name), parseDeliveryBody(req.body), 'api');
    return reply.code(r.created ? 201 : 200).send(r.delivery);
  });
  app.delete<NameParams>('/v1/deliveries/:name', async (req, reply) => {
    await store.deleteDelivery(parseName(req.params.name), 'api');
    return reply.code(204).send();
  });

  app.post('/v1/batch', async (req) => {
    // parsed op by op as the store stages them: a large batch keeps no second copy
    const raw = batchOps(req.body);
    releaseAfter(req, raw.length); // refused or not, a large body leaves its garbage
    const ops: OpList = { length: raw.length, at: (i) => parseBatchOp(raw[i], i) };
    const applied = await store.batch(ops, 'api');
    releaseAfter(req, applied);
    return { applied };
  });
  return app;
}
