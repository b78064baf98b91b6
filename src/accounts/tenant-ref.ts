import type { Db } from '../db/client.ts';
import { type AccountResult, databaseFailure, fail, ok } from './result.ts';

export interface TenantRef {
  id: string;
  name: string;
  external_ref: string | null;
}

/** A tenant by id or external reference. */
export async function findTenant(db: Db, ref: string): Promise<AccountResult<TenantRef>> {
  const { data, error, status } = await db.rpc('list_tenants', { tenants: [ref] });
  if (error) return databaseFailure(error, status, `looking up the tenant ${ref}`);
  const tenant = data.find((t) => t.id === ref.toLowerCase() || t.external_ref === ref);
  if (!tenant) {
    return fail(
      'not_found',
      `no tenant has the id or external reference "${ref}": \`flowmeter tenants list\` shows them`,
    );
  }
  return ok({ id: tenant.id, name: tenant.name, external_ref: tenant.external_ref });
}
