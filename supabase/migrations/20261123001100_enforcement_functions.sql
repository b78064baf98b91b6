-- Enforcement: allow or block a run before it starts, from counters and reservations.
--
-- A run allowed under a hard limit (or a trial) reserves one execution until the collector
-- sees real executions arrive, so a burst between two collections cannot overshoot the
-- limit. Decisions for one tenant serialise on its counters row; tenants never wait on
-- each other. Nothing here reads raw executions.
--
-- enforce_usage is on the critical path of every workflow run, so its common case is one
-- conditional UPDATE of the counters row (take_slot_fast), and:
-- * the counters row remembers when its earliest active reservation expires, so the
--   expiry sweep runs only when one is due, not on every decision;
-- * decisions that reserve nothing (overage, unlimited, inactive, dry runs, blocked at a
--   limit with nothing to expire) only read, but for a period's first block, which records
--   its tenant.blocked webhook event;
-- * reservations carry no foreign key (see usage).

-- Rules -------------------------------------------------------------------------------

-- The quota and standing rules, defined once: enforce_usage, the alerts trigger, the
-- tenant usage API and the admin lists all call these two.
--
-- The executions a plan includes for a tenant: the trial quota while trialing (else the
-- plan's own), none (null) on an unlimited plan. Both helpers are plpgsql: with a pinned
-- search_path a sql function is not inlined and would be planned per query.
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

-- Where usage stands against a quota: remaining; percent, 1 decimal, 100 when the quota
-- is 0, null when unlimited; level, normal | warning (at or above the lowest alert
-- threshold) | limit (at 100 %) | overage. enforce_usage applies it to committed usage
-- (collected + reserved), the tenant usage API to collected usage.
create or replace function private.usage_standing(
  usage bigint,
  quota bigint,
  alert_thresholds smallint[],
  out remaining bigint,
  out percent numeric,
  out level text
)
language plpgsql immutable
set search_path = ''
as $$
declare
  pct numeric := case when usage_standing.quota is null then null
                      when usage_standing.quota = 0 then 100
                      else round(usage_standing.usage * 100.0 / usage_standing.quota, 1) end;
begin
  remaining := case when usage_standing.quota is null then null
                    else greatest(0, usage_standing.quota - usage_standing.usage) end;
  percent := pct;
  level := case when pct is null then 'normal'
                when pct > 100 then 'overage'
                when pct >= 100 then 'limit'
                when pct >= (select min(x) from unnest(usage_standing.alert_thresholds) x) then 'warning'
                else 'normal' end;
end;
$$;

-- Pure (immutable, read nothing), so the tenant usage API may run them as the caller.
select private.grant_to_authenticated('private.plan_quota(text, boolean, bigint, bigint)',
                                      'private.usage_standing(bigint, bigint, smallint[])');

-- The decision's paths -----------------------------------------------------------------
--
-- enforce_usage (below) resolves the tenant, its period and its quota, then takes one of
-- these paths. Each runs in the decision's transaction: a lock taken here is held until it
-- commits.

-- The fast path: take a slot if there is room and no reservation is due to expire, in one
-- conditional UPDATE. Racing decisions for one tenant queue on the row and re-check the
-- condition on the version the winner wrote, so they cannot both take the last slot.
-- collected and held (the reservations before this one) are null when it took nothing.
create or replace function private.take_slot_fast(
  tenant_id uuid,
  period_start timestamptz,
  quota bigint,
  expires timestamptz,
  out collected bigint,
  out held bigint
)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  update public.usage_counters c
  set reserved = c.reserved + 1,
      reservations_next_expiry = least(c.reservations_next_expiry, take_slot_fast.expires)
  where c.tenant_id = take_slot_fast.tenant_id and c.period_start = take_slot_fast.period_start
    and c.billable + c.reserved < take_slot_fast.quota
    and (c.reserved = 0 or c.reservations_next_expiry > now())
  returning c.billable, c.reserved - 1 into collected, held;
end;
$$;

-- The slow path, after the fast one took nothing. At the limit with nothing due to expire
-- it is blocked without taking a lock; otherwise (no counters row yet, or an expiry due)
-- it decides again holding the row, creating it first if there was none, releasing
-- expired reservations first, and writes what the sweep released and the slot it takes in
-- one update. held excludes the slot taken.
create or replace function private.take_slot_locked(
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  quota bigint,
  expires timestamptz,
  out allowed boolean,
  out collected bigint,
  out held bigint
)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  next_expiry timestamptz;
  swept boolean;
  expired int;
begin
  allowed := false;
  select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
  from public.usage_counters c
  where c.tenant_id = take_slot_locked.tenant_id and c.period_start = take_slot_locked.period_start;
  if not found then
    insert into public.usage_counters (tenant_id, period_start, period_end)
    values (take_slot_locked.tenant_id, take_slot_locked.period_start, take_slot_locked.period_end)
    on conflict (tenant_id, period_start) do nothing;
  elsif collected + held >= take_slot_locked.quota and (held = 0 or next_expiry > now()) then
    return;
  end if;
  select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
  from public.usage_counters c
  where c.tenant_id = take_slot_locked.tenant_id and c.period_start = take_slot_locked.period_start
  for update;
  -- Expired reservations stop counting now, not at the next sweep.
  swept := held > 0 and (next_expiry is null or next_expiry <= now());
  if swept then
    with gone as (
      update public.usage_reservations r set released_at = now(), release_reason = 'expired'
      where r.tenant_id = take_slot_locked.tenant_id and r.period_start = take_slot_locked.period_start
        and r.released_at is null and r.expires_at <= now()
      returning 1
    )
    select count(*) into expired from gone;
    held := greatest(0, held - expired);
  end if;
  allowed := collected + held < take_slot_locked.quota;
  if swept or allowed then
    update public.usage_counters c
    set reserved = take_slot_locked.held + take_slot_locked.allowed::int,
        reservations_next_expiry = least(
          case when swept then private.next_reservation_expiry(take_slot_locked.tenant_id, take_slot_locked.period_start)
               else c.reservations_next_expiry end,
          case when take_slot_locked.allowed then take_slot_locked.expires end)
    where c.tenant_id = take_slot_locked.tenant_id and c.period_start = take_slot_locked.period_start;
  end if;
end;
$$;

-- The run-ref retry path: a slot was taken, but the run's reference already has a
-- reservation, so this run was decided before. Racing retries queue on the counters row
-- (the slot paths above), so the first one's reservation is committed and visible here.
-- kept: whether the slot just taken stays taken (the run holds it now).
--
-- The earlier reservation holds the run's slot only in this period, and only while it
-- is collected or has not expired: one of an earlier period (a run allowed just before
-- the period ended, whose answer was lost) holds nothing here, or a retry in the new
-- period would be allowed beyond its quota. Such a run is decided afresh: it takes the
-- slot just taken, and its hold in the earlier period, if still counted, is released.
create or replace function private.retry_run_reservation(
  tenant_id uuid,
  period_start timestamptz,
  workflow_id text,
  run_ref text,
  expires timestamptz,
  out reservation_id bigint,
  out kept boolean
)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  prior_period timestamptz;
  prior_release text;
  prior_expires timestamptz;
begin
  -- Another period's counters row is locked before the reservation, in the order the
  -- collector takes them, so the two cannot wait on each other. The reservation cannot
  -- move meanwhile: only a decision holding this period's row moves one, into it.
  select r.period_start into prior_period
  from public.usage_reservations r
  where r.tenant_id = retry_run_reservation.tenant_id and r.run_ref = retry_run_reservation.run_ref;
  if found and prior_period <> retry_run_reservation.period_start then
    perform from public.usage_counters c
    where c.tenant_id = retry_run_reservation.tenant_id and c.period_start = prior_period
    for update;
  end if;
  select r.id, r.period_start, r.release_reason, r.expires_at
    into reservation_id, prior_period, prior_release, prior_expires
  from public.usage_reservations r
  where r.tenant_id = retry_run_reservation.tenant_id and r.run_ref = retry_run_reservation.run_ref
  for update;
  kept := true;
  if not found then
    -- prune_history deleted it (released long ago) since the conflict: the run is new
    -- again, in the slot just taken.
    insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
    values (retry_run_reservation.tenant_id, retry_run_reservation.period_start,
            retry_run_reservation.workflow_id, retry_run_reservation.run_ref, retry_run_reservation.expires)
    returning id into reservation_id;
  elsif prior_period = retry_run_reservation.period_start
        and (prior_release = 'collected' or (prior_release is null and prior_expires > now())) then
    -- Still reserved, or already counted for real: give the slot just taken back. The
    -- expiry note may now be earlier than the truth, which it is allowed to be: at worst a
    -- sweep runs once with nothing to release.
    update public.usage_counters c set reserved = c.reserved - 1
    where c.tenant_id = retry_run_reservation.tenant_id and c.period_start = retry_run_reservation.period_start;
    kept := false;
  else
    -- Its reservation lapsed before the run was collected, or belongs to an earlier
    -- period: the slot just taken is its new one. A hold still counted where it was is
    -- released there (in this period the slot paths swept expired ones already).
    if prior_release is null then
      update public.usage_counters c set reserved = c.reserved - 1
      where c.tenant_id = retry_run_reservation.tenant_id and c.period_start = prior_period;
    end if;
    update public.usage_reservations r
    set period_start = retry_run_reservation.period_start,
        workflow_id = coalesce(retry_run_reservation.workflow_id, r.workflow_id),
        expires_at = retry_run_reservation.expires, released_at = null, release_reason = null
    where r.id = retry_run_reservation.reservation_id;
  end if;
end;
$$;

-- The run-ref retry path at the limit: a retry of a run allowed before in this period is
-- still allowed, its slot being already counted (reserved and not expired, or collected).
-- Null when there is none: a run whose reservation expired or is of an earlier period
-- holds no slot in this one, and is blocked like any other.
create or replace function private.prior_run_reservation(tenant_id uuid, period_start timestamptz, run_ref text)
returns bigint
language plpgsql stable
set search_path = ''
as $$
#variable_conflict use_column
begin
  return (
    select r.id from public.usage_reservations r
    where r.tenant_id = prior_run_reservation.tenant_id and r.run_ref = prior_run_reservation.run_ref
      and r.period_start = prior_run_reservation.period_start
      and (r.release_reason = 'collected' or (r.released_at is null and r.expires_at > now())));
end;
$$;

-- A decision that reserves nothing: the counters as they are, taking nothing. Expired
-- reservations not yet swept no longer count.
create or replace function private.read_committed(
  tenant_id uuid,
  period_start timestamptz,
  out collected bigint,
  out held bigint
)
language plpgsql stable
set search_path = ''
as $$
#variable_conflict use_column
declare
  next_expiry timestamptz;
begin
  select c.billable, c.reserved, c.reservations_next_expiry into collected, held, next_expiry
  from public.usage_counters c
  where c.tenant_id = read_committed.tenant_id and c.period_start = read_committed.period_start;
  if not found then
    collected := 0;
    held := 0;
  elsif held > 0 and (next_expiry is null or next_expiry <= now()) then
    held := held - (
      select count(*) from public.usage_reservations r
      where r.tenant_id = read_committed.tenant_id and r.period_start = read_committed.period_start
        and r.released_at is null and r.expires_at <= now());
  end if;
end;
$$;

select private.grant_to_service_role_only(
  'private.take_slot_fast(uuid, timestamptz, bigint, timestamptz)',
  'private.take_slot_locked(uuid, timestamptz, timestamptz, bigint, timestamptz)',
  'private.retry_run_reservation(uuid, timestamptz, text, text, timestamptz)',
  'private.prior_run_reservation(uuid, timestamptz, text)'
);
-- The tenant's usage summary counts runs in flight with it, as the member reading it (security
-- invoker: the member's row level security decides which counters and reservations it sees).
select private.grant_to_authenticated('private.read_committed(uuid, timestamptz)');

-- The decision ------------------------------------------------------------------------

-- What a decision reads of a tenant and its plan. A plain view, inlined where used, so
-- the lookup by id and the one by external reference each probe only their own index.
create or replace view private.enforcement_terms with (security_invoker = true) as
select x.id, x.external_ref,
       x.subscription_status as status, x.delinquent_since,
       x.current_period_start, x.current_period_end,
       p.included_executions, p.trial_included_executions, p.limit_policy, p.grace_days,
       p.alert_thresholds
from public.tenants x join public.plans p on p.id = x.plan_id;
revoke all on private.enforcement_terms from public, anon, authenticated;
grant select on private.enforcement_terms to service_role;

-- May the tenant (its id, or the operator's external reference) start a run now?
--
-- Returns {allowed, reason, committed, limit, remaining, percent, level, period_start,
-- period_end, tenant_id, reservation_id}. committed = collected billable executions +
-- active reservations (this run's included); remaining, percent and level are of
-- committed. reason is one of: within_limit, overage_allowed, limit_reached, unlimited,
-- trial, grace_period, subscription_inactive, unknown_tenant. reserve = false answers
-- without reserving (a dry check) and writes nothing.
--
-- run_ref makes a reserving decision idempotent per tenant: a retry of a run that was
-- allowed before in this period (its reservation still active, or already collected) is
-- allowed again with the same reservation_id and reserves nothing more, even at the limit;
-- a run whose reservation expired or is of an earlier period is decided afresh and, if
-- allowed, takes a slot under the same reservation_id. A run that was blocked reserved
-- nothing, so its retry is simply decided afresh.
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
  t record;
  cur_start timestamptz;
  cur_end timestamptz;
  collected bigint;
  held bigint;
  quota bigint;
  inactive boolean := false;
  in_grace boolean := false;
  reserves boolean;
  expires timestamptz;
  committed bigint;
  allowed boolean;
  reason text;
  reservation bigint;
  kept boolean;
  standing record;
begin
  -- A UUID names the tenant by id, anything else by the operator's external reference:
  -- one index probe each, not both on every call. An external reference may be a UUID
  -- too (an account id in the operator's product): a UUID that is no tenant's id takes
  -- the second probe, so only that miss pays for it. add_tenant refuses an external
  -- reference that is another tenant's id, so the two cannot name different tenants.
  if enforce_usage.tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into t from private.enforcement_terms v where v.id = enforce_usage.tenant::uuid;
    if not found then
      select * into t from private.enforcement_terms v where v.external_ref = enforce_usage.tenant;
    end if;
  else
    select * into t from private.enforcement_terms v where v.external_ref = enforce_usage.tenant;
  end if;
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
    in_grace := now() < t.delinquent_since + make_interval(days => t.grace_days);
    inactive := not in_grace;
  elsif t.status in ('incomplete_expired', 'paused') then
    inactive := true;
  end if;
  quota := private.plan_quota(t.limit_policy, t.status = 'trialing', t.included_executions,
                              t.trial_included_executions);
  -- Only a limit that blocks needs a reservation; overage and unlimited plans count on
  -- collection alone.
  reserves := not inactive and t.limit_policy <> 'unlimited'
              and (t.limit_policy = 'hard_limit' or t.status = 'trialing');

  if reserves and enforce_usage.reserve then
    -- Until the end of this transaction (see the header).
    perform set_config('synchronous_commit', 'off', true);
    expires := now() + make_interval(secs => enforce_usage.reservation_ttl_seconds);
    select f.collected, f.held into collected, held
    from private.take_slot_fast(t.id, cur_start, quota, expires) f;
    allowed := collected is not null;
    if not allowed then
      select l.allowed, l.collected, l.held into allowed, collected, held
      from private.take_slot_locked(t.id, cur_start, cur_end, quota, expires) l;
    end if;

    if allowed then
      insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
      values (t.id, cur_start, enforce_usage.workflow_id, enforce_usage.run_ref, expires)
      on conflict (tenant_id, run_ref) where run_ref is not null do nothing
      returning id into reservation;
      if reservation is not null then
        held := held + 1;
      else
        select r.reservation_id, r.kept into reservation, kept
        from private.retry_run_reservation(t.id, cur_start, enforce_usage.workflow_id,
                                           enforce_usage.run_ref, expires) r;
        held := held + kept::int;
      end if;
    elsif enforce_usage.run_ref is not null then
      reservation := private.prior_run_reservation(t.id, cur_start, enforce_usage.run_ref);
      allowed := reservation is not null;
    end if;
  else
    select u.collected, u.held into collected, held
    from private.read_committed(t.id, cur_start) u;
  end if;

  committed := collected + held;
  if inactive then
    allowed := false; reason := 'subscription_inactive';
  elsif t.limit_policy = 'unlimited' then
    allowed := true; reason := 'unlimited';
  elsif reserves then
    -- A reserving decision was made above, under the row's lock or its check-and-increment;
    -- a dry check asks whether a run would be allowed now.
    if not enforce_usage.reserve then
      allowed := committed < quota;
    end if;
    reason := case when not allowed then 'limit_reached'
                   when t.status = 'trialing' then 'trial' else 'within_limit' end;
  else
    allowed := true; reason := case when committed < quota then 'within_limit' else 'overage_allowed' end;
  end if;
  if allowed and in_grace then
    reason := 'grace_period';
  end if;
  -- The period's first block becomes a tenant.blocked webhook event; later blocks cost one
  -- index probe there, and decisions that allow pay nothing.
  if reason = 'limit_reached' and enforce_usage.reserve then
    perform private.record_tenant_blocked(t.id, cur_start, cur_end, committed, quota);
  end if;

  standing := private.usage_standing(committed, quota, t.alert_thresholds);
  return jsonb_build_object(
    'allowed', allowed,
    'reason', reason,
    'tenant_id', t.id,
    'committed', committed,
    'limit', quota,
    'remaining', standing.remaining,
    'percent', standing.percent,
    'level', standing.level,
    'period_start', cur_start,
    'period_end', cur_end,
    'reservation_id', reservation
  );
end;
$$;

select private.grant_to_service_role_only('public.enforce_usage(text, text, text, boolean, int)');
