/** What every CLI command shares: usage errors, token files. Exit codes: exit.ts. */
import { readFileSync } from 'node:fs';

/** Bad input from the user: reported in one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Read a bearer token from --token-file or ROUTESHIFT_TOKEN_FILE. */
export function readTokenFile(path: string | undefined): string | undefined {
  const file = path ?? process.env.ROUTESHIFT_TOKEN_FILE;
  if (!file) return undefined;
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`cannot read token file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!token) throw new UsageError(`token file ${file} is empty`);
  return token;
}
