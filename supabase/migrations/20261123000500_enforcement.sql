-- Enforcement: allow or block a run before it starts, from counters and reservations.
--
-- A run allowed under a hard limit (or a trial) reserves one execution until the collector
-- sees real executions arrive, so a burst between two collections cannot overshoot the
-- limit. Decisions for one tenant serialise on its counters row; tenants never wait on
-- each other. Nothing here reads raw executions.

alter table public.plans
  -- Quota while the subscription is trialing; null = the plan's own quota. Trials never
  -- bill overage: they block at this quota whatever the plan's policy.
  add column trial_included_executions bigint
    constraint plans_trial_included_executions_nonnegative check (trial_included_executions >= 0),
  -- How long a past_due, unpaid or canceled subscription keeps running before runs are blocked.
  add column grace_days int not null default 3
    constraint plans_grace_days_range check (grace_days between 0 and 90);

alter table public.tenants
  add column subscription_status_changed_at timestamptz not null default now();

create or replace function private.track_subscription_status_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.subscription_status is distinct from old.subscription_status then
    new.subscription_status_changed_at := now();
  end if;
  return new;
end;
$$;
revoke all on function private.track_subscription_status_change() from public;

create trigger tenants_track_subscription_status before update on public.tenants
  for each row execute function private.track_subscription_status_change();

-- Reservations ------------------------------------------------------------------------

alter table public.usage_counters
  -- Active reservations of this tenant-period: runs allowed but not yet collected.
  add column reserved bigint not null default 0
    constraint usage_counters_reserved_nonnegative check (reserved >= 0);

create table public.usage_reservations (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  workflow_id text,
  run_ref text,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  released_at timestamptz,
  release_reason text constraint usage_reservations_release_reason_known
    check (release_reason in ('collected', 'expired')),
  constraint usage_reservations_released_with_reason check ((released_at is null) = (release_reason is null))
);
comment on table public.usage_reservations is 'One row per run allowed under a hard limit or trial, until the collector counts an execution for it or it expires.';

-- Active reservations by tenant-period, oldest first (release order) and by expiry.
create index usage_reservations_active_idx on public.usage_reservations (tenant_id, period_start, created_at)
  where released_at is null;
create index usage_reservations_expiry_idx on public.usage_reservations (tenant_id, period_start, expires_at)
  where released_at is null;

alter table public.usage_reservations enable row level security;
revoke all on table public.usage_reservations from public, anon, authenticated;
grant select on table public.usage_reservations to authenticated;
grant all on table public.usage_reservations to service_role;
create policy usage_reservations_select_member on public.usage_reservations
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));

-- When the collector counts new billable executions for a tenant-period, as many of its
-- oldest active reservations are released: those runs are now counted for real. Runs
-- started outside the runner (a webhook straight into n8n) also release reservations;
-- that can only make the limit allow fewer runs early, never more in total than the
-- executions collected plus the ones still reserved.
create or replace function private.release_collected_reservations()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  released int;
begin
  if new.billable > old.billable and new.reserved > 0 then
    with oldest as (
      select r.id from public.usage_reservations r
      where r.tenant_id = new.tenant_id and r.period_start = new.period_start and r.released_at is null
      order by r.created_at, r.id
      limit least(new.billable - old.billable, new.reserved)
      for update
    ),
    done as (
      update public.usage_reservations r set released_at = now(), release_reason = 'collected'
      from oldest where r.id = oldest.id
      returning 1
    )
    select count(*) into released from done;
    new.reserved := greatest(0, new.reserved - released);
  end if;
  return new;
end;
$$;
revoke all on function private.release_collected_reservations() from public;

create trigger usage_counters_release_reservations before update of billable on public.usage_counters
  for each row execute function private.release_collected_reservations();

-- The decision ------------------------------------------------------------------------

-- May the tenant (its id, or the operator's external reference) start a run now?
--
-- Returns {allowed, reason, used, limit, remaining, percent, level, period_start,
-- period_end, tenant_id, reservation_id}. reason is one of: within_limit, overage_allowed,
-- limit_reached, unlimited, trial, grace_period, subscription_inactive, unknown_tenant.
-- reserve = false answers without reserving (a dry check).
--
-- The transaction commits without waiting for the WAL flush (set_config in the body: a SET
-- clause would be undone before COMMIT). A reservation lost in a crash is provisional: the
-- next decision simply does not see it.
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

revoke execute on function public.enforce_usage(text, text, text, boolean, int) from public, anon, authenticated;
grant execute on function public.enforce_usage(text, text, text, boolean, int) to service_role;

