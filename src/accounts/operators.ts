import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { fail, ok } from '../domain/result.ts';
import { type EnsuredUser, ensureUser, findUserId, type UserRequest } from './ensure-user.ts';
import { type AccountResult, authFailure, databaseFailure } from './supabase-failure.ts';

/**
 * Operators are Supabase Auth users whose app_metadata says so. Only the service role can
 * write app_metadata (the Auth Admin API), so a user can never make themselves one; SQL
 * reads the mark from the signed-in token (private.is_operator()). A change reaches a
 * signed-in operator's token at its next refresh.
 */
const OPERATOR_CLAIM = { flowmeter_role: 'operator' } as const;

export type Operator = Database['public']['Functions']['list_operators']['Returns'][number];

/** Marks the user with this address operator, creating or inviting them when there is none. */
export async function addOperator(options: UserRequest): Promise<AccountResult<EnsuredUser>> {
  const { db } = options;
  const user = await ensureUser(options);
  if (!user.ok) return user;
  const { error } = await db.auth.admin.updateUserById(user.value.id, {
    app_metadata: OPERATOR_CLAIM,
  });
  if (error) return authFailure(error, `marking ${user.value.email} operator`);
  return ok(user.value);
}

export async function listOperators(options: { db: Db }): Promise<AccountResult<Operator[]>> {
  const { data, error, status } = await options.db.rpc('list_operators');
  if (error) return databaseFailure(error, status, 'listing the operators');
  return ok(data);
}

/** Clears the operator mark; the user keeps their account and memberships. */
export async function removeOperator(options: {
  db: Db;
  email: string;
}): Promise<AccountResult<{ id: string; email: string }>> {
  const { db } = options;
  const email = options.email.toLowerCase();
  const notOperator = () =>
    fail('not_found', `${email} is not an operator: \`flowmeter operators list\` shows them`);
  const id = await findUserId(db, email);
  if (!id.ok) return id;
  if (!id.value) return notOperator();
  const { data, error } = await db.auth.admin.getUserById(id.value);
  if (error) return authFailure(error, `reading ${email}`);
  if (data.user.app_metadata?.flowmeter_role !== OPERATOR_CLAIM.flowmeter_role)
    return notOperator();
  // GoTrue removes an app_metadata key given as null.
  const cleared = await db.auth.admin.updateUserById(id.value, {
    app_metadata: { flowmeter_role: null },
  });
  if (cleared.error) return authFailure(cleared.error, `clearing the operator mark of ${email}`);
  return ok({ id: id.value, email });
}
