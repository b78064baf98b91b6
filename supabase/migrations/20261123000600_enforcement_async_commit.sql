-- The decision's hot path, made cheaper.
--
-- 1. Commit without waiting for the WAL flush. A SET clause on a function is undone when
--    the function returns, before COMMIT, so the clause in the previous migration never
--    reached the commit; set_config(..., true) in the body lasts until the end of the
--    transaction. A reservation lost in a crash is provisional: the next decision simply
--    does not see it. Counters written by the collector still commit synchronously.
-- 2. No `set timezone` clauses: setting a GUC on every call costs more than the call.
--    Period math is done on UTC timestamps explicitly instead.

create or replace function private.billing_period(
  current_start timestamptz,
  current_end timestamptz,
  at timestamptz,
  out period_start timestamptz,
  out period_end timestamptz
)
language plpgsql immutable
set search_path = ''
as $$
declare
  months int;
  start_utc timestamp := current_start at time zone 'UTC';
  at_utc timestamp := at at time zone 'UTC';
begin
  if current_start is null then
    period_start := date_trunc('month', at_utc) at time zone 'UTC';
    period_end := (date_trunc('month', at_utc) + interval '1 month') at time zone 'UTC';
    return;
  end if;
  if at >= current_start and at < current_end then
    period_start := current_start;
    period_end := current_end;
    return;
  end if;
  months := (extract(year from at_utc) - extract(year from start_utc))::int * 12
    + (extract(month from at_utc) - extract(month from start_utc))::int;
  if start_utc + make_interval(months => months) > at_utc then
    months := months - 1;
  elsif start_utc + make_interval(months => months + 1) <= at_utc then
    months := months + 1;
  end if;
  period_start := (start_utc + make_interval(months => months)) at time zone 'UTC';
  period_end := (start_utc + make_interval(months => months + 1)) at time zone 'UTC';
  if at < current_start then
    period_end := least(period_end, current_start);
  else
    period_start := greatest(period_start, current_end);
  end if;
end;
$$;

create or replace function public.enforce_usage(
  tenant text,
  workflow_id text default null,
  run_ref text default null,
  reserve boolean default true,
  reservation_ttl_seconds int default 1800
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  t public.tenants;
  p public.plans;
  period record;
  counter public.usage_counters;
  expired int;
  quota bigint;
  used bigint;
  allowed boolean;
  reason text;
  in_grace boolean := false;
  reservation bigint;
  thresholds smallint[];
  pct numeric;
  level text;
begin
  -- Until the end of this transaction (see the header).
  perform set_config('synchronous_commit', 'off', true);
  if enforce_usage.tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into t from public.tenants x where x.id = enforce_usage.tenant::uuid;
  else
    select * into t from public.tenants x where x.external_ref = enforce_usage.tenant;
  end if;
  if not found then
    return jsonb_build_object('allowed', false, 'reason', 'unknown_tenant');
  end if;
  select * into p from public.plans x where x.id = t.plan_id;
  select * into period from private.billing_period(t.current_period_start, t.current_period_end, now());

  if t.subscription_status in ('past_due', 'unpaid', 'canceled') then
    in_grace := now() < t.subscription_status_changed_at + make_interval(days => p.grace_days);
  end if;

  quota := case when t.subscription_status = 'trialing'
                then coalesce(p.trial_included_executions, p.included_executions)
                else p.included_executions end;

  -- Lock the tenant-period's counters row: concurrent decisions for one tenant serialise
  -- here, so reservations never overshoot a hard limit.
  select * into counter from public.usage_counters c
  where c.tenant_id = t.id and c.period_start = period.period_start
  for update;
  if not found then
    insert into public.usage_counters (tenant_id, period_start, period_end)
    values (t.id, period.period_start, period.period_end)
    on conflict (tenant_id, period_start) do nothing;
    select * into counter from public.usage_counters c
    where c.tenant_id = t.id and c.period_start = period.period_start
    for update;
  end if;

  -- Expired reservations stop counting now, not at the next sweep.
  if counter.reserved > 0 then
    with gone as (
      update public.usage_reservations r set released_at = now(), release_reason = 'expired'
      where r.tenant_id = t.id and r.period_start = period.period_start
        and r.released_at is null and r.expires_at <= now()
      returning 1
    )
    select count(*) into expired from gone;
    if expired > 0 then
      update public.usage_counters c set reserved = greatest(0, c.reserved - expired)
      where c.tenant_id = t.id and c.period_start = period.period_start
      returning * into counter;
    end if;
  end if;

  used := counter.billable + counter.reserved;

  if (t.subscription_status in ('past_due', 'unpaid', 'canceled') and not in_grace)
     or t.subscription_status in ('incomplete_expired', 'paused') then
    allowed := false; reason := 'subscription_inactive';
  elsif p.limit_policy = 'unlimited' then
    allowed := true; reason := 'unlimited';
  elsif t.subscription_status = 'trialing' then
    allowed := used < quota; reason := case when allowed then 'trial' else 'limit_reached' end;
  elsif p.limit_policy = 'hard_limit' then
    allowed := used < quota; reason := case when allowed then 'within_limit' else 'limit_reached' end;
  else
    allowed := true; reason := case when used < quota then 'within_limit' else 'overage_allowed' end;
  end if;
  if allowed and in_grace then
    reason := 'grace_period';
  end if;

  -- Only a limit that blocks needs a reservation; overage and unlimited plans count on
  -- collection alone.
  if allowed and enforce_usage.reserve and quota is not null
     and (p.limit_policy = 'hard_limit' or t.subscription_status = 'trialing') then
    insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
    values (t.id, period.period_start, enforce_usage.workflow_id, enforce_usage.run_ref,
            now() + make_interval(secs => enforce_usage.reservation_ttl_seconds))
    returning id into reservation;
    update public.usage_counters c set reserved = c.reserved + 1
    where c.tenant_id = t.id and c.period_start = period.period_start;
    used := used + 1;
  end if;

  pct := case when quota is null or p.limit_policy = 'unlimited' then null
              when quota = 0 then 100
              else round(used * 100.0 / quota, 1) end;
  thresholds := p.alert_thresholds;
  level := case when pct is null then 'normal'
                when pct > 100 then 'overage'
                when pct >= 100 then 'limit'
                when pct >= (select min(x) from unnest(thresholds) x) then 'warning'
                else 'normal' end;

  return jsonb_build_object(
    'allowed', allowed,
    'reason', reason,
    'tenant_id', t.id,
    'used', used,
    'limit', case when p.limit_policy = 'unlimited' then null else quota end,
    'remaining', case when p.limit_policy = 'unlimited' or quota is null then null else greatest(0, quota - used) end,
    'percent', pct,
    'level', level,
    'period_start', period.period_start,
    'period_end', period.period_end,
    'reservation_id', reservation
  );
end;
$$;

