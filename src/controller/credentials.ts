/**
 * How the controller proves itself to each agent and checks the agent is the
 * one it meant: a credentials file (like a kubeconfig) mapping agent origins
 * to a bearer token, a CA file and optionally a client certificate, plus
 * command-line overrides that win over it. Parsing, matching and reading the
 * files it names live here; the HTTP client only receives the result.
 *
 * Format (JSON, every field optional, unknown fields refused):
 *
 *   {
 *     "agents": {
 *       "https://10.0.0.1:7450": { "tokenFile": "tokens/a" },
 *       "http://127.0.0.1:7450": { "noToken": true }
 *     },
 *     "default": { "caFile": "fleet-ca.pem", "clientCert": "ctl.pem", "clientKey": "ctl.key" }
 *   }
 *
 * An agent URL matches the entry of its exact origin (scheme://host:port);
 * each of the three parts (token, CA, client certificate) it does not set
 * comes from "default". Relative paths are relative to the file's directory.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';

/** Bad or missing credentials: one line naming the file (and agent) concerned. */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
}

/** One entry of the file, paths made absolute. */
export interface CredentialsEntry {
  token?: string;
  tokenFile?: string;
  /** The agent runs with --insecure: send no token. */
  noToken?: true;
  caFile?: string;
  clientCert?: string;
  clientKey?: string;
}

export interface CredentialsFile {
  path: string;
  /** Keyed by origin (`new URL(u).origin`). */
  agents: ReadonlyMap<string, CredentialsEntry>;
  default?: CredentialsEntry;
}

/** What the command line says; each given field wins over the file for every agent. */
export interface CredentialsOverrides {
  tokenFile?: string;
  /** How the user gave tokenFile, for messages; default "--token-file". */
  tokenFileFrom?: string;
  caFile?: string;
  clientCert?: string;
  clientKey?: string;
}

/** What the transport needs for one agent. */
export interface AgentCredentials {
  token?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Where each part came from, for messages ("--ca-file", "default entry of F"…). */
  sources: { token?: string; ca?: string; client?: string };
  /** No token was found anywhere: why, and how to give one (the request goes without; a 401 then says this). */
  noTokenHint?: string;
}

const ENTRY_FIELDS = ['token', 'tokenFile', 'noToken', 'caFile', 'clientCert', 'clientKey'] as const;
const TOP_FIELDS = ['agents', 'default'] as const;

/** Where the file is looked for: --credentials, $ROUTESHIFT_CREDENTIALS, then the per-user default. */
export function credentialsPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string; explicit: boolean } {
  if (explicit) return { path: resolve(explicit), explicit: true };
  if (env.ROUTESHIFT_CREDENTIALS) return { path: resolve(env.ROUTESHIFT_CREDENTIALS), explicit: true };
  const config = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return { path: join(config, 'routeshift', 'credentials.json'), explicit: false };
}

/** The origin an agent URL is matched by: scheme://host[:port], lower-case host, default port dropped. */
export function agentOrigin(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CredentialsError(`invalid agent URL ${JSON.stringify(url)}`);
  }
  return u.origin;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseEntry(raw: unknown, where: string, file: string, https: boolean | undefined): CredentialsEntry {
  const bad = (why: string): never => {
    throw new CredentialsError(`credentials file ${file}: ${where}: ${why}`);
  };
  if (!isRecord(raw)) return bad('expected an object');
  for (const k of Object.keys(raw)) {
    if (!(ENTRY_FIELDS as readonly string[]).includes(k)) bad(`unknown field "${k}" (known: ${ENTRY_FIELDS.join(', ')})`);
  }
  const entry: CredentialsEntry = {};
  const baseDir = dirname(file);
  for (const k of ['token', 'tokenFile', 'caFile', 'clientCert', 'clientKey'] as const) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.trim() === '') bad(`"${k}" must be a non-empty string`);
    const s = (v as string).trim();
    entry[k] = k === 'token' ? s : resolve(baseDir, s);
  }
  if (raw.noToken !== undefined) {
    if (raw.noToken !== true) bad('"noToken" can only be true');
    entry.noToken = true;
  }
  const tokenWays = (['token', 'tokenFile', 'noToken'] as const).filter((k) => entry[k] !== undefined);
  if (tokenWays.length > 1) bad(`give one of "token", "tokenFile", "noToken", not ${tokenWays.map((k) => `"${k}"`).join(' and ')}`);
  if ((entry.clientCert === undefined) !== (entry.clientKey === undefined)) bad('"clientCert" and "clientKey" go together');
  if (https === false && (entry.caFile || entry.clientCert)) bad('"caFile", "clientCert" and "clientKey" only apply to https:// agents');
  return entry;
}

function parseOriginKey(key: string, file: string): { origin: string; https: boolean } {
  const bad = (): never => {
    throw new CredentialsError(`credentials file ${file}: agents key ${JSON.stringify(key)}: expected an origin, http(s)://host:port, nothing after the port`);
  };
  if (!/^https?:\/\//i.test(key)) bad();
  let u: URL;
  try {
    u = new URL(key);
  } catch {
    return bad();
  }
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) bad();
  return { origin: u.origin, https: u.protocol === 'https:' };
}

/** Parse a credentials file's text. `path` names it in errors and anchors relative paths. */
export function parseCredentials(text: string, path: string): CredentialsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CredentialsError(`credentials file ${path}: not valid JSON: ${(err as Error).message}`);
  }
  if (!isRecord(raw)) throw new CredentialsError(`credentials file ${path}: expected a JSON object with "agents" and/or "default"`);
  for (const k of Object.keys(raw)) {
    if (!(TOP_FIELDS as readonly string[]).includes(k)) throw new CredentialsError(`credentials file ${path}: unknown field "${k}" (known: ${TOP_FIELDS.join(', ')})`);
  }
  const agents = new Map<string, CredentialsEntry>();
  if (raw.agents !== undefined) {
    if (!isRecord(raw.agents)) throw new CredentialsError(`credentials file ${path}: "agents" must be an object keyed by agent origin`);
    for (const [key, value] of Object.entries(raw.agents)) {
      const { origin, https } = parseOriginKey(key, path);
      if (agents.has(origin)) throw new CredentialsError(`credentials file ${path}: agents ${JSON.stringify(key)} names ${origin} a second time`);
      agents.set(origin, parseEntry(value, `agents ${JSON.stringify(key)}`, path, https));
    }
  }
  const file: CredentialsFile = { path, agents };
  if (raw.default !== undefined) file.default = parseEntry(raw.default, '"default"', path, undefined);
  return file;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

/** A file holding a secret must be the owner's alone, as ssh wants of private keys. */
function checkPrivate(path: string, what: string): void {
  const mode = modeOf(path);
  if ((mode & 0o077) !== 0) throw new CredentialsError(`${what} ${path} is accessible by group or others (mode ${octal(mode)}); chmod 600 ${path}`);
}

function readOrFail(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CredentialsError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Read and check a credentials file. Absent: undefined, unless it was asked
 * for by name. Refused when group or others may write it (they could point
 * us at their own CA), or read it while it holds tokens.
 */
export function loadCredentials(where: { path: string; explicit: boolean }): CredentialsFile | undefined {
  let text: string;
  try {
    text = readFileSync(where.path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !where.explicit) return undefined;
    throw new CredentialsError(`cannot read credentials file ${where.path}: ${code ?? (err as Error).message}`);
  }
  const mode = modeOf(where.path);
  if ((mode & 0o022) !== 0) throw new CredentialsError(`credentials file ${where.path} is writable by group or others (mode ${octal(mode)}); chmod 600 ${where.path}`);
  const file = parseCredentials(text, where.path);
  const inline = [...file.agents.values(), ...(file.default ? [file.default] : [])].some((e) => e.token !== undefined);
  if (inline && (mode & 0o044) !== 0) {
    throw new CredentialsError(`credentials file ${where.path} holds tokens and is readable by group or others (mode ${octal(mode)}); chmod 600 ${where.path}`);
  }
  return file;
}

/** Read a bearer token file (refused unless mode 0600 or stricter). */
export function readToken(path: string, source: string): string {
  const text = readOrFail(path, `token file (${source})`).toString('utf8').trim();
  checkPrivate(path, `token file (${source})`);
  if (!text) throw new CredentialsError(`token file ${path} (${source}) is empty`);
  if (/\s/.test(text)) throw new CredentialsError(`token file ${path} (${source}) holds more than one word; it must hold the token only`);
  return text;
}

/** Every PEM certificate of a CA file, each parsed (a file with none is an error, not "trust nothing"). */
function readCa(path: string, source: string): Buffer {
  const pem = readOrFail(path, `CA file (${source})`);
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (!blocks.length) throw new CredentialsError(`CA file ${path} (${source}) holds no PEM certificate`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (err) {
      throw new CredentialsError(`CA file ${path} (${source}): a certificate does not parse: ${(err as Error).message}`);
    }
  }
  return pem;
}

function readClient(certFile: string, keyFile: string, source: string): { cert: Buffer; key: Buffer } {
  const cert = readOrFail(certFile, `client certificate (${source})`);
  const key = readOrFail(keyFile, `client key (${source})`);
  checkPrivate(keyFile, `client key (${source})`);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new CredentialsError(`client certificate ${certFile} (${source}) is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new CredentialsError(`client key ${keyFile} (${source}) is not a PEM private key: ${(err as Error).message}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new CredentialsError(`client key ${keyFile} does not belong to certificate ${certFile} (${source}): ${(err as Error).message}`);
  }
  return { cert, key };
}

/** Which of an entry's parts, field by field group, the agent gets: its own entry's, else the default's. */
function pick(
  part: 'token' | 'ca' | 'client',
  own: CredentialsEntry | undefined,
  fallback: CredentialsEntry | undefined,
): CredentialsEntry | undefined {
  const has = (e: CredentialsEntry | undefined): boolean =>
    e !== undefined && (part === 'token' ? e.token !== undefined || e.tokenFile !== undefined || e.noToken === true : part === 'ca' ? e.caFile !== undefined : e.clientCert !== undefined);
  return has(own) ? own : has(fallback) ? fallback : undefined;
}

/**
 * The credentials for one agent: each command-line override first, then the
 * file's entry for the agent's exact origin, then its default entry. Every
 * file named is read and checked now, so a bad one fails before any request.
 */
export function resolveCredentials(url: string, file: CredentialsFile | undefined, overrides: CredentialsOverrides, searched: string): AgentCredentials {
  const origin = agentOrigin(url);
  const https = origin.startsWith('https:');
  const own = file?.agents.get(origin);
  const fallback = file?.default;
  const label = (e: CredentialsEntry): string => `${e === own ? `entry ${origin}` : 'default entry'} of ${file?.path ?? ''}`;
  const out: AgentCredentials = { sources: {} };

  if (overrides.tokenFile) {
    out.sources.token = overrides.tokenFileFrom ?? '--token-file';
    out.token = readToken(overrides.tokenFile, out.sources.token);
  } else {
    const e = pick('token', own, fallback);
    if (!e) {
      const why = file
        ? `${file.path} has no entry for ${origin}${file.default ? ' and its default entry gives no token' : ' and no default entry'}`
        : `no credentials file at ${searched}`;
      // An agent run with --insecure needs none; any other answers 401, and the answer carries this hint.
      out.noTokenHint = `no token was sent: ${why}; give --token-file, or add "${origin}" to the credentials file`;
    } else {
      out.sources.token = label(e);
      if (e.token !== undefined) out.token = e.token;
      else if (e.tokenFile !== undefined) out.token = readToken(e.tokenFile, label(e));
    }
  }

  const caEntry = pick('ca', own, fallback);
  const ca = overrides.caFile
    ? { file: overrides.caFile, source: '--ca-file' }
    : caEntry?.caFile
      ? { file: caEntry.caFile, source: label(caEntry) }
      : undefined;
  const clientFlag = overrides.clientCert !== undefined || overrides.clientKey !== undefined;
  const clientEntry = pick('client', own, fallback);
  const client = clientFlag
    ? { cert: overrides.clientCert, key: overrides.clientKey, source: '--client-cert/--client-key' }
    : clientEntry
      ? { cert: clientEntry.clientCert, key: clientEntry.clientKey, source: label(clientEntry) }
      : undefined;

  if (!https) {
    // The file's default entry may carry a fleet CA: it has nothing to do on plain HTTP. A flag given for it is a mistake.
    const flags = [overrides.caFile ? '--ca-file' : '', clientFlag ? '--client-cert/--client-key' : ''].filter(Boolean);
    if (flags.length) throw new CredentialsError(`agent ${url}: ${flags.join(' and ')} ${flags.length > 1 ? 'need' : 'needs'} an https:// agent URL`);
    return out;
  }
  const tls: NonNullable<AgentCredentials['tls']> = {};
  if (ca) {
    tls.ca = readCa(ca.file, ca.source);
    out.sources.ca = ca.source;
  }
  if (client) {
    if (client.cert === undefined || client.key === undefined) throw new CredentialsError('--client-cert and --client-key go together');
    Object.assign(tls, readClient(client.cert, client.key, client.source));
    out.sources.client = client.source;
  }
  if (Object.keys(tls).length) out.tls = tls;
  return out;
}
