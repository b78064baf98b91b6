/**
 * Why an RPC call gave no usable answer, in the three kinds a caller decides on:
 * - `unreachable`: the database could not be reached or could not answer at all (no
 *   connection, no answer, a timeout, the gateway's own 5xx, or PostgreSQL saying it is
 *   down, shutting down or out of resources). Only this kind may be treated as an outage.
 * - `refused_input`: the database refused a value the caller sent (a data exception, a
 *   constraint, or the function raising about its arguments).
 * - `internal`: anything else — a privilege, a missing function, a deadlock, an answer we
 *   cannot read, a code we do not know. A fault of ours, never the caller's, never an outage.
 */
export type RpcFailureKind = 'unreachable' | 'refused_input' | 'internal';

export interface RpcFailure {
  kind: RpcFailureKind;
  /** The HTTP status of the answer; 0 when none came. */
  status: number;
  /** The SQLSTATE or PGRST code of the answer's body, when it had one. */
  code: string | null;
  message: string;
}

/** What supabase-js hands back for a call that failed (its `status` and `error`). */
export interface RpcResponse {
  status: number;
  error: { code?: unknown; message?: unknown } | null;
}

/**
 * Statuses an API gateway answers itself when the service behind it is down or too slow:
 * 502/503/504, and Cloudflare's 520–524 (Supabase's edge). They count only without a
 * PostgREST error body; with one, its code decides.
 */
const GATEWAY_DOWN_STATUSES: ReadonlySet<number> = new Set([
  502, 503, 504, 520, 521, 522, 523, 524,
]);

/**
 * SQLSTATE classes 08 (connection exception), 53 (insufficient resources), 57P (shutdown,
 * cannot connect now), and PostgREST's own connection group PGRST000–PGRST003 (it cannot
 * reach the database, or timed out waiting for a pool connection).
 */
const UNREACHABLE_CODE = /^(08|53|57P)|^PGRST00[0-3]$/;

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint), and `raise exception`. */
const REFUSED_INPUT_CODE = /^(22|23)|^P0001$/;

export function classifyRpcFailure(response: RpcResponse): RpcFailure {
  const code =
    typeof response.error?.code === 'string' && response.error.code !== ''
      ? response.error.code
      : null;
  const message =
    typeof response.error?.message === 'string' && response.error.message !== ''
      ? response.error.message
      : `HTTP ${response.status} without an answer`;
  const failure = (kind: RpcFailureKind): RpcFailure => ({
    kind,
    status: response.status,
    code,
    message,
  });
  // supabase-js answers status 0 when fetch itself failed: refused, reset, aborted, timed out.
  if (response.status === 0) return failure('unreachable');
  if (code === null) {
    return failure(GATEWAY_DOWN_STATUSES.has(response.status) ? 'unreachable' : 'internal');
  }
  if (UNREACHABLE_CODE.test(code)) return failure('unreachable');
  if (REFUSED_INPUT_CODE.test(code)) return failure('refused_input');
  return failure('internal');
}
