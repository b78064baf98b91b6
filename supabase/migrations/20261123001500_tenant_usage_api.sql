-- Tenant usage API: what a tenant's users read in the operator's frontend, with their own
-- JWT, through supabase-js (`supabase.rpc(...)`).
--
-- Every function is security invoker: it reads the tables under the caller's row-level
-- security, so a user sees the tenants they are a member of and nothing else. A tenant id
-- the caller is not a member of (or that does not exist) gives no rows, never an error
-- that would tell the two apart. EXECUTE is granted to authenticated only (anon gets
-- 401). Reads come from counters, daily totals, alerts and meter reports, except the
-- per-workflow breakdown and the execution export, which read one tenant's raw executions
-- of one period through the (tenant_id, occurred_at) index. Lists are paginated with a
-- keyset and a capped page size.
--
-- Period math is private.billing_period, the function the collector and enforcement use;
-- quotas and standing are enforcement's private.plan_quota and private.usage_standing.

-- The rows of one page of a list: max_rows, default_rows when it is null, at most `most`
-- and at most what the API hands over (private.api_max_rows); below 1 is the caller's mistake (22023, HTTP 400), and so is null where there is no
-- default (the operator's exports).
create or replace function private.page_size(max_rows int, default_rows int, most int)
returns int
language plpgsql immutable
set search_path = ''
as $$
declare
  wanted int := coalesce(page_size.max_rows, page_size.default_rows);
begin
  if wanted is null or wanted < 1 then
    raise exception 'max_rows must be at least 1 (got %)', page_size.max_rows using errcode = '22023';
  end if;
  return least(wanted, page_size.most, private.api_max_rows());
end;
$$;

-- A date or time argument as given, refused (22023, HTTP 400) when it is infinite:
-- PostgreSQL takes 'infinity' for both, but no period, day or page starts there, and the
-- arithmetic on it would fail with a message that names no argument.
create or replace function private.finite(argument text, value anyelement)
returns anyelement
language plpgsql immutable
set search_path = ''
as $$
begin
  if value is not null and not isfinite(value) then
    raise exception '% must be a date or time, not %', argument, value using errcode = '22023';
  end if;
  return value;
end;
$$;

-- Summary -----------------------------------------------------------------------------

-- One tenant's current billing period: the row of tenant_usage_summary, of the operator
-- console's tenants table (with what only operators see beside it) and of its tenant
-- detail, declared once for all three. tenant_usage_summary's comment says what each
-- column holds.
create type public.tenant_usage_summary_row as (
  tenant_id uuid,
  tenant_name text,
  plan_id text,
  plan_name text,
  limit_policy text,
  subscription_status text,
  period_start timestamptz,
  period_end timestamptz,
  used bigint,
  quota bigint,
  remaining bigint,
  percent numeric,
  level text,
  overage_units bigint,
  estimated_overage_amount numeric,
  currency text,
  reserved bigint,
  executions bigint,
  failed bigint
);

-- The work is done in plpgsql, whose plans are cached per session (a sql function is
-- planned on every call, which costs more than this whole query). It takes a list of
-- tenants so the operator console can summarise one page of them in one call;
-- tenant_usage_summary is a thin sql one with the API's argument.
create or replace function private.tenant_usage_summary_rows(for_tenants uuid[])
returns setof public.tenant_usage_summary_row
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
  select t.id, t.name, p.id, p.name, p.limit_policy, t.subscription_status,
         bp.period_start, bp.period_end,
         u.used, q.quota, st.remaining, st.percent, st.level,
         o.units,
         case when p.limit_policy = 'overage' and t.subscription_status <> 'trialing'
              then o.units * coalesce(p.overage_unit_amount, 0)
              else 0 end,
         p.currency,
         held.held, coalesce(c.executions, 0), coalesce(c.billable_failed, 0)
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
  left join public.usage_counters c on c.tenant_id = t.id and c.period_start = bp.period_start
  -- The raw counter still holds expired reservations until a decision sweeps them; they no
  -- longer hold a run, so reserved is what enforcement itself would count.
  cross join lateral private.read_committed(t.id, bp.period_start) held
  cross join lateral (select coalesce(c.billable, 0) as used) u
  cross join lateral (
    select private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                              p.included_executions, p.trial_included_executions) as quota
  ) q
  cross join lateral private.usage_standing(u.used, q.quota, p.alert_thresholds) st
  cross join lateral (select greatest(0, u.used - q.quota) as units) o
  where tenant_usage_summary_rows.for_tenants is null or t.id = any (tenant_usage_summary_rows.for_tenants)
  order by t.name, t.id;
end;
$$;

create or replace function public.tenant_usage_summary(tenant_id uuid default null)
returns setof public.tenant_usage_summary_row
language sql stable
security invoker
set search_path = ''
as $$
  select * from private.tenant_usage_summary_rows(
    case when tenant_usage_summary.tenant_id is null then null else array[tenant_usage_summary.tenant_id] end
  );
$$;
comment on function public.tenant_usage_summary(uuid) is
$$Current billing period usage of each tenant the caller is a member of (or only tenant_id), one row per tenant.
Columns: tenant_id, tenant_name, plan_id, plan_name, limit_policy (hard_limit | overage | unlimited), subscription_status;
period_start, period_end (the current billing period, [start, end), UTC);
used = collected billable executions in the period (runs allowed but not collected yet are in reserved, not here; enforcement decides on committed = used + reserved);
quota = the plan's included executions (the trial quota while trialing; null on unlimited plans);
remaining = max(0, quota - used), null when unlimited; percent = used / quota in % (1 decimal; 100 when quota is 0; null when unlimited);
level = normal | warning (at or above the plan's lowest alert threshold) | limit (at 100 %) | overage (above);
overage_units = max(0, used - quota) (0 when unlimited; on hard-limit plans and trials these are not billed);
estimated_overage_amount = overage_units * plans.overage_unit_amount in the currency's minor unit, 0 unless limit_policy = overage and not trialing;
currency; reserved = runs allowed by enforcement, not collected yet and not expired; executions = every finished execution (billable or not);
failed = billable executions that ended in error or crashed. A period without collected usage has zeros.$$;

-- Daily series ------------------------------------------------------------------------

create or replace function public.tenant_usage_daily(
  tenant_id uuid,
  from_day date default null,
  to_day date default null
)
returns table (
  day date,
  executions bigint,
  billable bigint,
  failed bigint,
  duration_ms bigint
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  t public.tenants;
  current_start timestamptz;
  previous_start timestamptz;
  last_day date;
  first_day date;
begin
  select * into t from public.tenants x where x.id = tenant_usage_daily.tenant_id;
  if not found then
    return;
  end if;
  last_day := coalesce(private.finite('to_day', tenant_usage_daily.to_day), (now() at time zone 'UTC')::date);
  if tenant_usage_daily.from_day is not null then
    first_day := private.finite('from_day', tenant_usage_daily.from_day);
  else
    current_start := (private.billing_period(t.current_period_start, t.current_period_end, now())).period_start;
    previous_start := (private.billing_period(
      t.current_period_start, t.current_period_end, current_start - interval '1 microsecond'
    )).period_start;
    -- Within the 400-day cap and never after last_day (long periods, an early to_day).
    first_day := least(greatest((previous_start at time zone 'UTC')::date, last_day - 399), last_day);
  end if;
  if first_day > last_day then
    raise exception 'from_day (%) is after to_day (%)', first_day, last_day using errcode = '22023';
  end if;
  if last_day - first_day >= 400 then
    raise exception 'at most 400 days per call (asked for % days)', last_day - first_day + 1
      using errcode = '22023', hint = 'Ask for the range in several calls.';
  end if;

  return query
  select first_day + g.i, coalesce(u.executions, 0), coalesce(u.billable, 0),
         coalesce(u.failed, 0), coalesce(u.duration_ms, 0)
  from generate_series(0, last_day - first_day) g(i)
  left join public.usage_daily u on u.tenant_id = t.id and u.day = first_day + g.i
  order by 1;
end;
$$;
comment on function public.tenant_usage_daily(uuid, date, date) is
$$Usage of one tenant per UTC day (executions by their start), one row per day from from_day to to_day inclusive, days without usage as zeros.
Defaults: to_day = today (UTC); from_day = the start day of the previous billing period. At most 400 days per call (22023, HTTP 400, otherwise).
Columns: day; executions = every finished execution; billable; failed = executions that did not succeed (error, crashed, canceled; billable or not);
duration_ms = total run time. No rows when the caller is not a member of the tenant.$$;

-- The period as counted ---------------------------------------------------------------

-- The billing period containing `at` as the tenant's executions were counted in it: the
-- counters row containing the instant (its bounds were the tenant's when its executions
-- were counted), else the billing period computed now. `at` is the period_start argument
-- of the functions calling it, as their callers give it: null is now, infinity is refused
-- under that name. Read under the caller's row-level security, as the functions calling
-- it: no row for a tenant the caller does not see, so each caller returns nothing when it
-- finds none.
create or replace function private.counted_period(
  tenant_id uuid,
  at timestamptz,
  out period_start timestamptz,
  out period_end timestamptz
)
returns setof record
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  t public.tenants;
  instant timestamptz := coalesce(private.finite('period_start', counted_period.at), now());
begin
  select * into t from public.tenants x where x.id = counted_period.tenant_id;
  if not found then
    return;
  end if;
  select c.period_start, c.period_end into period_start, period_end
  from public.usage_counters c
  where c.tenant_id = t.id
    and c.period_start <= instant and c.period_end > instant
  order by c.period_start desc
  limit 1;
  if not found then
    select b.period_start, b.period_end into period_start, period_end
    from private.billing_period(t.current_period_start, t.current_period_end, instant) b;
  end if;
  return next;
end;
$$;

-- Per-workflow breakdown --------------------------------------------------------------

create or replace function public.tenant_workflow_breakdown(
  tenant_id uuid,
  period_start timestamptz default null,
  max_rows int default 50,
  after_workflow_id text default null
)
returns table (
  workflow_id text,
  executions bigint,
  billable bigint,
  success_rate numeric,
  avg_duration_ms numeric,
  p95_duration_ms numeric,
  total_duration_ms bigint
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  bounds record;
  page_size int := private.page_size(tenant_workflow_breakdown.max_rows, 50, 500);
begin
  select * into bounds from private.counted_period(tenant_workflow_breakdown.tenant_id, tenant_workflow_breakdown.period_start);
  if not found then
    return;
  end if;

  return query
  select e.workflow_id,
         count(*),
         count(*) filter (where e.billable),
         round((count(*) filter (where e.status = 'success'))::numeric / count(*), 4),
         round(avg(e.duration_ms), 1),
         round((percentile_cont(0.95) within group (order by e.duration_ms))::numeric, 1),
         coalesce(sum(e.duration_ms), 0)::bigint
  from public.executions e
  where e.tenant_id = tenant_workflow_breakdown.tenant_id
    and e.occurred_at >= bounds.period_start and e.occurred_at < bounds.period_end
    -- exactly the executions counted in this period's counters
    and e.period_start = bounds.period_start
    -- Under row-level security this bound filters rows rather than starting the index
    -- scan (text comparison is not leakproof, so it may not run before the policy): a page
    -- reads the tenant's executions of the period up to its last workflow.
    and (tenant_workflow_breakdown.after_workflow_id is null
         or e.workflow_id > tenant_workflow_breakdown.after_workflow_id)
  group by e.workflow_id
  order by e.workflow_id
  limit page_size;
end;
$$;
comment on function public.tenant_workflow_breakdown(uuid, timestamptz, int, text) is
$$Usage of one tenant per n8n workflow in one billing period, from the raw executions of that period only (index on tenant and time).
period_start: null = the current period; otherwise the period containing that instant (pass period_start from tenant_usage_history or tenant_usage_summary).
Keyset pagination by workflow_id: rows in workflow_id order, at most max_rows (default 50, capped at 500); the next page starts after_workflow_id = the last row's workflow_id.
Columns: workflow_id; executions = every finished execution; billable; success_rate = share of executions that succeeded (0 to 1, 4 decimals);
avg_duration_ms, p95_duration_ms (continuous 95th percentile) over executions with a known duration, 1 decimal, null when none;
total_duration_ms = the sum of the known durations, 0 when none.
Raw executions are kept for the retention period only (EXECUTION_RETENTION_MONTHS): older periods have no rows here, their totals remain in tenant_usage_history.
No rows when the caller is not a member of the tenant.$$;

-- Period history ----------------------------------------------------------------------

create or replace function public.tenant_usage_history(
  tenant_id uuid,
  max_rows int default 12,
  before timestamptz default null
)
returns table (
  period_start timestamptz,
  period_end timestamptz,
  is_current boolean,
  used bigint,
  quota bigint,
  overage_units bigint,
  executions bigint,
  failed bigint,
  reported_to_stripe bigint,
  pending_to_stripe bigint,
  late bigint,
  corrected bigint,
  credited_amount bigint
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  t public.tenants;
  p public.plans;
  current_start timestamptz;
  page_size int := private.page_size(tenant_usage_history.max_rows, 12, 100);
begin
  perform private.finite('before', tenant_usage_history.before);
  select * into t from public.tenants x where x.id = tenant_usage_history.tenant_id;
  if not found then
    return;
  end if;
  select * into p from public.plans x where x.id = t.plan_id;
  current_start := (private.billing_period(t.current_period_start, t.current_period_end, now())).period_start;

  return query
  select c.period_start, c.period_end, c.period_start = current_start, c.billable, q.quota,
         greatest(0, c.billable - q.quota), c.executions, c.billable_failed,
         coalesce(r.sent, 0), coalesce(r.pending, 0), coalesce(r.late, 0),
         coalesce(k.corrected, 0), coalesce(k.credited, 0)
  from public.usage_counters c
  -- The trial quota applies to the current period only.
  cross join lateral (
    select private.plan_quota(p.limit_policy, c.period_start = current_start and t.subscription_status = 'trialing',
                              p.included_executions, p.trial_included_executions) as quota
  ) q
  left join lateral (
    select sum(m.value) filter (where m.status = 'sent')::bigint as sent,
           sum(m.value) filter (where m.status in ('pending', 'review'))::bigint as pending,
           sum(m.value) filter (where m.status = 'late')::bigint as late
    from public.meter_reports m
    where m.tenant_id = c.tenant_id and m.period_start = c.period_start
  ) r on true
  left join lateral (
    select sum(k.delta) filter (where k.kind = 'adjustment' and k.status <> 'late')::bigint as corrected,
           sum(k.credit_amount) filter (where k.status = 'sent')::bigint as credited
    from public.meter_corrections k
    where k.tenant_id = c.tenant_id and k.period_start = c.period_start
  ) k on true
  where c.tenant_id = t.id
    and (tenant_usage_history.before is null or c.period_start < tenant_usage_history.before)
  order by c.period_start desc
  limit page_size;
end;
$$;
comment on function public.tenant_usage_history(uuid, int, timestamptz) is
$$Billing periods of one tenant that have counters (a period gets them with its first collected execution or enforcement decision), newest first.
Keyset pagination: at most max_rows (default 12, capped at 100) periods starting before `before` (null = all); the next page passes before = the last row's period_start.
Columns: period_start, period_end, is_current; used = billable executions; quota = the quota of the tenant's plan as it is now (the trial quota for the current period while trialing), not as it was then, null when unlimited;
overage_units = max(0, used - quota); executions = every finished execution; failed = billable executions that ended in error or crashed;
reported_to_stripe = executions Stripe accepted (meter reports sent); pending_to_stripe = recorded and not yet accepted; late = recorded after the period's invoice was final, not sent;
corrected = executions added (positive) or taken off (negative) by corrections of the period (tenant_usage_corrections lists them);
credited_amount = what corrections credited to the customer's Stripe balance, in the plan currency's minor unit.
No rows when the caller is not a member of the tenant.$$;

-- Execution export --------------------------------------------------------------------

-- The dashboard's "Download CSV": the raw executions counted in one billing period, the
-- rows behind that period's counters, a keyset page per call. Under row-level security
-- like the rest: another tenant's id gives no rows.
create or replace function public.tenant_usage_export(
  tenant_id uuid,
  period_start timestamptz default null,
  max_rows int default 1000,
  after_occurred_at timestamptz default null,
  after_source_id uuid default null,
  after_execution_id bigint default null
)
returns table (
  occurred_at timestamptz,
  source_id uuid,
  execution_id bigint,
  workflow_id text,
  mode text,
  status text,
  started_at timestamptz,
  stopped_at timestamptz,
  duration_ms bigint,
  billable boolean,
  billing_period_start timestamptz,
  billing_period_end timestamptz
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  bounds record;
  page_size int := private.page_size(tenant_usage_export.max_rows, 1000, 1000);
begin
  perform private.finite('after_occurred_at', tenant_usage_export.after_occurred_at);
  if tenant_usage_export.after_occurred_at is not null
     and (tenant_usage_export.after_source_id is null or tenant_usage_export.after_execution_id is null) then
    raise exception 'after_occurred_at, after_source_id and after_execution_id go together (the last row of the previous page)'
      using errcode = '22023';
  end if;
  select * into bounds from private.counted_period(tenant_usage_export.tenant_id, tenant_usage_export.period_start);
  if not found then
    return;
  end if;

  return query
  select e.occurred_at, e.source_id, e.execution_id, e.workflow_id, e.mode, e.status,
         e.started_at, e.stopped_at, e.duration_ms, e.billable, bounds.period_start, bounds.period_end
  from public.executions e
  where e.tenant_id = tenant_usage_export.tenant_id
    and e.occurred_at >= bounds.period_start and e.occurred_at < bounds.period_end
    and e.period_start = bounds.period_start
    -- A first key below every row, not "after is null or …", which would keep the row
    -- comparison out of the index condition of a generic plan (every page reading the
    -- period from its start).
    and (e.occurred_at, e.source_id, e.execution_id)
        > (coalesce(tenant_usage_export.after_occurred_at, '-infinity'::timestamptz),
           coalesce(tenant_usage_export.after_source_id, '00000000-0000-0000-0000-000000000000'::uuid),
           coalesce(tenant_usage_export.after_execution_id, -1))
  order by e.occurred_at, e.source_id, e.execution_id
  limit page_size;
end;
$$;
comment on function public.tenant_usage_export(uuid, timestamptz, int, timestamptz, uuid, bigint) is
$$The raw executions of one tenant counted in one billing period (their totals are that period's counters), for a CSV download.
period_start: null = the current period; otherwise the period containing that instant. Keyset pagination in (occurred_at, source_id, execution_id) order: at most max_rows (default and cap 1000);
the next page passes after_occurred_at, after_source_id, after_execution_id = the last row's; stop at an empty page.
Columns: occurred_at (started_at, else stopped_at), source_id, execution_id (n8n's), workflow_id, mode, status, started_at, stopped_at, duration_ms, billable, billing_period_start, billing_period_end (the period's bounds).
No rows when the caller is not a member of the tenant.$$;

-- Alerts ------------------------------------------------------------------------------

create or replace function public.tenant_alerts(
  tenant_id uuid,
  unread_only boolean default false,
  max_rows int default 50,
  before_id bigint default null
)
returns setof public.usage_alerts
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  page_size int := private.page_size(tenant_alerts.max_rows, 50, 200);
begin
  return query
  select a.*
  from public.usage_alerts a
  where a.tenant_id = tenant_alerts.tenant_id
    and (not coalesce(tenant_alerts.unread_only, false) or a.read_at is null)
    and (tenant_alerts.before_id is null or a.id < tenant_alerts.before_id)
  order by a.id desc
  limit page_size;
end;
$$;
comment on function public.tenant_alerts(uuid, boolean, int, bigint) is
$$Usage alerts of one tenant, newest first (the in-app channel; mark_alert_read acknowledges one).
Keyset pagination: at most max_rows (default 50, capped at 200) alerts with id below before_id (null = newest); the next page passes before_id = the last row's id.
unread_only: only alerts not yet read. Columns are those of usage_alerts: id, tenant_id, period_start, period_end, threshold (percent of the quota),
used and quota when the threshold was reached, created_at, read_at. No rows when the caller is not a member of the tenant.$$;

select private.grant_to_authenticated(
  'private.page_size(int, int, int)',
  'private.finite(text, anyelement)',
  'private.tenant_usage_summary_rows(uuid[])',
  'private.counted_period(uuid, timestamptz)',
  'public.tenant_usage_summary(uuid)',
  'public.tenant_usage_daily(uuid, date, date)',
  'public.tenant_workflow_breakdown(uuid, timestamptz, int, text)',
  'public.tenant_usage_history(uuid, int, timestamptz)',
  'public.tenant_usage_export(uuid, timestamptz, int, timestamptz, uuid, bigint)',
  'public.tenant_alerts(uuid, boolean, int, bigint)'
);
