/** What every CLI command shares: exit codes, usage errors, token files. */
import { readFileSync } from 'node:fs';

/** Exit codes of the CLI contract (README.md, "CLI"). */
export const ExitCode = {
  Ok: 0,
  /** Failed, and everything was rolled back. */
  Failed: 1,
  Usage: 2,
  /** Failed, and the state needs an operator's attention. */
  NeedsAttention: 3,
} as const;

/** Bad input from the user: reported in one line, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = ExitCode.Usage;
}

/** A one-line message for any error, without a stack trace. */
export function formatError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
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
