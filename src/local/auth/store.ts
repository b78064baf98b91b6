import { randomBytes, randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';

export interface UserRow {
  id: string;
  aud: string | null;
  role: string | null;
  email: string | null;
  encrypted_password: string | null;
  email_confirmed_at: Date | null;
  invited_at: Date | null;
  last_sign_in_at: Date | null;
  raw_app_meta_data: Record<string, unknown> | null;
  raw_user_meta_data: Record<string, unknown> | null;
  created_at: Date | null;
  updated_at: Date | null;
}

const USER_COLUMNS = `id, aud, role, email, encrypted_password, email_confirmed_at, invited_at,
  last_sign_in_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at`;

/** What an update may change; metadata is merged key by key, a null value removes its key. */
export interface UserChanges {
  email?: string;
  encryptedPassword?: string;
  emailConfirmed?: true;
  appMetadata?: Record<string, unknown>;
  userMetadata?: Record<string, unknown>;
}

export interface NewUser {
  email: string;
  encryptedPassword: string | null;
  emailConfirmed: boolean;
  invited: boolean;
  appMetadata: Record<string, unknown>;
  userMetadata: Record<string, unknown>;
}

export interface IssuedSession {
  sessionId: string;
  refreshToken: string;
}

export type RefreshOutcome =
  | { kind: 'rotated'; user: UserRow; session: IssuedSession }
  | { kind: 'unknown' }
  | { kind: 'reused' };

/** GoTrue's v1 refresh tokens are opaque random strings; these carry 192 bits. */
const newRefreshToken = () => randomBytes(24).toString('base64url');

/** GoTrue's metadata update: the given keys replace the stored ones, a null value removes its key. */
const merged = (column: string, changes: string) =>
  `((coalesce(${column}, '{}') - array(select key from jsonb_each(${changes}) where value = 'null'))
    || coalesce((select jsonb_object_agg(key, value) from jsonb_each(${changes}) where value <> 'null'), '{}'))`;

async function inTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

async function insertRefreshToken(
  client: PoolClient,
  userId: string,
  sessionId: string,
  parent: string | null,
): Promise<string> {
  const token = newRefreshToken();
  await client.query(
    'insert into auth.refresh_tokens (token, user_id, session_id, parent) values ($1, $2, $3, $4)',
    [token, userId, sessionId, parent],
  );
  return token;
}

/**
 * The local Auth subset's reads and writes of GoTrue's tables (auth.users, auth.sessions,
 * auth.refresh_tokens), through a pool connected as supabase_auth_admin, the role GoTrue
 * itself connects with.
 */
export function authStore(pool: Pool) {
  return {
    async userByEmail(email: string): Promise<UserRow | undefined> {
      const { rows } = await pool.query<UserRow>(
        `select ${USER_COLUMNS} from auth.users where lower(email) = lower($1)`,
        [email],
      );
      return rows[0];
    },

    async userById(id: string): Promise<UserRow | undefined> {
      const { rows } = await pool.query<UserRow>(
        `select ${USER_COLUMNS} from auth.users where id = $1`,
        [id],
      );
      return rows[0];
    },

    async listUsers(page: number, perPage: number): Promise<{ users: UserRow[]; total: number }> {
      const { rows } = await pool.query<UserRow & { total: string }>(
        `select ${USER_COLUMNS}, count(*) over () as total from auth.users
         order by created_at, id limit $1 offset $2`,
        [perPage, (page - 1) * perPage],
      );
      const total = rows[0]
        ? Number(rows[0].total)
        : Number(
            (await pool.query<{ n: string }>('select count(*) as n from auth.users')).rows[0]?.n,
          );
      return { users: rows, total };
    },

    /** The new user, or undefined when the e-mail address is taken. */
    async createUser(user: NewUser): Promise<UserRow | undefined> {
      const { rows } = await pool.query<UserRow>(
        `insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
           email_confirmed_at, invited_at, raw_app_meta_data, raw_user_meta_data)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated',
           lower($2), $3, case when $4 then now() end, case when $5 then now() end, $6, $7)
         on conflict (email) do nothing
         returning ${USER_COLUMNS}`,
        [
          randomUUID(),
          user.email,
          user.encryptedPassword,
          user.emailConfirmed,
          user.invited,
          user.appMetadata,
          user.userMetadata,
        ],
      );
      return rows[0];
    },

    /** The updated user, undefined when there is none, 'email_exists' when the new address is taken. */
    async updateUser(
      id: string,
      changes: UserChanges,
    ): Promise<UserRow | undefined | 'email_exists'> {
      try {
        const { rows } = await pool.query<UserRow>(
          `update auth.users set
             email = coalesce(lower($2), email),
             encrypted_password = coalesce($3, encrypted_password),
             email_confirmed_at = case when $4::boolean then coalesce(email_confirmed_at, now())
                                       else email_confirmed_at end,
             raw_app_meta_data = ${merged('raw_app_meta_data', '$5::jsonb')},
             raw_user_meta_data = ${merged('raw_user_meta_data', '$6::jsonb')},
             updated_at = now()
           where id = $1
           returning ${USER_COLUMNS}`,
          [
            id,
            changes.email ?? null,
            changes.encryptedPassword ?? null,
            changes.emailConfirmed ?? null,
            changes.appMetadata ?? null,
            changes.userMetadata ?? null,
          ],
        );
        return rows[0];
      } catch (error) {
        if ((error as { code?: string }).code === '23505') return 'email_exists';
        throw error;
      }
    },

    async deleteUser(id: string): Promise<boolean> {
      const { rowCount } = await pool.query('delete from auth.users where id = $1', [id]);
      return (rowCount ?? 0) > 0;
    },

    async startSession(userId: string, userAgent: string | undefined): Promise<IssuedSession> {
      return inTransaction(pool, async (client) => {
        const sessionId = randomUUID();
        await client.query(
          'insert into auth.sessions (id, user_id, user_agent) values ($1, $2, $3)',
          [sessionId, userId, userAgent ?? null],
        );
        await client.query('update auth.users set last_sign_in_at = now() where id = $1', [userId]);
        return {
          sessionId,
          refreshToken: await insertRefreshToken(client, userId, sessionId, null),
        };
      });
    },

    async sessionExists(sessionId: string): Promise<boolean> {
      const { rowCount } = await pool.query('select 1 from auth.sessions where id = $1', [
        sessionId,
      ]);
      return (rowCount ?? 0) > 0;
    },

    /**
     * Swaps a refresh token for a new one of the same session. A revoked token presented
     * again means it leaked (or a client raced itself): the whole session is revoked, as
     * GoTrue does with rotation on and no reuse interval; that revocation is committed.
     */
    async rotate(token: string): Promise<RefreshOutcome> {
      return inTransaction(pool, async (client) => {
        const { rows } = await client.query<{
          token: string;
          user_id: string;
          session_id: string;
          revoked: boolean;
        }>(
          'select token, user_id, session_id, revoked from auth.refresh_tokens where token = $1 for update',
          [token],
        );
        const current = rows[0];
        if (!current) return { kind: 'unknown' };
        if (current.revoked) {
          await client.query(
            'update auth.refresh_tokens set revoked = true, updated_at = now() where session_id = $1 and not revoked',
            [current.session_id],
          );
          return { kind: 'reused' };
        }
        await client.query(
          'update auth.refresh_tokens set revoked = true, updated_at = now() where token = $1',
          [token],
        );
        await client.query(
          'update auth.sessions set refreshed_at = now(), updated_at = now() where id = $1',
          [current.session_id],
        );
        const { rows: users } = await client.query<UserRow>(
          `select ${USER_COLUMNS} from auth.users where id = $1`,
          [current.user_id],
        );
        const user = users[0];
        if (!user) return { kind: 'unknown' };
        const refreshToken = await insertRefreshToken(
          client,
          user.id,
          current.session_id,
          current.token,
        );
        return { kind: 'rotated', user, session: { sessionId: current.session_id, refreshToken } };
      });
    },

    /** Ends sessions: the given one (local), all of the user's (global) or all but it (others). */
    async endSessions(
      userId: string,
      sessionId: string | undefined,
      scope: 'global' | 'local' | 'others',
    ): Promise<void> {
      const where = {
        global: 'user_id = $1',
        local: 'user_id = $1 and id = $2',
        others: 'user_id = $1 and id is distinct from $2',
      }[scope];
      await pool.query(`delete from auth.sessions where ${where}`, [
        userId,
        ...(scope === 'global' ? [] : [sessionId ?? null]),
      ]);
    },
  };
}

export type AuthStore = ReturnType<typeof authStore>;
