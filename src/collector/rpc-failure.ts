/**
 * A failed database call, told apart by what it means for the run: the database could not
 * be reached (no answer, a gateway error, PostgREST's 503 for a connection it could not
 * make), or it answered and refused. A run that could not reach the database says so in its
 * summary, and the CLI exits 3 for it.
 */
export class DatabaseUnreachable extends Error {
  override name = 'DatabaseUnreachable';
}

/** supabase-js answers status 0 when the request got no response at all. */
const UNREACHABLE_STATUSES = new Set([0, 502, 503, 504]);

export function rpcFailure(
  fn: string,
  response: { error: { message: string }; status: number },
): Error {
  const { error, status } = response;
  return UNREACHABLE_STATUSES.has(status)
    ? new DatabaseUnreachable(
        `the database could not be reached (${fn}: ${status === 0 ? error.message : `HTTP ${status}`})`,
      )
    : new Error(`${fn} failed: ${error.message}`);
}
