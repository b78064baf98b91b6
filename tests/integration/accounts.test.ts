import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { addMember } from '../../src/accounts/add-member.ts';
import { ensureUser } from '../../src/accounts/ensure-user.ts';
import { listMembers } from '../../src/accounts/list-members.ts';
import { addOperator, listOperators, removeOperator } from '../../src/accounts/operators.ts';
import { removeMember } from '../../src/accounts/remove-member.ts';
import { createServiceClient } from '../../src/db/client.ts';
import { createTenant } from '../support/fixtures.ts';
import { anonClient, asRole, stack, superuser } from '../support/stack.ts';

/**
 * The account operations behind `flowmeter members` and `flowmeter operators`: users made
 * through the Auth Admin API, memberships through the service-only SQL functions, and the
 * operator mark, which only the service role can set and SQL reads from the token.
 */

const db = createServiceClient({
  SUPABASE_URL: stack.supabaseUrl,
  SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
});
const newEmail = () => `acct-${randomUUID().slice(0, 8)}@example.test`;
const PASSWORD = 'a fine long password';

async function signIn(email: string, password = PASSWORD) {
  const client = anonClient();
  const { data, error } = await client.auth.signInWithPassword({ email, password });
  if (error) throw error;
  return { client, token: data.session.access_token };
}

/**
 * What private.is_operator() says for the claims of this token, as an operator RPC runs it:
 * with the request's claims, as a role other than authenticated (the RPCs are security
 * definer), since authenticated may not execute it itself.
 */
async function isOperator(token: string): Promise<boolean> {
  const claims = decodeJwt(token);
  return asRole('service_role', claims, async (client) => {
    const { rows } = await client.query('select private.is_operator() as yes');
    return rows[0].yes;
  });
}

describe('addMember', () => {
  it('creates the user with a generated password, once, and makes them a viewer', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const added = await addMember({
      db,
      tenant: tenant.external_ref as string,
      email,
      role: 'viewer',
      access: { kind: 'generated_password' },
    });
    if (!added.ok) throw new Error(added.error.message);
    expect(added.value).toMatchObject({ role: 'viewer', user: { email, outcome: 'created' } });
    const password = added.value.user.generatedPassword as string;
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);

    const { client } = await signIn(email, password);
    const { data } = await client.rpc('tenant_usage_summary', {});
    expect(data?.map((r) => r.tenant_id)).toEqual([tenant.id]);

    // Again, as admin: the same user, no new password, the role changed.
    const again = await addMember({
      db,
      tenant: tenant.id,
      email: email.toUpperCase(),
      role: 'admin',
      access: { kind: 'generated_password' },
    });
    expect(again).toMatchObject({
      ok: true,
      value: { role: 'admin', user: { outcome: 'existing' } },
    });
    expect(again.ok && again.value.user.generatedPassword).toBeFalsy();
    const { rows } = await superuser().query(
      'select role from public.tenant_members where tenant_id = $1',
      [tenant.id],
    );
    expect(rows).toEqual([{ role: 'admin' }]);
  });

  it('two runs adding the same new address at once make one user, both succeeding', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const runs = await Promise.all(
      [1, 2].map(() =>
        addMember({
          db,
          tenant: tenant.id,
          email,
          role: 'viewer',
          access: { kind: 'password', password: PASSWORD },
        }),
      ),
    );
    expect(runs.map((r) => r.ok)).toEqual([true, true]);
    const ids = new Set(runs.map((r) => r.ok && r.value.user.id));
    expect(ids.size).toBe(1);
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.tenant_members where tenant_id = $1',
      [tenant.id],
    );
    expect(rows[0].n).toBe(1);
  });

  it('invites a new user when told to (hosted Supabase): no password, an invitation', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const added = await addMember({
      db,
      tenant: tenant.id,
      email,
      role: 'viewer',
      access: { kind: 'invite' },
    });
    expect(added).toMatchObject({ ok: true, value: { user: { outcome: 'invited' } } });
    const { rows } = await superuser().query(
      'select invited_at, encrypted_password from auth.users where email = $1',
      [email],
    );
    expect(rows[0].invited_at).toBeTruthy();
    expect(rows[0].encrypted_password).toBeNull();
  });

  it('refuses an unknown tenant before any user is made', async () => {
    const email = newEmail();
    const added = await addMember({
      db,
      tenant: 'no-such-tenant',
      email,
      role: 'viewer',
      access: { kind: 'generated_password' },
    });
    expect(added).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const { rows } = await superuser().query('select 1 from auth.users where email = $1', [email]);
    expect(rows).toEqual([]);
  });

  it('passes on what Supabase Auth refuses (a weak password) as invalid', async () => {
    const tenant = await createTenant();
    const added = await addMember({
      db,
      tenant: tenant.id,
      email: newEmail(),
      role: 'viewer',
      access: { kind: 'password', password: '123' },
    });
    expect(added).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    expect(added.ok || added.error.message).toMatch(/at least 6 characters/);
  });

  it('says unavailable, not failed, when Supabase cannot be reached', async () => {
    const offline = createServiceClient({
      SUPABASE_URL: 'http://127.0.0.1:9',
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    });
    const added = await addMember({
      db: offline,
      tenant: 'x',
      email: newEmail(),
      role: 'viewer',
      access: { kind: 'generated_password' },
    });
    expect(added).toMatchObject({ ok: false, error: { code: 'unavailable' } });
  });
});

describe('listMembers and removeMember', () => {
  it('lists a tenant’s members with their addresses, and removes one, keeping the user', async () => {
    const tenant = await createTenant();
    const other = await createTenant();
    const [first, second] = [newEmail(), newEmail()];
    for (const email of [first, second]) {
      await addMember({
        db,
        tenant: tenant.id,
        email,
        role: 'viewer',
        access: { kind: 'generated_password' },
      });
    }
    await addMember({
      db,
      tenant: other.id,
      email: first,
      role: 'admin',
      access: { kind: 'generated_password' },
    });

    const listed = await listMembers({ db, tenant: tenant.external_ref as string });
    if (!listed.ok) throw new Error(listed.error.message);
    expect(listed.value.map((m) => m.email).sort()).toEqual([first, second].sort());
    expect(listed.value.every((m) => m.tenant_id === tenant.id && m.role === 'viewer')).toBe(true);

    expect(await removeMember({ db, tenant: tenant.id, email: first })).toMatchObject({ ok: true });
    const after = await listMembers({ db, tenant: tenant.id });
    expect(after.ok && after.value.map((m) => m.email)).toEqual([second]);
    const elsewhere = await listMembers({ db, tenant: other.id });
    expect(elsewhere.ok && elsewhere.value.map((m) => m.email)).toEqual([first]);

    expect(await removeMember({ db, tenant: tenant.id, email: first })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect(await removeMember({ db, tenant: tenant.id, email: newEmail() })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
  });
});

describe('operators', () => {
  it('the mark set through the Admin API appears in the signed-in token; SQL reads it', async () => {
    const email = newEmail();
    const added = await addOperator({
      db,
      email,
      access: { kind: 'password', password: PASSWORD },
    });
    expect(added).toMatchObject({ ok: true, value: { outcome: 'created' } });

    const { token } = await signIn(email);
    expect(decodeJwt(token).app_metadata).toMatchObject({ flowmeter_role: 'operator' });
    expect(await isOperator(token)).toBe(true);
    const listed = await listOperators({ db });
    expect(listed.ok && listed.value.map((o) => o.email)).toContain(email);

    expect(await removeOperator({ db, email })).toMatchObject({ ok: true });
    const after = await signIn(email);
    expect(decodeJwt(after.token).app_metadata).not.toHaveProperty('flowmeter_role');
    expect(await isOperator(after.token)).toBe(false);
    expect(await removeOperator({ db, email })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
  });

  it('a tenant user is no operator, and user_metadata cannot make anyone one', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    await addMember({
      db,
      tenant: tenant.id,
      email,
      role: 'admin',
      access: { kind: 'password', password: PASSWORD },
    });
    const { client, token } = await signIn(email);
    expect(await isOperator(token)).toBe(false);

    // The user writes the mark into the metadata they own, and gets a fresh token.
    const { error } = await client.auth.updateUser({ data: { flowmeter_role: 'operator' } });
    expect(error).toBeNull();
    const { data } = await client.auth.refreshSession();
    const refreshed = data.session?.access_token as string;
    expect(decodeJwt(refreshed).user_metadata).toMatchObject({ flowmeter_role: 'operator' });
    expect(await isOperator(refreshed)).toBe(false);
    const listed = await listOperators({ db });
    expect(listed.ok && listed.value.map((o) => o.email)).not.toContain(email);
  });

  it('require_operator() refuses a tenant user with 42501 (403 through PostgREST)', async () => {
    const email = newEmail();
    await ensureUser({ db, email, access: { kind: 'password', password: PASSWORD } });
    const { token } = await signIn(email);
    const claims = decodeJwt(token);
    await expect(
      asRole('service_role', claims, (client) => client.query('select private.require_operator()')),
    ).rejects.toMatchObject({ code: '42501', message: 'only operators may do this' });
    await expect(
      asRole('anon', {}, (client) => client.query('select private.is_operator()')),
    ).rejects.toMatchObject({ code: '42501' });
  });

  it('the claim helpers are not executable by the API roles: only operator RPCs call them', async () => {
    const email = newEmail();
    await addOperator({ db, email, access: { kind: 'password', password: PASSWORD } });
    const { token } = await signIn(email);
    for (const helper of ['private.is_operator()', 'private.require_operator()']) {
      await expect(
        asRole('authenticated', decodeJwt(token), (client) => client.query(`select ${helper}`)),
      ).rejects.toMatchObject({
        code: '42501',
        message: expect.stringMatching(/permission denied/),
      });
    }
  });
});
