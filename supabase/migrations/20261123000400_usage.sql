-- Usage: counters per tenant and billing period, reservations of runs allowed but not
-- collected yet, daily totals.
--
-- The counters move by: ingest_execution_page (executions collected, with usage_daily),
-- enforce_usage (reserved), claim_meter_deltas (reported) and reconcile_counters (a
-- repair). Their triggers, below, do the rest in the same transaction: collected
-- executions release as many reservations, crossing an alert threshold raises the alert,
-- deleting a counters row deletes its reservations.
--
-- Reservations carry no foreign key: the only writer (enforce_usage) inserts one only
-- while holding its counters row, so the per-insert referential check (measured at a
-- sixth of a reserving decision's database time) would buy nothing; deleting a counters
-- row (with its tenant) still deletes its reservations, by trigger.

-- Counters ----------------------------------------------------------------------------

create table public.usage_counters (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  period_end timestamptz not null,
  -- Every finished execution, billable or not.
  executions bigint not null default 0,
  billable bigint not null default 0,
  billable_success bigint not null default 0,
  -- billable but not successful (error, crashed)
  billable_failed bigint not null default 0,
  billable_duration_ms bigint not null default 0,
  updated_at timestamptz not null default now(),
  -- Active reservations of this tenant-period: runs allowed but not yet collected.
  reserved bigint not null default 0
    constraint usage_counters_reserved_nonnegative check (reserved >= 0),
  -- Earliest expires_at among the tenant-period's active reservations; null when none.
  -- Never later than the truth: a decision sweeps expired reservations once it is due.
  reservations_next_expiry timestamptz,
  -- Σ value of this tenant-period's meter_reports: what has been handed to the outbox.
  reported bigint not null default 0
    constraint usage_counters_reported_range check (reported >= 0),
  primary key (tenant_id, period_start),
  constraint usage_counters_period_ordered check (period_end > period_start),
  constraint usage_counters_split check (billable = billable_success + billable_failed and billable <= executions)
);
comment on table public.usage_counters is 'Exact usage per tenant and billing period, moved only by ingest_execution_page; kept for ever.';

create table public.usage_daily (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  day date not null,
  executions bigint not null default 0,
  billable bigint not null default 0,
  failed bigint not null default 0,
  duration_ms bigint not null default 0,
  primary key (tenant_id, day)
);
comment on table public.usage_daily is 'Usage per tenant and UTC day (by startedAt), for charts; kept for ever.';

-- Every reservation belongs to a counters row: enforce_usage inserts one only while it
-- holds that row (see the header of this file for why there is no foreign key).
create table public.usage_reservations (
  id bigint generated always as identity primary key,
  tenant_id uuid not null,
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

-- Release and expiry both walk active reservations soonest-expiring first (with one TTL,
-- that is oldest first): one index serves both.
create index usage_reservations_expiry_idx on public.usage_reservations (tenant_id, period_start, expires_at)
  where released_at is null;

-- A runner that retries after losing an answer sends the same run reference: one run, one
-- reservation (see enforce_usage).
create unique index usage_reservations_run_ref_key on public.usage_reservations (tenant_id, run_ref)
  where run_ref is not null;

-- Released reservations are kept as long as raw executions, then pruned oldest first
-- (prune_history).
create index usage_reservations_released_idx on public.usage_reservations (released_at)
  where released_at is not null;

-- Privileges and RLS ----------------------------------------------------------------------

select private.restrict_to_service_role('public.usage_counters', 'public.usage_daily', 'public.usage_reservations');
select private.grant_member_read('public.usage_counters');
select private.grant_member_read('public.usage_daily');
select private.grant_member_read('public.usage_reservations');

-- Triggers ----------------------------------------------------------------------------

-- Deleting a tenant deletes its counters and, through this trigger, their reservations.
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

-- Earliest expiry among a tenant-period's active reservations (null when none). plpgsql,
-- not sql: with its pinned search_path a sql function is never inlined, so PostgreSQL 17
-- would plan its query on every call; plpgsql keeps the plan for the session.
create or replace function private.next_reservation_expiry(tenant_id uuid, period_start timestamptz)
returns timestamptz
language plpgsql stable
set search_path = ''
as $$
begin
  return (
    select min(r.expires_at) from public.usage_reservations r
    where r.tenant_id = next_reservation_expiry.tenant_id
      and r.period_start = next_reservation_expiry.period_start
      and r.released_at is null);
end;
$$;
select private.grant_to_service_role_only('private.next_reservation_expiry(uuid, timestamptz)');

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

create trigger usage_counters_release_reservations before update of billable on public.usage_counters
  for each row execute function private.release_collected_reservations();

-- After the counters of a tenant-period grow: one alert per threshold now reached and not
-- yet alerted, each with a delivery per enabled channel. Runs in the collector's
-- transaction while it holds the counters row, so concurrent ingests for one tenant take
-- turns here; the unique key settles any race left. Unlimited plans have no quota and
-- raise nothing; a trialing tenant's quota is the plan's trial quota.
create or replace function private.raise_usage_alerts()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  plan_quota bigint;
  plan_thresholds smallint[];
begin
  select private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                            p.included_executions, p.trial_included_executions),
         p.alert_thresholds
    into plan_quota, plan_thresholds
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  where t.id = new.tenant_id;
  -- No quota (an unlimited plan): nothing to alert on.
  if plan_quota is null then
    return null;
  end if;

  with reached as (
    insert into public.usage_alerts (tenant_id, period_start, period_end, threshold, used, quota)
    select new.tenant_id, new.period_start, new.period_end, x.threshold, new.billable, plan_quota
    from (select distinct unnest(plan_thresholds) as threshold) x
    where new.billable * 100 >= x.threshold::bigint * plan_quota
      and not exists (
        select 1 from public.usage_alerts a
        where a.tenant_id = new.tenant_id and a.period_start = new.period_start
          and a.threshold = x.threshold
      )
    -- Lowest first: ids are the order alerts are claimed and posted in (distinct alone
    -- hands them out in hash order, and 100 % could reach Slack before 80 %).
    order by x.threshold
    on conflict on constraint usage_alerts_once_per_threshold do nothing
    returning id
  )
  insert into public.alert_deliveries (alert_id, channel_id)
  select r.id, ch.id
  from reached r
  cross join public.alert_channels ch
  where ch.enabled and (ch.tenant_id = new.tenant_id or ch.tenant_id is null);

  return null;
end;
$$;
revoke all on function private.raise_usage_alerts() from public;

-- Two triggers rather than one so each can skip, without a call, the writes that cannot
-- reach a threshold (enforcement creating an empty counters row, pages without billable runs).
create trigger usage_counters_raise_alerts_on_insert after insert on public.usage_counters
  for each row when (new.billable > 0)
  execute function private.raise_usage_alerts();

create trigger usage_counters_raise_alerts_on_update after update of billable on public.usage_counters
  for each row when (new.billable > old.billable)
  execute function private.raise_usage_alerts();
