-- Collection: raw n8n executions, executions not final yet and ids to probe, per-source
-- sync state, gaps and collector runs. Written only by the ingest functions
-- (ingest_functions), which move the usage counters and daily totals (usage) in the same
-- statement.
--
-- Exactly once: a final execution is stored once per (source, n8n execution id) and the
-- counters move only by rows that ingest_execution_page really inserted, in the same
-- statement. Progress (cursor, watermark) is saved in the same transaction, so a crash
-- at any point leaves either the whole page or none of it.

-- Raw executions (final only) -------------------------------------------------------

create table public.executions (
  source_id uuid not null,
  execution_id bigint not null,
  tenant_id uuid not null,
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
  primary key (source_id, execution_id, occurred_at),
  -- One key for both columns, so each inserted row costs one check rather than two, and
  -- an execution's tenant is its source's; a deleted tenant's sources take their rows along.
  constraint executions_source_fkey foreign key (source_id, tenant_id)
    references public.n8n_sources (id, tenant_id) on delete cascade
) partition by range (occurred_at);
comment on table public.executions is 'Finished n8n executions, one row per (source, n8n id); monthly partitions in schema private, dropped after the retention period.';

create index executions_tenant_occurred_idx on public.executions (tenant_id, occurred_at);
create index executions_tenant_workflow_idx on public.executions (tenant_id, workflow_id, occurred_at);

create table private.executions_default partition of public.executions default;

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
  -- last_attempt_at before the current lease's claim: a source freed without being worked
  -- (release_collector_sources, 'unworked') gets it back, so it stays first in line.
  previous_attempt_at timestamptz,
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
  -- have been pruned before they were seen; missing: inside the listed range, n8n answered
  -- 404 by id (deleted, pruned or never saved); vanished: an open execution disappeared;
  -- abandoned: an open execution stayed unfinished past the configured age.
  kind text not null
    constraint collection_gaps_kind_known check (kind in ('pruned', 'missing', 'vanished', 'abandoned')),
  from_id bigint not null,
  to_id bigint not null,
  detail text,
  detected_at timestamptz not null default now(),
  acknowledged_at timestamptz,
  constraint collection_gaps_range check (to_id >= from_id)
);
comment on table public.collection_gaps is 'Executions that may be missing from the counters, for the operator to see.';
comment on column public.collection_gaps.acknowledged_at is 'When the operator acknowledged the gap (flowmeter sources acknowledge-gaps, or operator_acknowledge_gaps in the console); status flags gaps not acknowledged, and the gap stays listed.';
create index collection_gaps_source_idx on public.collection_gaps (source_id, detected_at);
create index collection_gaps_tenant_idx on public.collection_gaps (tenant_id);
create index collection_gaps_source_range_idx on public.collection_gaps (source_id, from_id, to_id);
create index collection_gaps_unacknowledged_idx on public.collection_gaps (source_id) where acknowledged_at is null;

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
  errors jsonb not null default '[]'::jsonb,
  database_unreachable boolean not null default false,
  sources_lease_lost int not null default 0,
  failure text,
  sources_handoff_refused int not null default 0,
  handoff_error text
);
comment on table public.collector_runs is 'One row per collector run, for the operator''s view of lag and errors.';
comment on column public.collector_runs.database_unreachable is 'Some call of the run got no answer from the database.';
comment on column public.collector_runs.sources_lease_lost is 'Sources the run held or was handed whose lease another run had taken by the time it worked them.';
comment on column public.collector_runs.sources_handoff_refused is 'Sources the run tried to hand to collect-usage-background and could not (refused or unreachable); they wait for the next run. Zero when no background function is configured.';
comment on column public.collector_runs.handoff_error is 'Why the first refused hand-off failed (the status it answered, or why it could not be reached).';
comment on column public.collector_runs.failure is 'Why the run as a whole stopped (it could not claim or resume its sources, or it threw); null when it ran.';
create index collector_runs_started_idx on public.collector_runs (started_at desc);

create trigger collector_source_state_touch_updated_at before update on public.collector_source_state
  for each row execute function private.touch_updated_at();

-- Privileges and RLS ----------------------------------------------------------------------

select private.restrict_to_service_role(
  'public.executions', 'public.open_executions', 'public.execution_probes',
  'public.collector_source_state', 'public.collection_gaps', 'public.collector_runs'
);
-- Like the monthly partitions (ensure_execution_partition): reached through public.executions only.
alter table private.executions_default enable row level security;
revoke all on table private.executions_default from public, anon, authenticated;
-- Gaps are the operator's to read and acknowledge, not the tenant's.
select private.grant_member_read('public.executions');
select private.grant_member_read('public.open_executions');

