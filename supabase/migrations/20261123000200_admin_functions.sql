-- Service-only administration functions: plans, tenants, members, n8n sources.
--
-- Called with the service role key (operator CLI, tests, provisioning scripts). Each is one
-- statement, so a failure changes nothing. EXECUTE is granted to service_role alone.

create or replace function private.default_billable_modes()
returns text[]
language sql immutable
set search_path = ''
as $$ select array['cli', 'retry', 'trigger', 'webhook', 'evaluation'] $$;

create or replace function private.default_billable_statuses()
returns text[]
language sql immutable
set search_path = ''
as $$ select array['success', 'error', 'crashed'] $$;

create or replace function private.default_alert_thresholds()
returns smallint[]
language sql immutable
set search_path = ''
as $$ select array[80, 100]::smallint[] $$;

grant usage on schema private to service_role;
grant execute on function private.default_billable_modes(), private.default_billable_statuses(),
  private.default_alert_thresholds() to service_role;

alter table public.plans
  alter column billable_modes set default private.default_billable_modes(),
  alter column billable_statuses set default private.default_billable_statuses(),
  alter column alert_thresholds set default private.default_alert_thresholds();

-- Creates the plan or replaces every field of an existing one.
create or replace function public.upsert_plan(
  id text,
  name text,
  limit_policy text default 'hard_limit',
  included_executions bigint default null,
  overage_unit_amount numeric default null,
  currency text default 'usd',
  -- null = the defaults (n8n's billable rule; alerts at 80 % and 100 %). Not written as
  -- parameter defaults: those are evaluated with the caller's privileges before EXECUTE
  -- is checked, so a refused caller would be told about the private helper instead.
  billable_modes text[] default null,
  billable_statuses text[] default null,
  alert_thresholds smallint[] default null,
  active boolean default true
)
returns public.plans
language sql
set search_path = ''
as $$
  insert into public.plans as p (
    id, name, limit_policy, included_executions, overage_unit_amount, currency,
    billable_modes, billable_statuses, alert_thresholds, active
  )
  values (
    upsert_plan.id, upsert_plan.name, upsert_plan.limit_policy, upsert_plan.included_executions,
    upsert_plan.overage_unit_amount, upsert_plan.currency,
    coalesce(upsert_plan.billable_modes, private.default_billable_modes()),
    coalesce(upsert_plan.billable_statuses, private.default_billable_statuses()),
    coalesce(upsert_plan.alert_thresholds, private.default_alert_thresholds()),
    upsert_plan.active
  )
  on conflict on constraint plans_pkey do update set
    name = excluded.name,
    limit_policy = excluded.limit_policy,
    included_executions = excluded.included_executions,
    overage_unit_amount = excluded.overage_unit_amount,
    currency = excluded.currency,
    billable_modes = excluded.billable_modes,
    billable_statuses = excluded.billable_statuses,
    alert_thresholds = excluded.alert_thresholds,
    active = excluded.active
  returning p.*;
$$;

create or replace function public.create_tenant(
  name text,
  plan_id text,
  external_ref text default null
)
returns public.tenants
language sql
set search_path = ''
as $$
  insert into public.tenants (name, plan_id, external_ref)
  values (create_tenant.name, create_tenant.plan_id, create_tenant.external_ref)
  returning *;
$$;

-- Adds the user to the tenant, or changes the role of an existing member.
create or replace function public.add_tenant_member(
  tenant_id uuid,
  user_id uuid,
  role text default 'member'
)
returns public.tenant_members
language sql
set search_path = ''
as $$
  insert into public.tenant_members as m (tenant_id, user_id, role)
  values (add_tenant_member.tenant_id, add_tenant_member.user_id, add_tenant_member.role)
  on conflict on constraint tenant_members_pkey do update set role = excluded.role
  returning m.*;
$$;

-- The caller encrypts the API key (src/crypto); the database stores ciphertext only.
create or replace function public.add_n8n_source(
  tenant_id uuid,
  name text,
  base_url text,
  api_key_ciphertext text,
  project_id text default null
)
returns public.n8n_sources
language sql
set search_path = ''
as $$
  insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext, project_id)
  values (
    add_n8n_source.tenant_id, add_n8n_source.name, add_n8n_source.base_url,
    add_n8n_source.api_key_ciphertext, add_n8n_source.project_id
  )
  returning *;
$$;

revoke execute on function
  public.upsert_plan(text, text, text, bigint, numeric, text, text[], text[], smallint[], boolean),
  public.create_tenant(text, text, text),
  public.add_tenant_member(uuid, uuid, text),
  public.add_n8n_source(uuid, text, text, text, text)
  from public, anon, authenticated;
grant execute on function
  public.upsert_plan(text, text, text, bigint, numeric, text, text[], text[], smallint[], boolean),
  public.create_tenant(text, text, text),
  public.add_tenant_member(uuid, uuid, text),
  public.add_n8n_source(uuid, text, text, text, text)
  to service_role;
