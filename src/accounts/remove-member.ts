import type { Db } from '../db/client.ts';
import { findUserId } from './ensure-user.ts';
import { type AccountResult, databaseFailure, fail, ok } from './result.ts';
import { findTenant, type TenantRef } from './tenant-ref.ts';

/**
 * Ends the user's membership of the tenant. The Auth user stays: they may belong to
 * other tenants, and `flowmeter members add` can bring them back.
 */
export async function removeMember(options: {
  db: Db;
  tenant: string;
  email: string;
}): Promise<AccountResult<{ tenant: TenantRef; userId: string; email: string }>> {
  const { db } = options;
  const email = options.email.toLowerCase();
  const tenant = await findTenant(db, options.tenant);
  if (!tenant.ok) return tenant;
  const userId = await findUserId(db, email);
  if (!userId.ok) return userId;
  const notMember = () =>
    fail(
      'not_found',
      `${email} is not a member of ${tenant.value.name}: \`flowmeter members list --tenant ${options.tenant}\` shows its members`,
    );
  if (!userId.value) return notMember();
  const { data, error, status } = await db.rpc('remove_tenant_member', {
    tenant_id: tenant.value.id,
    user_id: userId.value,
  });
  if (error) return databaseFailure(error, status, `removing ${email} from ${tenant.value.name}`);
  if (!data) return notMember();
  return ok({ tenant: tenant.value, userId: userId.value, email });
}
