import type { PostgrestError } from '@supabase/supabase-js';

/**
 * Expected failures of the account operations (members, operators), as values. The CLI
 * maps each code to its exit code in one place.
 */
export type AccountErrorCode =
  /** No tenant, user, membership or operator matches what was asked for. */
  | 'not_found'
  /** Supabase Auth or the database refused the input (a weak password, a bad address). */
  | 'invalid'
  /** The key is not the service role's. */
  | 'refused'
  /** Supabase could not be reached. */
  | 'unavailable'
  /** Supabase answered with an error nothing here expects. */
  | 'failed';

export type AccountResult<T> =
  | { ok: true; value: T }
  | { ok: false; error: { code: AccountErrorCode; message: string } };

export const ok = <T>(value: T): AccountResult<T> => ({ ok: true, value });
export const fail = (code: AccountErrorCode, message: string): AccountResult<never> => ({
  ok: false,
  error: { code, message },
});

/** An error from a supabase-js call of either API, as a status and a message. */
interface ApiFailure {
  status: number;
  message: string;
}

function classify({ status, message }: ApiFailure, what: string): AccountResult<never> {
  // supabase-js reports a request that got no answer as status 0.
  if (status === 0 || status === 502 || status === 503 || status === 504) {
    return fail('unavailable', `could not reach Supabase while ${what} (${message})`);
  }
  if (status === 401 || status === 403) {
    return fail(
      'refused',
      `Supabase refused the key while ${what} (${status}: ${message}): SUPABASE_SERVICE_ROLE_KEY must be the project's service_role key`,
    );
  }
  if (status === 400 || status === 409 || status === 422) {
    return fail('invalid', `${message} (while ${what})`);
  }
  return fail('failed', `Supabase failed while ${what} (${status}: ${message})`);
}

export const databaseFailure = (error: PostgrestError, status: number, what: string) =>
  classify({ status, message: [error.message, error.hint].filter(Boolean).join(': ') }, what);

export const authFailure = (error: { status?: number; message: string }, what: string) =>
  classify({ status: error.status ?? 0, message: error.message }, what);
