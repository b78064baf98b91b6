import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { isRpcFailure, rpcResult } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { type AccountResult, databaseFailure } from './supabase-failure.ts';

export type ListedTenant = Database['public']['Functions']['list_tenants']['Returns'][number];

export interface TenantRef {
  id: string;
  name: string;
  external_ref: string | null;
}

/**
 * Tenants by id or external reference, each named once; an unknown one is `not_found`
 * saying how to list them. A failed call keeps the rpc() answer in its details.
 */
export async function findTenants(db: Db, refs: string[]): Promise<Result<ListedTenant[]>> {
  const wanted = [...new Set(refs.map((r) => r.trim()))];
  const listed = rpcResult(await db.rpc('list_tenants', { tenants: wanted }));
  if (!listed.ok) return listed;
  const missing = wanted.filter(
    (ref) => !listed.value.some((t) => t.id === ref.toLowerCase() || t.external_ref === ref),
  );
  if (missing.length > 0) {
    return fail(
      'not_found',
      `no tenant has the id or external reference ${missing.map((m) => `"${m}"`).join(', ')}: \`flowmeter tenants list\` shows them`,
    );
  }
  return listed;
}

/** A tenant by id or external reference. */
export async function findTenant(db: Db, ref: string): Promise<AccountResult<TenantRef>> {
  const found = await findTenants(db, [ref]);
  if (!found.ok) {
    const { details } = found.error;
    return isRpcFailure(details)
      ? databaseFailure(details.error, details.status, `looking up the tenant ${ref}`)
      : found;
  }
  const [tenant] = found.value;
  if (!tenant) return fail('internal', `the tenant list returned nothing for "${ref}"`);
  return ok({ id: tenant.id, name: tenant.name, external_ref: tenant.external_ref });
}
