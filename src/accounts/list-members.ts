import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { type AccountResult, databaseFailure, ok } from './result.ts';
import { findTenant } from './tenant-ref.ts';

export type Member = Database['public']['Functions']['list_tenant_members']['Returns'][number];

/** Every tenant's members, or one tenant's (by id or external reference). */
export async function listMembers(options: {
  db: Db;
  tenant?: string;
}): Promise<AccountResult<Member[]>> {
  const { db } = options;
  let tenantIds: string[] | undefined;
  if (options.tenant) {
    const tenant = await findTenant(db, options.tenant);
    if (!tenant.ok) return tenant;
    tenantIds = [tenant.value.id];
  }
  const { data, error, status } = await db.rpc(
    'list_tenant_members',
    tenantIds ? { tenant_ids: tenantIds } : {},
  );
  if (error) return databaseFailure(error, status, 'listing the members');
  return ok(data);
}
