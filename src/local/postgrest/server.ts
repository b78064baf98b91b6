import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { DatabaseError, Pool, PoolClient } from 'pg';
import { API_MAX_ROWS } from '../../db/api-max-rows.ts';
import { AUTH_PATH_PREFIX, type AuthHandler } from '../auth/server.ts';
import { readBodyText } from '../request-body.ts';
import { PostgrestError, postgrestError, statusForSqlState } from './errors.ts';
import { loadSchemaCache, type Routine, resolveRoutine, type SchemaCache } from './schema-cache.ts';

export interface RpcServerOptions {
  /** Pool connected as `authenticator`, the role PostgREST logs in with. */
  pool: Pool;
  jwtSecret: string;
  port: number;
  host?: string;
  schemas?: readonly string[];
  anonRole?: string;
  maxBodyBytes?: number;
  /**
   * db-max-rows: a set-returning function answers its first this many rows only, as a hosted
   * Supabase project's PostgREST does ("Max rows", 1,000 unless raised in the dashboard), so a
   * call that counts on more fails here as it would there.
   */
  maxRows?: number;
  /** Serves /auth/v1/ on the same port, as the Supabase API gateway does. */
  auth?: AuthHandler;
}

export interface RpcServer {
  readonly url: string;
  readonly server: Server;
  reloadSchemaCache(): Promise<void>;
  close(): Promise<void>;
}

interface Identity {
  role: string;
  claims: Record<string, unknown>;
  authenticated: boolean;
}

const PATH = /^\/rest\/v1\/rpc\/([^/]+)$/;
const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers':
    'authorization, apikey, content-type, content-profile, accept-profile, prefer, x-client-info',
};

function invalidToken(code: string, message: string): PostgrestError {
  return postgrestError(401, code, message, null, null, {
    'www-authenticate': `Bearer error="invalid_token", error_description="${message}"`,
  });
}

const JWT_CACHE_MAX = 1000;

/**
 * Verified tokens by their text, until they expire (PostgREST caches JWT validation the
 * same way): a service key is verified once, not on every request.
 */
async function authenticateCached(
  cache: Map<string, { identity: Identity; expiresAt: number }>,
  header: string | undefined,
  key: Uint8Array,
  anonRole: string,
): Promise<Identity> {
  if (!header) return authenticate(header, key, anonRole);
  const hit = cache.get(header);
  if (hit && hit.expiresAt > Date.now()) return hit.identity;
  cache.delete(header);
  const identity = await authenticate(header, key, anonRole);
  const exp =
    typeof identity.claims.exp === 'number' ? identity.claims.exp * 1000 : Date.now() + 60_000;
  if (cache.size >= JWT_CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(header, { identity, expiresAt: Math.min(exp, Date.now() + 300_000) });
  return identity;
}

async function authenticate(
  header: string | undefined,
  key: Uint8Array,
  anonRole: string,
): Promise<Identity> {
  if (!header) return { role: anonRole, claims: { role: anonRole }, authenticated: false };
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1])
    throw invalidToken('PGRST301', 'Expected a Bearer token in the Authorization header');
  const token = match[1];
  if (token.split('.').length !== 3) {
    throw invalidToken('PGRST301', `Expected 3 parts in JWT; got ${token.split('.').length}`);
  }
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'] });
    const role = typeof payload.role === 'string' && payload.role ? payload.role : anonRole;
    // No database role can hold NUL; sent on, it would cut the request's SQL short.
    if (role.includes('\u0000'))
      throw invalidToken('PGRST301', 'The JWT role claim is not a role name');
    return { role, claims: payload, authenticated: role !== anonRole };
  } catch (error) {
    if (error instanceof PostgrestError) throw error;
    if (error instanceof joseErrors.JWTExpired) throw invalidToken('PGRST303', 'JWT expired');
    if (error instanceof joseErrors.JOSEAlgNotAllowed) {
      throw invalidToken('PGRST301', 'Wrong or unsupported encoding algorithm');
    }
    if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
      throw invalidToken('PGRST301', 'JWT cryptographic operation failed');
    }
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      throw invalidToken('PGRST303', `JWT claim validation failed: ${error.message}`);
    }
    throw invalidToken('PGRST301', 'JWT could not be decoded');
  }
}

const readBody = (req: IncomingMessage, limit: number) =>
  readBodyText(req, limit, {
    tooLarge: () => postgrestError(413, 'PGRST413', `Request body exceeds ${limit} bytes`),
    notUtf8: () =>
      postgrestError(400, 'PGRST102', 'Empty or invalid json', 'The body is not valid UTF-8'),
  });

/** Arguments come as JSON; a request without a Content-Type is taken to be JSON. */
function refuseUnlessJson(contentType: string | undefined): void {
  if (contentType === undefined || /^application\/json\s*(;|$)/i.test(contentType)) return;
  throw postgrestError(
    415,
    'PGRST107',
    `The Content-Type "${contentType}" is not acceptable`,
    null,
    'Send the arguments as a JSON object with Content-Type: application/json',
  );
}

function parseArgs(body: string): Record<string, unknown> {
  if (body.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw postgrestError(400, 'PGRST102', 'Empty or invalid json', (error as Error).message);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw postgrestError(
      400,
      'PGRST102',
      'Empty or invalid json',
      'Expected a JSON object of named arguments',
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * `text` as an SQL string literal, as pg's escapeLiteral writes it (doubled quotes; doubled
 * backslashes in an E'' literal when there are any), without its copy character by
 * character, which costs milliseconds on a page of executions.
 */
function sqlLiteral(text: string): string {
  const quoted = `'${text.replaceAll("'", "''")}'`;
  return text.includes('\\') ? ` E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}

/**
 * The call as SQL. `argsJson` is the arguments' JSON text as the caller sent it, so
 * PostgreSQL reads every value itself — numbers beyond JavaScript's range and nesting
 * deeper than JSON.stringify can follow included — as PostgREST does.
 */
function buildCall(
  client: PoolClient,
  routine: Routine,
  names: readonly string[],
  argsJson: string,
  maxRows: number,
): { sql: string; returnsBody: boolean } {
  const ident = (s: string) => client.escapeIdentifier(s);
  const fn = `${ident(routine.schema)}.${ident(routine.name)}`;
  const call = `${fn}(${names.map((n) => `${ident(n)} := _args.${ident(n)}`).join(', ')})`;
  const recordDef = names
    .map((n) => `${ident(n)} ${routine.params.find((p) => p.name === n)?.type ?? 'text'}`)
    .join(', ');
  // json_to_record turns each JSON value into the parameter's type, as PostgREST does.
  const from = names.length
    ? `json_to_record(${sqlLiteral(argsJson)}::json) as _args(${recordDef})`
    : '';
  switch (routine.shape) {
    case 'void':
      return { sql: `select ${call}${from ? ` from ${from}` : ''}`, returnsBody: false };
    case 'scalar':
      return {
        sql: `select to_json(${call})::text as body${from ? ` from ${from}` : ''}`,
        returnsBody: true,
      };
    case 'composite':
      return {
        sql: `select to_json(_r)::text as body from ${from ? `${from}, lateral ` : ''}${call} as _r`,
        returnsBody: true,
      };
    case 'set':
      return {
        sql: `select coalesce(json_agg(_q._r), '[]')::text as body from (select _r from ${from ? `${from}, lateral ` : ''}${call} as _r limit ${maxRows}) _q`,
        returnsBody: true,
      };
  }
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw postgrestError(404, 'PGRST125', `Invalid path specified in request URL: ${raw}`);
  }
}

/** `alter role … set` settings by role, which PostgREST applies to each request. */
async function loadRoleSettings(pool: Pool): Promise<Map<string, Array<[string, string]>>> {
  const { rows } = await pool.query<{ role: string; setting: string }>(`
    select r.rolname as role, unnest(s.setconfig) as setting
    from pg_catalog.pg_db_role_setting s
    join pg_catalog.pg_roles r on r.oid = s.setrole
    where s.setdatabase in (0, (select oid from pg_catalog.pg_database where datname = current_database()))
    order by s.setdatabase`);
  const settings = new Map<string, Array<[string, string]>>();
  for (const { role, setting } of rows) {
    const separator = setting.indexOf('=');
    const list = settings.get(role) ?? [];
    list.push([setting.slice(0, separator), setting.slice(separator + 1)]);
    settings.set(role, list);
  }
  return settings;
}

function send(
  res: ServerResponse,
  status: number,
  body: string | null,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, {
    ...CORS_HEADERS,
    ...(body === null ? {} : { 'content-type': 'application/json; charset=utf-8' }),
    ...headers,
  });
  res.end(body ?? undefined);
}

/**
 * A PostgREST-compatible endpoint for RPC calls only: `POST|GET /rest/v1/rpc/<fn>`.
 *
 * Enough of PostgREST for @supabase/supabase-js to run unmodified against the local stack:
 * HS256 JWT verification, role switch and request.jwt.claims per request inside one
 * transaction, named arguments, PostgREST's result shapes, status codes and error bodies.
 * Each call is one round trip: begin, settings, call and commit in one simple query.
 */
export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const {
    pool,
    port,
    host = '127.0.0.1',
    anonRole = 'anon',
    maxBodyBytes = 1024 * 1024,
    maxRows = API_MAX_ROWS,
  } = options;
  if (!Number.isSafeInteger(maxRows) || maxRows < 1) {
    throw new Error(`maxRows must be a whole number of at least 1, not ${maxRows}`);
  }
  const schemas = options.schemas ?? ['public'];
  const key = new TextEncoder().encode(options.jwtSecret);
  const jwtCache = new Map<string, { identity: Identity; expiresAt: number }>();
  let cache: SchemaCache = await loadSchemaCache(pool, schemas);
  let roleSettings = await loadRoleSettings(pool);
  const reloadSchemaCache = async () => {
    [cache, roleSettings] = await Promise.all([
      loadSchemaCache(pool, schemas),
      loadRoleSettings(pool),
    ]);
  };

  async function resolve(schema: string, name: string, argNames: string[]): Promise<Routine> {
    try {
      return resolveRoutine(cache, schema, name, argNames);
    } catch (error) {
      // A function created after start-up: PostgREST needs a schema reload; do it for the caller.
      await reloadSchemaCache();
      if (error instanceof PostgrestError && error.body.code === 'PGRST202') {
        return resolveRoutine(cache, schema, name, argNames);
      }
      throw error;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') return send(res, 200, null);
    const match = PATH.exec(url.pathname);
    if (!match?.[1]) {
      throw postgrestError(
        404,
        'PGRST125',
        `Invalid path specified in request URL: ${url.pathname}`,
      );
    }
    if (method !== 'POST' && method !== 'GET') {
      throw postgrestError(405, 'PGRST117', `Unsupported HTTP method: ${method}`);
    }
    const profileHeader = method === 'POST' ? 'content-profile' : 'accept-profile';
    const schema = (req.headers[profileHeader] as string | undefined) ?? schemas[0] ?? 'public';
    if (!schemas.includes(schema)) {
      throw postgrestError(
        406,
        'PGRST106',
        `Invalid schema: ${schema}`,
        null,
        `Only the following schemas are exposed: ${schemas.join(', ')}`,
      );
    }
    const identity = await authenticateCached(jwtCache, req.headers.authorization, key, anonRole);
    let argsJson: string;
    let names: string[];
    if (method === 'POST') {
      refuseUnlessJson(req.headers['content-type']);
      argsJson = await readBody(req, maxBodyBytes);
      names = Object.keys(parseArgs(argsJson));
    } else {
      const args = Object.fromEntries(url.searchParams.entries());
      argsJson = JSON.stringify(args);
      names = Object.keys(args);
    }
    const routine = await resolve(schema, decodeName(match[1]), names);

    const client = await pool.connect();
    // A backend that dies mid-call (terminated, crashed) also errors the connection itself:
    // without a listener that error would end the process, not just this request.
    let broken: Error | undefined;
    const onConnectionError = (error: Error) => {
      broken = error;
    };
    client.on('error', onConnectionError);
    try {
      const { sql, returnsBody } = buildCall(client, routine, names, argsJson, maxRows);
      const settings = [
        `set_config('role', ${client.escapeLiteral(identity.role)}, true)`,
        // Role settings (e.g. statement_timeout) apply per request, as in PostgREST ≥ 11.1.
        ...(roleSettings.get(identity.role) ?? []).map(
          ([name, value]) =>
            `set_config(${client.escapeLiteral(name)}, ${client.escapeLiteral(value)}, true)`,
        ),
        `set_config('request.jwt.claims', ${client.escapeLiteral(JSON.stringify(identity.claims))}, true)`,
        `set_config('request.method', ${client.escapeLiteral(method)}, true)`,
        `set_config('request.path', ${client.escapeLiteral(url.pathname)}, true)`,
      ].join(', ');
      // Only a POST to a volatile function may write, as in PostgREST.
      const readOnly = method === 'GET' || !routine.volatile;
      const script = `begin${readOnly ? ' read only' : ''}; select ${settings}; ${sql}; commit;`;
      let results: Array<{ rows: Array<{ body?: string }> }>;
      try {
        results = (await client.query(script)) as unknown as typeof results;
      } catch (error) {
        await client.query('rollback').catch(() => {});
        const pgError = error as DatabaseError;
        if (!pgError.code) throw error;
        const status = statusForSqlState(pgError.code, identity.authenticated);
        throw postgrestError(
          status,
          pgError.code,
          pgError.message,
          pgError.detail ?? null,
          pgError.hint ?? null,
          status === 401 ? { 'www-authenticate': 'Bearer' } : {},
        );
      }
      if (!returnsBody) return send(res, 204, null);
      const body = results[2]?.rows[0]?.body ?? 'null';
      return send(res, 200, body);
    } finally {
      client.off('error', onConnectionError);
      client.release(broken);
    }
  }

  const server = createServer((req, res) => {
    if (options.auth && req.url?.startsWith(AUTH_PATH_PREFIX)) {
      // The handler answers every failure itself; this only guards a broken socket.
      options.auth(req, res).catch(() => res.destroy());
      return;
    }
    handle(req, res).catch((error: unknown) => {
      if (error instanceof PostgrestError) {
        return send(res, error.status, JSON.stringify(error.body), error.headers);
      }
      const message = error instanceof Error ? error.message : String(error);
      const unreachable = /ECONNREFUSED|connect|terminat/i.test(message);
      send(
        res,
        unreachable ? 503 : 500,
        JSON.stringify({
          code: unreachable ? 'PGRST001' : 'PGRST000',
          message: unreachable ? 'Could not connect with the database' : message,
          details: unreachable ? message : null,
          hint: null,
        }),
      );
    });
  });
  // Like PostgREST, advertise no keep-alive timeout and never close an idle connection under
  // a client: clients close their idle connections themselves (undici after 4 s). With Node's
  // default (closing after 5 s, advertised), a client whose event loop stalled past that —
  // a loaded machine, a burst of 160 concurrent calls then a pause — sent its next calls on
  // connections the server had just closed, and they failed with "fetch failed" (other side
  // closed) although nothing was wrong with them.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolveListen());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${host}:${address.port}`,
    server,
    reloadSchemaCache,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}
