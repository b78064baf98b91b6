-- Collector: raw n8n executions, per-period usage counters, per-source sync state, runs.
--
-- Exactly once: a final execution is stored once per (source, n8n execution id) and the
-- counters move only by rows that ingest_execution_page really inserted, in the same
-- statement. Progress (cursor, watermark) is saved in the same transaction, so a crash
-- at any point leaves either the whole page or none of it.

-- Billing periods ---------------------------------------------------------------------

-- The tenant billing period that contains `at`: the Stripe subscription's current bounds
-- when they contain it, monthly steps from their start otherwise (Stripe keeps the anchor
-- day, clamping to the month's end), the UTC calendar month without a subscription.
-- Month arithmetic is done on UTC timestamps explicitly rather than with a `set timezone`
-- clause: setting a GUC on every call costs more than the call, and this is on the
-- enforcement hot path.
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

-- Raw executions (final only) -------------------------------------------------------

create table public.executions (
  source_id uuid not null references public.n8n_sources (id) on delete cascade,
  execution_id bigint not null,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  workflow_id text not null,
  mode text not null,
  status text not null
    constraint executions_status_final check (status in ('success', 'error', 'crashed', 'canceled')),
  started_at timestamptz,
  stopped_at timestamptz,
  -- Partition key: startedAt, else stoppedAt, else the epoch (default partition). Final
  -- executions never change these, so a re-listed execution always maps to the same row.
  occurred_at timestamptz not null,
  duration_ms bigint,
  billable boolean not null,
  -- The tenant billing period the execution was counted in.
  period_start timestamptz not null,
  retry_of bigint,
  ingested_at timestamptz not null default now(),
  primary key (source_id, execution_id, occurred_at)
) partition by range (occurred_at);
comment on table public.executions is 'Finished n8n executions, one row per (source, n8n id); monthly partitions in schema private, dropped after the retention period.';

create index executions_tenant_occurred_idx on public.executions (tenant_id, occurred_at);
create index executions_tenant_workflow_idx on public.executions (tenant_id, workflow_id, occurred_at);

create table private.executions_default partition of public.executions default;

-- Creates the monthly partition that holds `at` (in schema private, not exposed by the API).
create or replace function private.ensure_execution_partition(at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  month_start timestamptz := date_trunc('month', at);
  partition_name text := 'executions_' || to_char(month_start, 'YYYY_MM');
begin
  if to_regclass('private.' || partition_name) is not null then
    return;
  end if;
  -- Serialise creators; one that lost the race finds the table already there.
  perform pg_advisory_xact_lock(hashtext('flowmeter.execution_partitions'));
  begin
    execute format(
      'create table private.%I partition of public.executions for values from (%L) to (%L)',
      partition_name, month_start, month_start + interval '1 month'
    );
  exception when duplicate_table or unique_violation then
    return;
  end;
  execute format('alter table private.%I enable row level security', partition_name);
  execute format('revoke all on table private.%I from public, anon, authenticated', partition_name);
end;
$$;
comment on function private.ensure_execution_partition(timestamptz) is
  'security definer: attaching a partition requires owning public.executions, which the service role does not. Creates only private.executions_YYYY_MM for the given month.';

-- Drops monthly partitions wholly older than `keep_months` months before now (counters stay).
create or replace function private.drop_expired_execution_partitions(keep_months int)
returns setof text
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  cutoff timestamptz := date_trunc('month', now()) - make_interval(months => keep_months);
  part record;
begin
  if keep_months < 1 then
    raise exception 'keep_months must be at least 1 (got %)', keep_months using errcode = 'P0001';
  end if;
  for part in
    select c.relname
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where i.inhparent = 'public.executions'::regclass
      and n.nspname = 'private'
      and c.relname ~ '^executions_\d{4}_\d{2}$'
      and to_timestamp(substr(c.relname, 12), 'YYYY_MM') + interval '1 month' <= cutoff
  loop
    execute format('drop table private.%I', part.relname);
    return next part.relname;
  end loop;
end;
$$;
comment on function private.drop_expired_execution_partitions(int) is
  'security definer: dropping a partition requires owning it. Drops only private.executions_YYYY_MM partitions older than the retention.';

revoke all on function private.ensure_execution_partition(timestamptz) from public;
revoke all on function private.drop_expired_execution_partitions(int) from public;
revoke all on function private.billing_period(timestamptz, timestamptz, timestamptz) from public;
grant execute on function private.ensure_execution_partition(timestamptz),
  private.drop_expired_execution_partitions(int),
  private.billing_period(timestamptz, timestamptz, timestamptz) to service_role;

-- Executions seen but not final yet (new, running, waiting, unknown), revisited until they are.
create table public.open_executions (
  source_id uuid not null references public.n8n_sources (id) on delete cascade,
  execution_id bigint not null,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  workflow_id text not null,
  mode text not null,
  status text not null
    constraint open_executions_status_open check (status in ('new', 'running', 'waiting', 'unknown')),
  started_at timestamptz,
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  primary key (source_id, execution_id)
);
comment on table public.open_executions is 'Executions not finished when last seen; revisited until final, vanished or given up.';
create index open_executions_tenant_idx on public.open_executions (tenant_id);

-- Ids a walk passed that n8n did not list (running executions are never listed, and some
-- workflows do not save theirs): each is fetched by id once, then dropped or followed.
create table public.execution_probes (
  source_id uuid not null references public.n8n_sources (id) on delete cascade,
  execution_id bigint not null,
  first_seen_at timestamptz not null default now(),
  primary key (source_id, execution_id)
);
comment on table public.execution_probes is 'Execution ids missing from n8n''s list, to be fetched by id once.';

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

-- Sync state, gaps, runs ----------------------------------------------------------------

create table public.collector_source_state (
  source_id uuid primary key references public.n8n_sources (id) on delete cascade,
  -- The walk from the newest execution down stops at the first id <= floor_id.
  floor_id bigint not null default 0,
  high_water_id bigint not null default 0,
  -- A walk in progress: n8n's cursor to resume from, and the highest id it has seen.
  walk_cursor text,
  walk_top_id bigint,
  -- A new source backfills from the start of its tenant's current billing period.
  backfill_from timestamptz,
  -- null until probed: n8n >= 2.41 filters by startedAfter, older versions answer 400.
  supports_started_after boolean,
  lease_token uuid,
  lease_expires_at timestamptz,
  lease_seconds int not null default 120,
  last_attempt_at timestamptz,
  last_success_at timestamptz,
  last_walk_completed_at timestamptz,
  consecutive_failures int not null default 0,
  last_error text,
  last_error_at timestamptz,
  next_attempt_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.collector_source_state is 'Per-source collection progress and lease; written only through the collector functions.';

create table public.collection_gaps (
  id bigint generated always as identity primary key,
  source_id uuid not null references public.n8n_sources (id) on delete cascade,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  -- pruned: n8n's list ended above the watermark, so executions in [from_id, to_id] may
  -- have been pruned before they were seen; vanished: an open execution disappeared;
  -- abandoned: an open execution stayed unfinished past the configured age.
  kind text not null constraint collection_gaps_kind_known check (kind in ('pruned', 'vanished', 'abandoned')),
  from_id bigint not null,
  to_id bigint not null,
  detail text,
  detected_at timestamptz not null default now(),
  constraint collection_gaps_range check (to_id >= from_id)
);
comment on table public.collection_gaps is 'Executions that may be missing from the counters, for the operator to see.';
create index collection_gaps_source_idx on public.collection_gaps (source_id, detected_at);
create index collection_gaps_tenant_idx on public.collection_gaps (tenant_id);

create table public.collector_runs (
  id uuid primary key default gen_random_uuid(),
  trigger text not null constraint collector_runs_trigger_known check (trigger in ('schedule', 'background', 'manual')),
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  sources_ok int not null default 0,
  sources_failed int not null default 0,
  sources_deferred int not null default 0,
  pages int not null default 0,
  executions_ingested bigint not null default 0,
  billable_counted bigint not null default 0,
  errors jsonb not null default '[]'::jsonb
);
comment on table public.collector_runs is 'One row per collector run, for the operator''s view of lag and errors.';
create index collector_runs_started_idx on public.collector_runs (started_at desc);

create trigger collector_source_state_touch_updated_at before update on public.collector_source_state
  for each row execute function private.touch_updated_at();

-- Privileges and RLS ----------------------------------------------------------------------

alter table public.executions enable row level security;
alter table private.executions_default enable row level security;
alter table public.open_executions enable row level security;
alter table public.execution_probes enable row level security;
alter table public.usage_counters enable row level security;
alter table public.usage_daily enable row level security;
alter table public.collector_source_state enable row level security;
alter table public.collection_gaps enable row level security;
alter table public.collector_runs enable row level security;

revoke all on table public.executions, public.open_executions, public.execution_probes,
  public.usage_counters, public.usage_daily, public.collector_source_state, public.collection_gaps, public.collector_runs, private.executions_default
  from public, anon, authenticated;
grant select on table public.executions, public.open_executions, public.usage_counters, public.usage_daily,
  public.collection_gaps to authenticated;
grant all on table public.executions, public.open_executions, public.execution_probes,
  public.usage_counters, public.usage_daily, public.collector_source_state, public.collection_gaps,
  public.collector_runs to service_role;

create policy executions_select_member on public.executions
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
create policy open_executions_select_member on public.open_executions
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
create policy usage_counters_select_member on public.usage_counters
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
create policy usage_daily_select_member on public.usage_daily
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
create policy collection_gaps_select_member on public.collection_gaps
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
