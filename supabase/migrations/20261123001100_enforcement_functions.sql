-- Enforcement: allow or block a run before it starts, from counters and reservations.
--
-- A run allowed under a hard limit (or a trial) reserves one execution until the collector
-- sees real executions arrive, so a burst between two collections cannot overshoot the
-- limit. Decisions for one tenant serialise on its counters row; tenants never wait on
-- each other. Nothing here reads raw executions.
--
-- enforce_usage is on the critical path of every workflow run, so its common case is one
-- conditional UPDATE of the counters row (see the function), and:
-- * the counters row remembers when its earliest active reservation expires, so the
--   expiry sweep runs only when one is due, not on every decision;
-- * decisions that reserve nothing (overage, unlimited, inactive, dry runs, blocked at a
--   limit with nothing to expire) only read;
-- * reservations carry no foreign key (see usage).

-- Rules -------------------------------------------------------------------------------

-- The executions a plan includes for a tenant: the trial quota while trialing (else the
-- plan's own), none (null) on an unlimited plan. enforce_usage applies the same rule
-- inline on its hot path; everything else reads it from here. Both helpers are plpgsql:
-- with a pinned search_path a sql function is not inlined and would be planned per query.
create or replace function private.plan_quota(
  limit_policy text, trialing boolean, included_executions bigint, trial_included_executions bigint
)
returns bigint
language plpgsql immutable
set search_path = ''
as $$
begin
  return case when plan_quota.limit_policy = 'unlimited' then null
              when plan_quota.trialing
                then coalesce(plan_quota.trial_included_executions, plan_quota.included_executions)
              else plan_quota.included_executions end;
end;
$$;

-- Where usage stands against a quota, as enforce_usage reports it (inline there):
-- remaining; percent, 1 decimal, 100 when the quota is 0, null when unlimited; level,
-- normal | warning (at or above the lowest alert threshold) | limit (at 100 %) | overage.
create or replace function private.usage_standing(used bigint, quota bigint, alert_thresholds smallint[])
returns table (remaining bigint, percent numeric, level text)
language plpgsql immutable
set search_path = ''
as $$
declare
  pct numeric := case when usage_standing.quota is null then null
                      when usage_standing.quota = 0 then 100
                      else round(usage_standing.used * 100.0 / usage_standing.quota, 1) end;
begin
  remaining := case when usage_standing.quota is null then null
                    else greatest(0, usage_standing.quota - usage_standing.used) end;
  percent := pct;
  level := case when pct is null then 'normal'
                when pct > 100 then 'overage'
                when pct >= 100 then 'limit'
                when pct >= (select min(x) from unnest(usage_standing.alert_thresholds) x) then 'warning'
                else 'normal' end;
  return next;
end;
$$;

revoke all on function private.plan_quota(text, boolean, bigint, bigint),
  private.usage_standing(bigint, bigint, smallint[]) from public;
-- Pure (immutable, read nothing), so the tenant usage API may run them as the caller.
grant execute on function private.plan_quota(text, boolean, bigint, bigint),
  private.usage_standing(bigint, bigint, smallint[]) to authenticated, service_role;

-- The decision ------------------------------------------------------------------------

-- May the tenant (its id, or the operator's external reference) start a run now?
--
-- Returns {allowed, reason, used, limit, remaining, percent, level, period_start,
-- period_end, tenant_id, reservation_id}. reason is one of: within_limit, overage_allowed,
-- limit_reached, unlimited, trial, grace_period, subscription_inactive, unknown_tenant.
-- reserve = false answers without reserving (a dry check) and writes nothing.
--
-- run_ref makes a reserving decision idempotent per tenant: a retry of a run that was
-- allowed before (its reservation still active, or already collected) is allowed again
-- with the same reservation_id and reserves nothing more, even at the limit; a run whose
-- reservation expired takes a slot again under the same reservation_id. A run that was
-- blocked reserved nothing, so its retry is simply decided afresh.
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
  swept boolean;
  expired int;
  used bigint;
  allowed boolean;
  reason text;
  reservation bigint;
  prior_release text;
  pct numeric;
begin
  -- A UUID names the tenant by id, anything else by the operator's external reference,
  -- which is resolved to the id first: one index probe each, not both on every call.
  if enforce_usage.tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    by_id := enforce_usage.tenant::uuid;
  else
    select x.id into by_id from public.tenants x where x.external_ref = enforce_usage.tenant;
  end if;
  select x.id, x.subscription_status as status, x.subscription_status_changed_at as status_changed_at,
         x.current_period_start, x.current_period_end,
         p.included_executions, p.trial_included_executions, p.limit_policy, p.grace_days,
         (select min(a) from unnest(p.alert_thresholds) a) as warn_at
  into t
  from public.tenants x join public.plans p on p.id = x.plan_id
  where x.id = by_id;
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
        swept := held > 0 and (next_expiry is null or next_expiry <= now());
        if swept then
          with gone as (
            update public.usage_reservations r set released_at = now(), release_reason = 'expired'
            where r.tenant_id = t.id and r.period_start = cur_start
              and r.released_at is null and r.expires_at <= now()
            returning 1
          )
          select count(*) into expired from gone;
          held := greatest(0, held - expired);
        end if;
        allowed := collected + held < quota;
        -- One write for both: what the sweep released and the slot this run takes.
        if swept or allowed then
          update public.usage_counters c
          set reserved = held + allowed::int,
              reservations_next_expiry = least(
                case when swept then private.next_reservation_expiry(t.id, cur_start)
                     else c.reservations_next_expiry end,
                case when allowed then expires end)
          where c.tenant_id = t.id and c.period_start = cur_start;
        end if;
      end if;
    end if;

    if allowed then
      insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
      values (t.id, cur_start, enforce_usage.workflow_id, enforce_usage.run_ref, expires)
      on conflict (tenant_id, run_ref) where run_ref is not null do nothing
      returning id into reservation;
      if reservation is not null then
        held := held + 1;
      else
        -- This run was decided before: a retry. Racing retries queue on the counters row
        -- above, so the first one's reservation is committed and visible here.
        select r.id, r.release_reason into reservation, prior_release
        from public.usage_reservations r
        where r.tenant_id = t.id and r.run_ref = enforce_usage.run_ref
        for update;
        if not found then
          -- prune_history deleted it (released long ago) since the conflict: the run is
          -- new again, in the slot just taken.
          insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
          values (t.id, cur_start, enforce_usage.workflow_id, enforce_usage.run_ref, expires)
          returning id into reservation;
          held := held + 1;
        elsif prior_release = 'expired' then
          -- Its reservation lapsed before the run was collected: the slot just taken is
          -- its new one.
          update public.usage_reservations r
          set period_start = cur_start, workflow_id = coalesce(enforce_usage.workflow_id, r.workflow_id),
              expires_at = expires, released_at = null, release_reason = null
          where r.id = reservation;
          held := held + 1;
        else
          -- Still reserved, or already counted for real: give the slot just taken back.
          -- The expiry note may now be earlier than the truth, which it is allowed to be:
          -- at worst a sweep runs once with nothing to release.
          update public.usage_counters c set reserved = c.reserved - 1
          where c.tenant_id = t.id and c.period_start = cur_start;
        end if;
      end if;
    elsif enforce_usage.run_ref is not null then
      -- At the limit, but a retry of a run allowed before is still allowed: its slot is
      -- already counted (reserved, or collected).
      select r.id into reservation
      from public.usage_reservations r
      where r.tenant_id = t.id and r.run_ref = enforce_usage.run_ref
        and r.release_reason is distinct from 'expired';
      allowed := found;
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
  elsif reserves then
    -- A reserving decision was made above, under the row's lock or its check-and-increment;
    -- a dry check asks whether a run would be allowed now.
    if not enforce_usage.reserve then
      allowed := used < quota;
    end if;
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
