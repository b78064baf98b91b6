import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { createServiceClient } from '../../src/db/client.ts';
import { DEMO_OPERATOR_EMAIL, seedDemoUsers } from '../../src/local/demo/users.ts';
import { createTenant } from '../support/fixtures.ts';
import { anonClient, stack, superuser } from '../support/stack.ts';

/** The demo's sign-ins, as `npm start` seeds them on every start over the same data. */

const db = createServiceClient({
  SUPABASE_URL: stack.supabaseUrl,
  SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
});

async function signIn(email: string, password: string) {
  const client = anonClient();
  const { data, error } = await client.auth.signInWithPassword({ email, password });
  return { client, session: data.session, error };
}

describe('seedDemoUsers', () => {
  it('seeds a viewer per tenant and an operator, and a second start reuses them', async () => {
    const tenants = await Promise.all([createTenant(), createTenant()]);
    const demoTenants = tenants.map((t) => ({
      externalRef: t.external_ref as string,
      name: t.name,
    }));

    const first = await seedDemoUsers({
      db,
      tenants: demoTenants,
      passwords: { tenant: 'first tenant password', operator: 'first operator password' },
    });
    expect(first.tenants.map((u) => u.tenant)).toEqual(tenants.map((t) => t.name));

    for (const [i, user] of first.tenants.entries()) {
      const { client, error } = await signIn(user.email, user.password);
      expect(error).toBeNull();
      const { data } = await client.rpc('tenant_usage_summary', {});
      expect(data?.map((r) => r.tenant_id)).toEqual([tenants[i]?.id]);
    }
    const operator = await signIn(DEMO_OPERATOR_EMAIL, 'first operator password');
    expect(decodeJwt(operator.session?.access_token as string).app_metadata).toMatchObject({
      flowmeter_role: 'operator',
    });

    // A restart whose local.env was lost: new passwords, the same users, nothing fails.
    const second = await seedDemoUsers({
      db,
      tenants: demoTenants,
      passwords: { tenant: 'second tenant password', operator: 'second operator password' },
    });
    expect(second.tenants.map((u) => u.email)).toEqual(first.tenants.map((u) => u.email));
    const email = first.tenants[0]?.email as string;
    expect((await signIn(email, 'second tenant password')).error).toBeNull();
    expect((await signIn(email, 'first tenant password')).error).toMatchObject({ status: 400 });
    expect((await signIn(DEMO_OPERATOR_EMAIL, 'second operator password')).error).toBeNull();

    const { rows } = await superuser().query(
      `select count(*)::int as users,
              (select count(*)::int from public.tenant_members m where m.tenant_id = any($2)) as members
       from auth.users where email = any($1)`,
      [[...first.tenants.map((u) => u.email), DEMO_OPERATOR_EMAIL], tenants.map((t) => t.id)],
    );
    expect(rows[0]).toEqual({ users: 3, members: 2 });
  });
});
