/**
 * The agent's HTTP API (docs/agent-api.md) on fastify: bearer-token auth,
 * JSON in and out, every write through the one EntryStore path.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { StatusView } from '../model/entry.js';
import { isApiError } from '../model/errors.js';
import type { EntryStore, OpList } from './store.js';
import { LeaseHeldError, PreconditionFailedError } from '../model/errors.js';
import { batchOptions, parseLeaseBody, parseOwner, parseProbeBody, parseReleaseQuery, parseWriteQuery } from '../model/entry.js';
import type { LeaseTable } from './lease.js';
import { probeDelivery } from './probe.js';
import { batchOps, parseAction, parseAppBody, parseBatchOp, parseDeliveryBody, parseName, parsePageQuery } from '../model/entry.js';
import { RELEASE_AFTER_OPS, scheduleRelease } from './memory.js';
import type { AgentMetrics } from './metrics.js';
import { type FlowCensus, parseFlowQuery } from './flows.js';
import { bearerMatches } from './token.js';
import type { BgpAnnouncer } from './bgp.js';
import { parseAnnouncementBatch, parseAnnouncementBody } from '../model/announcement.js';
import { ConflictError } from '../model/errors.js';
import { parseMigrationReportBody } from '../model/migration-report.js';

export interface ServerOptions {
  store: EntryStore;
  /** The agent's leases (the store checks writes against them too). */
  leases: LeaseTable;
  metrics: AgentMetrics;
  status: () => StatusView;
  /** The preserve action's flows (GET /v1/apps/:name/flows). */
  flows: FlowCensus;
  /** undefined only with --insecure (loopback). */
  token: string | undefined;
  logger: Logger;
  /** HTTPS; with `clientCa`, every connection must present a client certificate it signed (mTLS). */
  tls?: { key: Buffer; cert: Buffer; clientCa?: Buffer };
  /** The host's BIRD, when the agent was started with --bird-include (the /v1/announcements routes). */
  bgp?: BgpAnnouncer;
  /** Where the entries come from when not from this API (etcd mode): entry writes are then refused with 409, naming it. */
  entriesFrom?: string;
}

/** The routes that write entries (refused in etcd mode: one source of truth). */
const ENTRY_WRITE_ROUTES = new Set(['/v1/apps/:name', '/v1/apps/:name/action', '/v1/deliveries/:name', '/v1/batch']);

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

/**
 * node's TLS server options. With a client CA every handshake asks for a
 * client certificate and verifies it against that CA; the verdict is acted on
 * per request (clientCertRefusal), as nginx does: refused in the handshake,
 * TLS 1.3 clients only see a reset, not why.
 */
function httpsOptions(tls: NonNullable<ServerOptions['tls']>): { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: true; rejectUnauthorized?: false } {
  const base = { key: tls.key, cert: tls.cert };
  return tls.clientCa ? { ...base, ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : base;
}

/** Why the connection's client certificate is not good enough, or undefined when it is (mTLS only). */
function clientCertRefusal(req: FastifyRequest): string | undefined {
  const socket = req.raw.socket as TLSSocket;
  if (socket.authorized) return undefined;
  const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
  if (!presented) return 'a client certificate is required (the agent runs with --client-ca)';
  const code = String(socket.authorizationError ?? '');
  return `client certificate refused: ${CLIENT_CERT_REASONS[code] ?? 'not valid'}${code ? ` [${code}]` : ''}`;
}

/** OpenSSL's verdicts on a client certificate, in words (others are shown by code). */
const CLIENT_CERT_REASONS: Readonly<Record<string, string>> = {
  UNABLE_TO_GET_ISSUER_CERT: "not signed by the agent's --client-ca",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "not signed by the agent's --client-ca",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "not signed by the agent's --client-ca",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed, not signed by the agent's --client-ca",
  SELF_SIGNED_CERT_IN_CHAIN: "not signed by the agent's --client-ca",
  CERT_SIGNATURE_FAILURE: "its signature does not verify against the agent's --client-ca",
  CERT_HAS_EXPIRED: 'it has expired',
  CERT_NOT_YET_VALID: 'it is not valid yet',
  INVALID_PURPOSE: 'it is not for client authentication (extendedKeyUsage)',
};

export function buildServer(opts: ServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false, // the agent logs entry changes and failures itself
    bodyLimit: 64 * 1024 * 1024, // a drain batch of 100k ops is ~15 MB
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 10_000,
    maxParamLength: 256, // a name is at most 48 bytes; longer ones get a 400 from the name rule, not a 414
    ...(opts.tls ? { https: httpsOptions(opts.tls) } : {}),
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
    // mTLS guards every path, /healthz included, before the token is looked at.
    const refusal = opts.tls?.clientCa ? clientCertRefusal(req) : undefined;
    if (refusal) {
      await reply.code(403).header('connection', 'close').send({ error: refusal });
      return;
    }
    if (req.url === '/healthz' || opts.token === undefined) return;
    if (!bearerMatches(req.headers.authorization, opts.token)) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token' });
    }
  });

  if (opts.entriesFrom) {
    const refusal = `this agent takes its entries from ${opts.entriesFrom}; write them there`;
    app.addHook('preHandler', async (req) => {
      if (req.method !== 'GET' && req.method !== 'HEAD' && ENTRY_WRITE_ROUTES.has(req.routeOptions.url ?? '')) throw new ConflictError(refusal);
    });
  }

  app.setErrorHandler(async (err: unknown, _req, reply) => {
    if (isApiError(err)) {
      const body: { error: string; field?: string } = { error: errorText(err.message) };
      if ('field' in err) body.field = err.field;
      if (err instanceof LeaseHeldError) Object.assign(body, { holder: err.holder });
      if (err instanceof PreconditionFailedError) Object.assign(body, { generation: err.generation });
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
  // A controller's report of the migrations that left this host (src/model/migration-report.ts): counted on /metrics.
  app.post('/v1/migrations', async (req) => {
    const report = parseMigrationReportBody(req.body);
    opts.metrics.recordMigrations(report);
    return { recorded: report.migrations.length };
  });

  app.get('/v1/apps', async (req) => {
    const page = store.listApps(parsePageQuery(req.query));
    releaseAfter(req, page.apps.length);
    return page;
  });
  app.get<NameParams>('/v1/apps/:name', async (req) => store.getApp(parseName(req.params.name)));
  app.put<NameParams>('/v1/apps/:name', async (req, reply) => {
    // single-entry writes take `?owner=…` (a leased name's owner) and `?ifGeneration=…`
    const r = await store.putApp(parseName(req.params.name), parseAppBody(req.body), 'api', parseWriteQuery(req.query));
    return reply.code(r.created ? 201 : 200).send(r.app);
  });
  app.get<NameParams>('/v1/apps/:name/flows', async (req) => {
    const query = parseFlowQuery(req.query);
    const app = store.getApp(parseName(req.params.name));
    return opts.flows.view(app, query);
  });
  app.post<NameParams>('/v1/apps/:name/action', async (req) =>
    store.setAction(parseName(req.params.name), parseAction(req.body, 'body'), 'api', parseWriteQuery(req.query)),
  );
  app.delete<NameParams>('/v1/apps/:name', async (req, reply) => {
    await store.deleteApp(parseName(req.params.name), 'api', parseWriteQuery(req.query));
    return reply.code(204).send();
  });

  app.get('/v1/deliveries', async (req) => {
    const page = store.listDeliveries(parsePageQuery(req.query));
    releaseAfter(req, page.deliveries.length);
    return page;
  });
  app.get<NameParams>('/v1/deliveries/:name', async (req) => store.getDelivery(parseName(req.params.name)));
  app.put<NameParams>('/v1/deliveries/:name', async (req, reply) => {
    const r = await store.putDelivery(parseName(req.params.name), parseDeliveryBody(req.body), 'api', parseWriteQuery(req.query));
    return reply.code(r.created ? 201 : 200).send(r.delivery);
  });
  app.delete<NameParams>('/v1/deliveries/:name', async (req, reply) => {
    await store.deleteDelivery(parseName(req.params.name), 'api', parseWriteQuery(req.query));
    return reply.code(204).send();
  });

  app.post('/v1/batch', async (req) => {
    // parsed op by op as the store stages them: a large batch keeps no second copy
    const raw = batchOps(req.body);
    const { owner, generations } = batchOptions(req.body);
    releaseAfter(req, raw.length); // refused or not, a large body leaves its garbage
    const ops: OpList = { length: raw.length, at: (i) => parseBatchOp(raw[i], i) };
    const gens: number[] | undefined = generations ? [] : undefined;
    const applied = await store.batch(ops, 'api', { ...(owner ? { owner } : {}), ...(gens ? { generations: gens } : {}) });
    releaseAfter(req, applied);
    return gens ? { applied, generations: gens } : { applied };
  });

  // Leases (lease.ts): a new one is granted between writes, so a write staged before the grant cannot
  // land after it; a renewal changes no one's right to write and is answered at once, even during a long batch.
  const { leases } = opts;
  app.get('/v1/leases', async () => ({ leases: leases.list(), graceMs: Math.round(leases.graceMs) }));
  app.post('/v1/leases', async (req) => {
    const body = parseLeaseBody(req.body);
    return leases.holdsAll(body.owner, body.names) ? leases.grant(body) : store.betweenWrites(() => leases.grant(body));
  });
  app.delete<{ Params: { owner: string } }>('/v1/leases/:owner', async (req) => {
    const owner = parseOwner(req.params.owner);
    return { released: leases.release(owner, parseReleaseQuery(req.query)) };
  });

  // A readiness probe from this host to the app behind one of its delivery entries (probe.ts).
  app.post('/v1/probe', async (req) => {
    const { name, ...how } = parseProbeBody(req.body);
    const d = store.getDelivery(name);
    return probeDelivery(name, { address: d.address, dev: d.dev }, how, opts.status().tunnel);
  });

  // BGP announcements through the host's BIRD (src/agent/bgp.ts); 409 when the agent drives none.
  const bgp = (): BgpAnnouncer => {
    if (!opts.bgp) throw new ConflictError('this agent announces nothing over BGP: start it with --bird-include FILE (and --bird-socket PATH if BIRD\'s control socket is not /run/bird/bird.ctl)');
    return opts.bgp;
  };
  app.get('/v1/announcements', async () => bgp().list());
  app.get<NameParams>('/v1/announcements/:name', async (req) => bgp().get(parseName(req.params.name)));
  app.put<NameParams>('/v1/announcements/:name', async (req) => {
    const name = parseName(req.params.name);
    const { address } = parseAnnouncementBody(req.body);
    const b = bgp();
    await b.apply({ announce: [{ name, address }], withdraw: [] });
    return b.get(name);
  });
  app.delete<NameParams>('/v1/announcements/:name', async (req, reply) => {
    const name = parseName(req.params.name);
    const { withdrawn } = await bgp().apply({ announce: [], withdraw: [name] });
    return withdrawn ? reply.code(204).send() : reply.code(404).send({ error: `no announcement ${name}` });
  });
  app.post('/v1/announcements', async (req) => bgp().apply(parseAnnouncementBatch(req.body)));
  return app;
}
