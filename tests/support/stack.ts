import { randomUUID } from 'node:crypto';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import type { Database } from '../../src/db/database.types.ts';
import { signJwt } from '../../src/local/keys.ts';

/** The local stack the global setup started for this run. */
export const stack = inject('stack');

const clientOptions = { auth: { persistSession: false, autoRefreshToken: false } } as const;

export const serviceClient = (): SupabaseClient<Database> =>
  createClient<Database>(stack.supabaseUrl, stack.serviceRoleKey, clientOptions);

export const anonClient = (): SupabaseClient<Database> =>
  createClient<Database>(stack.supabaseUrl, stack.anonKey, clientOptions);

/**
 * A signed-in user: a JWT minted with the local secret, as Supabase Auth would issue, with
 * any further claims (an operator's `app_metadata`, an `email`).
 */
export const userAccessToken = (userId: string, claims: Record<string, unknown> = {}) =>
  signJwt(stack.jwtSecret, { ...claims, sub: userId, role: 'authenticated', aud: 'authenticated' });

export async function userClient(
  userId: string,
  claims: Record<string, unknown> = {},
): Promise<SupabaseClient<Database>> {
  const token = await userAccessToken(userId, claims);
  return createClient<Database>(stack.supabaseUrl, stack.anonKey, {
    ...clientOptions,
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

let superuserPool: pg.Pool | undefined;
afterAll(async () => {
  await superuserPool?.end();
  superuserPool = undefined;
});

/** Superuser access for fixtures and for reading what the API hides (never for the code under test). */
export function superuser(): pg.Pool {
  if (!superuserPool) {
    superuserPool = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
    // An idle connection ended by the server (end of the run) is not a test failure.
    superuserPool.on('error', () => {});
  }
  return superuserPool;
}

/**
 * Runs `work` in a transaction on one connection of `pool` (the superuser's unless given),
 * opened by `begin`; rolled back at the end, whatever `work` did, unless it committed.
 */
export async function inTransaction<T>(
  work: (client: pg.PoolClient) => Promise<T>,
  options: { pool?: pg.Pool; begin?: string } = {},
): Promise<T> {
  const client = await (options.pool ?? superuser()).connect();
  try {
    await client.query(options.begin ?? 'begin');
    return await work(client);
  } finally {
    // Nothing to roll back after a commit: PostgreSQL only warns, and a dead connection throws.
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

/**
 * Runs `fn` as a PostgREST request would: inside a transaction, as `role`, with the JWT
 * claims set. Always rolled back, so it can probe writes without leaving anything behind.
 */
export function asRole<T>(
  role: 'anon' | 'authenticated' | 'service_role',
  claims: Record<string, unknown>,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return inTransaction(async (client) => {
    await client.query(
      "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
      [role, JSON.stringify({ role, ...claims })],
    );
    return fn(client);
  });
}

export const uniqueId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
