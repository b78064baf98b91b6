import type { PostgrestError } from '@supabase/supabase-js';
import { type ErrorCode, fail, ok, type Result } from '../domain/result.ts';
import { classifyRpcFailure } from './rpc-failure.ts';

/** What a failed call carries beside its code, so a transport can say more than the code. */
export interface RpcFailureDetails {
  status: number;
  error: PostgrestError;
}

/** How a failed rpc() answer reads as a failure code. */
function codeFor({ status, error }: RpcFailureDetails): ErrorCode {
  if (classifyRpcFailure({ status, error }).kind === 'unreachable') return 'unavailable';
  if (status === 401 || status === 403) return 'unauthorized';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  // A function refused its arguments (P0001, a check or format error); nothing changed.
  if (status === 400) return 'invalid_request';
  return 'internal';
}

/**
 * The failure of an operation whose call to `fn` failed: the code its answer reads as (only
 * an unreachable database is `unavailable`; a refused privilege or a missing function is a
 * fault of ours, never reported as an outage), the message naming the call.
 */
export function callFailed(
  fn: string,
  response: { error: PostgrestError; status: number },
): Result<never> {
  const details: RpcFailureDetails = { status: response.status, error: response.error };
  return fail(codeFor(details), `${fn} failed: ${response.error.message}`, details);
}

/**
 * One rpc() answer as a Result: its data, or a failure whose details hold the whole answer;
 * given the call's name `fn`, the failure names it as callFailed does.
 */
export function rpcResult<T>(
  response: { data: T | null; error: PostgrestError | null; status: number },
  fn?: string,
): Result<T> {
  const { error, status } = response;
  if (!error) return ok(response.data as T);
  if (fn !== undefined) return callFailed(fn, { error, status });
  const details: RpcFailureDetails = { status, error };
  return fail(codeFor(details), error.message, details);
}

export const isRpcFailure = (details: unknown): details is RpcFailureDetails =>
  typeof details === 'object' &&
  details !== null &&
  'status' in details &&
  'error' in details &&
  typeof (details as RpcFailureDetails).status === 'number';
