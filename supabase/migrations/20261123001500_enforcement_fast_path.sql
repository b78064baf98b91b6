-- Enforcement fast path: the common decision is one conditional UPDATE of the counters row.
--
-- enforce_usage is on the critical path of every workflow run. Before this migration every
-- decision, even one that reserves nothing, locked the counters row, swept for expired
-- reservations and wrote a second time to count the new one. Now:
--
-- * a run that reserves takes its slot with a single check-and-increment
--   (`billable + reserved < quota`), which PostgreSQL re-checks on the newest row version
--   when two decisions race, so the limit still holds without a separate lock;
-- * the counters row remembers when its earliest active reservation expires, so the
--   expiry sweep runs only when one is due, not on every decision;
-- * decisions that reserve nothing (overage, unlimited, inactive, dry runs, blocked at a
--   limit with nothing to expire) only read;
-- * reservations carry no foreign key: the only writer (this function) inserts one only
--   while holding its counters row, so the per-insert referential check (measured at a
--   sixth of a reserving decision's database time) bought nothing; deleting a counters row
--   (with its tenant) still deletes its reservations, by trigger. One partial index serves
--   both release by the collector and expiry.

alter table public.usage_counters
  -- Earliest expires_at among the tenant-period's active reservations; null when none.
  -- Never later than the truth: a decision sweeps expired reservations once it is due.
  add column reservations_next_expiry timestamptz;

update public.usage_counters c
set reservations_next_expiry = (
  select min(r.expires_at) from public.usage_reservations r
  where r.tenant_id = c.tenant_id and r.period_start = c.period_start and r.released_at is null
)
where c.reserved > 0;

-- Every reservation belongs to a counters row: enforce_usage inserts one only while it
-- holds that row. Deleting a tenant deletes its counters and, through this trigger, their
-- reservations.
alter table public.usage_reservations drop constraint usage_reservations_tenant_id_fkey;

create or replace function private.delete_counter_reservations()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- One pass over the reservations per statement, not one per counters row: no index on
  -- all reservations by tenant-period is worth its cost on every decision for this.
  delete from public.usage_reservations r
  using deleted d
  where r.tenant_id = d.tenant_id and r.period_start = d.period_start;
  return null;
end;
$$;
revoke all on function private.delete_counter_reservations() from public;

create trigger usage_counters_delete_reservations after delete on public.usage_counters
  referencing old table as deleted
  for each statement execute function private.delete_counter_reservations();

-- Release and expiry both walk active reservations soonest-expiring first (with one TTL,
-- that is oldest first): one index serves both.
drop index public.usage_reservations_active_idx;

-- When the collector counts new billable executions for a tenant-period, as many of its
-- active reservations are released, soonest-expiring first: those runs are now counted
-- for real. Runs started outside the runner (a webhook straight into n8n) also release
-- reservations; that can only make the limit allow fewer runs early, never more in total
-- than the executions collected plus the ones still reserved.
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
      order by r.expires_at, r.id
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
    new.reservations_next_expiry := private.next_reservation_expiry(new.tenant_id, new.period_start);
  end if;
  return new;
end;
$$;

-- Earliest expiry among a tenant-period's active reservations (null when none).
create or replace function private.next_reservation_expiry(tenant_id uuid, period_start timestamptz)
returns timestamptz
language sql stable
set search_path = ''
as $$
  select min(r.expires_at) from public.usage_reservations r
  where r.tenant_id = next_reservation_expiry.tenant_id
    and r.period_start = next_reservation_expiry.period_start
    and r.released_at is null;
$$;
revoke all on function private.next_reservation_expiry(uuid, timestamptz) from public;
grant execute on function private.next_reservation_expiry(uuid, timestamptz) to service_role;

-- May the tenant (its id, or the operator's external reference) start a run now?
--
-- Returns {allowed, reason, used, limit, remaining, percent, level, period_start,
-- period_end, tenant_id, reservation_id}. reason is one of: within_limit, overage_allowed,
-- limit_reached, unlimited, trial, grace_period, subscription_inactive, unknown_tenant.
-- reserve = false answers without reserving (a dry check) and writes nothing.
--
-- A decision that reserves commits without waiting for the WAL flush (set_config in the
-- body: a SET clause would be undone before COMMIT). A reservation lost in a crash is
-- provisional: the next decision simply does not see it.
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
  by_id uuid;
  t record;
  cur_start timestamptz;
  cur_end timestamptz;
  collected bigint := 0;
  held bigint := 0;
  next_expiry timestamptz;
  quota bigint;
  inactive boolean := false;
  in_grace boolean := false;
  reserves boolean;
  expires timestamptz;
  expired int;
  used bigint;
  allowed boolean;
  reason text;
  reservation bigint;
  pct numeric;
begin
  -- A UUID names the tenant by id, anything else by the operator's external reference.
  by_id := case when enforce_usage.tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                then enforce_usage.tenant::uuid end;
  select x.id, x.subscription_status as status, x.subscription_status_changed_at as status_changed_at,
         x.current_period_start, x.current_period_end,
         p.included_executions, p.trial_included_executions, p.limit_policy, p.grace_days,
         (select min(a) from unnest(p.alert_thresholds) a) as warn_at
  into t
  from public.tenants x join public.plans p on p.id = x.plan_id
  where x.id = by_id or x.external_ref = case when by_id is null then enforce_usage.tenant end;
  if not found then
    return jsonb_build_object('allowed', false, 'reason', 'unknown_tenant');
  end if;

  -- The subscription's current period when now() is inside it, the calendar month (UTC)
  -- without a subscription (both as billing_period has them, without the call), else the
  -- period billing_period derives.
  if t.current_period_start is not null and now() >= t.current_period_start and now() < t.current_period_end then
    cur_start := t.current_period_start;
    cur_end := t.current_period_end;
  elsif t.current_period_start is null then
    cur_start := date_trunc('month', now() at time zone 'UTC') at time zone 'UTC';
    cur_end := (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC';
  else
    select b.period_start, b.period_end into cur_start, cur_end
    from private.billing_period(t.current_period_start, t.current_period_end, now()) b;
  end if;

  if t.status in ('past_due', 'unpaid', 'canceled') then
    in_grace := now() < t.status_changed_at + make_interval(days => t.grace_days);
    inactive := not in_grace;
  elsif t.status in ('incomplete_expired', 'paused') then
    inactive := true;
  end if;
  quota := case when t.limit_policy = 'unlimited' then null
                when t.status = 'trialing'
                then coalesce(t.trial_included_executions, t.included_executions)
                else t.included_executions end;
  -- Only a limit that blocks needs a reservation; overage and unlimited plans count on
  -- collection alone.
  reserves := not inactive and t.limit_policy <> 'unlimited'
              and (t.limit_policy = 'hard_limit' or t.status = 'trialing');

  if reserves and enforce_usage.reserve then
    -- Until the end of this transaction (see the header).
    perform set_config('synchronous_commit', 'off', true);
    expires := now() + make_interval(secs => enforce_usage.reservation_ttl_seconds);
    -- The fast path: take a slot if there is room and no reservation is due to expire.
    -- Racing decisions for one tenant queue on the row and re-check the condition on the
    -- version the winner wrote, so they cannot both take the last slot.
    update public.usage_counters c
    set reserved = c.reserved + 1,
        reservations_next_expiry = least(c.reservations_next_expiry, expires)
    where c.tenant_id = t.id and c.period_start = cur_start
      and c.billable + c.reserved < quota
      and (c.reserved = 0 or c.reservations_next_expiry > now())
    returning c.billable, c.reserved - 1 into collected, held;
    allowed := found;

    if not allowed then
      -- At the limit with nothing due to expire: blocked, without taking a lock.
      select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
      from public.usage_counters c
      where c.tenant_id = t.id and c.period_start = cur_start;
      if not (found and collected + held >= quota and (held = 0 or next_expiry > now())) then
        -- No room, no row yet, or an expiry due: decide again holding the row.
        insert into public.usage_counters (tenant_id, period_start, period_end)
        values (t.id, cur_start, cur_end)
        on conflict (tenant_id, period_start) do nothing;
        select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
        from public.usage_counters c
        where c.tenant_id = t.id and c.period_start = cur_start
        for update;
        -- Expired reservations stop counting now, not at the next sweep.
        if held > 0 and (next_expiry is null or next_expiry <= now()) then
          with gone as (
            update public.usage_reservations r set released_at = now(), release_reason = 'expired'
            where r.tenant_id = t.id and r.period_start = cur_start
              and r.released_at is null and r.expires_at <= now()
            returning 1
          )
          select count(*) into expired from gone;
          held := greatest(0, held - expired);
          update public.usage_counters c
          set reserved = held,
              reservations_next_expiry = private.next_reservation_expiry(t.id, cur_start)
          where c.tenant_id = t.id and c.period_start = cur_start;
        end if;
        allowed := collected + held < quota;
        if allowed then
          update public.usage_counters c
          set reserved = c.reserved + 1,
              reservations_next_expiry = least(c.reservations_next_expiry, expires)
          where c.tenant_id = t.id and c.period_start = cur_start;
        end if;
      end if;
    end if;

    if allowed then
      insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
      values (t.id, cur_start, enforce_usage.workflow_id, enforce_usage.run_ref, expires)
      returning id into reservation;
      held := held + 1;
    end if;
  else
    -- Nothing to reserve: read the counters, take nothing.
    select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
    from public.usage_counters c
    where c.tenant_id = t.id and c.period_start = cur_start;
    if not found then
      collected := 0;
      held := 0;
    elsif held > 0 and (next_expiry is null or next_expiry <= now()) then
      -- Expired but not yet swept: they no longer count.
      held := held - (
        select count(*) from public.usage_reservations r
        where r.tenant_id = t.id and r.period_start = cur_start
          and r.released_at is null and r.expires_at <= now());
    end if;
  end if;

  used := collected + held;
  if inactive then
    allowed := false; reason := 'subscription_inactive';
  elsif t.limit_policy = 'unlimited' then
    allowed := true; reason := 'unlimited';
  elsif reserves and enforce_usage.reserve then
    -- allowed was decided above, under the row's lock or its check-and-increment.
    reason := case when not allowed then 'limit_reached'
                   when t.status = 'trialing' then 'trial' else 'within_limit' end;
  elsif reserves then
    -- A dry check: would a run be allowed now?
    allowed := used < quota;
    reason := case when not allowed then 'limit_reached'
                   when t.status = 'trialing' then 'trial' else 'within_limit' end;
  else
    allowed := true; reason := case when used < quota then 'within_limit' else 'overage_allowed' end;
  end if;
  if allowed and in_grace then
    reason := 'grace_period';
  end if;

  pct := case when quota is null then null
              when quota = 0 then 100
              else round(used * 100.0 / quota, 1) end;
  return jsonb_build_object(
    'allowed', allowed,
    'reason', reason,
    'tenant_id', t.id,
    'used', used,
    'limit', quota,
    'remaining', case when quota is null then null else greatest(0, quota - used) end,
    'percent', pct,
    'level', case when pct is null then 'normal'
                  when pct > 100 then 'overage'
                  when pct >= 100 then 'limit'
                  when pct >= t.warn_at then 'warning'
                  else 'normal' end,
    'period_start', cur_start,
    'period_end', cur_end,
    'reservation_id', reservation
  );
end;
$$;

revoke execute on function public.enforce_usage(text, text, text, boolean, int) from public, anon, authenticated;
grant execute on function public.enforce_usage(text, text, text, boolean, int) to service_role;
