import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createAuthHandler } from './auth/server.ts';
import { deriveApiKeys, generateJwtSecret } from './keys.ts';
import { checkKeptDatabase, databaseExists, recordAppliedMigrations } from './migrations-record.ts';
import { startPostgres } from './postgres.ts';
import { startRpcServer } from './postgrest/server.ts';
import { applyMigrations } from './supabase-cli.ts';

/** What `supabase start` would print: everything a client or tool needs to connect. */
export interface LocalStackInfo {
  supabaseUrl: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  /** Superuser connection (migrations, fixtures, advisors). */
  databaseUrl: string;
}

export interface LocalStack extends LocalStackInfo {
  reloadSchemaCache(): Promise<void>;
  stop(): Promise<void>;
}

export interface LocalStackOptions {
  /** Persistent data folder (npm start); a throwaway one in the temp folder when omitted. */
  dataDir?: string;
  /** The option that starts afresh, named when a kept database is refused (migrations-record.ts). */
  freshFlag?: string;
  /** 0 picks a free port. */
  dbPort?: number;
  apiPort?: number;
  jwtSecret?: string;
  log?: (line: string) => void;
  onPostgresLog?: (line: string) => void;
  /**
   * Abandons the start between its steps: the step under way (initdb, say) is let finish,
   * PostgreSQL is stopped and the start rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

const LOCAL_SUPERUSER_PASSWORD = 'postgres';

/** A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * 57P01 admin shutdown, 57P03 cannot connect now (shutting down), a connection the server
 * reset as it went (ECONNRESET: the signal to the whole process group reached it first),
 * or no server at all.
 */
const isShuttingDown = (error: unknown) => {
  const code = (error as { code?: unknown }).code;
  return code === '57P01' || code === '57P03' || code === 'ECONNRESET' || code === 'ECONNREFUSED';
};

/**
 * pool.end() resolves before the server has seen every connection close; stopping
 * PostgreSQL then makes it terminate them (57P01). Wait (briefly) until they are gone.
 */
export async function waitForDisconnect(
  databaseUrl: string,
  roles: string[],
  maxMs = 5000,
): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => {});
  try {
    await client.connect();
    for (const until = Date.now() + maxMs; Date.now() < until; ) {
      const { rows } = await client.query<{ n: number }>(
        'select count(*)::int as n from pg_stat_activity where usename = any($1)',
        [roles],
      );
      if (rows[0]?.n === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    // Already shutting down (a signal to the whole process group reached it too) or gone:
    // it takes no connection, or ends this one, so none is left to wait for.
    if (!isShuttingDown(error)) throw error;
  } finally {
    await client.end().catch(() => {});
  }
}

async function bootstrap(
  databaseUrl: string,
  passwords: { authenticator: string; authAdmin: string },
): Promise<void> {
  const sql = await readFile(new URL('./supabase-bootstrap.sql', import.meta.url), 'utf8');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(sql);
    await client.query(
      `alter role authenticator with login password ${client.escapeLiteral(passwords.authenticator)}`,
    );
    // The local Auth subset connects as the role GoTrue connects with.
    await client.query(
      `alter role supabase_auth_admin with login password ${client.escapeLiteral(passwords.authAdmin)}`,
    );
  } finally {
    await client.end();
  }
}

/**
 * Connections the RPC endpoint keeps, like PostgREST's db-pool. Twice the cores: more
 * backends than that only contend for the CPUs (measured on the enforcement benchmark: 4
 * connections instead of 20 on 2 cores cut PostgreSQL's CPU per decision by a quarter).
 * Each request holds one connection for one transaction, so a small pool cannot deadlock.
 */
const RPC_POOL_SIZE = Math.max(4, 2 * availableParallelism());

/**
 * Starts PostgreSQL 17, makes it look like Supabase, applies the migrations with the
 * Supabase CLI and serves the PostgREST-compatible RPC endpoint with the Supabase Auth
 * subset beside it.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => {});
  const persistent = options.dataDir !== undefined;
  const dataDir = options.dataDir ?? join(await mkdtemp(join(tmpdir(), 'flowmeter-pg-')), 'data');
  const dbPort = options.dbPort || (await freePort());
  const jwtSecret = options.jwtSecret ?? generateJwtSecret();
  if (persistent && databaseExists(dataDir)) {
    await checkKeptDatabase(dataDir, options.freshFlag ?? '--fresh');
  }

  log(`starting PostgreSQL 17 on 127.0.0.1:${dbPort} (data: ${dataDir})`);
  const db = await startPostgres({
    dataDir,
    port: dbPort,
    password: LOCAL_SUPERUSER_PASSWORD,
    persistent,
    ...(options.onPostgresLog ? { onLog: options.onPostgresLog } : {}),
  });
  const pools: pg.Pool[] = [];
  try {
    options.signal?.throwIfAborted();
    const passwords = {
      authenticator: randomBytes(18).toString('base64url'),
      authAdmin: randomBytes(18).toString('base64url'),
    };
    log('applying the Supabase compatibility bootstrap');
    await bootstrap(db.url, passwords);
    options.signal?.throwIfAborted();
    log('applying migrations with the Supabase CLI');
    await applyMigrations(db.url);
    if (persistent) await recordAppliedMigrations(dataDir);
    options.signal?.throwIfAborted();

    const connect = (user: string, password: string, max: number) => {
      const pool = new pg.Pool({
        host: db.socketDir ?? '127.0.0.1',
        port: dbPort,
        user,
        password,
        database: 'postgres',
        max,
      });
      // Idle connections ended by the server must not crash the process; those it ends as it
      // shuts down (the stop, or a signal to the whole process group) are not news.
      pool.on('error', (error) => {
        if (!isShuttingDown(error)) log(`${user} pool: ${error.message}`);
      });
      pools.push(pool);
      return pool;
    };
    const pool = connect('authenticator', passwords.authenticator, RPC_POOL_SIZE);
    // Sign-ins are rare next to RPC calls, and bcrypt, not the database, is their cost.
    const authPool = connect('supabase_auth_admin', passwords.authAdmin, 2);
    const rpc = await startRpcServer({
      pool,
      jwtSecret,
      port: options.apiPort ?? 0,
      auth: createAuthHandler({
        pool: authPool,
        jwtSecret,
        onUnexpectedError: (error) =>
          log(
            `auth: unexpected failure: ${error instanceof Error ? error.message : String(error)}`,
          ),
      }),
    });
    const keys = await deriveApiKeys(jwtSecret);
    log(`RPC endpoint listening on ${rpc.url}/rest/v1/rpc/<function>, Auth on ${rpc.url}/auth/v1`);
    return {
      supabaseUrl: rpc.url,
      ...keys,
      jwtSecret,
      databaseUrl: db.url,
      reloadSchemaCache: rpc.reloadSchemaCache,
      stop: async () => {
        await rpc.close();
        await Promise.all(pools.map((p) => p.end()));
        await waitForDisconnect(db.url, ['authenticator', 'supabase_auth_admin']);
        await db.stop();
      },
    };
  } catch (error) {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await db.stop();
    throw error;
  }
}
