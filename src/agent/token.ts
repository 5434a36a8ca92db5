/**
 * The agent's bearer token: read from --token-file, or generated there
 * (mode 0600) when the file does not exist yet; compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, statSync, writeSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';

export interface TokenSource {
  token: string;
  path: string;
  /** True when this call created the file. */
  generated: boolean;
}

export function loadOrCreateToken(path: string): TokenSource {
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      throw new Error(`token file ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    const token = readFileSync(path, 'utf8').trim();
    if (token.length < 16) throw new Error(`token in ${path} is shorter than 16 characters`);
    return { token, path, generated: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('hex');
  // O_EXCL: never overwrite a token another agent just wrote.
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  return { token, path, generated: true };
}

/** Constant-time check of an `Authorization: Bearer …` header. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  // Hash both sides so the comparison is constant-time whatever the lengths.
  const given = createHash('sha256').update(header.slice(7).trim()).digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want);
}
