import { ok } from '../domain/result.ts';
import { type EnsuredUser, ensureUser, type UserRequest } from './ensure-user.ts';
import { type AccountResult, databaseFailure } from './supabase-failure.ts';
import { findTenant, type TenantRef } from './tenant-ref.ts';

export const MEMBER_ROLES = ['viewer', 'admin'] as const;
export type MemberRole = (typeof MEMBER_ROLES)[number];

export interface AddedMember {
  tenant: TenantRef;
  user: EnsuredUser;
  role: MemberRole;
}

/**
 * Makes the user with this address a member of the tenant with this role (changing the
 * role of a member already there). A user the address does not name yet is created or
 * invited first through the Auth Admin API. The tenant is checked before any user is
 * made, so a wrong tenant leaves Auth untouched.
 */
export async function addMember(
  options: UserRequest & { tenant: string; role: MemberRole },
): Promise<AccountResult<AddedMember>> {
  const { db } = options;
  const tenant = await findTenant(db, options.tenant);
  if (!tenant.ok) return tenant;
  const user = await ensureUser(options);
  if (!user.ok) return user;
  const { error, status } = await db.rpc('add_tenant_member', {
    tenant_id: tenant.value.id,
    user_id: user.value.id,
    role: options.role,
  });
  if (error)
    return databaseFailure(error, status, `adding ${user.value.email} to ${tenant.value.name}`);
  return ok({ tenant: tenant.value, user: user.value, role: options.role });
}
