import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createServiceClient, type Db } from '../../src/db/client.ts';
import { type LocalStack, startLocalStack } from '../../src/local/stack.ts';

export interface OwnStack {
  stack: LocalStack;
  /** The superuser's connections to this stack's database. */
  pool: pg.Pool;
  /** The service role's supabase-js client of this stack. */
  db: Db;
}

/**
 * A local stack of the test file's own, for tests whose outcome depends on everything in
 * the database (every tenant counted, every due delivery sent), which the shared stack of
 * the run cannot promise. Registered before the file's own hooks, it starts before them
 * and stops after them. Read its fields inside hooks and tests, once it has started.
 */
export function useOwnStack(): OwnStack {
  let started: OwnStack | undefined;
  const get = (): OwnStack => {
    if (!started) throw new Error('the stack of this file has not started yet');
    return started;
  };
  beforeAll(async () => {
    const stack = await startLocalStack();
    const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
    // As superuser()'s: a connection still closing when the stack's PostgreSQL stops is
    // ended by it (57P01), which is no test failure (seen on a loaded CI machine).
    pool.on('error', () => {});
    const db = createServiceClient({
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    });
    started = { stack, pool, db };
  });
  afterAll(async () => {
    await started?.pool.end();
    await started?.stack.stop();
  });
  return {
    get stack() {
      return get().stack;
    },
    get pool() {
      return get().pool;
    },
    get db() {
      return get().db;
    },
  };
}
