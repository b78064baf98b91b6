-- Reconciliation: prove counters = raw rows, and what we reported = what Stripe holds.
--
-- Findings are recorded where the operator sees them; counters are repaired only when
-- asked, and a repair is itself a finding.

create table public.reconciliation_findings (
  id bigint generated always as identity primary key,
  -- counter_drift: usage_counters disagree with the raw executions;
  -- stripe_drift: Stripe's meter event summary disagrees with the reports it accepted.
  kind text not null constraint reconciliation_findings_kind_known check (kind in ('counter_drift', 'stripe_drift')),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  expected bigint not null,
  actual bigint not null,
  repaired boolean not null default false,
  detail text,
  found_at timestamptz not null default now()
);
comment on table public.reconciliation_findings is 'Differences found by the daily reconciliation, for the operator.';
create index reconciliation_findings_tenant_idx on public.reconciliation_findings (tenant_id, period_start);

alter table public.reconciliation_findings enable row level security;
revoke all on table public.reconciliation_findings from public, anon, authenticated;
grant all on table public.reconciliation_findings to service_role;

-- Recomputes the counters of every tenant-period starting at or after `since` from the raw
-- executions and records each difference (executions or billable). `since` must not be
-- older than the retained raw data, or pruned months would look like drift. With repair,
-- the counters are set to the recomputed values (reservations and reported are untouched).
-- tenant_ids limits the check to those tenants.
create or replace function public.reconcile_counters(
  since timestamptz,
  repair boolean default false,
  tenant_ids uuid[] default null
)
returns setof public.reconciliation_findings
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
  with raw as (
    select e.tenant_id, e.period_start, count(*) as executions,
           count(*) filter (where e.billable) as billable,
           count(*) filter (where e.billable and e.status = 'success') as billable_success,
           coalesce(sum(e.duration_ms) filter (where e.billable), 0) as billable_duration_ms
    from public.executions e
    where e.period_start >= reconcile_counters.since
      and (reconcile_counters.tenant_ids is null or e.tenant_id = any (reconcile_counters.tenant_ids))
    group by e.tenant_id, e.period_start
  ),
  compared as (
    select coalesce(r.tenant_id, c.tenant_id) as tenant_id,
           coalesce(r.period_start, c.period_start) as period_start,
           coalesce(r.executions, 0) as raw_executions, coalesce(c.executions, 0) as counted_executions,
           coalesce(r.billable, 0) as raw_billable, coalesce(c.billable, 0) as counted_billable,
           r.billable_success, r.billable_duration_ms
    from raw r
    full join (
      select * from public.usage_counters x
      where x.period_start >= reconcile_counters.since
        and (reconcile_counters.tenant_ids is null or x.tenant_id = any (reconcile_counters.tenant_ids))
    ) c
      on c.tenant_id = r.tenant_id and c.period_start = r.period_start
  ),
  drift as (
    select * from compared
    where raw_executions <> counted_executions or raw_billable <> counted_billable
  ),
  repaired as (
    update public.usage_counters c set
      executions = d.raw_executions,
      billable = d.raw_billable,
      billable_success = coalesce(d.billable_success, 0),
      billable_failed = d.raw_billable - coalesce(d.billable_success, 0),
      billable_duration_ms = coalesce(d.billable_duration_ms, 0),
      updated_at = now()
    from drift d
    where reconcile_counters.repair and c.tenant_id = d.tenant_id and c.period_start = d.period_start
    returning c.tenant_id, c.period_start
  )
  insert into public.reconciliation_findings (kind, tenant_id, period_start, expected, actual, repaired, detail)
  select 'counter_drift', d.tenant_id, d.period_start, d.raw_billable, d.counted_billable,
         exists (select 1 from repaired x where x.tenant_id = d.tenant_id and x.period_start = d.period_start),
         format('raw rows: %s executions, %s billable; counters: %s executions, %s billable',
                d.raw_executions, d.raw_billable, d.counted_executions, d.counted_billable)
  from drift d
  returning *;
end;
$$;

-- What was sent to Stripe per customer, meter and period, for comparing with its summaries.
create or replace function public.sent_meter_totals(since timestamptz)
returns table (
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  stripe_customer_id text,
  stripe_meter_id text,
  sent bigint,
  last_sent_at timestamptz
)
language sql stable
set search_path = ''
as $$
  select r.tenant_id, r.period_start, r.period_end, r.stripe_customer_id, p.stripe_meter_id, sum(r.value)::bigint,
         max(r.sent_at)
  from public.meter_reports r
  join public.tenants t on t.id = r.tenant_id
  join public.plans p on p.id = t.plan_id
  where r.status = 'sent' and r.period_start >= sent_meter_totals.since and p.stripe_meter_id is not null
  group by r.tenant_id, r.period_start, r.period_end, r.stripe_customer_id, p.stripe_meter_id;
$$;

create or replace function public.record_stripe_drift(
  tenant_id uuid,
  period_start timestamptz,
  expected bigint,
  actual bigint,
  detail text
)
returns public.reconciliation_findings
language sql
set search_path = ''
as $$
  insert into public.reconciliation_findings (kind, tenant_id, period_start, expected, actual, detail)
  values ('stripe_drift', record_stripe_drift.tenant_id, record_stripe_drift.period_start,
          record_stripe_drift.expected, record_stripe_drift.actual, record_stripe_drift.detail)
  returning *;
$$;

revoke execute on function public.reconcile_counters(timestamptz, boolean, uuid[]), public.sent_meter_totals(timestamptz),
  public.record_stripe_drift(uuid, timestamptz, bigint, bigint, text)
  from public, anon, authenticated;
grant execute on function public.reconcile_counters(timestamptz, boolean, uuid[]), public.sent_meter_totals(timestamptz),
  public.record_stripe_drift(uuid, timestamptz, bigint, bigint, text)
  to service_role;
