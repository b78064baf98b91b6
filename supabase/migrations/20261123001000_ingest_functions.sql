-- Ingest functions: leases, page ingestion, open executions, gaps, runs, partition upkeep.
-- All service-only. Each is one transaction: a failure anywhere changes nothing. The
-- counters' triggers (usage) release reservations and raise alerts in the same statement
-- that ingest_execution_page moves them.

-- Partitions --------------------------------------------------------------------------

-- What an execution's time may be: at most 5 minutes ahead of now (clock skew), at most 400
-- days ago (n8n prunes long before). Null (queued, running) is plausible.
create or replace function private.plausible_execution_time(at timestamptz)
returns boolean
language sql stable
set search_path = ''
as $$
  select at is null or (at <= now() + interval '5 minutes' and at >= now() - interval '400 days');
$$;
select private.grant_to_service_role_only('private.plausible_execution_time(timestamptz)');

-- Creates the monthly partition that holds `at` (in schema private, not exposed by the API),
-- only for months from 14 before now's to the next one: a hostile timestamp cannot make
-- partitions without bound.
create or replace function private.ensure_execution_partition(at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  month_start timestamptz := date_trunc('month', at);
  partition_name text := private.execution_partition_name(month_start);
begin
  if month_start < date_trunc('month', now()) - interval '14 months'
     or month_start > date_trunc('month', now()) + interval '1 month' then
    raise exception 'no execution partition for % : only months from 14 before now to the next one are made', to_char(month_start, 'YYYY-MM')
      using errcode = 'P0001';
  end if;
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
  -- Known to be empty rather than never measured: the planner then sizes it by its pages.
  execute format('analyze private.%I', partition_name);
end;
$$;
comment on function private.ensure_execution_partition(timestamptz) is
  'security definer: attaching a partition requires owning public.executions, which the service role does not. Creates only private.executions_YYYY_MM for a month from 14 before now to the next.';

-- The name of the monthly partition (in schema private) that holds `month`'s executions,
-- whether or not it exists yet: executions_YYYY_MM of the UTC month. Names sort as their
-- months do. plpgsql, not sql: with its pinned search_path a sql function would be planned
-- on every call, and ingest calls this for every page.
create or replace function private.execution_partition_name(month timestamptz)
returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  return 'executions_' || to_char(month at time zone 'UTC', 'YYYY_MM');
end;
$$;

-- Holds the partitions of `months` for the rest of the caller's transaction: a lock on
-- public.executions that dropping a partition must wait for (it takes the parent's ACCESS
-- EXCLUSIVE lock). Taken after ensure_execution_partition, before the insert: the upkeep
-- dropping a month in between would route its rows into the default partition, where they
-- would make every later attempt to create that month's partition fail. A partition
-- dropped before the lock was granted fails the call instead; nothing is stored, and the
-- next run stores the page.
create or replace function private.hold_execution_partitions(months timestamptz[])
returns void
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
begin
  lock table only public.executions in row exclusive mode;
  if exists (
    select 1 from unnest(hold_execution_partitions.months) as m(month)
    where to_regclass('private.' || private.execution_partition_name(m.month)) is null
  ) then
    raise exception 'an execution partition was dropped while this page was being stored; nothing was stored'
      using errcode = '40001', hint = 'The next collection stores the page again.';
  end if;
end;
$$;
comment on function private.hold_execution_partitions(timestamptz[]) is
  'security definer: locking public.executions requires owning or writing it directly, which the service role does not. Takes a row exclusive lock only.';

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
      and c.relname < private.execution_partition_name(cutoff)
  loop
    execute format('drop table private.%I', part.relname);
    return next part.relname;
  end loop;
end;
$$;
comment on function private.drop_expired_execution_partitions(int) is
  'security definer: dropping a partition requires owning it. Drops only private.executions_YYYY_MM partitions older than the retention.';

-- Analyzes the month's partition once it outgrows what its statistics say by far: the first
-- large batch of a month. Costs a catalog lookup per ingested page otherwise.
create or replace function private.analyze_young_execution_partition(month timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  partition regclass := to_regclass('private.' || private.execution_partition_name(month));
  measured int;
begin
  if partition is null then
    return;
  end if;
  select c.relpages into measured from pg_catalog.pg_class c where c.oid = partition;
  -- 128 pages hold about 7,000 executions; once analyzed at that size, autovacuum's
  -- thresholds keep the statistics in step. Concurrent ingests of the month leave it to
  -- the first (analyze locks out another).
  if measured < 128 and pg_catalog.pg_relation_size(partition) >= 128 * 8192
     and pg_catalog.pg_try_advisory_xact_lock(hashtext('flowmeter.analyze ' || partition::text)) then
    execute format('analyze %s', partition);
  end if;
end;
$$;
comment on function private.analyze_young_execution_partition(timestamptz) is
  'security definer: analyze requires owning the partition, which the service role does not. Analyzes only the private.executions_YYYY_MM partition of the given month.';

select private.grant_to_service_role_only(
  'private.execution_partition_name(timestamptz)',
  'private.ensure_execution_partition(timestamptz)',
  'private.hold_execution_partitions(timestamptz[])',
  'private.analyze_young_execution_partition(timestamptz)',
  'private.drop_expired_execution_partitions(int)'
);

-- Leases, pages, runs -------------------------------------------------------------------

-- What a run gets for each source it claims or resumes: where to reach n8n, its lease, where
-- its walk stands, and how many open executions and probes it has to revisit.
create or replace view private.collector_source_claims with (security_invoker = true) as
select st.source_id, s.tenant_id, s.base_url, s.api_key_ciphertext, s.project_id, st.lease_token,
       st.floor_id, st.high_water_id, st.walk_cursor, st.walk_top_id, st.backfill_from,
       st.supports_started_after,
       (select count(*) from public.open_executions o where o.source_id = st.source_id)
         + (select count(*) from public.execution_probes pr where pr.source_id = st.source_id) as open_executions
from public.collector_source_state st
join public.n8n_sources s on s.id = st.source_id;
revoke all on private.collector_source_claims from public, anon, authenticated;
grant select on private.collector_source_claims to service_role;

-- Claims up to max_sources enabled sources that are due and not leased by a live run.
-- not_since_run: only sources not attempted since that run started, so a run that claims
-- slice after slice for its background workers never claims a source twice in its cycle
-- (one its workers already collected is due again at once).
create or replace function public.claim_collector_sources(
  lease_seconds int default 120,
  max_sources int default 100,
  source_ids uuid[] default null,
  ignore_schedule boolean default false,
  not_since_run uuid default null
)
returns setof private.collector_source_claims
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  claimed uuid[];
begin
  if claim_collector_sources.lease_seconds not between 10 and 3600 then
    raise exception 'lease_seconds must be between 10 and 3600 (got %)', claim_collector_sources.lease_seconds;
  end if;

  insert into public.collector_source_state (source_id, backfill_from)
  select s.id, (private.billing_period(t.current_period_start, t.current_period_end, now())).period_start
  from public.n8n_sources s
  join public.tenants t on t.id = s.tenant_id
  where s.enabled
    and (claim_collector_sources.source_ids is null or s.id = any (claim_collector_sources.source_ids))
    -- Only new sources: a run claiming slice after slice must not rewrite every row each time.
    and not exists (select 1 from public.collector_source_state x where x.source_id = s.id)
  on conflict (source_id) do nothing;

  with due as (
    select st.source_id
    from public.collector_source_state st
    join public.n8n_sources s on s.id = st.source_id
    where s.enabled
      and (claim_collector_sources.source_ids is null or st.source_id = any (claim_collector_sources.source_ids))
      and (claim_collector_sources.ignore_schedule or st.next_attempt_at <= now())
      and (st.lease_expires_at is null or st.lease_expires_at <= now())
      and (claim_collector_sources.not_since_run is null or st.last_attempt_at is null
           or st.last_attempt_at < (select r.started_at from public.collector_runs r
                                    where r.id = claim_collector_sources.not_since_run))
    order by st.last_attempt_at nulls first, st.source_id
    limit least(claim_collector_sources.max_sources, private.api_max_rows())
    for update of st skip locked
  ),
  leased as (
    update public.collector_source_state st set
      lease_token = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => claim_collector_sources.lease_seconds),
      lease_seconds = claim_collector_sources.lease_seconds,
      previous_attempt_at = st.last_attempt_at,
      last_attempt_at = now()
    from due
    where st.source_id = due.source_id
    returning st.source_id
  )
  select array_agg(l.source_id) into claimed from leased l;
  -- A statement of its own: only a later one sees the new lease tokens.
  return query
  select v.* from private.collector_source_claims v where v.source_id = any (claimed);
end;
$$;

-- Locks the source's state row and checks the caller still holds its lease.
create or replace function private.lock_leased_source(source_id uuid, lease_token uuid)
returns public.collector_source_state
language plpgsql
set search_path = ''
as $$
declare
  st public.collector_source_state;
begin
  select * into st from public.collector_source_state s
  where s.source_id = lock_leased_source.source_id
  for update;
  if not found
     or st.lease_token is distinct from lock_leased_source.lease_token
     or st.lease_expires_at <= now() then
    raise exception 'this run no longer holds the lease on source %', lock_leased_source.source_id
      using errcode = 'PT409',
            hint = 'The lease expired or another collector run took the source over; stop working on it.';
  end if;
  return st;
end;
$$;

-- Extends the leases a run still holds, in one call for all its sources; returns the
-- sources whose lease it extended (a lease that expired or was taken over is not).
create or replace function public.renew_collector_leases(source_ids uuid[], lease_tokens uuid[])
returns setof uuid
language sql
set search_path = ''
as $$
  update public.collector_source_state st set
    lease_expires_at = now() + make_interval(secs => st.lease_seconds)
  from unnest(renew_collector_leases.source_ids, renew_collector_leases.lease_tokens) as l(source_id, lease_token)
  where st.source_id = l.source_id and st.lease_token = l.lease_token and st.lease_expires_at > now()
  returning st.source_id;
$$;

-- Continues a walk handed over by another function (scheduled → background) with its lease.
create or replace function public.resume_collector_sources(source_ids uuid[], lease_tokens uuid[])
returns setof private.collector_source_claims
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  handed uuid[] := array(select public.renew_collector_leases(resume_collector_sources.source_ids,
                                                              resume_collector_sources.lease_tokens));
begin
  return query
  select v.* from private.collector_source_claims v where v.source_id = any (handed);
end;
$$;

-- Ingests one or more pages of n8n executions for a leased source, and the walk's progress
-- after the last of them, in one transaction. Final executions are inserted once; counters
-- move by the inserted rows only; unfinished ones are kept open until they finish.
--
-- executions: [{id, status, mode, workflow_id, started_at, stopped_at, retry_of}] (a key left out reads as null)
-- walk (optional): {cursor, top_id, done, supports_started_after, pages, gap: {from_id, to_id, detail}}
--   (pages: how many of n8n's pages the call carries, 1 when absent)
-- holes (optional): ids the walk passed that n8n did not list, to probe by id once.
-- run_id (optional): the collector run; its summary counts the pages in the same
-- transaction, so a run killed before it could finish still shows what it committed.
create or replace function public.ingest_execution_page(
  source_id uuid,
  lease_token uuid,
  executions jsonb,
  walk jsonb default null,
  holes bigint[] default '{}',
  run_id uuid default null
)
returns jsonb
language plpgsql
set search_path = ''
set timezone = 'UTC'
as $$
#variable_conflict use_column
declare
  st public.collector_source_state;
  tenant public.tenants;
  plan public.plans;
  walk_done boolean := coalesce((ingest_execution_page.walk ->> 'done')::boolean, false);
  page_top bigint;
  summary jsonb;
  checked record;
  page_period record;
begin
  st := private.lock_leased_source(ingest_execution_page.source_id, ingest_execution_page.lease_token);
  select t.* into tenant from public.tenants t join public.n8n_sources s on s.tenant_id = t.id where s.id = st.source_id;
  select p.* into plan from public.plans p where p.id = tenant.plan_id;

  if jsonb_typeof(ingest_execution_page.executions) is distinct from 'array' then
    raise exception 'executions must be a JSON array';
  end if;
  -- One pass over the page for every check and for what the statement below needs to know
  -- once rather than per row: each pass parses the whole jsonb again.
  select count(*) as received,
         count(distinct x.id) as distinct_ids,
         array_agg(x.id) as ids,
         coalesce(bool_or(
           x.id is null or x.id <= 0 or x.mode is null or x.workflow_id is null or x.status is null
           or x.status not in ('success', 'error', 'crashed', 'canceled', 'new', 'running', 'waiting', 'unknown')
         ), false) as malformed,
         min(least(x.started_at, x.stopped_at)) as earliest,
         max(greatest(x.started_at, x.stopped_at)) as latest,
         min(coalesce(x.started_at, x.stopped_at, now())) filter (where x.status in ('success', 'error', 'crashed', 'canceled')) as first_billed,
         max(coalesce(x.started_at, x.stopped_at, now())) filter (where x.status in ('success', 'error', 'crashed', 'canceled')) as last_billed,
         coalesce(array_agg(distinct date_trunc('month', coalesce(x.started_at, x.stopped_at)))
           filter (where x.status in ('success', 'error', 'crashed', 'canceled') and coalesce(x.started_at, x.stopped_at) is not null), '{}') as months
  into checked
  from jsonb_to_recordset(ingest_execution_page.executions) as x(
    id bigint, status text, mode text, workflow_id text, started_at timestamptz, stopped_at timestamptz
  );
  if checked.malformed then
    raise exception 'every execution needs a positive id, a known status, a mode and a workflow_id';
  end if;
  if checked.received <> checked.distinct_ids then
    raise exception 'an execution id appears twice in one page';
  end if;
  -- A time far from now would be billed into a period far from the one the execution ran
  -- in, and make a partition for it; the collector refuses such pages before they get here.
  if not private.plausible_execution_time(checked.earliest) or not private.plausible_execution_time(checked.latest) then
    raise exception 'an execution starts or stops more than 5 minutes ahead of now or more than 400 days ago'
      using errcode = 'P0001', hint = 'Check the clock of the n8n host; nothing of the page was stored.';
  end if;
  perform private.ensure_execution_partition(m.month) from unnest(checked.months) as m(month);
  perform private.hold_execution_partitions(checked.months);

  -- A page's executions almost always fall in one billing period: when its first and last
  -- do, every one between does (periods are intervals), and billing_period runs once, not per row.
  select b.period_start, b.period_end into page_period
  from private.billing_period(tenant.current_period_start, tenant.current_period_end, checked.first_billed) b
  where checked.first_billed is not null
    and (b.period_start, b.period_end) = (
      select l.period_start, l.period_end
      from private.billing_period(tenant.current_period_start, tenant.current_period_end, checked.last_billed) l
    );

  with page as (
    select x.id, x.status, x.mode, x.workflow_id, x.started_at, x.stopped_at, x.retry_of
    from jsonb_to_recordset(ingest_execution_page.executions) as x(
      id bigint, status text, mode text, workflow_id text,
      started_at timestamptz, stopped_at timestamptz, retry_of bigint
    )
  ),
  -- The page's ids already stored, in any month: one index search per partition for the
  -- whole page rather than one per row, and never a join, which without statistics (a new
  -- month) the planner would make by reading every row the source has in the partition.
  known as (
    select e.execution_id from public.executions e
    where e.source_id = st.source_id and e.execution_id = any (checked.ids)
  ),
  finals as (
    select p.*,
           coalesce(p.started_at, p.stopped_at, 'epoch'::timestamptz) as occurred_at,
           (p.mode = any (plan.billable_modes) and p.status = any (plan.billable_statuses)) as billable,
           case when p.started_at is not null and p.stopped_at is not null
             then greatest(0, (extract(epoch from (p.stopped_at - p.started_at)) * 1000)::bigint)
           end as duration_ms,
           bp.period_start,
           bp.period_end,
           coalesce(p.started_at, p.stopped_at, now())::date as day
    from page p
    cross join lateral (
      select page_period.period_start, page_period.period_end
      where page_period.period_start is not null
      union all
      select b.period_start, b.period_end
      from private.billing_period(
        tenant.current_period_start, tenant.current_period_end, coalesce(p.started_at, p.stopped_at, now())
      ) b
      where page_period.period_start is null
    ) bp
    where p.status in ('success', 'error', 'crashed', 'canceled')
  ),
  inserted as (
    insert into public.executions (
      source_id, execution_id, tenant_id, workflow_id, mode, status, started_at, stopped_at,
      occurred_at, duration_ms, billable, period_start, retry_of
    )
    select st.source_id, f.id, tenant.id, f.workflow_id, f.mode, f.status, f.started_at, f.stopped_at,
           f.occurred_at, f.duration_ms, f.billable, f.period_start, f.retry_of
    from finals f
    where f.id not in (select k.execution_id from known k)
    on conflict do nothing
    returning execution_id
  ),
  counted as (
    select f.* from finals f join inserted i on i.execution_id = f.id
  ),
  -- Newest period first: each row is locked as it is written, in the order enforcement's
  -- run-ref retry takes them (this period's, then the earlier one its run was reserved
  -- in), so a page over two periods and a retry wait for each other instead of deadlocking.
  counters as (
    insert into public.usage_counters as c (
      tenant_id, period_start, period_end, executions, billable, billable_success,
      billable_failed, billable_duration_ms
    )
    select tenant.id, k.period_start, k.period_end, count(*),
           count(*) filter (where k.billable),
           count(*) filter (where k.billable and k.status = 'success'),
           count(*) filter (where k.billable and k.status <> 'success'),
           coalesce(sum(k.duration_ms) filter (where k.billable), 0)
    from counted k
    group by k.period_start, k.period_end
    order by k.period_start desc
    on conflict (tenant_id, period_start) do update set
      executions = c.executions + excluded.executions,
      billable = c.billable + excluded.billable,
      billable_success = c.billable_success + excluded.billable_success,
      billable_failed = c.billable_failed + excluded.billable_failed,
      billable_duration_ms = c.billable_duration_ms + excluded.billable_duration_ms,
      updated_at = now()
    returning 1
  ),
  daily as (
    insert into public.usage_daily as d (tenant_id, day, executions, billable, failed, duration_ms)
    select tenant.id, k.day, count(*), count(*) filter (where k.billable),
           count(*) filter (where k.status <> 'success'), coalesce(sum(k.duration_ms), 0)
    from counted k
    group by k.day
    on conflict (tenant_id, day) do update set
      executions = d.executions + excluded.executions,
      billable = d.billable + excluded.billable,
      failed = d.failed + excluded.failed,
      duration_ms = d.duration_ms + excluded.duration_ms
    returning 1
  ),
  closed as (
    delete from public.open_executions o
    using finals f
    where o.source_id = st.source_id and o.execution_id = f.id
    returning o.execution_id
  ),
  probed as (
    delete from public.execution_probes pr
    using page p
    where pr.source_id = st.source_id and pr.execution_id = p.id
    returning 1
  ),
  new_probes as (
    -- Ids above the floor not already known; a walk overlaps the previous one, so an
    -- unsaved execution's id may be probed twice, never more.
    insert into public.execution_probes (source_id, execution_id)
    select st.source_id, h.id
    from unnest(ingest_execution_page.holes) as h(id)
    where h.id > st.floor_id
      and not exists (select 1 from page p where p.id = h.id)
      -- An id already answered 404 (or inside a range known gone) is never probed again.
      and not exists (
        select 1 from public.collection_gaps g
        where g.source_id = st.source_id and h.id between g.from_id and g.to_id
      )
      and (select e.execution_id from public.executions e
           where e.source_id = st.source_id and e.execution_id = h.id limit 1) is null
      and not exists (select 1 from public.open_executions o where o.source_id = st.source_id and o.execution_id = h.id)
    on conflict do nothing
    returning 1
  ),
  opened as (
    insert into public.open_executions as o (source_id, execution_id, tenant_id, workflow_id, mode, status, started_at)
    select st.source_id, p.id, tenant.id, p.workflow_id, p.mode, p.status, p.started_at
    from page p
    where p.status in ('new', 'running', 'waiting', 'unknown')
      and p.id not in (select k.execution_id from known k)
    on conflict (source_id, execution_id) do update set
      status = excluded.status,
      mode = excluded.mode,
      workflow_id = excluded.workflow_id,
      started_at = excluded.started_at,
      last_seen_at = now()
    returning (o.xmax = 0) as is_new
  )
  select jsonb_build_object(
    'received', checked.received,
    'inserted', (select count(*) from counted),
    'billable', (select count(*) from counted where billable),
    'opened', (select count(*) from opened where is_new),
    'still_open', (select count(*) from opened where not is_new),
    'closed', (select count(*) from closed),
    'probes_resolved', (select count(*) from probed),
    'probes_added', (select count(*) from new_probes),
    'counter_rows', (select count(*) from counters) + (select count(*) from daily)
  ) into summary;

  -- A month's first large batch gives its partition statistics (see below).
  if (summary ->> 'inserted')::int > 0 then
    perform private.analyze_young_execution_partition(m.month) from unnest(checked.months) as m(month);
  end if;

  if ingest_execution_page.walk is not null then
    page_top := greatest(
      coalesce((ingest_execution_page.walk ->> 'top_id')::bigint, 0),
      coalesce(st.walk_top_id, 0)
    );
    update public.collector_source_state s set
      walk_cursor = case when walk_done then null else ingest_execution_page.walk ->> 'cursor' end,
      walk_top_id = case when walk_done then null else nullif(page_top, 0) end,
      -- The next walk re-reads down to the previous high-water mark: an id that commits
      -- late (n8n assigns ids at queue time) is seen by the walk after the one that passed
      -- it. A new source's first walk leaves the floor at 0, so its second walk repeats the
      -- backfill unfiltered and also finds what was still queued (startedAt null) the first time.
      floor_id = case when walk_done then s.high_water_id else s.floor_id end,
      high_water_id = case when walk_done then greatest(s.high_water_id, page_top) else s.high_water_id end,
      backfill_from = case when walk_done and s.high_water_id > 0 then null else s.backfill_from end,
      last_walk_completed_at = case when walk_done then now() else s.last_walk_completed_at end,
      supports_started_after = coalesce(
        (ingest_execution_page.walk ->> 'supports_started_after')::boolean, s.supports_started_after
      )
    where s.source_id = st.source_id;

    -- A pruning gap is recorded once, and only the part of it no earlier gap covers: the
    -- walk's floor lags one walk behind the high-water mark (to catch ids that commit late),
    -- so later walks reach the end of n8n's list above an older floor and report ranges that
    -- overlap. Ingests of one source are serialised by its lease row, so this cannot race.
    if jsonb_typeof(ingest_execution_page.walk -> 'gap') = 'object' then
      perform private.record_collection_gaps(
        st.source_id, tenant.id, 'pruned',
        int8multirange(int8range(
          (ingest_execution_page.walk #>> '{gap,from_id}')::bigint,
          (ingest_execution_page.walk #>> '{gap,to_id}')::bigint, '[]')),
        ingest_execution_page.walk #>> '{gap,detail}');
    end if;
  end if;

  update public.collector_source_state s set
    lease_expires_at = now() + make_interval(secs => s.lease_seconds)
  where s.source_id = st.source_id;

  if ingest_execution_page.run_id is not null then
    update public.collector_runs r set
      pages = r.pages + case when ingest_execution_page.walk is null then 0
                             else coalesce((ingest_execution_page.walk ->> 'pages')::int, 1) end,
      executions_ingested = r.executions_ingested + (summary ->> 'inserted')::bigint,
      billable_counted = r.billable_counted + (summary ->> 'billable')::bigint
    where r.id = ingest_execution_page.run_id;
  end if;

  return summary;
end;
$$;

-- The open executions a leased source must fetch by id, least recently seen first. Probes
-- have their own list (list_execution_probes), fetched after these.
create or replace function public.list_open_executions(source_id uuid, lease_token uuid, max_rows int default 100)
returns table (execution_id bigint, status text, first_seen_at timestamptz, started_at timestamptz)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  perform private.lock_leased_source(list_open_executions.source_id, list_open_executions.lease_token);
  return query
  select o.execution_id, o.status, o.first_seen_at, o.started_at
  from public.open_executions o
  where o.source_id = list_open_executions.source_id
  order by o.last_seen_at, o.execution_id
  limit least(list_open_executions.max_rows, private.api_max_rows());
end;
$$;

-- Ids a walk found missing from n8n's list, to fetch by id, newest first (a running
-- execution is more likely among the recent ones).
create or replace function public.list_execution_probes(source_id uuid, lease_token uuid, max_rows int default 1000)
returns table (execution_id bigint, first_seen_at timestamptz)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  perform private.lock_leased_source(list_execution_probes.source_id, list_execution_probes.lease_token);
  return query
  select pr.execution_id, pr.first_seen_at
  from public.execution_probes pr
  where pr.source_id = list_execution_probes.source_id
  order by pr.execution_id desc
  limit least(list_execution_probes.max_rows, private.api_max_rows());
end;
$$;

-- Gives up on open executions: vanished (n8n answers 404) or unfinished for too long, each
-- a gap; none is counted. Probes n8n answered 404 for (not_found) are `missing` gaps, one
-- row per run of consecutive ids, recorded once: the walk never probes them again.
create or replace function public.close_open_executions(
  source_id uuid,
  lease_token uuid,
  vanished bigint[] default '{}',
  abandoned bigint[] default '{}',
  not_found bigint[] default '{}'
)
returns int
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  st public.collector_source_state;
  tenant_id uuid;
  gone_probes int8multirange;
  closed int;
begin
  st := private.lock_leased_source(close_open_executions.source_id, close_open_executions.lease_token);
  select s.tenant_id into tenant_id from public.n8n_sources s where s.id = st.source_id;
  with gone as (
    delete from public.execution_probes pr
    where pr.source_id = st.source_id
      and pr.execution_id = any (close_open_executions.not_found)
    returning pr.execution_id
  )
  select range_agg(int8range(g.execution_id, g.execution_id, '[]')) into gone_probes from gone g;
  if gone_probes is not null then
    perform private.record_collection_gaps(
      st.source_id, tenant_id, 'missing', gone_probes,
      'missing from n8n''s list and 404 by id: deleted, pruned or never saved (workflows set not to save executions)');
  end if;
  with gone as (
    delete from public.open_executions o
    where o.source_id = st.source_id
      and (o.execution_id = any (close_open_executions.vanished) or o.execution_id = any (close_open_executions.abandoned))
    returning o.*
  ),
  recorded as (
    insert into public.collection_gaps (source_id, tenant_id, kind, from_id, to_id, detail)
    select g.source_id, g.tenant_id,
           case when g.execution_id = any (close_open_executions.vanished) then 'vanished' else 'abandoned' end,
           g.execution_id, g.execution_id,
           format('last seen %s at %s, first seen %s', g.status, g.last_seen_at, g.first_seen_at)
    from gone g
    returning 1
  )
  select count(*) into closed from recorded;
  return closed;
end;
$$;

-- Gaps --------------------------------------------------------------------------------

-- Records the ids of `ranges` that no gap of the source covers yet, one row per run of
-- them: a gap is recorded once, however often a walk meets it.
create or replace function private.record_collection_gaps(
  source_id uuid,
  tenant_id uuid,
  kind text,
  ranges int8multirange,
  detail text
)
returns int
language plpgsql
set search_path = ''
as $$
declare
  fresh int8multirange;
  added int;
begin
  select record_collection_gaps.ranges - coalesce(range_agg(int8range(g.from_id, g.to_id, '[]')), '{}'::int8multirange)
  into fresh
  from public.collection_gaps g
  where g.source_id = record_collection_gaps.source_id
    and int8range(g.from_id, g.to_id, '[]') && record_collection_gaps.ranges;
  insert into public.collection_gaps (source_id, tenant_id, kind, from_id, to_id, detail)
  select record_collection_gaps.source_id, record_collection_gaps.tenant_id, record_collection_gaps.kind,
         lower(r), upper(r) - 1, record_collection_gaps.detail
  from unnest(fresh) as r;
  get diagnostics added = row_count;
  return added;
end;
$$;
select private.grant_to_service_role_only('private.record_collection_gaps(uuid, uuid, text, int8multirange, text)');

-- The operator has seen these gaps: status stops flagging them. Gaps of these sources, or
-- these tenants' (all by default). Returns how many were acknowledged.
create or replace function public.acknowledge_collection_gaps(
  source_ids uuid[] default null,
  tenant_ids uuid[] default null
)
returns int
language plpgsql
set search_path = ''
as $$
declare
  acknowledged int;
begin
  update public.collection_gaps g set acknowledged_at = now()
  where g.acknowledged_at is null
    and (acknowledge_collection_gaps.source_ids is null or g.source_id = any (acknowledge_collection_gaps.source_ids))
    and (acknowledge_collection_gaps.tenant_ids is null or g.tenant_id = any (acknowledge_collection_gaps.tenant_ids));
  get diagnostics acknowledged = row_count;
  return acknowledged;
end;
$$;

-- Ends the turns of many sources in one call and frees their leases. deferrals[i] null: the
-- turn reached a verdict, errors[i] (null for success) is recorded, the next attempt is
-- scheduled (backing off exponentially while it fails, at most an hour). A deferral records
-- no verdict, so a source never collected cannot read as collected, nor a failing one as
-- recovered: 'cut', worked but its turn ended before its walk did (the budget, the run's
-- end), is due again at once; 'unworked', never started (a slice that could not be handed
-- over, a source the budget never reached), also gets back the last attempt its claim
-- replaced, so it is first in line for the next claim instead of behind every source that
-- was collected. Leases no longer held are left alone.
create or replace function public.release_collector_sources(
  source_ids uuid[],
  lease_tokens uuid[],
  errors text[] default null,
  deferrals text[] default null
)
returns int
language plpgsql
set search_path = ''
as $$
declare
  released int;
  sources int := cardinality(release_collector_sources.source_ids);
begin
  if release_collector_sources.errors is not null
     and cardinality(release_collector_sources.errors) <> sources then
    raise exception 'errors must have one entry per source (% sources, % errors)',
      sources, cardinality(release_collector_sources.errors);
  end if;
  if release_collector_sources.deferrals is not null
     and cardinality(release_collector_sources.deferrals) <> sources then
    raise exception 'deferrals must have one entry per source (% sources, % deferrals)',
      sources, cardinality(release_collector_sources.deferrals);
  end if;
  if exists (select 1 from unnest(release_collector_sources.deferrals) d(kind)
             where d.kind is not null and d.kind not in ('cut', 'unworked')) then
    raise exception 'a deferral is null, cut or unworked';
  end if;
  update public.collector_source_state s set
    lease_token = null,
    lease_expires_at = null,
    consecutive_failures = case when r.deferral is not null then s.consecutive_failures
      when r.error is null then 0 else s.consecutive_failures + 1 end,
    last_success_at = case when r.deferral is null and r.error is null then now() else s.last_success_at end,
    last_error = case when r.deferral is null and r.error is not null then left(r.error, 2000) else s.last_error end,
    last_error_at = case when r.deferral is null and r.error is not null then now() else s.last_error_at end,
    last_attempt_at = case when r.deferral = 'unworked' then s.previous_attempt_at else s.last_attempt_at end,
    next_attempt_at = case when r.deferral = 'unworked' then s.next_attempt_at
      when r.deferral is not null or r.error is null then now()
      else now() + least(interval '1 hour', interval '1 minute' * power(2, least(s.consecutive_failures, 10))) end
  from unnest(
    release_collector_sources.source_ids,
    release_collector_sources.lease_tokens,
    coalesce(release_collector_sources.errors, array_fill(null::text, array[sources])),
    coalesce(release_collector_sources.deferrals, array_fill(null::text, array[sources]))
  ) as r(source_id, lease_token, error, deferral)
  where s.source_id = r.source_id and s.lease_token = r.lease_token;
  get diagnostics released = row_count;
  return released;
end;
$$;

create or replace function public.start_collector_run(trigger text)
returns uuid
language sql
set search_path = ''
as $$
  insert into public.collector_runs (trigger) values (start_collector_run.trigger) returning id;
$$;

-- stats: {sources_ok, sources_failed, sources_deferred, sources_lease_lost, pages,
-- executions_ingested, billable_counted, errors, database_unreachable, failure,
-- sources_handoff_refused, handoff_error}. Pages, executions and billable counts are
-- kept as ingest_execution_page counted them when they are higher: those were committed.
create or replace function public.finish_collector_run(run_id uuid, stats jsonb)
returns public.collector_runs
language sql
set search_path = ''
as $$
  update public.collector_runs r set
    finished_at = now(),
    sources_ok = coalesce((finish_collector_run.stats ->> 'sources_ok')::int, 0),
    sources_failed = coalesce((finish_collector_run.stats ->> 'sources_failed')::int, 0),
    sources_deferred = coalesce((finish_collector_run.stats ->> 'sources_deferred')::int, 0),
    pages = greatest(r.pages, coalesce((finish_collector_run.stats ->> 'pages')::int, 0)),
    executions_ingested = greatest(r.executions_ingested, coalesce((finish_collector_run.stats ->> 'executions_ingested')::bigint, 0)),
    billable_counted = greatest(r.billable_counted, coalesce((finish_collector_run.stats ->> 'billable_counted')::bigint, 0)),
    errors = coalesce(finish_collector_run.stats -> 'errors', '[]'::jsonb),
    database_unreachable = coalesce((finish_collector_run.stats ->> 'database_unreachable')::boolean, false),
    sources_lease_lost = coalesce((finish_collector_run.stats ->> 'sources_lease_lost')::int, 0),
    failure = finish_collector_run.stats ->> 'failure',
    sources_handoff_refused = coalesce((finish_collector_run.stats ->> 'sources_handoff_refused')::int, 0),
    handoff_error = finish_collector_run.stats ->> 'handoff_error'
  where r.id = finish_collector_run.run_id and r.finished_at is null
  returning r.*;
$$;

-- Creates this and next month's partitions ahead of time and drops expired ones.
create or replace function public.maintain_execution_partitions(retention_months int default 3)
returns setof text
language plpgsql
set search_path = ''
as $$
begin
  perform private.ensure_execution_partition(now());
  perform private.ensure_execution_partition(now() + interval '1 month');
  return query select private.drop_expired_execution_partitions(maintain_execution_partitions.retention_months);
end;
$$;

select private.grant_to_service_role_only(
  'private.lock_leased_source(uuid, uuid)',
  'public.claim_collector_sources(int, int, uuid[], boolean, uuid)',
  'public.resume_collector_sources(uuid[], uuid[])',
  'public.ingest_execution_page(uuid, uuid, jsonb, jsonb, bigint[], uuid)',
  'public.list_open_executions(uuid, uuid, int)',
  'public.list_execution_probes(uuid, uuid, int)',
  'public.acknowledge_collection_gaps(uuid[], uuid[])',
  'public.close_open_executions(uuid, uuid, bigint[], bigint[], bigint[])',
  'public.renew_collector_leases(uuid[], uuid[])',
  'public.release_collector_sources(uuid[], uuid[], text[], text[])',
  'public.start_collector_run(text)',
  'public.finish_collector_run(uuid, jsonb)',
  'public.maintain_execution_partitions(int)'
);
