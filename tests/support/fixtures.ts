import { randomUUID } from 'node:crypto';
import { serviceClient, superuser, uniqueId } from './stack.ts';

/** Fixtures go through the same service-only functions the operator uses. */
export async function createPlan(
  overrides: { included_executions?: number; limit_policy?: string } = {},
) {
  const { data, error } = await serviceClient().rpc('set_plan', {
    id: uniqueId('plan'),
    name: 'Test plan',
    included_executions: overrides.included_executions ?? 1000,
    limit_policy: overrides.limit_policy ?? 'hard_limit',
  });
  if (error) throw new Error(`set_plan: ${error.message}`);
  return data;
}

export async function createTenant(planId?: string) {
  const plan = planId ?? (await createPlan()).id;
  const { data, error } = await serviceClient().rpc('add_tenant', {
    name: uniqueId('tenant'),
    plan_id: plan,
    external_ref: uniqueId('ext'),
  });
  if (error) throw new Error(`add_tenant: ${error.message}`);
  return data;
}

/** A Supabase Auth user; auth.users belongs to Supabase Auth, so fixtures write it directly. */
export async function createUser(): Promise<string> {
  const id = randomUUID();
  await superuser().query(
    "insert into auth.users (id, email, role, aud) values ($1, $2, 'authenticated', 'authenticated')",
    [id, `${id}@example.test`],
  );
  return id;
}

export async function addMember(tenantId: string, userId: string, role = 'member') {
  const { error } = await serviceClient().rpc('add_tenant_member', {
    tenant_id: tenantId,
    user_id: userId,
    role,
  });
  if (error) throw new Error(`add_tenant_member: ${error.message}`);
}
