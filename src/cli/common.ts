/** What every CLI command shares: usage errors. Exit codes: exit.ts; agent credentials: options.ts. */

/** Bad input from the user: reported in one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failed `app add --announce` whose entry could not be rolled back: the entry is as the command wrote it (exit 3). */
export class EntryRollbackError extends Error {
  override readonly name = 'EntryRollbackError';
}
