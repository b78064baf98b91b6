import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import type { Database } from './database.types.ts';
import { rpcFetch, withDeadline } from './fetch.ts';

export type Db = SupabaseClient<Database>;

export interface ServiceClientConfig {
  SUPABASE_URL: string;
  SUPABASE_SERVICE_ROLE_KEY: string;
  /** Server functions' deadline for each call (serverEnvSchema); the CLI has none. */
  DB_TIMEOUT_MS?: number;
}

/**
 * The one way server code reaches the database: supabase-js with the service role key,
 * every operation an rpc() call. The same client works against Supabase (cloud or
 * `supabase start`) and the local stack. Requests go through rpcFetch unless a test or
 * caller passes its own fetch. With a deadline (`timeoutMs`, else the configuration's
 * DB_TIMEOUT_MS), each call that gets no answer in time is cut and reads as unreachable
 * (status 0); without one (the CLI, whose operator can stop it) a call waits for its answer.
 */
/** `fetchImpl` (rpcFetch unless given), cut at `timeoutMs` when there is one. */
const transport = (fetchImpl: typeof fetch | undefined, timeoutMs: number | undefined) => {
  const base = fetchImpl ?? rpcFetch;
  return timeoutMs === undefined ? base : withDeadline(base, timeoutMs);
};

export function createServiceClient(
  config: ServiceClientConfig,
  fetchImpl?: typeof fetch,
  options: { timeoutMs?: number } = {},
): Db {
  return createClient<Database>(config.SUPABASE_URL, config.SUPABASE_SERVICE_ROLE_KEY, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    db: { schema: 'public' },
    global: { fetch: transport(fetchImpl, options.timeoutMs ?? config.DB_TIMEOUT_MS) },
  });
}

/**
 * supabase-js as a signed-in user: the anon key, and the user's access token on every call,
 * so the database applies that user's row-level security (a server asking what the user
 * may see). The configuration's DB_TIMEOUT_MS, when it has one, cuts each call as above.
 */
export function createUserClient(
  config: { SUPABASE_URL: string; SUPABASE_ANON_KEY: string; DB_TIMEOUT_MS?: number },
  accessToken: string,
  fetchImpl?: typeof fetch,
): Db {
  return createClient<Database>(config.SUPABASE_URL, config.SUPABASE_ANON_KEY, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    db: { schema: 'public' },
    global: {
      fetch: transport(fetchImpl, config.DB_TIMEOUT_MS),
      headers: { Authorization: `Bearer ${accessToken}` },
    },
  });
}
