/** Errors the agent API turns into HTTP answers. */

/** Bad input: names the field (a JSON path) and says what is wrong (`reason`). 400. */
export class FieldError extends Error {
  readonly status = 400;
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** Unknown name. 404. */
export class NotFoundError extends Error {
  readonly status = 404;
}

/** The request conflicts with existing entries (e.g. a key owned by another name). 409. */
export class ConflictError extends Error {
  readonly status = 409;
}

/** Who holds a lease on a name (docs/agent-api.md, "Leases"). */
export interface LeaseHolder {
  name: string;
  owner: string;
  /** How long the lease has left; 0 when the refusal is the agent's restart grace (below). */
  remainingMs: number;
}

/**
 * A write or a grant refused because another owner leases the name (or,
 * right after an agent restart, because leases held before it may still be
 * renewed). 409, naming the holder; nothing was changed.
 */
export class LeaseHeldError extends ConflictError {
  constructor(
    message: string,
    readonly holder: LeaseHolder,
  ) {
    super(message);
  }
}

/** A conditional write whose entry moved on (its generation is not the one given). 412; nothing was changed. */
export class PreconditionFailedError extends Error {
  readonly status = 412;
  constructor(
    message: string,
    /** The entry's generation now (0: there is no entry). */
    readonly generation: number,
  ) {
    super(message);
  }
}

export type ApiError = FieldError | NotFoundError | ConflictError | PreconditionFailedError;

export function isApiError(err: unknown): err is ApiError {
  return err instanceof FieldError || err instanceof NotFoundError || err instanceof ConflictError || err instanceof PreconditionFailedError;
}
