import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import type { Database } from './database.types.ts';
import { rpcFetch, withDeadline } from './fetch.ts';

export type Db = SupabaseClient<Database>;

export interface ServiceClientConfig {
  SUPABASE_URL: string;
  SUPABASE_SERVICE_ROLE_KEY: string;
}

/**
 * The one way server code reaches the database: supabase-js with the service role key,
 * every operation an rpc() call. The same client works against Supabase (cloud or
 * `supabase start`) and the local stack. Requests go through rpcFetch unless a test or
 * caller passes its own fetch; with `timeoutMs`, each call that gets no answer in time is
 * cut and reads as unreachable (status 0).
 */
export function createServiceClient(
  config: ServiceClientConfig,
  fetchImpl?: typeof fetch,
  options: { timeoutMs?: number } = {},
): Db {
  const transport = fetchImpl ?? rpcFetch;
  return createClient<Database>(config.SUPABASE_URL, config.SUPABASE_SERVICE_ROLE_KEY, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    db: { schema: 'public' },
    global: {
      fetch:
        options.timeoutMs === undefined ? transport : withDeadline(transport, options.timeoutMs),
    },
  });
}

/**
 * supabase-js as a signed-in user: the anon key, and the user's access token on every call,
 * so the database applies that user's row-level security (a server asking what the user
 * may see).
 */
export function createUserClient(
  config: { SUPABASE_URL: string; SUPABASE_ANON_KEY: string },
  accessToken: string,
  fetchImpl?: typeof fetch,
): Db {
  return createClient<Database>(config.SUPABASE_URL, config.SUPABASE_ANON_KEY, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    db: { schema: 'public' },
    global: { fetch: fetchImpl ?? rpcFetch, headers: { Authorization: `Bearer ${accessToken}` } },
  });
}
