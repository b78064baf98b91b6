/**
 * Expected failures are values, not thrown strings: every service answers with a Result
 * whose error carries one of a closed set of codes. The transports map a code once each:
 * src/http/responses.ts to an HTTP status, src/cli/context.ts to an exit code.
 */
export const ERROR_CODES = [
  /** The caller's input was refused; nothing changed. */
  'invalid_request',
  'unauthorized',
  'not_found',
  'unknown_tenant',
  /** Another run or writer holds what this one needs (a lease, a newer version). */
  'conflict',
  /** A service the operation checks with (n8n, Stripe) refused or could not be reached. */
  'upstream_failed',
  /** Our own dependency (the database) did not answer; trying again may succeed. */
  'unavailable',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface Failure<C extends string = ErrorCode> {
  code: C;
  message: string;
  details?: unknown;
}

export type Result<T, C extends string = ErrorCode> =
  | { ok: true; value: T }
  | { ok: false; error: Failure<C> };

/**
 * A Failure thrown where only an exception gets out (a stream, a walk several calls deep);
 * the operation that started it catches it and answers it as a value again.
 */
export class ThrownFailure extends Error {
  readonly failure: Failure;
  constructor(failure: Failure) {
    super(failure.message);
    this.failure = failure;
  }
}

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });

export const fail = <C extends string>(
  code: C,
  message: string,
  details?: unknown,
): Result<never, C> => ({
  ok: false,
  error: { code, message, ...(details === undefined ? {} : { details }) },
});
