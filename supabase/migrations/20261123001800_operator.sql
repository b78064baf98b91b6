-- Operator functions: scheduled runs, history retention, the status snapshot and the
-- collector's health. Service-only.

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
