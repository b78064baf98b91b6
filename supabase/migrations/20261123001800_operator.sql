-- Operator functions: scheduled runs, history retention, the status snapshot, the
-- collector's health and the usage export. Service-only.

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

-- Retention -----------------------------------------------------------------------------

-- History older than the raw-execution retention (the start of the month
-- `retention_months` months ago): released reservations, scheduled runs and collector runs,
-- up to `batch` rows of each per call, oldest first. Counters, alerts and the Stripe ledger
-- are kept. runUpkeep (src/ops/upkeep.ts) calls it on collect-usage's schedule, so a backlog
-- drains a batch per run.
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
-- (failing first, then the longest lag), Stripe reports not sent yet (and whether sending
-- fails), Stripe webhook events rejected, alert deliveries not delivered, the latest
-- collector runs, and each scheduled function's latest run (with the summary it recorded)
-- and how many have failed since its last success (runs and functions are not per tenant).
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
    'meter_reports', private.meter_report_status(operator_status.tenant_ids),
    'stripe_events', private.stripe_event_status(operator_status.tenant_ids),
    'reconciliation', private.reconciliation_status(operator_status.tenant_ids),
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
               latest.ok as last_ok, latest.error as last_error, latest.summary as last_summary,
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

revoke execute on function public.operator_status(uuid[], int, int) from public, anon, authenticated;
grant execute on function public.operator_status(uuid[], int, int) to service_role;

-- What the collector's health needs beyond operator_status: the latest scheduled run (did it
-- finish, with failures, could it reach the database), runs killed before they could finish
-- in the last day (with what they committed), sources whose lease outlived its run, and gaps
-- not acknowledged yet. tenant_ids limits leases and gaps to those tenants.
create or replace function public.collector_health(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with killed as (
    -- A Netlify function runs 15 minutes at most: a run unfinished after that was killed.
    select r.id, r.trigger, r.started_at, r.pages, r.executions_ingested, r.billable_counted
    from public.collector_runs r
    where r.finished_at is null and r.started_at < now() - interval '15 minutes'
      and r.started_at > now() - interval '1 day'
  ),
  gaps as (
    select g.* from public.collection_gaps g
    where g.acknowledged_at is null
      and (collector_health.tenant_ids is null or g.tenant_id = any (collector_health.tenant_ids))
  )
  select jsonb_build_object(
    'latest_scheduled_run', (
      select jsonb_build_object(
        'id', r.id, 'started_at', r.started_at, 'finished_at', r.finished_at,
        'killed', r.finished_at is null and r.started_at < now() - interval '15 minutes',
        'sources_ok', r.sources_ok, 'sources_failed', r.sources_failed,
        'pages', r.pages, 'executions_ingested', r.executions_ingested,
        'database_unreachable', r.database_unreachable,
        'first_error', r.errors -> 0 ->> 'error')
      from public.collector_runs r
      where r.trigger = 'schedule'
      order by r.started_at desc
      limit 1
    ),
    'killed_runs', coalesce((
      select jsonb_agg(to_jsonb(k) order by k.started_at desc) from killed k
    ), '[]'::jsonb),
    'dead_leases', coalesce((
      select jsonb_agg(jsonb_build_object(
               'source_id', st.source_id, 'tenant_id', s.tenant_id, 'base_url', s.base_url,
               'lease_expired_at', st.lease_expires_at,
               'held_for_seconds', floor(extract(epoch from now() - st.lease_expires_at))::bigint + st.lease_seconds)
             order by st.lease_expires_at)
      from public.collector_source_state st
      join public.n8n_sources s on s.id = st.source_id
      where st.lease_token is not null and st.lease_expires_at <= now()
        and (collector_health.tenant_ids is null or s.tenant_id = any (collector_health.tenant_ids))
    ), '[]'::jsonb),
    'unacknowledged_gaps', jsonb_build_object(
      'gaps', (select count(*) from gaps),
      'executions', (select coalesce(sum(g.to_id - g.from_id + 1), 0) from gaps g),
      'by_kind', coalesce((
        select jsonb_object_agg(k.kind, k.executions)
        from (select g.kind, sum(g.to_id - g.from_id + 1) as executions from gaps g group by g.kind) k
      ), '{}'::jsonb),
      'sources', (select count(distinct g.source_id) from gaps g),
      'oldest_detected_at', (select min(g.detected_at) from gaps g)
    )
  );
$$;
revoke execute on function public.collector_health(uuid[]) from public, anon, authenticated;
grant execute on function public.collector_health(uuid[]) to service_role;

-- Usage export ----------------------------------------------------------------------------

-- `flowmeter export usage` reads through these, one keyset page per call, so an export of
-- millions of executions holds one page at a time. Each page starts strictly after the
-- last row of the one before, in the order of an index: per day from usage_daily (kept
-- for ever, so days outlive the raw executions), per workflow and per execution from the
-- raw executions of [from_at, to_at) by their start. tenant_ids null is every tenant.
-- The caller stops at an empty page, not a short one: PostgREST's max-rows setting may
-- cut any page shorter than max_rows. The first page starts after a key below every row
-- (the nil uuid) rather than under "after is null or …": an OR keeps the row comparison
-- out of the index condition, and every page would read the range from its start. For
-- the same reason the tenants asked for bound the scan (lowest to highest), so the last,
-- empty page of one tenant's export does not read every later tenant's rows.

create or replace function public.export_usage_size(
  tenant_ids uuid[] default null,
  from_day date default null,
  to_day date default null
)
returns table (days bigint, executions bigint)
language sql stable
set search_path = ''
as $$
  select count(*), coalesce(sum(d.executions), 0)::bigint
  from public.usage_daily d
  where (export_usage_size.tenant_ids is null or d.tenant_id = any (export_usage_size.tenant_ids))
    and d.day between export_usage_size.from_day and export_usage_size.to_day;
$$;
comment on function public.export_usage_size(uuid[], date, date) is
$$What an export of the UTC days from_day to to_day (inclusive) holds, from the daily totals: days = tenant-days with usage, executions = their finished executions. For progress.$$;

create or replace function private.export_page_size(max_rows int)
returns int
language plpgsql immutable
set search_path = ''
as $$
begin
  if max_rows is null or max_rows < 1 then
    raise exception 'max_rows must be at least 1 (got %)', max_rows using errcode = '22023';
  end if;
  return least(max_rows, 5000);
end;
$$;

create or replace function public.export_usage_days(
  tenant_ids uuid[] default null,
  from_day date default null,
  to_day date default null,
  after_tenant_id uuid default null,
  after_day date default null,
  max_rows int default 1000
)
returns table (
  tenant_id uuid,
  external_ref text,
  day date,
  executions bigint,
  billable bigint,
  failed bigint,
  duration_ms bigint
)
language sql stable
set search_path = ''
as $$
  select d.tenant_id, t.external_ref, d.day, d.executions, d.billable, d.failed, d.duration_ms
  from public.usage_daily d
  join public.tenants t on t.id = d.tenant_id
  where (export_usage_days.tenant_ids is null or d.tenant_id = any (export_usage_days.tenant_ids))
    and d.tenant_id between coalesce((select x from unnest(export_usage_days.tenant_ids) x order by x limit 1), '00000000-0000-0000-0000-000000000000'::uuid)
                      and coalesce((select x from unnest(export_usage_days.tenant_ids) x order by x desc limit 1), 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
    and d.day between export_usage_days.from_day and export_usage_days.to_day
    and (d.tenant_id, d.day)
        > (coalesce(export_usage_days.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(export_usage_days.after_day, '-infinity'::date))
  order by d.tenant_id, d.day
  limit private.export_page_size(export_usage_days.max_rows);
$$;
comment on function public.export_usage_days(uuid[], date, date, uuid, date, int) is
$$Usage per tenant and UTC day (days with usage only), from_day to to_day inclusive, in (tenant_id, day) order; the next page passes the last row's tenant_id and day. At most max_rows (capped at 5000).
failed = executions that did not succeed (error, crashed, canceled), billable or not.$$;

create or replace function public.export_usage_workflows(
  tenant_ids uuid[] default null,
  from_at timestamptz default null,
  to_at timestamptz default null,
  after_tenant_id uuid default null,
  after_workflow_id text default null,
  max_rows int default 1000
)
returns table (
  tenant_id uuid,
  external_ref text,
  workflow_id text,
  executions bigint,
  billable bigint,
  failed bigint,
  duration_ms bigint
)
language sql stable
set search_path = ''
as $$
  select w.tenant_id, t.external_ref, w.workflow_id, w.executions, w.billable, w.failed, w.duration_ms
  from (
    select e.tenant_id, e.workflow_id, count(*) as executions,
           count(*) filter (where e.billable) as billable,
           count(*) filter (where e.status <> 'success') as failed,
           coalesce(sum(e.duration_ms), 0)::bigint as duration_ms
    from public.executions e
    where (export_usage_workflows.tenant_ids is null or e.tenant_id = any (export_usage_workflows.tenant_ids))
      and e.tenant_id between coalesce((select x from unnest(export_usage_workflows.tenant_ids) x order by x limit 1), '00000000-0000-0000-0000-000000000000'::uuid)
                        and coalesce((select x from unnest(export_usage_workflows.tenant_ids) x order by x desc limit 1), 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
      and e.occurred_at >= export_usage_workflows.from_at and e.occurred_at < export_usage_workflows.to_at
      and (e.tenant_id, e.workflow_id)
          > (coalesce(export_usage_workflows.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(export_usage_workflows.after_workflow_id, ''))
    group by e.tenant_id, e.workflow_id
    order by e.tenant_id, e.workflow_id
    limit private.export_page_size(export_usage_workflows.max_rows)
  ) w
  join public.tenants t on t.id = w.tenant_id
  order by w.tenant_id, w.workflow_id;
$$;
comment on function public.export_usage_workflows(uuid[], timestamptz, timestamptz, uuid, text, int) is
$$Usage per tenant and n8n workflow of the raw executions started in [from_at, to_at), in (tenant_id, workflow_id) order; the next page passes the last row's tenant_id and workflow_id. At most max_rows (capped at 5000).
failed = executions that did not succeed (error, crashed, canceled), billable or not; duration_ms = total run time.$$;

create or replace function public.export_usage_executions(
  tenant_ids uuid[] default null,
  from_at timestamptz default null,
  to_at timestamptz default null,
  after_tenant_id uuid default null,
  after_occurred_at timestamptz default null,
  after_source_id uuid default null,
  after_execution_id bigint default null,
  max_rows int default 1000
)
returns table (
  tenant_id uuid,
  external_ref text,
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
  period_start timestamptz
)
language sql stable
set search_path = ''
as $$
  select e.tenant_id, t.external_ref, e.occurred_at, e.source_id, e.execution_id, e.workflow_id,
         e.mode, e.status, e.started_at, e.stopped_at, e.duration_ms, e.billable, e.period_start
  from public.executions e
  join public.tenants t on t.id = e.tenant_id
  where (export_usage_executions.tenant_ids is null or e.tenant_id = any (export_usage_executions.tenant_ids))
    and e.tenant_id between coalesce((select x from unnest(export_usage_executions.tenant_ids) x order by x limit 1), '00000000-0000-0000-0000-000000000000'::uuid)
                      and coalesce((select x from unnest(export_usage_executions.tenant_ids) x order by x desc limit 1), 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
    and e.occurred_at >= export_usage_executions.from_at and e.occurred_at < export_usage_executions.to_at
    and (e.tenant_id, e.occurred_at, e.source_id, e.execution_id)
        > (coalesce(export_usage_executions.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid),
           coalesce(export_usage_executions.after_occurred_at, '-infinity'::timestamptz),
           coalesce(export_usage_executions.after_source_id, '00000000-0000-0000-0000-000000000000'::uuid),
           coalesce(export_usage_executions.after_execution_id, -1))
  order by e.tenant_id, e.occurred_at, e.source_id, e.execution_id
  limit private.export_page_size(export_usage_executions.max_rows);
$$;
comment on function public.export_usage_executions(uuid[], timestamptz, timestamptz, uuid, timestamptz, uuid, bigint, int) is
$$The raw executions started in [from_at, to_at), in (tenant_id, occurred_at, source_id, execution_id) order; the next page passes those of the last row. At most max_rows (capped at 5000).
occurred_at = started_at, else stopped_at; period_start = the tenant billing period the execution was counted in.$$;

revoke execute on function
  public.export_usage_size(uuid[], date, date),
  private.export_page_size(int),
  public.export_usage_days(uuid[], date, date, uuid, date, int),
  public.export_usage_workflows(uuid[], timestamptz, timestamptz, uuid, text, int),
  public.export_usage_executions(uuid[], timestamptz, timestamptz, uuid, timestamptz, uuid, bigint, int)
  from public, anon, authenticated;
grant execute on function
  public.export_usage_size(uuid[], date, date),
  private.export_page_size(int),
  public.export_usage_days(uuid[], date, date, uuid, date, int),
  public.export_usage_workflows(uuid[], timestamptz, timestamptz, uuid, text, int),
  public.export_usage_executions(uuid[], timestamptz, timestamptz, uuid, timestamptz, uuid, bigint, int)
  to service_role;
