-- Operator functions: what the operator CLI (`npx flowmeter …`) reads and writes.
--
-- Service-only, like every administration function: EXECUTE is revoked from public, anon
-- and authenticated and granted to service_role. Each write is one function call, so a
-- failure (a bad argument, a name already taken) changes nothing. Reads are `stable` and
-- never touch the rows they report on: looking at usage does not expire reservations or
-- create counters, unlike enforce_usage.

-- Plans -------------------------------------------------------------------------------

-- Creates the plan, or changes the given fields of an existing one; a null argument keeps
-- the field as it is (or takes the column default for a new plan). Optionally maps a
-- Stripe price to the plan, in the same transaction (upsert_plan_price). Unlike
-- upsert_plan, which replaces every field, this suits an operator changing one thing.
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
  stripe_price_id text default null
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
    stripe_meter_id = coalesce(set_plan.stripe_meter_id, p.stripe_meter_id)
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
  tenants bigint
)
language sql stable
set search_path = ''
as $$
  select p.id, p.name, p.limit_policy, p.included_executions, p.overage_unit_amount, p.currency,
         p.alert_thresholds, p.trial_included_executions, p.grace_days, p.stripe_meter_event_name,
         p.stripe_meter_id,
         array(select pp.stripe_price_id from public.plan_prices pp where pp.plan_id = p.id order by pp.stripe_price_id),
         p.active,
         (select count(*) from public.tenants t where t.plan_id = p.id)
  from public.plans p
  where list_plans.plan_ids is null or p.id = any (list_plans.plan_ids)
  order by p.id;
$$;

-- Tenants -----------------------------------------------------------------------------

-- create_tenant, plus the Stripe customer, with a message naming what is wrong instead of
-- a bare constraint violation. An unknown plan is PT404 (HTTP 404).
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
  select x.id into holder from public.tenants x where x.stripe_customer_id = add_tenant.stripe_customer_id;
  if holder is not null then
    raise exception 'Stripe customer % is already linked to tenant %', add_tenant.stripe_customer_id, holder
      using errcode = '23505', hint = 'A Stripe customer belongs to one tenant.';
  end if;

  insert into public.tenants (name, plan_id, external_ref, stripe_customer_id)
  values (add_tenant.name, add_tenant.plan_id, add_tenant.external_ref, add_tenant.stripe_customer_id)
  returning * into t;
  return t;
end;
$$;

-- Tenants with their current billing period's usage, as enforcement counts it: used =
-- collected billable executions + active reservations. tenants: ids or external references
-- to return (null = all); the caller compares what comes back to find unknown ones.
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
  used bigint,
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
         coalesce(c.billable, 0), r.active, u.used, u.quota, st.remaining, st.percent, st.level,
         coalesce(c.reported, 0)
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
  left join public.usage_counters c on c.tenant_id = t.id and c.period_start = bp.period_start
  -- Reservations past their expiry no longer count, even before a decision sweeps them.
  cross join lateral (
    select count(*) as active from public.usage_reservations x
    where x.tenant_id = t.id and x.period_start = bp.period_start
      and x.released_at is null and x.expires_at > now()
  ) r
  cross join lateral (
    select private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                              p.included_executions, p.trial_included_executions) as quota,
           coalesce(c.billable, 0) + r.active as used
  ) u
  cross join lateral private.usage_standing(u.used, u.quota, p.alert_thresholds) st
  where list_tenants.tenants is null
     or exists (
       select 1 from unnest(list_tenants.tenants) k(ref)
       where t.external_ref = k.ref
          or (k.ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' and t.id = k.ref::uuid)
     )
  order by t.name, t.id;
$$;

-- n8n sources -------------------------------------------------------------------------

-- Sources with their collection health: lag (seconds since the last successful
-- collection; null when none succeeded yet), failures, open executions and gaps. Never
-- the key ciphertext.
create or replace function public.list_n8n_sources(
  tenant_ids uuid[] default null,
  source_ids uuid[] default null
)
returns table (
  id uuid,
  tenant_id uuid,
  tenant_name text,
  name text,
  base_url text,
  project_id text,
  enabled boolean,
  created_at timestamptz,
  last_attempt_at timestamptz,
  last_success_at timestamptz,
  lag_seconds bigint,
  consecutive_failures int,
  last_error text,
  last_error_at timestamptz,
  next_attempt_at timestamptz,
  open_executions bigint,
  gaps bigint
)
language sql stable
set search_path = ''
as $$
  select s.id, s.tenant_id, t.name, s.name, s.base_url, s.project_id, s.enabled, s.created_at,
         st.last_attempt_at, st.last_success_at,
         floor(extract(epoch from now() - st.last_success_at))::bigint,
         coalesce(st.consecutive_failures, 0), st.last_error, st.last_error_at, st.next_attempt_at,
         (select count(*) from public.open_executions o where o.source_id = s.id)
           + (select count(*) from public.execution_probes pr where pr.source_id = s.id),
         (select count(*) from public.collection_gaps g where g.source_id = s.id)
  from public.n8n_sources s
  join public.tenants t on t.id = s.tenant_id
  left join public.collector_source_state st on st.source_id = s.id
  where (list_n8n_sources.tenant_ids is null or s.tenant_id = any (list_n8n_sources.tenant_ids))
    and (list_n8n_sources.source_ids is null or s.id = any (list_n8n_sources.source_ids))
  order by t.name, s.base_url, s.id;
$$;

-- Where sources are and their sealed keys (the caller decrypts them with
-- FLOWMETER_ENCRYPTION_KEYS): these sources, or these tenants' (all by default), oldest
-- first. For testing a connection, replacing a key, re-encrypting keys. No row for an
-- unknown id.
create or replace function public.n8n_source_credentials(
  source_ids uuid[] default null,
  tenant_ids uuid[] default null
)
returns table (id uuid, tenant_id uuid, base_url text, project_id text, api_key_ciphertext text)
language sql stable
set search_path = ''
as $$
  select s.id, s.tenant_id, s.base_url, s.project_id, s.api_key_ciphertext
  from public.n8n_sources s
  where (n8n_source_credentials.source_ids is null or s.id = any (n8n_source_credentials.source_ids))
    and (n8n_source_credentials.tenant_ids is null or s.tenant_id = any (n8n_source_credentials.tenant_ids))
  order by s.created_at, s.id;
$$;

-- Scheduled runs ----------------------------------------------------------------------

-- Every run of every scheduled function, for the operator: when, how long, what it did.
-- (Collector runs also keep their own detail in collector_runs.)

create table public.scheduled_runs (
  id uuid primary key default gen_random_uuid(),
  function_name text not null
    constraint scheduled_runs_function_name_format check (function_name ~ '^[a-z0-9-]{1,100}$'),
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  ok boolean,
  summary jsonb,
  error text
);
comment on table public.scheduled_runs is 'One row per scheduled function run: started, finished, ok or the error, and its summary.';
create index scheduled_runs_function_started_idx on public.scheduled_runs (function_name, started_at desc);

alter table public.scheduled_runs enable row level security;
revoke all on table public.scheduled_runs from public, anon, authenticated;
grant all on table public.scheduled_runs to service_role;

create or replace function public.start_scheduled_run(function_name text)
returns uuid
language sql
set search_path = ''
as $$
  insert into public.scheduled_runs (function_name) values (start_scheduled_run.function_name) returning id;
$$;

create or replace function public.finish_scheduled_run(id uuid, ok boolean, summary jsonb default null, error text default null)
returns public.scheduled_runs
language sql
set search_path = ''
as $$
  update public.scheduled_runs r set
    finished_at = now(),
    ok = finish_scheduled_run.ok,
    summary = finish_scheduled_run.summary,
    error = left(finish_scheduled_run.error, 2000)
  where r.id = finish_scheduled_run.id and r.finished_at is null
  returning r.*;
$$;

revoke execute on function public.start_scheduled_run(text), public.finish_scheduled_run(uuid, boolean, jsonb, text)
  from public, anon, authenticated;
grant execute on function public.start_scheduled_run(text), public.finish_scheduled_run(uuid, boolean, jsonb, text)
  to service_role;

create index scheduled_runs_started_idx on public.scheduled_runs (started_at);

-- Scheduled runs as the operator should read them: a run that started over 15 minutes ago
-- (the longest a Netlify background function may run) and never finished was killed or
-- timed out, so it failed, whatever it could not record. A plain view: inlined where used.
create view private.scheduled_run_outcomes with (security_invoker = true) as
select r.id, r.function_name, r.started_at, r.finished_at, r.summary,
       case when r.finished_at is null and r.started_at < now() - interval '15 minutes'
            then false else r.ok end as ok,
       case when r.finished_at is null and r.started_at < now() - interval '15 minutes'
            then 'did not finish: killed or timed out' else r.error end as error
from public.scheduled_runs r;
revoke all on private.scheduled_run_outcomes from public, anon, authenticated;
grant select on private.scheduled_run_outcomes to service_role;

-- Retention -----------------------------------------------------------------------------

-- History older than the raw-execution retention (the start of the month
-- `retention_months` months ago): released reservations, scheduled runs and collector runs,
-- up to `batch` rows of each per call, oldest first. Counters, alerts and the Stripe ledger
-- are kept. The collector's scheduled upkeep calls it, so a backlog drains a batch per run.
create or replace function public.prune_history(retention_months int default 3, batch int default 10000)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  cutoff timestamptz := date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                        - make_interval(months => prune_history.retention_months);
  reservations bigint;
  scheduled bigint;
  collector bigint;
begin
  if prune_history.retention_months < 1 or prune_history.batch < 1 then
    raise exception 'retention_months and batch must be at least 1 (got %, %)',
      prune_history.retention_months, prune_history.batch using errcode = 'P0001';
  end if;
  with doomed as (
    select r.id from public.usage_reservations r
    where r.released_at is not null and r.released_at < cutoff
    order by r.released_at limit prune_history.batch
  ), gone as (
    -- Checked again on the row as it is when locked: a retry may have revived it since.
    delete from public.usage_reservations r using doomed
    where r.id = doomed.id and r.released_at is not null and r.released_at < cutoff
    returning 1
  )
  select count(*) into reservations from gone;
  with doomed as (
    select r.id from public.scheduled_runs r
    where r.started_at < cutoff order by r.started_at limit prune_history.batch
  ), gone as (
    delete from public.scheduled_runs r using doomed where r.id = doomed.id returning 1
  )
  select count(*) into scheduled from gone;
  with doomed as (
    select r.id from public.collector_runs r
    where r.started_at < cutoff order by r.started_at limit prune_history.batch
  ), gone as (
    delete from public.collector_runs r using doomed where r.id = doomed.id returning 1
  )
  select count(*) into collector from gone;
  return jsonb_build_object('reservations', reservations, 'scheduled_runs', scheduled,
                            'collector_runs', collector);
end;
$$;

revoke execute on function public.prune_history(int, int) from public, anon, authenticated;
grant execute on function public.prune_history(int, int) to service_role;

-- Status ------------------------------------------------------------------------------

-- One snapshot for the operator's status screen: the sources most in need of attention
-- (failing first, then the longest lag), Stripe reports not sent yet, alert deliveries not
-- delivered, the latest collector runs, and each scheduled function's latest run with how
-- many have failed since its last success (runs and functions are not per tenant).
-- tenant_ids limits everything but runs and functions to those tenants. Runs are read
-- through private.scheduled_run_outcomes, so one killed before it could finish counts as
-- failed.
create or replace function public.operator_status(
  tenant_ids uuid[] default null,
  max_sources int default 20,
  max_runs int default 5
)
returns jsonb
language sql stable
set search_path = ''
as $$
  with sources as (
    select * from public.list_n8n_sources(operator_status.tenant_ids)
  ),
  reports as (
    select r.* from public.meter_reports r
    where r.status in ('pending', 'late')
      and (operator_status.tenant_ids is null or r.tenant_id = any (operator_status.tenant_ids))
  ),
  deliveries as (
    select d.* from public.alert_deliveries d
    join public.usage_alerts a on a.id = d.alert_id
    where d.status <> 'delivered'
      and (operator_status.tenant_ids is null or a.tenant_id = any (operator_status.tenant_ids))
  )
  select jsonb_build_object(
    'generated_at', now(),
    'sources', jsonb_build_object(
      'total', (select count(*) from sources),
      'enabled', (select count(*) from sources where enabled),
      'failing', (select count(*) from sources where enabled and consecutive_failures > 0),
      'never_collected', (select count(*) from sources where enabled and last_success_at is null),
      'max_lag_seconds', (select max(lag_seconds) from sources where enabled),
      'worst', coalesce((
        select jsonb_agg(to_jsonb(w) order by w.consecutive_failures desc, w.lag_seconds desc nulls first, w.id)
        from (
          select s.id, s.tenant_id, s.tenant_name, s.base_url, s.enabled, s.last_success_at,
                 s.lag_seconds, s.consecutive_failures, s.last_error, s.last_error_at
          from sources s
          order by s.enabled desc, s.consecutive_failures desc, s.lag_seconds desc nulls first, s.id
          limit greatest(operator_status.max_sources, 0)
        ) w
      ), '[]'::jsonb)
    ),
    'meter_reports', jsonb_build_object(
      'pending', (select count(*) from reports where status = 'pending'),
      'pending_value', (select coalesce(sum(value), 0) from reports where status = 'pending'),
      'retrying', (select count(*) from reports where status = 'pending' and attempts > 0),
      'oldest_pending_at', (select min(created_at) from reports where status = 'pending'),
      'late', (select count(*) from reports where status = 'late'),
      'late_value', (select coalesce(sum(value), 0) from reports where status = 'late'),
      'last_error', (
        select r.last_error from reports r where r.last_error is not null
        order by r.created_at desc, r.id desc limit 1
      )
    ),
    'alert_deliveries', jsonb_build_object(
      'pending', (select count(*) from deliveries where status = 'pending'),
      'sending', (select count(*) from deliveries where status = 'sending'),
      'retrying', (select count(*) from deliveries where status = 'failed' and next_attempt_at is not null),
      'given_up', (select count(*) from deliveries where status = 'failed' and next_attempt_at is null),
      'oldest_at', (select min(created_at) from deliveries),
      'last_error', (
        select d.last_error from deliveries d where d.last_error is not null
        order by d.created_at desc, d.alert_id desc limit 1
      )
    ),
    'scheduled_functions', coalesce((
      select jsonb_agg(to_jsonb(f) order by f.function_name)
      from (
        select n.function_name,
               latest.started_at as last_started_at, latest.finished_at as last_finished_at,
               latest.ok as last_ok, latest.error as last_error,
               success.finished_at as last_success_at,
               (select count(*) from private.scheduled_run_outcomes r
                where r.function_name = n.function_name
                  and r.started_at > coalesce(success.started_at, '-infinity')
                  and r.ok is false
               ) as failures_since_success
        from (select distinct r.function_name from public.scheduled_runs r) n
        cross join lateral (
          select r.* from private.scheduled_run_outcomes r where r.function_name = n.function_name
          order by r.started_at desc limit 1
        ) latest
        left join lateral (
          select r.started_at, r.finished_at from public.scheduled_runs r
          where r.function_name = n.function_name and r.ok
          order by r.started_at desc limit 1
        ) success on true
      ) f
    ), '[]'::jsonb),
    'collector_runs', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.started_at desc)
      from (
        select r.id, r.trigger, r.started_at, r.finished_at, r.sources_ok, r.sources_failed,
               r.sources_deferred, r.executions_ingested, r.billable_counted,
               jsonb_array_length(r.errors) as errors
        from public.collector_runs r
        order by r.started_at desc
        limit greatest(operator_status.max_runs, 0)
      ) x
    ), '[]'::jsonb)
  );
$$;

revoke execute on function
  public.set_plan(text, text, text, bigint, numeric, text, smallint[], bigint, int, text, text, text),
  public.list_plans(text[]),
  public.add_tenant(text, text, text, text),
  public.list_tenants(text[]),
  public.list_n8n_sources(uuid[], uuid[]),
  public.n8n_source_credentials(uuid[], uuid[]),
  public.operator_status(uuid[], int, int)
  from public, anon, authenticated;
grant execute on function
  public.set_plan(text, text, text, bigint, numeric, text, smallint[], bigint, int, text, text, text),
  public.list_plans(text[]),
  public.add_tenant(text, text, text, text),
  public.list_tenants(text[]),
  public.list_n8n_sources(uuid[], uuid[]),
  public.n8n_source_credentials(uuid[], uuid[]),
  public.operator_status(uuid[], int, int)
  to service_role;
