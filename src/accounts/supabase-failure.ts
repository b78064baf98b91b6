import type { PostgrestError } from '@supabase/supabase-js';
import { fail, type Result } from '../domain/result.ts';

/** The value of an account operation (members, operators), or its expected failure. */
export type AccountResult<T> = Result<T>;

/** An error from a supabase-js call of either API, as a status and a message. */
interface ApiFailure {
  status: number;
  message: string;
}

/** Sorts a failed supabase-js call of either API into the domain's failure codes. */
function classify({ status, message }: ApiFailure, what: string): Result<never> {
  // supabase-js reports a request that got no answer as status 0.
  if (status === 0 || status === 502 || status === 503 || status === 504) {
    return fail('unavailable', `could not reach Supabase while ${what} (${message})`);
  }
  if (status === 401 || status === 403) {
    return fail(
      'unauthorized',
      `Supabase refused the key while ${what} (${status}: ${message}): SUPABASE_SERVICE_ROLE_KEY must be the project's service_role key`,
    );
  }
  if (status === 400 || status === 409 || status === 422) {
    return fail('invalid_request', `${message} (while ${what})`);
  }
  return fail('internal', `Supabase failed while ${what} (${status}: ${message})`);
}

export const databaseFailure = (error: PostgrestError, status: number, what: string) =>
  classify({ status, message: [error.message, error.hint].filter(Boolean).join(': ') }, what);

export const authFailure = (error: { status?: number; message: string }, what: string) =>
  classify({ status: error.status ?? 0, message: error.message }, what);
