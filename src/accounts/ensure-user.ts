import { randomBytes } from 'node:crypto';
import type { Db } from '../db/client.ts';
import { ok } from '../domain/result.ts';
import { type AccountResult, authFailure, databaseFailure } from './supabase-failure.ts';

/** How a user who does not exist yet gets in. */
export type NewUserAccess =
  /** A password given by the operator (`--password -`). */
  | { kind: 'password'; password: string }
  /** A password made here and handed back once: a local stack has nobody to e-mail. */
  | { kind: 'generated_password' }
  /** Supabase Auth e-mails an invitation; the user picks their password. */
  | { kind: 'invite' };

export interface EnsuredUser {
  id: string;
  email: string;
  /** existing: the address already had an account, left as it was. */
  outcome: 'existing' | 'created' | 'invited';
  /** Only when made here: shown once, stored nowhere in clear. */
  generatedPassword?: string;
}

/** 18 random bytes: 24 characters, far beyond guessing, easy to paste. */
export const generatePassword = () => randomBytes(18).toString('base64url');

export async function findUserId(db: Db, email: string): Promise<AccountResult<string | null>> {
  const { data, error, status } = await db.rpc('auth_user_id', { email });
  if (error) return databaseFailure(error, status, `looking up ${email}`);
  return ok(data);
}

/** A user to be made sure of: their address, and how they get in when they are new. */
export interface UserRequest {
  db: Db;
  email: string;
  access: NewUserAccess;
  /** Sets the given password on an existing user too (the local demo's stable sign-ins). */
  resetPassword?: boolean;
}

/**
 * The Supabase Auth user with this address, created (or invited) through the Admin API
 * when there is none.
 */
export async function ensureUser(options: UserRequest): Promise<AccountResult<EnsuredUser>> {
  const { db, access } = options;
  const email = options.email.toLowerCase();
  const existing = await findUserId(db, email);
  if (!existing.ok) return existing;
  if (existing.value) {
    if (options.resetPassword && access.kind === 'password') {
      const { error } = await db.auth.admin.updateUserById(existing.value, {
        password: access.password,
      });
      if (error) return authFailure(error, `setting the password of ${email}`);
    }
    return ok({ id: existing.value, email, outcome: 'existing' });
  }
  if (access.kind === 'invite') {
    const { data, error } = await db.auth.admin.inviteUserByEmail(email);
    if (error) return authFailure(error, `inviting ${email}`);
    return ok({ id: data.user.id, email, outcome: 'invited' });
  }
  const password = access.kind === 'password' ? access.password : generatePassword();
  const { data, error } = await db.auth.admin.createUser({
    email,
    password,
    email_confirm: true,
  });
  if (error?.code === 'email_exists') {
    // Created meanwhile by another run: the same user, as if it had been there.
    const raced = await findUserId(db, email);
    if (raced.ok && raced.value) return ok({ id: raced.value, email, outcome: 'existing' });
  }
  if (error) return authFailure(error, `creating the user ${email}`);
  return ok({
    id: data.user.id,
    email,
    outcome: 'created',
    ...(access.kind === 'generated_password' ? { generatedPassword: password } : {}),
  });
}
