/**
 * One agent's HTTP(S) connection pool: sends a request, returns status and
 * body text, or throws a `TransportError` that says in words why no answer
 * came (refused, timed out, the agent's certificate not trusted, our client
 * certificate refused…). node:http(s) rather than fetch, because only they
 * take a CA and a client certificate per connection without another package.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export interface TransportTls {
  /** Trusted CAs (PEM); without them, the system's. */
  ca?: Buffer;
  /** Client certificate and key (PEM) for agents that require one (--client-ca). */
  cert?: Buffer;
  key?: Buffer;
}

export interface TransportOptions {
  timeoutMs: number;
  tls?: TransportTls;
}

/** No (complete) answer. `answered`: the status line came, the body was cut off. */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    readonly reason: string,
    readonly answered: boolean,
  ) {
    super(reason);
  }
}

/** Methods that may be sent again when a kept-alive connection turns out closed before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE']);

export class AgentTransport {
  readonly #base: URL;
  readonly #https: boolean;
  readonly #pool: HttpAgent;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, opts: TransportOptions) {
    this.#base = new URL(baseUrl);
    this.#https = this.#base.protocol === 'https:';
    this.#timeoutMs = opts.timeoutMs;
    // Kept-alive sockets are unref'd by node while idle, so a finished command still exits.
    this.#pool = this.#https ? new HttpsAgent({ keepAlive: true, ...(opts.tls ?? {}) }) : new HttpAgent({ keepAlive: true });
  }

  /** One request; the timeout covers connecting, the answer and its whole body. */
  async send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
    try {
      return await this.#once(method, path, headers, body);
    } catch (err) {
      // The agent closed an idle kept-alive connection as we reused it: nothing reached it.
      if (err instanceof StaleSocketError && IDEMPOTENT.has(method)) return this.#once(method, path, headers, body);
      throw err instanceof StaleSocketError ? err.original : err;
    }
  }

  #once(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
    const url = new URL(path, this.#base);
    const send = this.#https ? httpsRequest : httpRequest;
    const allHeaders = body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) };
    return new Promise((resolve, reject) => {
      let answered = false;
      let settled = false;
      const finish = (err: TransportError | StaleSocketError | undefined, value?: { status: number; text: string }): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value as { status: number; text: string });
      };
      const timer = setTimeout(() => {
        finish(new TransportError(`no answer within ${this.#timeoutMs} ms`, answered));
        req.destroy();
      }, this.#timeoutMs);
      const req: ClientRequest = send(url, { method, headers: allHeaders, agent: this.#pool });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!answered && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          finish(new StaleSocketError(new TransportError(describeSocketError(err, this.#https), false)));
          return;
        }
        finish(new TransportError(describeSocketError(err, this.#https), answered));
      });
      req.on('response', (res: IncomingMessage) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err: NodeJS.ErrnoException) => finish(new TransportError(describeSocketError(err, this.#https), true)));
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        // Closed before the whole body came (after 'end' this changes nothing: already settled).
        res.on('close', () => {
          if (!res.complete) finish(new TransportError('connection closed mid-answer', true));
        });
      });
      req.end(body);
    });
  }
}

/** Internal: a reused socket was already closed by the agent. */
class StaleSocketError extends Error {
  constructor(readonly original: TransportError) {
    super(original.message);
  }
}

/** The agent's certificate could not be verified (node's codes for it). */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** The agent refused the certificate we presented (TLS alerts it sends). */
const CLIENT_CERT_REFUSED = new Set([
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
]);

/** One phrase per failure an operator can act on, with node's code kept for searching. */
export function describeSocketError(err: NodeJS.ErrnoException, https: boolean): string {
  const code = err.code ?? '';
  if (UNTRUSTED.has(code)) return `TLS: the agent's certificate is not signed by a trusted CA (give the fleet CA: --ca-file or "caFile") [${code}]`;
  if (code === 'CERT_HAS_EXPIRED') return `TLS: the agent's certificate has expired [${code}]`;
  if (code === 'CERT_NOT_YET_VALID') return `TLS: the agent's certificate is not valid yet [${code}]`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the agent's certificate is not for this host: ${err.message} [${code}]`;
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    return `TLS: the agent requires a client certificate (--client-cert/--client-key, or "clientCert"/"clientKey" in the credentials file) [${code}]`;
  }
  if (CLIENT_CERT_REFUSED.has(code)) return `TLS: the agent refused our client certificate (not signed by its --client-ca, expired, or unusable) [${code}]`;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'EPROTO') return `TLS handshake failed: is the agent serving plain http://? [${code || err.message}]`;
  if (https && (code === 'ECONNRESET' || code === 'EPIPE')) return `${code} (the agent closed the connection; a client certificate it refuses does this too)`;
  if (!https && code === 'HPE_INVALID_CONSTANT') return `the answer is not HTTP: is the agent serving https://? [${code}]`;
  if (!https && code === 'ECONNRESET') return 'ECONNRESET (the agent closed the connection; an agent serving https:// does this to http://)';
  return code || err.message;
}
