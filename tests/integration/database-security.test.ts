import { describe, expect, it } from 'vitest';
import { superuser } from '../support/stack.ts';

/**
 * Catalogue-level guarantees for everything the migrations create (and every later
 * migration): a table without RLS, a function the API roles may call by accident or a
 * function with a mutable search_path fails here.
 */

// Functions tenant users (authenticated) may call; anon may call none.
const AUTHENTICATED_CALLABLE = new Set<string>([
  'mark_alert_read',
  'tenant_usage_summary',
  'tenant_usage_daily',
  'tenant_workflow_breakdown',
  'tenant_usage_history',
  'tenant_usage_export',
  'tenant_invoice_preview',
  'tenant_usage_corrections',
  'tenant_alerts',
  // private helpers the tenant-facing functions call (pure, or RLS-filtered)
  'billing_period',
  'plan_quota',
  'usage_standing',
  'tenant_usage_summary_rows',
  'counted_period',
  'read_committed',
  'page_size',
  'finite',
  'api_max_rows',
  // operator console RPCs: each calls require_operator() first
  'operator_overview',
  'operator_tenants',
  'operator_tenant',
  'operator_health',
  'operator_set_source_enabled',
  'operator_acknowledge_gaps',
  'operator_resend_alert_delivery',
]);

const isTestObject = (name: string) => name.startsWith('rpc_test_');

describe('database security', () => {
  it('every table in public has row-level security enabled', async () => {
    const { rows } = await superuser().query(`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity`);
    expect(rows.map((r) => r.relname)).toEqual([]);
  });

  it('no function in public or private is executable by anon', async () => {
    const { rows } = await superuser().query(`
      select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'private') and has_function_privilege('anon', p.oid, 'execute')`);
    expect(rows.map((r) => r.proname).filter((n) => !isTestObject(n))).toEqual([]);
  });

  it('authenticated may execute only the tenant-facing functions', async () => {
    const { rows } = await superuser().query(`
      select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'private') and has_function_privilege('authenticated', p.oid, 'execute')`);
    const callable = rows.map((r) => r.proname).filter((n) => !isTestObject(n));
    expect(callable.filter((n) => !AUTHENTICATED_CALLABLE.has(n))).toEqual([]);
  });

  it('every function in public and private pins search_path', async () => {
    const { rows } = await superuser().query(`
      select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'private')
        and not exists (select 1 from unnest(p.proconfig) c where c like 'search_path=%')`);
    expect(rows.map((r) => r.proname)).toEqual([]);
  });

  it('no security definer function exists without a comment saying why', async () => {
    const { rows } = await superuser().query(`
      select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'private') and p.prosecdef
        and coalesce(obj_description(p.oid, 'pg_proc'), '') not ilike '%security definer%'`);
    expect(rows.map((r) => r.proname)).toEqual([]);
  });

  it('anon and authenticated hold no write privilege on any table', async () => {
    const { rows } = await superuser().query(`
      select c.relname, r.rolname, p.privilege
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join (values ('anon'), ('authenticated')) r(rolname)
      cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p(privilege)
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
        and has_table_privilege(r.rolname, c.oid, p.privilege)`);
    expect(rows.filter((r) => !isTestObject(r.relname))).toEqual([]);
  });

  it('anon and authenticated hold no privilege on any sequence (they insert nothing)', async () => {
    const { rows } = await superuser().query(`
      select c.relname, r.rolname, p.privilege
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join (values ('anon'), ('authenticated')) r(rolname)
      cross join (values ('usage'), ('select'), ('update')) p(privilege)
      where n.nspname in ('public', 'private') and c.relkind = 'S'
        and has_sequence_privilege(r.rolname, c.oid, p.privilege)`);
    expect(rows.filter((r) => !isTestObject(r.relname))).toEqual([]);
    const { rows: sequences } = await superuser().query(
      "select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'S'",
    );
    // The check looks at something: public has identity columns.
    expect(sequences[0].n).toBeGreaterThan(0);
  });
});
