import type { IncomingMessage, ServerResponse } from 'node:http';
import bcrypt from 'bcryptjs';
import { type JWTPayload, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Pool } from 'pg';
import { z } from 'zod';
import { parseOutside } from '../../domain/parse-outside.ts';
import { readBodyText } from '../request-body.ts';
import { type AuthStore, authStore, type UserChanges, type UserRow } from './store.ts';

export interface AuthHandlerOptions {
  /** Pool connected as supabase_auth_admin, the role GoTrue connects with. */
  pool: Pool;
  jwtSecret: string;
  maxBodyBytes?: number;
  now?: () => Date;
  /** Where an unexpected failure's own message goes; the client only hears that one happened. */
  onUnexpectedError?: (error: unknown) => void;
}

export type AuthHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export const AUTH_PATH_PREFIX = '/auth/v1/';

const API_VERSION_HEADER = 'x-supabase-api-version';
const API_VERSION_2024 = '2024-01-01';
const ADMIN_ROLES = new Set(['service_role', 'supabase_admin']);
/** GoTrue's default JWT_EXP. */
const ACCESS_TOKEN_SECONDS = 3600;
/** GoTrue's default minimum password length. */
const MIN_PASSWORD_LENGTH = 6;
/** bcrypt reads 72 bytes; GoTrue refuses longer passwords rather than ignore the rest. */
const MAX_PASSWORD_BYTES = 72;
/** GoTrue hashes with Go's bcrypt.DefaultCost. */
const BCRYPT_COST = 10;

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers':
    'authorization, apikey, content-type, x-client-info, x-supabase-api-version',
  'access-control-expose-headers': 'x-total-count, link, x-supabase-api-version',
  'access-control-max-age': '86400',
};

class AuthError extends Error {
  readonly status: number;
  readonly code: string;
  readonly extra: Record<string, unknown>;

  constructor(status: number, code: string, message: string, extra: Record<string, unknown> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra;
  }
}

/** The API gateway's own answer (Kong's), before a request reaches GoTrue. */
class GatewayError extends Error {
  readonly status = 401;
}

/** What GoTrue answers for a failure it did not expect. */
const UNEXPECTED_FAILURE = 'Unexpected failure, please check server logs for more information';

const invalidCredentials = () =>
  new AuthError(400, 'invalid_credentials', 'Invalid login credentials');

// Compared against when the e-mail address is unknown, so both failures take as long.
const UNKNOWN_USER_HASH = bcrypt.hashSync('not a password anyone has', BCRYPT_COST);

const email = z.email({ error: 'Unable to validate email address: invalid format' }).max(255);
const password = z.string().refine((p) => Buffer.byteLength(p) <= MAX_PASSWORD_BYTES, {
  error: `Password cannot be longer than ${MAX_PASSWORD_BYTES} characters`,
});
const metadata = z.record(z.string().max(200), z.unknown());

const passwordGrant = z.object({
  email: z.string().max(255).default(''),
  password: z.string().max(1000).default(''),
});
const refreshGrant = z.object({ refresh_token: z.string().min(1).max(512) });
const updateSelf = z.object({ data: metadata.optional(), password: password.optional() });
const adminCreate = z.object({
  email,
  password: password.optional(),
  email_confirm: z.boolean().optional(),
  user_metadata: metadata.optional(),
  app_metadata: metadata.optional(),
});
const adminUpdate = adminCreate.partial();
const invite = z.object({ email, data: metadata.optional() });
const logoutScope = z.enum(['global', 'local', 'others'], {
  error: 'scope must be one of global, local, others',
});
const uuid = z.uuid({ error: 'user_id must be an UUID' });
const pageNumber = (fallback: number, max: number) =>
  z.coerce.number().int().min(1).max(max).catch(fallback);

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = parseOutside(schema, value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  throw new AuthError(400, 'validation_failed', `${where}${issue?.message ?? 'invalid request'}`);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const text = await readBodyText(req, limit, {
    tooLarge: () => new AuthError(413, 'request_too_large', `Request body exceeds ${limit} bytes`),
    notUtf8: () =>
      new AuthError(400, 'bad_json', 'Could not parse request body as JSON: it is not valid UTF-8'),
  });
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new AuthError(
      400,
      'bad_json',
      `Could not parse request body as JSON: ${(error as Error).message}`,
    );
  }
}

const iso = (d: Date | null) => (d ? d.toISOString() : undefined);

/** A user as GoTrue serialises it. */
function userJson(user: UserRow) {
  return {
    id: user.id,
    aud: user.aud ?? 'authenticated',
    role: user.role ?? 'authenticated',
    email: user.email ?? '',
    email_confirmed_at: iso(user.email_confirmed_at),
    invited_at: iso(user.invited_at),
    phone: '',
    confirmed_at: iso(user.email_confirmed_at),
    last_sign_in_at: iso(user.last_sign_in_at),
    app_metadata: user.raw_app_meta_data ?? {},
    user_metadata: user.raw_user_meta_data ?? {},
    identities: [],
    created_at: iso(user.created_at),
    updated_at: iso(user.updated_at),
    is_anonymous: false,
  };
}

/**
 * The subset of Supabase Auth (GoTrue) that supabase-js needs for e-mail + password, served
 * under /auth/v1 beside the local RPC endpoint: password and refresh-token grants with
 * rotation, the signed-in user, logout, and the admin user endpoints (service role only).
 * Request and response bodies, status codes and error codes follow GoTrue's, including its
 * 2024-01-01 error shape when the client asks for it (supabase-js does).
 */
export function createAuthHandler(options: AuthHandlerOptions): AuthHandler {
  const store: AuthStore = authStore(options.pool);
  const key = new TextEncoder().encode(options.jwtSecret);
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const now = options.now ?? (() => new Date());
  const onUnexpectedError = options.onUnexpectedError ?? (() => {});

  async function verify(token: string): Promise<JWTPayload> {
    return (await jwtVerify(token, key, { algorithms: ['HS256'], currentDate: now() })).payload;
  }

  /** Kong's key-auth in front of GoTrue: every request carries a valid API key. */
  async function requireApiKey(req: IncomingMessage, url: URL): Promise<void> {
    const apiKey = (req.headers.apikey as string | undefined) ?? url.searchParams.get('apikey');
    if (!apiKey) throw new GatewayError('No API key found in request');
    try {
      const { role } = await verify(apiKey);
      if (role !== 'anon' && role !== 'service_role') throw new Error(String(role));
    } catch {
      throw new GatewayError('Invalid API key');
    }
  }

  async function bearerClaims(req: IncomingMessage): Promise<JWTPayload> {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match?.[1]) {
      throw new AuthError(401, 'no_authorization', 'This endpoint requires a valid Bearer token');
    }
    try {
      return await verify(match[1]);
    } catch (error) {
      const reason =
        error instanceof joseErrors.JWTExpired
          ? 'token has invalid claims: token is expired'
          : error instanceof joseErrors.JWSSignatureVerificationFailed
            ? 'token signature is invalid: signature is invalid'
            : 'token is malformed';
      throw new AuthError(
        403,
        'bad_jwt',
        `invalid JWT: unable to parse or verify signature, ${reason}`,
      );
    }
  }

  async function requireUser(req: IncomingMessage) {
    const claims = await bearerClaims(req);
    if (!claims.sub) throw new AuthError(403, 'bad_jwt', 'invalid claim: missing sub claim');
    if (!uuid.safeParse(claims.sub).success) {
      throw new AuthError(400, 'bad_jwt', 'invalid claim: sub claim must be a UUID');
    }
    const user = await store.userById(claims.sub);
    if (!user) {
      throw new AuthError(403, 'user_not_found', 'User from sub claim in JWT does not exist');
    }
    const sessionId = typeof claims.session_id === 'string' ? claims.session_id : undefined;
    if (
      sessionId &&
      (!uuid.safeParse(sessionId).success || !(await store.sessionExists(sessionId)))
    ) {
      throw new AuthError(
        403,
        'session_not_found',
        'Session from session_id claim in JWT does not exist',
      );
    }
    return { user, sessionId };
  }

  async function requireAdmin(req: IncomingMessage): Promise<void> {
    const claims = await bearerClaims(req);
    if (typeof claims.role !== 'string' || !ADMIN_ROLES.has(claims.role)) {
      throw new AuthError(403, 'not_admin', 'User not allowed');
    }
  }

  async function accessToken(req: IncomingMessage, user: UserRow, sessionId: string) {
    const issuedAt = Math.floor(now().getTime() / 1000);
    const token = await new SignJWT({
      iss: `http://${req.headers.host ?? '127.0.0.1'}/auth/v1`,
      sub: user.id,
      aud: 'authenticated',
      email: user.email ?? '',
      phone: '',
      app_metadata: user.raw_app_meta_data ?? {},
      user_metadata: user.raw_user_meta_data ?? {},
      role: 'authenticated',
      aal: 'aal1',
      amr: [{ method: 'password', timestamp: issuedAt }],
      session_id: sessionId,
      is_anonymous: false,
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + ACCESS_TOKEN_SECONDS)
      .sign(key);
    return { token, expiresAt: issuedAt + ACCESS_TOKEN_SECONDS };
  }

  async function sessionResponse(
    req: IncomingMessage,
    user: UserRow,
    session: { sessionId: string; refreshToken: string },
  ) {
    const { token, expiresAt } = await accessToken(req, user, session.sessionId);
    return {
      access_token: token,
      token_type: 'bearer',
      expires_in: ACCESS_TOKEN_SECONDS,
      expires_at: expiresAt,
      refresh_token: session.refreshToken,
      user: userJson(user),
    };
  }

  const hash = (plain: string) => bcrypt.hash(plain, BCRYPT_COST);

  function checkStrength(plain: string): void {
    if ([...plain].length < MIN_PASSWORD_LENGTH) {
      throw new AuthError(
        422,
        'weak_password',
        `Password should be at least ${MIN_PASSWORD_LENGTH} characters.`,
        { weak_password: { reasons: ['length'] } },
      );
    }
  }

  async function passwordSignIn(req: IncomingMessage, body: unknown) {
    const input = parse(passwordGrant, body);
    if (!input.email) throw new AuthError(400, 'validation_failed', 'missing email or phone');
    const user = await store.userByEmail(input.email);
    const matches = await bcrypt.compare(
      input.password,
      user?.encrypted_password ?? UNKNOWN_USER_HASH,
    );
    if (!user?.encrypted_password || !matches) throw invalidCredentials();
    if (!user.email_confirmed_at)
      throw new AuthError(400, 'email_not_confirmed', 'Email not confirmed');
    const session = await store.startSession(user.id, req.headers['user-agent']);
    const signedIn = (await store.userById(user.id)) ?? user;
    return sessionResponse(req, signedIn, session);
  }

  async function refresh(req: IncomingMessage, body: unknown) {
    const { refresh_token } = parse(refreshGrant, body);
    const outcome = await store.rotate(refresh_token);
    if (outcome.kind === 'unknown') {
      throw new AuthError(
        400,
        'refresh_token_not_found',
        'Invalid Refresh Token: Refresh Token Not Found',
      );
    }
    if (outcome.kind === 'reused') {
      throw new AuthError(400, 'refresh_token_already_used', 'Invalid Refresh Token: Already Used');
    }
    return sessionResponse(req, outcome.user, outcome.session);
  }

  async function userChanges(input: z.infer<typeof adminUpdate>): Promise<UserChanges> {
    if (input.password !== undefined) checkStrength(input.password);
    return {
      ...(input.email !== undefined ? { email: input.email } : {}),
      ...(input.password !== undefined ? { encryptedPassword: await hash(input.password) } : {}),
      // As in GoTrue, email_confirm only ever confirms.
      ...(input.email_confirm ? { emailConfirmed: true } : {}),
      ...(input.app_metadata ? { appMetadata: input.app_metadata } : {}),
      ...(input.user_metadata ? { userMetadata: input.user_metadata } : {}),
    };
  }

  const emailExists = () =>
    new AuthError(
      422,
      'email_exists',
      'A user with this email address has already been registered',
    );

  async function updated(id: string, changes: UserChanges) {
    const user = await store.updateUser(id, changes);
    if (user === 'email_exists') throw emailExists();
    if (!user) throw new AuthError(404, 'user_not_found', 'User not found');
    return userJson(user);
  }

  /** The answer to one request: its status and JSON body (null: no body). */
  async function route(
    req: IncomingMessage,
    url: URL,
  ): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    const method = req.method ?? 'GET';
    const path = url.pathname.slice(AUTH_PATH_PREFIX.length - 1).replace(/\/+$/, '');
    const body = () => readJson(req, maxBodyBytes);
    const adminUser = /^\/admin\/users\/([^/]+)$/.exec(path);

    if (path === '/token' && method === 'POST') {
      const grant = url.searchParams.get('grant_type');
      if (grant === 'password')
        return { status: 200, body: await passwordSignIn(req, await body()) };
      if (grant === 'refresh_token') return { status: 200, body: await refresh(req, await body()) };
      throw new AuthError(400, 'validation_failed', 'unsupported_grant_type');
    }
    if (path === '/user' && method === 'GET') {
      return { status: 200, body: userJson((await requireUser(req)).user) };
    }
    if (path === '/user' && method === 'PUT') {
      const { user } = await requireUser(req);
      const input = parse(updateSelf, await body());
      return {
        status: 200,
        body: await updated(
          user.id,
          await userChanges({
            ...(input.password !== undefined ? { password: input.password } : {}),
            ...(input.data ? { user_metadata: input.data } : {}),
          }),
        ),
      };
    }
    if (path === '/logout' && method === 'POST') {
      const scope = parse(logoutScope, url.searchParams.get('scope') ?? 'global');
      const { user, sessionId } = await requireUser(req);
      await store.endSessions(user.id, sessionId, scope);
      return { status: 204, body: null };
    }
    if (path === '/admin/users' && method === 'GET') {
      await requireAdmin(req);
      const page = pageNumber(1, 1_000_000).parse(url.searchParams.get('page') ?? undefined);
      const perPage = pageNumber(50, 1000).parse(url.searchParams.get('per_page') ?? undefined);
      const { users, total } = await store.listUsers(page, perPage);
      const last = Math.max(1, Math.ceil(total / perPage));
      const link = (p: number, rel: string) =>
        `</admin/users?page=${p}&per_page=${perPage}>; rel="${rel}"`;
      return {
        status: 200,
        body: { users: users.map(userJson), aud: 'authenticated' },
        headers: {
          'x-total-count': String(total),
          link: [...(page < last ? [link(page + 1, 'next')] : []), link(last, 'last')].join(', '),
        },
      };
    }
    if (path === '/admin/users' && method === 'POST') {
      await requireAdmin(req);
      const input = parse(adminCreate, await body());
      if (input.password !== undefined) checkStrength(input.password);
      const user = await store.createUser({
        email: input.email,
        encryptedPassword: input.password === undefined ? null : await hash(input.password),
        emailConfirmed: input.email_confirm ?? false,
        invited: false,
        appMetadata: { provider: 'email', providers: ['email'], ...input.app_metadata },
        userMetadata: input.user_metadata ?? {},
      });
      if (!user) throw emailExists();
      return { status: 200, body: userJson(user) };
    }
    if (adminUser?.[1] && ['GET', 'PUT', 'DELETE'].includes(method)) {
      await requireAdmin(req);
      // A user id is a UUID, which never needs percent-decoding; a malformed escape such as
      // %zz is then a 400 like any other malformed id, not a URIError.
      const id = parse(uuid, adminUser[1]);
      if (method === 'GET') {
        const user = await store.userById(id);
        if (!user) throw new AuthError(404, 'user_not_found', 'User not found');
        return { status: 200, body: userJson(user) };
      }
      if (method === 'PUT') {
        return {
          status: 200,
          body: await updated(id, await userChanges(parse(adminUpdate, await body()))),
        };
      }
      const user = await store.userById(id);
      if (!user || !(await store.deleteUser(id))) {
        throw new AuthError(404, 'user_not_found', 'User not found');
      }
      return { status: 200, body: userJson(user) };
    }
    if (path === '/invite' && method === 'POST') {
      await requireAdmin(req);
      const input = parse(invite, await body());
      const user = await store.createUser({
        email: input.email,
        encryptedPassword: null,
        emailConfirmed: false,
        invited: true,
        appMetadata: { provider: 'email', providers: ['email'] },
        userMetadata: input.data ?? {},
      });
      if (!user) throw emailExists();
      return { status: 200, body: userJson(user) };
    }
    throw new AuthError(404, 'not_found', `No route for ${method} ${url.pathname}`);
  }

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const modernErrors =
      (req.headers[API_VERSION_HEADER] as string | undefined) === API_VERSION_2024;
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        ...CORS_HEADERS,
        ...(modernErrors ? { [API_VERSION_HEADER]: API_VERSION_2024 } : {}),
        ...(body === null ? {} : { 'content-type': 'application/json; charset=utf-8' }),
        ...headers,
      });
      res.end(body === null ? undefined : JSON.stringify(body));
    };
    try {
      if (req.method === 'OPTIONS') return send(204, null);
      await requireApiKey(req, url);
      const answer = await route(req, url);
      return send(answer.status, answer.body, answer.headers);
    } catch (error) {
      if (error instanceof GatewayError) return send(401, { message: error.message });
      if (error instanceof AuthError) {
        return send(
          error.status,
          modernErrors
            ? { code: error.code, message: error.message, ...error.extra }
            : { code: error.status, error_code: error.code, msg: error.message, ...error.extra },
        );
      }
      // The message may name tables, roles or the database's address: it goes to the log,
      // and the client gets GoTrue's own generic answer.
      onUnexpectedError(error);
      const message = error instanceof Error ? error.message : String(error);
      const status = /ECONNREFUSED|connect|terminat/i.test(message) ? 503 : 500;
      return send(
        status,
        modernErrors
          ? { code: 'unexpected_failure', message: UNEXPECTED_FAILURE }
          : { code: status, error_code: 'unexpected_failure', msg: UNEXPECTED_FAILURE },
      );
    }
  };
}
