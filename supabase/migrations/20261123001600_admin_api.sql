-- Admin API: plans, tenants and members, for the operator CLI (`npx flowmeter …`), tests
-- and provisioning scripts, called with the service role key.
--
-- Service-only, like every administration function: EXECUTE is revoked from public, anon
-- and authenticated and granted to service_role. Each write is one function call, so a
-- failure (a bad argument, a name already taken) changes nothing. Reads are `stable` and
-- never touch the rows they report on: looking at usage does not expire reservations or
-- create counters, unlike enforce_usage.

-- Adds the user to the tenant, or changes the role of an existing member.
create or replace function public.add_tenant_member(
  tenant_id uuid,
  user_id uuid,
  role text default 'viewer'
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

-- Plans -------------------------------------------------------------------------------

-- Creates the plan, or changes the given fields of an existing one; a null argument keeps
-- the field as it is (or takes the column default for a new plan), so an operator changes
-- one thing without restating the rest. Optionally maps a Stripe price to the plan, in
-- the same transaction (upsert_plan_price).
create or replace function public.set_plan(
  id text,
  name text default null,
  limit_policy text default null,
  included_executions bigint default null,
  overage_unit_amount numeric default null,
  currency text default null,
  alert_thresholds smallint[] default null,
  trial_included_executions bigint default null,
  grace_days int default null,
  stripe_meter_event_name text default null,
  stripe_meter_id text default null,
  stripe_price_id text default null,
  -- Which executions count (null = n8n's own rule by default: production modes,
  -- finished statuses).
  billable_modes text[] default null,
  billable_statuses text[] default null,
  recurring_amount numeric default null
)
returns public.plans
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  existing public.plans;
  policy text;
  quota bigint;
  result public.plans;
begin
  select * into existing from public.plans p where p.id = set_plan.id for update;
  policy := coalesce(set_plan.limit_policy, existing.limit_policy, 'hard_limit');
  if policy not in ('hard_limit', 'overage', 'unlimited') then
    raise exception 'limit_policy must be hard_limit, overage or unlimited (got %)', quote_literal(policy);
  end if;
  if existing.id is null and set_plan.name is null then
    raise exception 'plan % does not exist yet, and a new plan needs a name', quote_literal(set_plan.id);
  end if;
  if policy = 'unlimited' then
    if set_plan.included_executions is not null then
      raise exception 'an unlimited plan has no quota: leave included_executions out';
    end if;
    quota := null;
  else
    quota := coalesce(set_plan.included_executions, existing.included_executions);
    if quota is null then
      raise exception 'a % plan needs included_executions, its quota per billing period', policy;
    end if;
  end if;
  if policy = 'overage' and coalesce(set_plan.overage_unit_amount, existing.overage_unit_amount) is null then
    raise exception 'an overage plan needs overage_unit_amount, the price of one execution above the quota in the currency''s minor unit';
  end if;

  if existing.id is null then
    -- A concurrent creator may win; then this call updates the plan it created.
    insert into public.plans (id, name, limit_policy, included_executions, overage_unit_amount)
    values (set_plan.id, set_plan.name, policy, quota, set_plan.overage_unit_amount)
    on conflict on constraint plans_pkey do nothing;
  end if;

  update public.plans p set
    name = coalesce(set_plan.name, p.name),
    limit_policy = policy,
    included_executions = quota,
    overage_unit_amount = coalesce(set_plan.overage_unit_amount, p.overage_unit_amount),
    currency = coalesce(set_plan.currency, p.currency),
    alert_thresholds = coalesce(set_plan.alert_thresholds, p.alert_thresholds),
    trial_included_executions = coalesce(set_plan.trial_included_executions, p.trial_included_executions),
    grace_days = coalesce(set_plan.grace_days, p.grace_days),
    stripe_meter_event_name = coalesce(set_plan.stripe_meter_event_name, p.stripe_meter_event_name),
    stripe_meter_id = coalesce(set_plan.stripe_meter_id, p.stripe_meter_id),
    billable_modes = coalesce(set_plan.billable_modes, p.billable_modes),
    billable_statuses = coalesce(set_plan.billable_statuses, p.billable_statuses),
    recurring_amount = coalesce(set_plan.recurring_amount, p.recurring_amount)
  where p.id = set_plan.id
  returning p.* into result;

  if set_plan.stripe_price_id is not null then
    perform public.upsert_plan_price(set_plan.stripe_price_id, set_plan.id);
  end if;
  return result;
end;
$$;

-- Plans with their Stripe prices and how many tenants are on each; plan_ids null = all.
create or replace function public.list_plans(plan_ids text[] default null)
returns table (
  id text,
  name text,
  limit_policy text,
  included_executions bigint,
  overage_unit_amount numeric,
  currency text,
  alert_thresholds smallint[],
  trial_included_executions bigint,
  grace_days int,
  stripe_meter_event_name text,
  stripe_meter_id text,
  stripe_price_ids text[],
  active boolean,
  tenants bigint,
  recurring_amount numeric
)
language sql stable
set search_path = ''
as $$
  select p.id, p.name, p.limit_policy, p.included_executions, p.overage_unit_amount, p.currency,
         p.alert_thresholds, p.trial_included_executions, p.grace_days, p.stripe_meter_event_name,
         p.stripe_meter_id,
         array(select pp.stripe_price_id from public.plan_prices pp where pp.plan_id = p.id order by pp.stripe_price_id),
         p.active,
         (select count(*) from public.tenants t where t.plan_id = p.id),
         p.recurring_amount
  from public.plans p
  where list_plans.plan_ids is null or p.id = any (list_plans.plan_ids)
  order by p.id
  limit private.api_max_rows();
$$;

-- Tenants -----------------------------------------------------------------------------

-- A Stripe customer belongs to one tenant: refuses (23505) one a tenant holds already.
-- Two transactions linking one customer at once take turns here until the first ends, so
-- the second sees its link and is refused with this message, not the unique index's.
create or replace function private.require_unlinked_customer(customer_id text)
returns void
language plpgsql volatile
set search_path = ''
as $$
declare
  holder uuid;
begin
  if require_unlinked_customer.customer_id is null then
    return;
  end if;
  perform pg_advisory_xact_lock(hashtext('flowmeter.stripe_customer ' || require_unlinked_customer.customer_id));
  select x.id into holder from public.tenants x where x.stripe_customer_id = require_unlinked_customer.customer_id;
  if holder is not null then
    raise exception 'Stripe customer % is already linked to tenant %', require_unlinked_customer.customer_id, holder
      using errcode = '23505', hint = 'A Stripe customer belongs to one tenant.';
  end if;
end;
$$;

-- Creates a tenant on a plan, optionally with its operator reference and Stripe customer,
-- with a message naming what is wrong instead of a bare constraint violation. An unknown
-- plan is PT404 (HTTP 404).
create or replace function public.add_tenant(
  name text,
  plan_id text,
  external_ref text default null,
  stripe_customer_id text default null
)
returns public.tenants
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  holder uuid;
  t public.tenants;
begin
  if not exists (select 1 from public.plans p where p.id = add_tenant.plan_id) then
    raise exception 'no plan has the id %', coalesce(quote_literal(add_tenant.plan_id), 'null')
      using errcode = 'PT404', hint = 'Create the plan first (set_plan), or pick an existing one.';
  end if;
  select x.id into holder from public.tenants x where x.external_ref = add_tenant.external_ref;
  if holder is not null then
    raise exception 'tenant % already has the external reference %', holder, quote_literal(add_tenant.external_ref)
      using errcode = '23505';
  end if;
  -- enforce_usage reads a UUID as an id first: this reference would name that tenant.
  if add_tenant.external_ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
     and exists (select 1 from public.tenants x where x.id = add_tenant.external_ref::uuid) then
    raise exception 'the external reference % is the id of tenant %', quote_literal(add_tenant.external_ref), add_tenant.external_ref::uuid
      using errcode = '23505', hint = 'A tenant is named by its id or its external reference; give this one a reference that is no tenant''s id.';
  end if;
  perform private.require_unlinked_customer(add_tenant.stripe_customer_id);

  insert into public.tenants (name, plan_id, external_ref, stripe_customer_id)
  values (add_tenant.name, add_tenant.plan_id, add_tenant.external_ref, add_tenant.stripe_customer_id)
  returning * into t;
  return t;
end;
$$;

-- Links an existing tenant to its Stripe customer, so its usage is reported and its
-- subscription events apply (one that found no tenant applies once Stripe resends it).
-- Linking the customer it holds changes nothing; a customer linked to another tenant, or a
-- tenant linked to another customer, is refused (23505), as add_tenant refuses one. An
-- unknown tenant is PT404 (HTTP 404).
create or replace function public.link_stripe_customer(tenant_id uuid, stripe_customer_id text)
returns public.tenants
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  cus text := link_stripe_customer.stripe_customer_id;
  t public.tenants;
begin
  perform private.require_stripe_id('stripe_customer_id', 'customer', 'cus', cus);
  select * into t from public.tenants x where x.id = link_stripe_customer.tenant_id for update;
  if not found then
    raise exception 'no tenant has the id %', coalesce(link_stripe_customer.tenant_id::text, 'null')
      using errcode = 'PT404';
  end if;
  if t.stripe_customer_id = cus then
    return t;
  end if;
  if t.stripe_customer_id is not null then
    raise exception 'tenant % is linked to Stripe customer % already', t.id, t.stripe_customer_id
      using errcode = '23505', hint = 'A tenant has one Stripe customer; add a new tenant for the other one.';
  end if;
  perform private.require_unlinked_customer(cus);
  update public.tenants x set stripe_customer_id = cus where x.id = t.id returning * into t;
  return t;
end;
$$;

-- Tenants with their current billing period's usage, as enforcement counts it: committed =
-- collected billable executions (billable) + active reservations (reserved); remaining,
-- percent and level are of committed. tenants: ids or external references to return
-- (null = all); the caller compares what comes back to find unknown ones.
create or replace function public.list_tenants(tenants text[] default null)
returns table (
  id uuid,
  name text,
  external_ref text,
  plan_id text,
  plan_name text,
  limit_policy text,
  subscription_status text,
  stripe_customer_id text,
  stripe_subscription_id text,
  sources bigint,
  created_at timestamptz,
  period_start timestamptz,
  period_end timestamptz,
  billable bigint,
  reserved bigint,
  committed bigint,
  quota bigint,
  remaining bigint,
  percent numeric,
  level text,
  reported bigint
)
language sql stable
set search_path = ''
as $$
  select t.id, t.name, t.external_ref, p.id, p.name, p.limit_policy, t.subscription_status,
         t.stripe_customer_id, t.stripe_subscription_id,
         (select count(*) from public.n8n_sources s where s.tenant_id = t.id),
         t.created_at, bp.period_start, bp.period_end,
         r.collected, r.held, u.committed, u.quota, st.remaining, st.percent, st.level,
         coalesce(c.reported, 0)
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
  left join public.usage_counters c on c.tenant_id = t.id and c.period_start = bp.period_start
  -- Enforcement's own reading: reservations past their expiry no longer count, even before
  -- a decision sweeps them.
  cross join lateral private.read_committed(t.id, bp.period_start) r
  cross join lateral (
    select private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                              p.included_executions, p.trial_included_executions) as quota,
           r.collected + r.held as committed
  ) u
  cross join lateral private.usage_standing(u.committed, u.quota, p.alert_thresholds) st
  where list_tenants.tenants is null
     or exists (
       select 1 from unnest(list_tenants.tenants) k(ref)
       where t.external_ref = k.ref
          or (k.ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' and t.id = k.ref::uuid)
     )
  order by t.name, t.id
  limit private.api_max_rows();
$$;

-- Members and operators ------------------------------------------------------------

-- Users themselves belong to Supabase Auth: they are created, invited, changed and
-- deleted only through its Admin API. These functions link them to tenants and read the
-- few fields of auth.users a person needs to recognise them.

-- True when the membership existed and is gone.
create or replace function public.remove_tenant_member(tenant_id uuid, user_id uuid)
returns boolean
language sql
set search_path = ''
as $$
  with removed as (
    delete from public.tenant_members m
    where m.tenant_id = remove_tenant_member.tenant_id and m.user_id = remove_tenant_member.user_id
    returning 1
  )
  select exists (select 1 from removed);
$$;

create or replace function public.list_tenant_members(tenant_ids uuid[] default null)
returns table (
  tenant_id uuid,
  tenant_name text,
  tenant_external_ref text,
  user_id uuid,
  email text,
  role text,
  created_at timestamptz,
  last_sign_in_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id, t.name, t.external_ref, m.user_id, u.email::text, m.role, m.created_at,
         u.last_sign_in_at
  from public.tenant_members m
  join public.tenants t on t.id = m.tenant_id
  join auth.users u on u.id = m.user_id
  where list_tenant_members.tenant_ids is null or m.tenant_id = any (list_tenant_members.tenant_ids)
  order by t.name, t.id, u.email
  limit private.api_max_rows();
$$;
comment on function public.list_tenant_members(uuid[]) is
  'security definer: reads members'' e-mail addresses from auth.users, which belongs to Supabase Auth and is granted to no API role; returns the address and last sign-in only. Service role only.';

-- Supabase Auth keeps addresses in lower case; the lookup ignores case as sign-in does.
create or replace function public.auth_user_id(email text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select u.id from auth.users u where lower(u.email) = lower(auth_user_id.email);
$$;
comment on function public.auth_user_id(text) is
  'security definer: finds a Supabase Auth user by e-mail address in auth.users, which is granted to no API role (the Admin API can only page through every user). Service role only.';

-- app_metadata is written only with the service role (Auth Admin API); user_metadata is
-- the user's own to edit, so it never decides anything.
create or replace function public.list_operators()
returns table (user_id uuid, email text, created_at timestamptz, last_sign_in_at timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select u.id, u.email::text, u.created_at, u.last_sign_in_at
  from auth.users u
  where u.raw_app_meta_data ->> 'flowmeter_role' = 'operator'
  order by u.email
  limit private.api_max_rows();
$$;
comment on function public.list_operators() is
  'security definer: reads the operator mark in auth.users.raw_app_meta_data, which belongs to Supabase Auth and is granted to no API role. Service role only.';

select private.grant_to_service_role_only(
  'public.add_tenant_member(uuid, uuid, text)',
  'public.remove_tenant_member(uuid, uuid)',
  'public.list_tenant_members(uuid[])',
  'public.auth_user_id(text)',
  'public.list_operators()',
  'public.set_plan(text, text, text, bigint, numeric, text, smallint[], bigint, int, text, text, text, text[], text[], numeric)',
  'public.list_plans(text[])',
  'private.require_unlinked_customer(text)',
  'public.add_tenant(text, text, text, text)',
  'public.link_stripe_customer(uuid, text)',
  'public.list_tenants(text[])'
);
