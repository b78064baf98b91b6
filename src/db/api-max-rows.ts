/**
 * The most rows one call of a set-returning function hands over: a Supabase project's "Max
 * rows" (PostgREST's db-max-rows, 1,000 unless raised in the dashboard), beyond which the
 * rest are dropped without an error. private.api_max_rows() is the same number on the SQL
 * side (a test keeps them equal), and the local stack's RPC endpoint applies it.
 */
export const API_MAX_ROWS = 1000;
