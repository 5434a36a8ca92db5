/** What every CLI command shares: usage errors. Exit codes: exit.ts; agent credentials: options.ts. */

/** Bad input from the user: reported in one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
