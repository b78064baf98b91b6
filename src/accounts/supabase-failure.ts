import type { PostgrestError } from '@supabase/supabase-js';
import { classifyRpcFailure } from '../db/rpc-failure.ts';
import { fail, type Result } from '../domain/result.ts';

/** The value of an account operation (members, operators), or its expected failure. */
export type AccountResult<T> = Result<T>;

/**
 * An error from a supabase-js call of either API: its status, the PostgREST code where it
 * has one, and a message.
 */
interface ApiFailure {
  status: number;
  code?: string;
  message: string;
}

/** Sorts a failed supabase-js call of either API into the domain's failure codes. */
function classify({ status, code, message }: ApiFailure, what: string): Result<never> {
  if (classifyRpcFailure({ status, error: { code, message } }).kind === 'unreachable') {
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
  classify(
    { status, code: error.code, message: [error.message, error.hint].filter(Boolean).join(': ') },
    what,
  );

// GoTrue's error codes are not SQLSTATEs, so only its status says whether it was reached.
export const authFailure = (error: { status?: number; message: string }, what: string) =>
  classify({ status: error.status ?? 0, message: error.message }, what);
