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

export type ApiError = FieldError | NotFoundError | ConflictError;

export function isApiError(err: unknown): err is ApiError {
  return err instanceof FieldError || err instanceof NotFoundError || err instanceof ConflictError;
}
