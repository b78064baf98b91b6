-- Operator functions. The first half is service-only (the CLI, the status endpoint and the
-- scheduled functions): scheduled runs, history retention, the status snapshot, the
-- collector's health and the usage export.
--
-- The operator console (the second half of this file): what a signed-in operator reads and
-- does in the browser, with their own JWT, through supabase-js (`supabase.rpc(...)`), and
-- the audit of what they did.
--
-- An operator is an authenticated user whose app_metadata carries the operator mark
-- (private.is_operator); operators never hold the service role. Every console function is
-- granted to authenticated and calls private.require_operator() before it reads or writes
-- anything, so a tenant user or any other signed-in user gets 42501 (HTTP 403) and anon,
-- which may not execute them, gets 401.
--
-- They are security definer: the tables they read are hidden from authenticated by
-- row-level security (an operator is a member of no tenant) or not granted to it at all
-- (collector state, channels, deliveries, the ledger's errors), and the health snapshot is
-- the service-only operator_status(). Each says so in its comment. They reuse the tenant
-- usage API (private.tenant_usage_summary_rows, tenant_usage_history, tenant_usage_daily,
-- tenant_alerts) and operator_status(), so the console shows what the tenant and
-- `flowmeter status` show, computed once.
--
-- Actions (enable/disable a source, acknowledge gaps, re-send a failed delivery) write one
-- row to operator_actions in the same transaction: who (the JWT's sub and email), when,
-- what, on which object. Nobody but the service role reads that table.

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

-- The summary a function's latest successful run recorded (null when none did): where a run
-- that works through a list in parts picks up (reconcile-usage's walk of the customer-periods).
create or replace function public.last_run_summary(function_name text)
returns jsonb
language sql stable
set search_path = ''
as $$
  select r.summary from public.scheduled_runs r
  where r.function_name = last_run_summary.function_name and r.ok
  order by r.started_at desc
  limit 1;
$$;

select private.grant_to_service_role_only(
  'public.start_scheduled_run(text)', 'public.finish_scheduled_run(uuid, boolean, jsonb, text)',
  'public.last_run_summary(text)'
);

-- Retention -----------------------------------------------------------------------------

-- Up to `batch` runs of a run log (scheduled_runs, collector_runs: an id and a started_at)
-- that started before cutoff, oldest first; how many went.
create or replace function private.prune_runs(runs regclass, cutoff timestamptz, batch int)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  pruned bigint;
begin
  execute format(
    'with doomed as (select r.id from %1$s r where r.started_at < $1 order by r.started_at limit $2),
          gone as (delete from %1$s r using doomed where r.id = doomed.id returning 1)
     select count(*) from gone', prune_runs.runs)
    into pruned using prune_runs.cutoff, prune_runs.batch;
  return pruned;
end;
$$;
select private.grant_to_service_role_only('private.prune_runs(regclass, timestamptz, int)');

-- History older than the raw-execution retention (the start of the month
-- `retention_months` months ago): released reservations, scheduled runs, collector runs
-- and webhook events done with, and invoice previews of periods that ended before it, up to
-- `batch` rows of each per call, oldest first. Counters, alerts and the Stripe ledger
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
  webhook_events bigint;
  invoice_previews bigint;
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
  scheduled := private.prune_runs('public.scheduled_runs', cutoff, prune_history.batch);
  collector := private.prune_runs('public.collector_runs', cutoff, prune_history.batch);
  invoice_previews := private.prune_invoice_previews(cutoff, prune_history.batch);
  -- Webhook events whose every delivery is over (delivered or given up); one still to be
  -- sent keeps its event, whatever its age.
  with doomed as (
    select e.id from public.webhook_events e
    where e.created_at < cutoff
      and not exists (
        select 1 from public.webhook_deliveries d
        where d.event_id = e.id and (d.next_attempt_at is not null or d.status = 'sending'))
    order by e.created_at limit prune_history.batch
  ), gone as (
    delete from public.webhook_events e using doomed where e.id = doomed.id returning 1
  )
  select count(*) into webhook_events from gone;
  return jsonb_build_object('reservations', reservations, 'scheduled_runs', scheduled,
                            'collector_runs', collector, 'webhook_events', webhook_events,
                            'invoice_previews', invoice_previews);
end;
$$;

select private.grant_to_service_role_only('public.prune_history(int, int)');

-- Status ------------------------------------------------------------------------------

-- One snapshot for the operator's status screen: the sources most in need of attention
-- (failing first, then the longest lag), Stripe reports not sent yet (and whether sending
-- fails), Stripe webhook events rejected, alert and webhook deliveries not delivered, the latest
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
  ),
  -- Pending to an enabled channel: never attempted (a hand-back leaves it so, too); one to
  -- a disabled channel waits for it by design.
  unattempted_deliveries as (
    select d.created_at from deliveries d
    join public.alert_channels ch on ch.id = d.channel_id
    where d.status = 'pending' and ch.enabled
  )
  select jsonb_build_object(
    'generated_at', now(),
    'sources', jsonb_build_object(
      'total', (select count(*) from sources),
      'enabled', (select count(*) from sources where enabled),
      'failing', (select count(*) from sources where enabled and consecutive_failures > 0),
      'never_collected', (select count(*) from sources where enabled and last_success_at is null),
      -- Enabled, not failing, and yet nothing collected for three collector cycles (since it
      -- was added, when it never was), and no run took it meanwhile: no run is taking it, which
      -- no error would show. One that runs take but never get through is collector_health's
      -- (deferred_sources), with its own remedy.
      'stalled', (select count(*) from sources
                  where enabled and consecutive_failures = 0
                    and coalesce(last_success_at, created_at) < now() - interval '30 minutes'
                    and coalesce(last_attempt_at, '-infinity') < now() - interval '30 minutes'),
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
    'webhook_deliveries', private.webhook_delivery_status(operator_status.tenant_ids),
    'reconciliation', private.reconciliation_status(operator_status.tenant_ids),
    'alert_deliveries', jsonb_build_object(
      'pending', (select count(*) from deliveries where status = 'pending'),
      'sending', (select count(*) from deliveries where status = 'sending'),
      'retrying', (select count(*) from deliveries where status = 'failed' and next_attempt_at is not null),
      'given_up', (select count(*) from deliveries where status = 'failed' and next_attempt_at is null),
      'oldest_at', (select min(created_at) from deliveries),
      'unattempted', (select count(*) from unattempted_deliveries),
      'oldest_unattempted_at', (select min(created_at) from unattempted_deliveries),
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

select private.grant_to_service_role_only('public.operator_status(uuid[], int, int)');

-- What the collector's health needs beyond operator_status: the latest scheduled run (did it
-- finish, with failures, could it reach the database, did it fail as a whole or lose
-- leases), the background runs that ended with any of those since it started (the last day
-- when there is none; the five latest and how many), runs killed before they could finish
-- in the last day (with what they committed), sources whose lease outlived its run, sources
-- every run defers, and gaps not acknowledged yet. tenant_ids limits leases, deferred sources
-- and gaps to those tenants.
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
  ),
  -- Enabled, not failing, taken by a run in the last three collector cycles, and yet no turn
  -- of it completed in those cycles (since it was added, when none ever did): every run
  -- defers it, its walk cut at the budget (an n8n slower than the budget, or hanging, and no
  -- background function to finish the walk), and a deferral records no error.
  deferred_sources as (
    select st.source_id, s.tenant_id, s.base_url, s.created_at, st.last_success_at,
           st.last_walk_completed_at, st.last_attempt_at
    from public.collector_source_state st
    join public.n8n_sources s on s.id = st.source_id
    where s.enabled and st.consecutive_failures = 0
      and coalesce(st.last_success_at, s.created_at) < now() - interval '30 minutes'
      and st.last_attempt_at >= now() - interval '30 minutes'
      and (collector_health.tenant_ids is null or s.tenant_id = any (collector_health.tenant_ids))
  ),
  latest_scheduled as (
    select r.* from public.collector_runs r
    where r.trigger = 'schedule'
    order by r.started_at desc
    limit 1
  ),
  failed_background as (
    select r.id, r.started_at, r.finished_at, r.sources_ok, r.sources_failed,
           r.sources_lease_lost, r.pages, r.executions_ingested, r.database_unreachable,
           r.failure, r.errors -> 0 ->> 'error' as first_error,
           r.sources_handoff_refused, r.handoff_error
    from public.collector_runs r
    where r.trigger = 'background' and r.finished_at is not null
      and r.finished_at >= coalesce((select l.started_at from latest_scheduled l), now() - interval '1 day')
      -- A run ends within 15 minutes of its start: lets the started_at index bound the scan.
      and r.started_at >= coalesce((select l.started_at from latest_scheduled l), now() - interval '1 day') - interval '15 minutes'
      and (r.failure is not null or r.database_unreachable or r.sources_failed > 0 or r.sources_lease_lost > 0
           or r.sources_handoff_refused > 0)
  )
  select jsonb_build_object(
    'latest_scheduled_run', (
      select jsonb_build_object(
        'id', r.id, 'started_at', r.started_at, 'finished_at', r.finished_at,
        'killed', r.finished_at is null and r.started_at < now() - interval '15 minutes',
        'sources_ok', r.sources_ok, 'sources_failed', r.sources_failed,
        'sources_lease_lost', r.sources_lease_lost,
        'pages', r.pages, 'executions_ingested', r.executions_ingested,
        'database_unreachable', r.database_unreachable,
        'failure', r.failure,
        'first_error', r.errors -> 0 ->> 'error',
        'sources_handoff_refused', r.sources_handoff_refused,
        'handoff_error', r.handoff_error)
      from latest_scheduled r
    ),
    'failed_background_runs', jsonb_build_object(
      'count', (select count(*) from failed_background),
      'latest', coalesce((
        select jsonb_agg(to_jsonb(f) order by f.finished_at desc)
        from (select * from failed_background order by finished_at desc limit 5) f
      ), '[]'::jsonb)
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
    'deferred_sources', jsonb_build_object(
      'count', (select count(*) from deferred_sources),
      'longest', coalesce((
        select jsonb_agg(jsonb_build_object(
                 'source_id', d.source_id, 'tenant_id', d.tenant_id, 'base_url', d.base_url,
                 'last_success_at', d.last_success_at,
                 'last_walk_completed_at', d.last_walk_completed_at,
                 'uncollected_seconds', floor(extract(epoch from now() - coalesce(d.last_success_at, d.created_at)))::bigint)
               order by coalesce(d.last_success_at, d.created_at), d.source_id)
        from (select * from deferred_sources order by coalesce(last_success_at, created_at), source_id limit 5) d
      ), '[]'::jsonb)
    ),
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
select private.grant_to_service_role_only('public.collector_health(uuid[])');

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

-- The lowest and highest of the tenant ids an export asks for (every id when null): the
-- exports bound tenant_id by them as well, because "tenant_ids is null or tenant_id = any
-- (tenant_ids)" cannot start a scan of the (tenant_id, ...) indexes, while a range can.
create or replace function private.tenant_id_range(tenant_ids uuid[], out low uuid, out high uuid)
language sql immutable
set search_path = ''
as $$
  select coalesce((select x from unnest(tenant_id_range.tenant_ids) x order by x limit 1),
                  '00000000-0000-0000-0000-000000000000'::uuid),
         coalesce((select x from unnest(tenant_id_range.tenant_ids) x order by x desc limit 1),
                  'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid);
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
    and d.tenant_id between (private.tenant_id_range(export_usage_days.tenant_ids)).low
                      and (private.tenant_id_range(export_usage_days.tenant_ids)).high
    and d.day between export_usage_days.from_day and export_usage_days.to_day
    and (d.tenant_id, d.day)
        > (coalesce(export_usage_days.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(export_usage_days.after_day, '-infinity'::date))
  order by d.tenant_id, d.day
  limit private.page_size(export_usage_days.max_rows, default_rows => null, most => 1000);
$$;
comment on function public.export_usage_days(uuid[], date, date, uuid, date, int) is
$$Usage per tenant and UTC day (days with usage only), from_day to to_day inclusive, in (tenant_id, day) order; the next page passes the last row's tenant_id and day. At most max_rows (capped at 1000, what the API hands over).
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
      and e.tenant_id between (private.tenant_id_range(export_usage_workflows.tenant_ids)).low
                        and (private.tenant_id_range(export_usage_workflows.tenant_ids)).high
      and e.occurred_at >= export_usage_workflows.from_at and e.occurred_at < export_usage_workflows.to_at
      and (e.tenant_id, e.workflow_id)
          > (coalesce(export_usage_workflows.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(export_usage_workflows.after_workflow_id, ''))
    group by e.tenant_id, e.workflow_id
    order by e.tenant_id, e.workflow_id
    limit private.page_size(export_usage_workflows.max_rows, default_rows => null, most => 1000)
  ) w
  join public.tenants t on t.id = w.tenant_id
  order by w.tenant_id, w.workflow_id;
$$;
comment on function public.export_usage_workflows(uuid[], timestamptz, timestamptz, uuid, text, int) is
$$Usage per tenant and n8n workflow of the raw executions started in [from_at, to_at), in (tenant_id, workflow_id) order; the next page passes the last row's tenant_id and workflow_id. At most max_rows (capped at 1000, what the API hands over).
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
    and e.tenant_id between (private.tenant_id_range(export_usage_executions.tenant_ids)).low
                      and (private.tenant_id_range(export_usage_executions.tenant_ids)).high
    and e.occurred_at >= export_usage_executions.from_at and e.occurred_at < export_usage_executions.to_at
    and (e.tenant_id, e.occurred_at, e.source_id, e.execution_id)
        > (coalesce(export_usage_executions.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid),
           coalesce(export_usage_executions.after_occurred_at, '-infinity'::timestamptz),
           coalesce(export_usage_executions.after_source_id, '00000000-0000-0000-0000-000000000000'::uuid),
           coalesce(export_usage_executions.after_execution_id, -1))
  order by e.tenant_id, e.occurred_at, e.source_id, e.execution_id
  limit private.page_size(export_usage_executions.max_rows, default_rows => null, most => 1000);
$$;
comment on function public.export_usage_executions(uuid[], timestamptz, timestamptz, uuid, timestamptz, uuid, bigint, int) is
$$The raw executions started in [from_at, to_at), in (tenant_id, occurred_at, source_id, execution_id) order; the next page passes those of the last row. At most max_rows (capped at 1000, what the API hands over).
occurred_at = started_at, else stopped_at; period_start = the tenant billing period the execution was counted in.$$;

select private.grant_to_service_role_only(
  'public.export_usage_size(uuid[], date, date)',
  'private.tenant_id_range(uuid[])',
  'public.export_usage_days(uuid[], date, date, uuid, date, int)',
  'public.export_usage_workflows(uuid[], timestamptz, timestamptz, uuid, text, int)',
  'public.export_usage_executions(uuid[], timestamptz, timestamptz, uuid, timestamptz, uuid, bigint, int)'
);

-- Operator console ------------------------------------------------------------------------

-- Audit -------------------------------------------------------------------------------

create table public.operator_actions (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  -- The operator's JWT: sub (the Supabase Auth user id) and email, as signed in.
  actor_sub text not null,
  actor_email text,
  action text not null
    constraint operator_actions_action_known check (action in (
      'source_disabled', 'source_enabled', 'gaps_acknowledged', 'alert_delivery_resent'
    )),
  object_type text not null
    constraint operator_actions_object_type_known check (object_type in ('n8n_source', 'alert_delivery')),
  object_id text not null,
  tenant_id uuid references public.tenants (id) on delete set null,
  detail jsonb not null default '{}'::jsonb
);
comment on table public.operator_actions is 'What operators did in the console: who, when, what, on which object. Written only by the operator action functions.';

create index operator_actions_tenant_id_idx on public.operator_actions (tenant_id);

alter table public.operator_actions enable row level security;
revoke all on table public.operator_actions from public, anon, authenticated;
grant select on table public.operator_actions to service_role;

create or replace function private.record_operator_action(
  action text,
  object_type text,
  object_id text,
  tenant_id uuid,
  detail jsonb default '{}'::jsonb
)
returns void
language sql
set search_path = ''
as $$
  insert into public.operator_actions (actor_sub, actor_email, action, object_type, object_id, tenant_id, detail)
  values ((select auth.jwt()) ->> 'sub', (select auth.jwt()) ->> 'email',
          record_operator_action.action, record_operator_action.object_type,
          record_operator_action.object_id, record_operator_action.tenant_id,
          coalesce(record_operator_action.detail, '{}'::jsonb));
$$;
revoke all on function private.record_operator_action(text, text, text, uuid, jsonb) from public, anon, authenticated;

-- Every tenant's current period, with the columns the console sorts and filters on --------

-- The tenant's summary row and what only the console shows beside it. The view holds every
-- tenant and gives operator_tenant_rows its row; the function summarises only the tenants
-- it is asked for (a filter on the view could not reach inside the plpgsql summary).
create view private.operator_tenant_summaries with (security_invoker = true) as
  select s.*, t.external_ref, p.recurring_amount, t.created_at
  from private.tenant_usage_summary_rows(null) s
  join public.tenants t on t.id = s.tenant_id
  join public.plans p on p.id = s.plan_id;
revoke all on table private.operator_tenant_summaries from public, anon, authenticated;

create or replace function private.operator_tenant_rows(for_tenants uuid[] default null)
returns setof private.operator_tenant_summaries
language sql stable
set search_path = ''
as $$
  select s.*, t.external_ref, p.recurring_amount, t.created_at
  from private.tenant_usage_summary_rows(operator_tenant_rows.for_tenants) s
  join public.tenants t on t.id = s.tenant_id
  join public.plans p on p.id = s.plan_id;
$$;
revoke all on function private.operator_tenant_rows(uuid[]) from public, anon, authenticated;

-- The same current-period numbers for ranking every tenant, without the per-tenant costs
-- the table's sort keys do not need. billing_period and usage_standing are pure, so each
-- runs once per distinct input (subscription period bounds; usage, quota and thresholds)
-- rather than once per tenant: tenants share them, and these calls were most of the cost.
-- The estimated overage is not here: sorting on it summarises every tenant in full.
create or replace function private.operator_tenant_keys()
returns table (
  tenant_id uuid,
  tenant_name text,
  external_ref text,
  plan_id text,
  plan_name text,
  subscription_status text,
  created_at timestamptz,
  used bigint,
  quota bigint,
  percent numeric,
  level text,
  executions bigint,
  reserved bigint
)
language plpgsql stable
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
  with periods as materialized (
    select d.current_period_start, d.current_period_end, bp.period_start
    from (select distinct t.current_period_start, t.current_period_end from public.tenants t) d
    cross join lateral private.billing_period(d.current_period_start, d.current_period_end, now()) bp
  ),
  usage as (
    select t.id, t.name, t.external_ref, p.id as plan_id, p.name as plan_name, t.subscription_status,
           t.created_at, coalesce(c.billable, 0) as used,
           private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                              p.included_executions, p.trial_included_executions) as quota,
           p.alert_thresholds, coalesce(c.executions, 0) as executions,
           -- In flight as the summary shows it (expired reservations not yet swept left out);
           -- only tenants holding reservations pay for the lookup.
           case when c.reserved > 0 then (private.read_committed(t.id, bp.period_start)).held else 0 end as reserved
    from public.tenants t
    join public.plans p on p.id = t.plan_id
    -- Equality on both sides' placeholders for null, so the join can hash.
    join periods bp on coalesce(bp.current_period_start, '-infinity') = coalesce(t.current_period_start, '-infinity')
                   and coalesce(bp.current_period_end, '-infinity') = coalesce(t.current_period_end, '-infinity')
    left join public.usage_counters c on c.tenant_id = t.id and c.period_start = bp.period_start
  ),
  standings as materialized (
    select d.used, d.quota, d.alert_thresholds, st.percent, st.level
    from (select distinct u.used, u.quota, u.alert_thresholds from usage u) d
    cross join lateral private.usage_standing(d.used, d.quota, d.alert_thresholds) st
  )
  select u.id, u.name, u.external_ref, u.plan_id, u.plan_name, u.subscription_status, u.created_at,
         u.used, u.quota, s.percent, s.level, u.executions, u.reserved
  from usage u
  join standings s on s.used = u.used and coalesce(s.quota, -1) = coalesce(u.quota, -1)
                  and s.alert_thresholds = u.alert_thresholds;
end;
$$;
revoke all on function private.operator_tenant_keys() from public, anon, authenticated;

-- Overview ----------------------------------------------------------------------------

create or replace function public.operator_overview(
  top_rows int default 10,
  max_near_limit int default 50,
  plan_ids text[] default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  result jsonb;
begin
  perform private.require_operator();
  if coalesce(top_rows, 0) not between 1 and 100 or coalesce(max_near_limit, 0) not between 1 and 500 then
    raise exception 'top_rows must be 1 to 100 and max_near_limit 1 to 500 (got %, %)', top_rows, max_near_limit
      using errcode = '22023';
  end if;
  with tenant_rows as (
    select * from private.operator_tenant_rows() r
    where operator_overview.plan_ids is null or r.plan_id = any (operator_overview.plan_ids)
  ),
  -- Each tenant's days so far in its current period against as many days from the start
  -- of its previous period.
  periods as (
    select r.tenant_id,
           (r.period_start at time zone 'UTC')::date as current_first,
           (prev.period_start at time zone 'UTC')::date as previous_first,
           (now() at time zone 'UTC')::date - (r.period_start at time zone 'UTC')::date as elapsed
    from tenant_rows r
    join public.tenants t on t.id = r.tenant_id
    cross join lateral private.billing_period(
      t.current_period_start, t.current_period_end, r.period_start - interval '1 microsecond'
    ) prev
  ),
  trend as (
    select
      coalesce(sum(d.executions) filter (where d.day >= p.current_first), 0) as current_executions,
      coalesce(sum(d.billable) filter (where d.day >= p.current_first), 0) as current_billable,
      coalesce(sum(d.executions) filter (where d.day < p.current_first), 0) as previous_executions,
      coalesce(sum(d.billable) filter (where d.day < p.current_first), 0) as previous_billable
    from periods p
    join public.usage_daily d on d.tenant_id = p.tenant_id
      and ((d.day >= p.current_first and d.day <= p.current_first + p.elapsed)
           or (d.day >= p.previous_first and d.day <= p.previous_first + p.elapsed
               and d.day < p.current_first))
  ),
  currencies as (
    select r.currency,
           -- Subscriptions Stripe is charging: active, and past_due until it gives up.
           sum(r.recurring_amount) filter (where r.subscription_status in ('active', 'past_due')) as recurring,
           count(*) filter (where r.subscription_status in ('active', 'past_due')
                              and r.recurring_amount is not null) as priced_tenants,
           count(*) filter (where r.subscription_status in ('active', 'past_due')
                              and r.recurring_amount is null) as unpriced_tenants,
           sum(r.estimated_overage_amount) as overage,
           sum(r.overage_units) filter (where r.estimated_overage_amount > 0) as overage_units
    from tenant_rows r
    group by r.currency
  )
  select jsonb_build_object(
    'generated_at', now(),
    'tenants', (select count(*) from tenant_rows),
    'tenants_by_plan', coalesce((
      select jsonb_agg(jsonb_build_object('plan_id', p.id, 'plan_name', p.name, 'tenants', x.n) order by p.id)
      from public.plans p
      cross join lateral (select count(*) as n from tenant_rows r where r.plan_id = p.id) x
      where operator_overview.plan_ids is null or p.id = any (operator_overview.plan_ids)
    ), '[]'::jsonb),
    'tenants_by_status', coalesce((
      select jsonb_agg(jsonb_build_object('subscription_status', s.subscription_status, 'tenants', s.n)
                       order by s.subscription_status)
      from (select r.subscription_status, count(*) as n from tenant_rows r group by 1) s
    ), '[]'::jsonb),
    'executions', (
      select jsonb_build_object(
        'total', coalesce(sum(r.executions), 0),
        'billable', coalesce(sum(r.used), 0),
        'reserved', coalesce(sum(r.reserved), 0)
      ) from tenant_rows r
    ),
    'trend', (
      select jsonb_build_object(
        'executions', t.current_executions,
        'billable', t.current_billable,
        'previous_executions', t.previous_executions,
        'previous_billable', t.previous_billable,
        'billable_change_percent', case when t.previous_billable = 0 then null
          else round((t.current_billable - t.previous_billable) * 100.0 / t.previous_billable, 1) end
      ) from trend t
    ),
    'revenue', coalesce((
      select jsonb_agg(jsonb_build_object(
        'currency', c.currency,
        'recurring_amount', coalesce(c.recurring, 0),
        'priced_tenants', c.priced_tenants,
        'unpriced_tenants', c.unpriced_tenants,
        'estimated_overage_amount', coalesce(c.overage, 0),
        'overage_units', coalesce(c.overage_units, 0)
      ) order by c.currency)
      from currencies c
    ), '[]'::jsonb),
    'top_by_usage', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.used desc, x.tenant_id)
      from (
        select r.tenant_id, r.tenant_name, r.plan_id, r.used, r.quota, r.percent, r.level
        from tenant_rows r where r.used > 0
        order by r.used desc, r.tenant_id limit top_rows
      ) x
    ), '[]'::jsonb),
    'top_by_quota_share', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.percent desc, x.tenant_id)
      from (
        select r.tenant_id, r.tenant_name, r.plan_id, r.used, r.quota, r.percent, r.level
        from tenant_rows r where r.percent > 0
        order by r.percent desc, r.tenant_id limit top_rows
      ) x
    ), '[]'::jsonb),
    'near_limit', jsonb_build_object(
      'total', (select count(*) from tenant_rows r where r.level <> 'normal'),
      'tenants', coalesce((
        select jsonb_agg(to_jsonb(x) order by x.percent desc, x.tenant_id)
        from (
          select r.tenant_id, r.tenant_name, r.plan_id, r.limit_policy, r.used, r.quota,
                 r.percent, r.level, r.reserved
          from tenant_rows r where r.level <> 'normal'
          order by r.percent desc, r.tenant_id limit max_near_limit
        ) x
      ), '[]'::jsonb)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_overview(int, int, text[]) is
$$security definer: reads every tenant's plan, counters and daily totals, which row-level security hides from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). The whole system (or the tenants on plan_ids) in one JSON object, each tenant in its current billing period:
tenants; tenants_by_plan [{plan_id, plan_name, tenants}] (every plan, or each of plan_ids, 0 included); tenants_by_status [{subscription_status, tenants}];
executions {total, billable, reserved} = sums of the tenants' current-period counters;
trend {executions, billable} = daily totals from each tenant's period start to today, {previous_executions, previous_billable} = the same number of days from the start of its previous period, billable_change_percent (null without previous usage);
revenue per currency [{currency, recurring_amount = Σ plans.recurring_amount of active and past_due tenants, priced_tenants, unpriced_tenants (active or past_due on a plan without a known price), estimated_overage_amount, overage_units}], amounts in the currency's minor unit;
top_by_usage and top_by_quota_share: at most top_rows (default 10) tenants [{tenant_id, tenant_name, plan_id, used, quota, percent, level}];
near_limit {total, tenants}: tenants at warning, limit or overage level, highest share first, at most max_near_limit (default 50).$$;

-- Tenants table -----------------------------------------------------------------------

create or replace function public.operator_tenants(
  search text default null,
  plan_ids text[] default null,
  levels text[] default null,
  statuses text[] default null,
  sort text default 'name',
  descending boolean default false,
  max_rows int default 50,
  after jsonb default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  page_size int := coalesce(max_rows, 50);
  after_num numeric;
  after_text text;
  after_id uuid;
  pattern text;
  usage_needed boolean;
  result jsonb;
begin
  perform private.require_operator();
  if sort is null or sort not in ('name', 'external_ref', 'plan', 'subscription_status', 'used', 'quota',
                                  'percent', 'level', 'executions', 'reserved', 'estimated_overage_amount',
                                  'created_at') then
    raise exception 'sort must be one of name, external_ref, plan, subscription_status, used, quota, percent, level, executions, reserved, estimated_overage_amount, created_at (got %)',
      coalesce(quote_literal(sort), 'null') using errcode = '22023';
  end if;
  if page_size < 1 or page_size > 500 then
    raise exception 'max_rows must be 1 to 500 (got %)', page_size using errcode = '22023';
  end if;
  if after is not null then
    begin
      after_num := (after ->> 'num')::numeric;
      after_text := after ->> 'text';
      after_id := (after ->> 'id')::uuid;
    exception when others then
      after_id := null;
    end;
    if after_id is null or after_num is null or after_text is null then
      raise exception 'after must be the "next" object of the previous page'
        using errcode = '22023';
    end if;
  end if;
  if length(search) > 200 then
    raise exception 'search is at most 200 characters (got %)', length(search) using errcode = '22023';
  end if;
  if nullif(btrim(search), '') is not null then
    pattern := '%' || replace(replace(replace(btrim(search), '\', '\\'), '%', '\%'), '_', '\_') || '%';
  end if;

  usage_needed := sort in ('used', 'quota', 'percent', 'level', 'executions', 'reserved',
                           'estimated_overage_amount') or levels is not null;

  -- Sorting or filtering on usage ranks every tenant's current period (one pass over all
  -- of them); otherwise the page is chosen from the tenants table alone and only its rows
  -- are summarised, which keeps the default view cheap however many tenants there are.
  -- Every sort key is one number and one text (the one the column does not use is
  -- constant), so one row comparison with the id as the last tie-breaker pages any column
  -- in either direction. Nulls get a place: no external reference sorts first, an
  -- unlimited quota last (as 10^19), an unlimited plan's share below 0 %.
  with candidates as (
    select r.tenant_id, r.tenant_name, r.external_ref, r.plan_id, r.plan_name, r.subscription_status,
           r.created_at, r.used, r.quota, r.percent, r.level, r.executions, r.reserved,
           null::numeric as estimated_overage_amount
    from private.operator_tenant_keys() r
    where usage_needed and sort <> 'estimated_overage_amount' and (levels is null or r.level = any (levels))
    union all
    select r.tenant_id, r.tenant_name, r.external_ref, r.plan_id, r.plan_name, r.subscription_status,
           r.created_at, r.used, r.quota, r.percent, r.level, r.executions, r.reserved,
           r.estimated_overage_amount
    from private.operator_tenant_rows() r
    where sort = 'estimated_overage_amount' and (levels is null or r.level = any (levels))
    union all
    select t.id, t.name, t.external_ref, t.plan_id, p.name, t.subscription_status, t.created_at,
           null, null, null, null, null, null, null
    from public.tenants t
    join public.plans p on p.id = t.plan_id
    where not usage_needed
  ),
  keyed as (
    select c.tenant_id,
           case sort
             when 'used' then c.used::numeric
             when 'quota' then coalesce(c.quota::numeric, 1e19)
             when 'percent' then coalesce(c.percent, -1)
             when 'level' then array_position(array['normal', 'warning', 'limit', 'overage'], c.level)::numeric
             when 'executions' then c.executions::numeric
             when 'reserved' then c.reserved::numeric
             when 'estimated_overage_amount' then c.estimated_overage_amount
             when 'created_at' then extract(epoch from c.created_at)
             else 0::numeric
           end as k_num,
           case sort
             when 'name' then c.tenant_name
             when 'external_ref' then coalesce(c.external_ref, '')
             when 'plan' then c.plan_name
             when 'subscription_status' then c.subscription_status
             else ''
           end as k_text
    from candidates c
    where (pattern is null or c.tenant_name ilike pattern or c.external_ref ilike pattern)
      and (plan_ids is null or c.plan_id = any (plan_ids))
      and (statuses is null or c.subscription_status = any (statuses))
  ),
  page as (
    select k.*, row_number() over (
      order by case when descending then k.k_num end desc, case when descending then k.k_text end desc,
               case when descending then k.tenant_id end desc, k.k_num, k.k_text, k.tenant_id
    ) as n
    from (
      select k.* from keyed k
      where after_id is null
         or (not descending and (k.k_num, k.k_text, k.tenant_id) > (after_num, after_text, after_id))
         or (descending and (k.k_num, k.k_text, k.tenant_id) < (after_num, after_text, after_id))
      order by case when descending then k.k_num end desc, case when descending then k.k_text end desc,
               case when descending then k.tenant_id end desc, k.k_num, k.k_text, k.tenant_id
      limit page_size + 1
    ) k
  )
  select jsonb_build_object(
    'total', (select count(*) from keyed),
    'rows', coalesce((
      select jsonb_agg(to_jsonb(r) order by x.n)
      from page x
      join private.operator_tenant_rows(
        (select array_agg(y.tenant_id) from page y where y.n <= page_size)
      ) r on r.tenant_id = x.tenant_id
      where x.n <= page_size
    ), '[]'::jsonb),
    'next', (
      select jsonb_build_object('num', x.k_num, 'text', x.k_text, 'id', x.tenant_id)
      from page x
      where x.n = page_size and exists (select 1 from page y where y.n > page_size)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_tenants(text, text[], text[], text[], text, boolean, int, jsonb) is
$$security definer: reads every tenant with its plan and counters, which row-level security hides from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). One page of tenants in their current billing period: {total, rows, next}.
search: part of the name or external reference, case-insensitive, at most 200 characters; plan_ids, levels (normal | warning | limit | overage), statuses (subscription statuses): any of (null = all).
sort: name | external_ref | plan (its name) | subscription_status | used | quota | percent | level | executions | reserved | estimated_overage_amount | created_at, descending or not; ties by tenant id in the same direction.
Nulls: no external_ref sorts as '', an unlimited quota as 10^19, an unlimited plan's percent as -1.
Keyset pagination: at most max_rows (default 50, 1 to 500) rows; next is null on the last page, otherwise passed as `after` (with the same search, filters and sort) for the following page.
total = tenants matching search and filters. Each row: tenant_id, tenant_name, external_ref, plan_id, plan_name, limit_policy, subscription_status, period_start, period_end, used, quota, remaining, percent, level,
overage_units, estimated_overage_amount, currency, reserved, executions, failed, recurring_amount, created_at (as tenant_usage_summary, plus the plan's recurring_amount).$$;

-- Tenant detail -----------------------------------------------------------------------

create or replace function public.operator_tenant(tenant_id uuid, max_rows int default 50)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  page_size int := coalesce(max_rows, 50);
  result jsonb;
begin
  perform private.require_operator();
  if page_size < 1 or page_size > 200 then
    raise exception 'max_rows must be 1 to 200 (got %)', page_size using errcode = '22023';
  end if;
  if not exists (select 1 from public.tenants t where t.id = operator_tenant.tenant_id) then
    raise exception 'tenant % not found', operator_tenant.tenant_id using errcode = 'PT404';
  end if;
  select jsonb_build_object(
    'summary', (
      select to_jsonb(s) || jsonb_build_object('external_ref', t.external_ref,
                                               'stripe_customer_id', t.stripe_customer_id,
                                               'stripe_subscription_id', t.stripe_subscription_id)
      from private.tenant_usage_summary_rows(array[operator_tenant.tenant_id]) s
      join public.tenants t on t.id = s.tenant_id
    ),
    'history', coalesce((
      select jsonb_agg(to_jsonb(h) order by h.period_start desc)
      from public.tenant_usage_history(operator_tenant.tenant_id, 12) h
    ), '[]'::jsonb),
    'daily', coalesce((
      select jsonb_agg(to_jsonb(d) order by d.day)
      from public.tenant_usage_daily(operator_tenant.tenant_id) d
    ), '[]'::jsonb),
    'sources', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.name, x.id)
      from (
        select s.id, s.name, s.base_url, s.project_id, s.enabled, s.created_at, s.last_attempt_at,
               s.last_success_at, s.lag_seconds, s.consecutive_failures, s.last_error, s.last_error_at,
               s.next_attempt_at, s.open_executions, s.gaps,
               (select count(*) from public.collection_gaps g
                where g.source_id = s.id and g.acknowledged_at is null) as unacknowledged_gaps,
               coalesce((
                 select jsonb_agg(to_jsonb(g) - 'tenant_id' - 'source_id' order by g.detected_at desc, g.id desc)
                 from (
                   select g.* from public.collection_gaps g where g.source_id = s.id
                   order by g.detected_at desc, g.id desc limit page_size
                 ) g
               ), '[]'::jsonb) as recent_gaps
        from public.list_n8n_sources(array[operator_tenant.tenant_id]) s
      ) x
    ), '[]'::jsonb),
    -- The counts `flowmeter status` shows, from its own function, plus what was sent.
    'ledger', (
      select jsonb_build_object('pending', st.status -> 'pending', 'retrying', st.status -> 'retrying',
                                'failing', st.status -> 'failing', 'late', st.status -> 'late',
                                -- Late but maybe on the invoice; held for a check in Stripe.
                                'late_unknown', st.status -> 'late_unknown', 'review', st.status -> 'review')
      from (select private.meter_report_status(array[operator_tenant.tenant_id]) as status) st
    ) || jsonb_build_object(
      'sent', (select count(*) from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id and m.status = 'sent'),
      'reports', coalesce((
        select jsonb_agg(to_jsonb(m) order by m.id desc)
        from (
          select m.id, m.period_start, m.period_end, m.event_name, m.reported_through, m.value,
                 m.identifier, m.event_timestamp, m.status, m.attempts, m.last_error, m.created_at, m.sent_at
          from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id
          order by m.id desc limit page_size
        ) m
      ), '[]'::jsonb)
    ),
    'corrections', coalesce((
      select jsonb_agg(to_jsonb(c) order by c.id desc)
      from (
        select c.id, c.period_start, c.period_end, c.kind, c.delta, c.reason, c.requested_by, c.identifier, c.method,
               c.event_value, c.cancels_identifier, c.credit_amount, c.currency, c.stripe_object_id, c.status,
               c.attempts, c.last_error, c.created_at, c.sent_at
        from public.meter_corrections c where c.tenant_id = operator_tenant.tenant_id
        order by c.id desc limit page_size
      ) c
    ), '[]'::jsonb),
    'alerts', coalesce((
      select jsonb_agg(to_jsonb(a) || jsonb_build_object('deliveries', coalesce((
          -- The channel's kind, never its target: a Slack webhook URL lets whoever holds it post.
          select jsonb_agg(jsonb_build_object(
                   'channel_id', d.channel_id, 'channel_kind', ch.kind, 'global_channel', ch.tenant_id is null,
                   'status', d.status, 'attempts', d.attempts, 'next_attempt_at', d.next_attempt_at,
                   'last_error', d.last_error, 'delivered_at', d.delivered_at, 'created_at', d.created_at)
                 order by d.channel_id)
          from public.alert_deliveries d
          join public.alert_channels ch on ch.id = d.channel_id
          where d.alert_id = a.id
        ), '[]'::jsonb)) order by a.id desc)
      from public.tenant_alerts(operator_tenant.tenant_id, false, page_size) a
    ), '[]'::jsonb),
    'reservations', jsonb_build_object(
      -- Past its expiry a reservation no longer holds a run, even before a decision sweeps it.
      'active', (select count(*) from public.usage_reservations r
                 where r.tenant_id = operator_tenant.tenant_id and r.released_at is null
                   and r.expires_at > now()),
      'rows', coalesce((
        select jsonb_agg(to_jsonb(r) order by r.expires_at, r.id)
        from (
          select r.id, r.period_start, r.workflow_id, r.run_ref, r.created_at, r.expires_at
          from public.usage_reservations r
          where r.tenant_id = operator_tenant.tenant_id and r.released_at is null
            and r.expires_at > now()
          order by r.expires_at, r.id limit page_size
        ) r
      ), '[]'::jsonb)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_tenant(uuid, int) is
$$security definer: reads one tenant's usage, sources with their collector state, Stripe ledger, alert deliveries and reservations, which row-level security or missing grants hide from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise); PT404 (HTTP 404) for an unknown tenant. One tenant in one JSON object:
summary = its tenant_usage_summary row plus external_ref, stripe_customer_id, stripe_subscription_id; history = tenant_usage_history (12 periods); daily = tenant_usage_daily (defaults) — what the tenant's own dashboard shows;
sources = list_n8n_sources rows (lag_seconds, consecutive_failures, last_error, open_executions, gaps) plus unacknowledged_gaps and recent_gaps;
ledger {pending, retrying (pending with failed attempts), failing (pending and failed at least meter_report_status's failing_threshold times), late, late_unknown, review (as private.meter_report_status counts them), sent, reports (newest first, with attempts and last_error)};
corrections = meter_corrections rows, newest first (kind, delta, reason, requested_by, method, what was cancelled or credited, status, attempts, last_error);
alerts = tenant_alerts rows each with deliveries [{channel_id, channel_kind, global_channel, status, attempts, next_attempt_at, last_error, delivered_at, created_at}] (never the channel's target);
reservations {active, rows (soonest to expire first)}: unreleased and not expired. Lists hold at most max_rows (default 50, 1 to 200) items.$$;

-- Health ------------------------------------------------------------------------------

create or replace function public.operator_health()
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  perform private.require_operator();
  return public.operator_status() || jsonb_build_object('collector', public.collector_health());
end;
$$;
comment on function public.operator_health() is
$$security definer: operator_status() and collector_health() read collector state, the Stripe ledger, alert deliveries and scheduled runs, which are service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Exactly operator_status() with its defaults plus collector_health() under "collector", the snapshot `flowmeter status` and GET /api/v1/status read; the findings that need a person come from statusFindings (src/ops/status-findings.ts) in all three.$$;

-- Actions -----------------------------------------------------------------------------

create or replace function public.operator_set_source_enabled(source_id uuid, enabled boolean)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  source public.n8n_sources;
  was_enabled boolean;
begin
  perform private.require_operator();
  if operator_set_source_enabled.enabled is null then
    raise exception 'enabled must be true or false' using errcode = '22023';
  end if;
  select s.enabled into was_enabled from public.n8n_sources s
  where s.id = operator_set_source_enabled.source_id for update;
  source := public.set_n8n_source_enabled(operator_set_source_enabled.source_id, operator_set_source_enabled.enabled);
  perform private.record_operator_action(
    case when source.enabled then 'source_enabled' else 'source_disabled' end,
    'n8n_source', source.id::text, source.tenant_id,
    jsonb_build_object('was_enabled', was_enabled, 'base_url', source.base_url));
  return jsonb_build_object('id', source.id, 'tenant_id', source.tenant_id, 'name', source.name,
                            'base_url', source.base_url, 'enabled', source.enabled);
end;
$$;
comment on function public.operator_set_source_enabled(uuid, boolean) is
$$security definer: n8n_sources is written only by the service role and set_n8n_source_enabled is service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Enables or disables collection from one source (as `flowmeter sources enable|disable`) and records it in operator_actions.
PT404 (HTTP 404) for an unknown source. Returns {id, tenant_id, name, base_url, enabled}.$$;

create or replace function public.operator_acknowledge_gaps(source_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  source public.n8n_sources;
  acknowledged bigint;
begin
  perform private.require_operator();
  select * into source from public.n8n_sources s where s.id = operator_acknowledge_gaps.source_id;
  if not found then
    raise exception 'n8n source % not found', operator_acknowledge_gaps.source_id using errcode = 'PT404';
  end if;
  acknowledged := public.acknowledge_collection_gaps(source_ids => array[source.id]);
  perform private.record_operator_action('gaps_acknowledged', 'n8n_source', source.id::text, source.tenant_id,
                                         jsonb_build_object('acknowledged', acknowledged));
  return jsonb_build_object('source_id', source.id, 'tenant_id', source.tenant_id, 'acknowledged', acknowledged);
end;
$$;
comment on function public.operator_acknowledge_gaps(uuid) is
$$security definer: collection_gaps is written only by the service role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Marks every unacknowledged gap of one source as seen (acknowledged_at); gaps stay listed.
PT404 (HTTP 404) for an unknown source. Records the action in operator_actions even when nothing was left to acknowledge. Returns {source_id, tenant_id, acknowledged}.$$;

create or replace function public.operator_resend_alert_delivery(alert_id bigint, channel_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  delivery public.alert_deliveries;
  alert_tenant uuid;
begin
  perform private.require_operator();
  select d.* into delivery from public.alert_deliveries d
  where d.alert_id = operator_resend_alert_delivery.alert_id and d.channel_id = operator_resend_alert_delivery.channel_id
  for update;
  if not found then
    raise exception 'alert delivery %/% not found', operator_resend_alert_delivery.alert_id,
      operator_resend_alert_delivery.channel_id using errcode = 'PT404';
  end if;
  if delivery.status <> 'failed' then
    raise exception 'only a failed delivery can be sent again (this one is %)', delivery.status
      using errcode = 'PT409';
  end if;
  -- A fresh set of attempts, due now; the stable delivery key still lets the provider drop a repeat.
  select r.* into delivery
  from private.resend_deliveries(null::public.alert_deliveries, 'd.alert_id = ($1)[1] and d.channel_id = ($1)[2]',
                                 array[delivery.alert_id, delivery.channel_id]) r;
  select a.tenant_id into alert_tenant from public.usage_alerts a where a.id = delivery.alert_id;
  perform private.record_operator_action('alert_delivery_resent', 'alert_delivery',
                                         delivery.alert_id || '/' || delivery.channel_id, alert_tenant,
                                         jsonb_build_object('last_error', delivery.last_error));
  return jsonb_build_object('alert_id', delivery.alert_id, 'channel_id', delivery.channel_id,
                            'tenant_id', alert_tenant, 'status', delivery.status,
                            'next_attempt_at', delivery.next_attempt_at);
end;
$$;
comment on function public.operator_resend_alert_delivery(bigint, bigint) is
$$security definer: alert_deliveries is service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Makes a failed delivery (retrying or given up) pending and due now with a fresh set of attempts; deliver-alerts sends it on its next run.
PT404 (HTTP 404) for an unknown delivery, PT409 (HTTP 409) for one that is not failed. Records the action in operator_actions. Returns {alert_id, channel_id, tenant_id, status, next_attempt_at}.$$;

select private.grant_to_authenticated(
  'public.operator_overview(int, int, text[])',
  'public.operator_tenants(text, text[], text[], text[], text, boolean, int, jsonb)',
  'public.operator_tenant(uuid, int)',
  'public.operator_health()',
  'public.operator_set_source_enabled(uuid, boolean)',
  'public.operator_acknowledge_gaps(uuid)',
  'public.operator_resend_alert_delivery(bigint, bigint)'
);
