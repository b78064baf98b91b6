import { randomUUID } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AuthApiError, createClient, type SupabaseClient } from '@supabase/supabase-js';
import fc from 'fast-check';
import { decodeJwt } from 'jose';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.types.ts';
import { createAuthHandler } from '../../src/local/auth/server.ts';
import { signJwt } from '../../src/local/keys.ts';
import { addMember, createTenant } from '../support/fixtures.ts';
import { serviceClient, stack, superuser } from '../support/stack.ts';

/**
 * The local Supabase Auth subset, driven by supabase-js exactly as the dashboard and the
 * CLI drive real Supabase Auth: sign-in, refresh with rotation, the user, sign-out, the
 * admin user endpoints, GoTrue's error answers, and a signed-in token under RLS.
 */

const clientOptions = { auth: { persistSession: false, autoRefreshToken: false } } as const;
const browser = (url = stack.supabaseUrl): SupabaseClient<Database> =>
  createClient<Database>(url, stack.anonKey, clientOptions);
const admin = () => serviceClient().auth.admin;

const PASSWORD = 'correct horse battery';
const newEmail = () => `user-${randomUUID().slice(0, 8)}@Example.test`;

async function createUser(
  options: { email?: string; app_metadata?: object; user_metadata?: object } = {},
) {
  const { data, error } = await admin().createUser({
    email: options.email ?? newEmail(),
    password: PASSWORD,
    email_confirm: true,
    ...(options.app_metadata ? { app_metadata: options.app_metadata } : {}),
    ...(options.user_metadata ? { user_metadata: options.user_metadata } : {}),
  });
  if (error) throw error;
  return data.user;
}

async function signedIn(email: string) {
  const client = browser();
  const { data, error } = await client.auth.signInWithPassword({ email, password: PASSWORD });
  if (error) throw error;
  return { client, session: data.session };
}

/** A raw request to the Auth API, for what supabase-js does not expose. */
function auth(path: string, init: RequestInit & { apikey?: string | null } = {}) {
  const { apikey = stack.anonKey, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (apikey) headers.set('apikey', apikey);
  return fetch(`${stack.supabaseUrl}/auth/v1${path}`, { ...rest, headers });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('signInWithPassword', () => {
  it('issues a session whose access token carries the claims Supabase Auth puts in it', async () => {
    const user = await createUser({ user_metadata: { name: 'Ada' } });
    const before = Math.floor(Date.now() / 1000);
    const { session } = await signedIn(user.email as string);

    const claims = decodeJwt(session.access_token);
    expect(claims).toMatchObject({
      sub: user.id,
      role: 'authenticated',
      aud: 'authenticated',
      email: user.email,
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: { name: 'Ada' },
      aal: 'aal1',
    });
    expect(claims.session_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(claims.exp).toBe((claims.iat as number) + 3600);
    expect(session).toMatchObject({ token_type: 'bearer', expires_in: 3600 });
    expect(session.user.id).toBe(user.id);
  });

  it('stores the password as a bcrypt hash and the e-mail address in lower case', async () => {
    const user = await createUser({
      email: 'Mixed.Case@Example.test'.replace('Mixed', randomUUID().slice(0, 6)),
    });
    const { rows } = await superuser().query(
      'select email, encrypted_password, last_sign_in_at from auth.users where id = $1',
      [user.id],
    );
    expect(rows[0].email).toBe(rows[0].email.toLowerCase());
    expect(rows[0].encrypted_password).toMatch(/^\$2[aby]\$10\$.{53}$/);
    // Sign-in is case-insensitive on the address, as in GoTrue.
    await signedIn((user.email as string).toUpperCase());
  });

  it('answers a wrong password and an unknown user alike: 400 invalid_credentials', async () => {
    const user = await createUser();
    for (const attempt of [
      { email: user.email as string, password: 'not the password' },
      { email: newEmail(), password: PASSWORD },
    ]) {
      const { data, error } = await browser().auth.signInWithPassword(attempt);
      expect(data.session).toBeNull();
      expect(error).toBeInstanceOf(AuthApiError);
      expect(error).toMatchObject({
        status: 400,
        code: 'invalid_credentials',
        message: 'Invalid login credentials',
      });
    }
  });

  it('answers clients without the 2024-01-01 API version in GoTrue’s older error shape', async () => {
    const response = await auth('/token?grant_type=password', {
      method: 'POST',
      body: JSON.stringify({ email: newEmail(), password: PASSWORD }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      code: 400,
      error_code: 'invalid_credentials',
      msg: 'Invalid login credentials',
    });
  });

  it('refuses an invited user, who has no password yet', async () => {
    const email = newEmail();
    const { data, error } = await admin().inviteUserByEmail(email, { data: { invited: true } });
    expect(error).toBeNull();
    expect(data.user).toMatchObject({
      email: email.toLowerCase(),
      user_metadata: { invited: true },
    });
    expect(data.user?.invited_at).toBeTruthy();
    const signIn = await browser().auth.signInWithPassword({ email, password: PASSWORD });
    expect(signIn.error).toMatchObject({ status: 400, code: 'invalid_credentials' });
  });
});

describe('refreshSession', () => {
  it('rotates the refresh token, and refuses the used one with 400, revoking the session', async () => {
    const user = await createUser();
    const { client, session } = await signedIn(user.email as string);

    const refreshed = await client.auth.refreshSession({ refresh_token: session.refresh_token });
    expect(refreshed.error).toBeNull();
    const next = refreshed.data.session;
    expect(next?.refresh_token).not.toBe(session.refresh_token);
    expect(decodeJwt(next?.access_token as string).session_id).toBe(
      decodeJwt(session.access_token).session_id,
    );

    const reused = await browser().auth.refreshSession({ refresh_token: session.refresh_token });
    expect(reused.error).toMatchObject({
      status: 400,
      code: 'refresh_token_already_used',
      message: 'Invalid Refresh Token: Already Used',
    });
    // A leaked token's reuse ends the session: its newest token is dead too.
    const after = await browser().auth.refreshSession({
      refresh_token: next?.refresh_token as string,
    });
    expect(after.error).toMatchObject({ status: 400, code: 'refresh_token_already_used' });
  });

  it('refuses an unknown refresh token with 400 refresh_token_not_found', async () => {
    const { error } = await browser().auth.refreshSession({ refresh_token: 'no-such-token' });
    expect(error).toMatchObject({
      status: 400,
      code: 'refresh_token_not_found',
      message: 'Invalid Refresh Token: Refresh Token Not Found',
    });
  });

  it('hands out one successor when the same token is refreshed twice at once', async () => {
    const user = await createUser();
    const { session } = await signedIn(user.email as string);
    const results = await Promise.all(
      [1, 2].map(() => browser().auth.refreshSession({ refresh_token: session.refresh_token })),
    );
    expect(results.filter((r) => r.error === null)).toHaveLength(1);
    expect(results.filter((r) => r.error?.status === 400)).toHaveLength(1);
  });
});

describe('getUser and signOut', () => {
  it('returns the signed-in user, and 403 for a token signed with another secret', async () => {
    const user = await createUser();
    const { client, session } = await signedIn(user.email as string);
    const { data, error } = await client.auth.getUser(session.access_token);
    expect(error).toBeNull();
    expect(data.user).toMatchObject({ id: user.id, email: user.email });

    const forged = await signJwt('another secret entirely, 32+ chars', {
      sub: user.id,
      role: 'authenticated',
    });
    const answer = await client.auth.getUser(forged);
    expect(answer.error).toMatchObject({ status: 403, code: 'bad_jwt' });

    const missing = await auth('/user');
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ error_code: 'no_authorization' });
  });

  it('signOut ends the session: its refresh token and access token no longer work', async () => {
    const user = await createUser();
    const { client, session } = await signedIn(user.email as string);
    const { error } = await client.auth.signOut();
    expect(error).toBeNull();

    const refresh = await browser().auth.refreshSession({ refresh_token: session.refresh_token });
    expect(refresh.error).toMatchObject({ status: 400, code: 'refresh_token_not_found' });
    const me = await auth('/user', { headers: bearer(session.access_token) });
    expect(me.status).toBe(403);
    expect(await me.json()).toMatchObject({ error_code: 'session_not_found' });
  });

  it('signOut with the local scope leaves the user’s other sessions alone', async () => {
    const user = await createUser();
    const first = await signedIn(user.email as string);
    const second = await signedIn(user.email as string);
    expect((await first.client.auth.signOut({ scope: 'local' })).error).toBeNull();
    const stillIn = await second.client.auth.getUser(second.session.access_token);
    expect(stillIn.data.user?.id).toBe(user.id);
  });

  it('lets a user change their own user_metadata, never their app_metadata', async () => {
    const user = await createUser();
    const { client } = await signedIn(user.email as string);
    const { data, error } = await client.auth.updateUser({
      data: { theme: 'dark' },
      // Not a field of the user endpoint: ignored.
      ...({ app_metadata: { flowmeter_role: 'operator' } } as object),
    });
    expect(error).toBeNull();
    expect(data.user?.user_metadata).toMatchObject({ theme: 'dark' });
    expect(data.user?.app_metadata).toEqual({ provider: 'email', providers: ['email'] });
  });
});

describe('an access token past its expiry', () => {
  const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 1 });
  afterAll(() => pool.end());

  it('is refused by the RPC endpoint (401) and by the Auth API (403)', async () => {
    const user = await createUser();
    // The same handler on a clock two hours behind issues a token that expired an hour ago.
    const handler = createAuthHandler({
      pool,
      jwtSecret: stack.jwtSecret,
      now: () => new Date(Date.now() - 2 * 3600 * 1000),
    });
    const server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const { data, error } = await browser(`http://127.0.0.1:${port}`).auth.signInWithPassword({
        email: user.email as string,
        password: PASSWORD,
      });
      expect(error).toBeNull();
      const token = data.session?.access_token as string;
      expect(decodeJwt(token).exp).toBeLessThan(Date.now() / 1000);

      const rpc = await fetch(`${stack.supabaseUrl}/rest/v1/rpc/tenant_usage_summary`, {
        method: 'POST',
        headers: { apikey: stack.anonKey, 'content-type': 'application/json', ...bearer(token) },
        body: '{}',
      });
      expect(rpc.status).toBe(401);
      expect(await rpc.json()).toMatchObject({ code: 'PGRST303', message: 'JWT expired' });

      const me = await auth('/user', { headers: bearer(token) });
      expect(me.status).toBe(403);
      expect(await me.json()).toMatchObject({ error_code: 'bad_jwt' });
    } finally {
      server.close();
    }
  });
});

describe('the admin endpoints', () => {
  it('are refused without the service role key: anon 403, a user 403, no API key 401', async () => {
    const user = await createUser();
    const { session } = await signedIn(user.email as string);
    const asAnon = browser().auth.admin;
    const asUser = createClient(stack.supabaseUrl, stack.anonKey, {
      ...clientOptions,
      global: { headers: { Authorization: `Bearer ${session.access_token}` } },
    }).auth.admin;
    for (const client of [asAnon, asUser]) {
      expect((await client.listUsers()).error).toMatchObject({ status: 403, code: 'not_admin' });
      expect(
        (await client.createUser({ email: newEmail(), password: PASSWORD })).error,
      ).toMatchObject({ status: 403 });
      expect((await client.deleteUser(user.id)).error).toMatchObject({ status: 403 });
      expect(
        (await client.updateUserById(user.id, { app_metadata: { flowmeter_role: 'operator' } }))
          .error,
      ).toMatchObject({ status: 403 });
      expect((await client.inviteUserByEmail(newEmail())).error).toMatchObject({ status: 403 });
    }
    const noKey = await auth('/admin/users', {
      apikey: null,
      headers: bearer(stack.serviceRoleKey),
    });
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toEqual({ message: 'No API key found in request' });
    expect((await admin().getUserById(user.id)).data.user?.app_metadata).not.toHaveProperty(
      'flowmeter_role',
    );
  });

  it('create, list, get, update and delete users with the service role key', async () => {
    const email = newEmail();
    const created = await admin().createUser({
      email,
      password: PASSWORD,
      email_confirm: true,
      app_metadata: { plan: 'x' },
    });
    expect(created.error).toBeNull();
    const id = created.data.user?.id as string;
    expect(created.data.user).toMatchObject({
      email: email.toLowerCase(),
      app_metadata: { provider: 'email', providers: ['email'], plan: 'x' },
    });
    expect(created.data.user?.email_confirmed_at).toBeTruthy();

    const duplicate = await admin().createUser({ email, password: PASSWORD });
    expect(duplicate.error).toMatchObject({ status: 422, code: 'email_exists' });
    const weak = await admin().createUser({ email: newEmail(), password: '123' });
    expect(weak.error).toMatchObject({ status: 422, code: 'weak_password' });

    const { data: page, error: listError } = await admin().listUsers({ page: 1, perPage: 1000 });
    expect(listError).toBeNull();
    expect(page.users.map((u) => u.id)).toContain(id);
    expect('total' in page && page.total).toBeGreaterThanOrEqual(1);
    const small = await admin().listUsers({ page: 1, perPage: 1 });
    expect(small.data.users).toHaveLength(1);

    const updated = await admin().updateUserById(id, {
      app_metadata: { flowmeter_role: 'operator', plan: null },
    });
    expect(updated.data.user?.app_metadata).toEqual({
      provider: 'email',
      providers: ['email'],
      flowmeter_role: 'operator',
    });
    expect((await admin().getUserById(id)).data.user?.app_metadata).toHaveProperty(
      'flowmeter_role',
      'operator',
    );

    const tenant = await createTenant();
    await addMember(tenant.id, id);
    const { session } = await signedIn(email);
    expect((await admin().deleteUser(id)).error).toBeNull();
    expect((await admin().getUserById(id)).error).toMatchObject({
      status: 404,
      code: 'user_not_found',
    });
    const { rows } = await superuser().query(
      `select (select count(*) from public.tenant_members where user_id = $1)::int as members,
              (select count(*) from auth.sessions where user_id = $1)::int as sessions`,
      [id],
    );
    expect(rows[0]).toEqual({ members: 0, sessions: 0 });
    const refresh = await browser().auth.refreshSession({ refresh_token: session.refresh_token });
    expect(refresh.error).toMatchObject({ status: 400 });
  });

  it.each(['not-a-uuid', '%zz', '%E0%A4%A'])(
    'answer 400, not 500, to a malformed user id (%s)',
    async (id) => {
      const response = await auth(`/admin/users/${id}`, {
        apikey: stack.serviceRoleKey,
        headers: bearer(stack.serviceRoleKey),
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error_code: 'validation_failed' });
    },
  );
});

describe('a signed-in tenant user under RLS', () => {
  it('sees only their own tenant through the tenant RPCs', async () => {
    const mine = await createTenant();
    const theirs = await createTenant();
    const user = await createUser();
    await addMember(mine.id, user.id);
    const { client } = await signedIn(user.email as string);

    const { data, error } = await client.rpc('tenant_usage_summary', {});
    expect(error).toBeNull();
    expect(data?.map((row) => row.tenant_id)).toEqual([mine.id]);
    const other = await client.rpc('tenant_usage_summary', { tenant_id: theirs.id });
    expect(other.data ?? []).toEqual([]);
  });
});

describe('the browser and hostile input', () => {
  it('answers a CORS preflight with the headers supabase-js sends', async () => {
    const response = await fetch(`${stack.supabaseUrl}/auth/v1/token?grant_type=password`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://127.0.0.1:5173',
        'access-control-request-method': 'POST',
        'access-control-request-headers':
          'apikey, authorization, content-type, x-client-info, x-supabase-api-version',
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    const allowed = response.headers.get('access-control-allow-headers') ?? '';
    for (const header of [
      'apikey',
      'authorization',
      'content-type',
      'x-client-info',
      'x-supabase-api-version',
    ]) {
      expect(allowed).toContain(header);
    }
    const signIn = await auth('/token?grant_type=password', { method: 'POST', body: '{}' });
    expect(signIn.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('refuses an oversized body with 413 and invalid JSON with 400', async () => {
    const big = await auth('/token?grant_type=password', {
      method: 'POST',
      body: JSON.stringify({ email: 'a@b.test', password: 'x'.repeat(100_000) }),
    });
    expect(big.status).toBe(413);
    const broken = await auth('/token?grant_type=password', { method: 'POST', body: '{"email":' });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error_code: 'bad_json' });
  });

  it('answers 400 to a value whose length no check can read, where the parser alone would throw', async () => {
    const unreadable = '{"length":{"toString":""}}';
    for (const [path, body] of [
      ['/token?grant_type=password', `{"email":${unreadable},"password":"a-password"}`],
      ['/admin/users', `{"email":${unreadable},"password":"a-password"}`],
    ] as const) {
      const response = await auth(path, {
        method: 'POST',
        apikey: stack.serviceRoleKey,
        headers: { ...bearer(stack.serviceRoleKey), 'content-type': 'application/json' },
        body,
      });
      expect(response.status, path).toBe(400);
      expect(await response.json()).toMatchObject({
        error_code: 'validation_failed',
        msg: 'email: holds a value of the wrong type',
      });
    }
  });

  it('never answers 5xx to arbitrary JSON on its endpoints', async () => {
    const targets = [
      ['POST', '/token?grant_type=password'],
      ['POST', '/token?grant_type=refresh_token'],
      ['POST', '/admin/users'],
      ['PUT', `/admin/users/${randomUUID()}`],
      ['POST', '/invite'],
    ] as const;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...targets),
        fc.jsonValue({ maxDepth: 3 }),
        async ([method, path], body) => {
          const response = await auth(path, {
            method,
            apikey: stack.serviceRoleKey,
            headers: { ...bearer(stack.serviceRoleKey), 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          expect(response.status).toBeLessThan(500);
          await response.body?.cancel();
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('hostile bodies and unexpected failures', () => {
  /** A raw request whose body is sent only in part, as a slow or lying client sends it. */
  function partialRequest(path: string, headers: Record<string, string>, first: string) {
    const url = new URL(`${stack.supabaseUrl}/auth/v1${path}`);
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(url, { method: 'POST', headers: { apikey: stack.anonKey, ...headers } });
      req.on('response', async (res) => {
        let body = '';
        for await (const chunk of res) body += chunk;
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
      req.on('error', reject);
      req.write(first);
    });
  }

  it('refuses a declared Content-Length above 64 KiB before reading the body', async () => {
    const answer = await partialRequest(
      '/token?grant_type=password',
      { 'content-type': 'application/json', 'content-length': String(64 * 1024 + 1) },
      '{"email":',
    );
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toMatchObject({ error_code: 'request_too_large' });
  });

  it('refuses a body that is not UTF-8 instead of reading it with replacement characters', async () => {
    const user = await createUser();
    const body = Buffer.concat([
      Buffer.from(`{"email":"${user.email}","password":"${PASSWORD}","x":"`),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}'),
    ]);
    const response = await auth('/token?grant_type=password', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error_code: 'bad_json',
      msg: expect.stringMatching(/UTF-8/),
    });
  });

  it('answers an unexpected failure with GoTrue’s generic message and logs the real one', async () => {
    const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 1 });
    await pool.end();
    const logged: unknown[] = [];
    const handler = createAuthHandler({
      pool,
      jwtSecret: stack.jwtSecret,
      onUnexpectedError: (error) => logged.push(error),
    });
    const server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      for (const modern of [false, true]) {
        const response = await fetch(`http://127.0.0.1:${port}/auth/v1/token?grant_type=password`, {
          method: 'POST',
          headers: {
            apikey: stack.anonKey,
            'content-type': 'application/json',
            ...(modern ? { 'x-supabase-api-version': '2024-01-01' } : {}),
          },
          body: JSON.stringify({ email: 'someone@example.test', password: PASSWORD }),
        });
        expect(response.status).toBeGreaterThanOrEqual(500);
        const text = await response.text();
        expect(text).not.toMatch(/pool|end/i);
        expect(JSON.parse(text)).toMatchObject(
          modern
            ? { code: 'unexpected_failure', message: expect.stringMatching(/server logs/) }
            : { error_code: 'unexpected_failure', msg: expect.stringMatching(/server logs/) },
        );
      }
      expect(logged).toHaveLength(2);
      expect(String((logged[0] as Error).message)).toMatch(/pool/i);
    } finally {
      server.close();
    }
  });
});
