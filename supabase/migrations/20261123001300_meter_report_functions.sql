-- Meter reports and reconciliation: usage deltas into the outbox and their outcomes, and
-- the checks that counters equal the raw rows and that Stripe holds what it accepted.

-- Reporting ---------------------------------------------------------------------------

-- When a meter event for the period ending period_end is stamped: now, but never later
-- than the last second before the period's last whole minute (Unix time). Stripe answers
-- meter event summaries only for windows aligned to whole minutes, and a billing period
-- Stripe started at an odd second (10:17:43) is not: reconciliation asks for the period
-- from its start's minute to its end's minute, [floor(start), floor(end)). Every event of
-- the period lies in [start, floor(end)), inside that window, and every event of the
-- period before it in [its start, floor(start)), outside it; so the window holds exactly
-- the period's own events and the invoice (which bills [start, end)) bills them too.
create or replace function private.meter_event_stamp(period_end timestamptz)
returns timestamptz
language sql stable
set search_path = ''
as $$
  select least(now(), to_timestamp(floor(extract(epoch from meter_event_stamp.period_end) / 60) * 60)
                      - interval '1 second');
$$;

-- Records every unreported delta in the ledger (one row per tenant-period, locked so two
-- reporters never claim the same delta), then returns up to max_rows pending reports,
-- oldest first. Deltas of periods whose invoice is already final are recorded as late.
-- tenant_ids limits the run to those tenants (an operator's targeted run).
create or replace function public.claim_meter_deltas(
  max_rows int default 500,
  finalization_grace_minutes int default 60,
  tenant_ids uuid[] default null
)
returns setof public.meter_reports
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  with due as (
    select c.tenant_id, c.period_start, c.period_end, c.billable, c.reported,
           t.stripe_customer_id, p.stripe_meter_event_name
    from public.usage_counters c
    join public.tenants t on t.id = c.tenant_id
    join public.plans p on p.id = t.plan_id
    where c.billable > c.reported
      and t.stripe_customer_id is not null
      and p.stripe_meter_event_name is not null
      and (claim_meter_deltas.tenant_ids is null or c.tenant_id = any (claim_meter_deltas.tenant_ids))
    for update of c skip locked
  ),
  recorded as (
    insert into public.meter_reports (
      tenant_id, period_start, period_end, stripe_customer_id, event_name, reported_through,
      value, identifier, event_timestamp, status
    )
    select d.tenant_id, d.period_start, d.period_end, d.stripe_customer_id, d.stripe_meter_event_name,
           d.billable, d.billable - d.reported,
           format('flowmeter:%s:%s:%s', d.tenant_id, extract(epoch from d.period_start)::bigint, d.billable),
           private.meter_event_stamp(d.period_end),
           case when now() > d.period_end + make_interval(mins => claim_meter_deltas.finalization_grace_minutes)
                then 'late' else 'pending' end
    from due d
    on conflict (tenant_id, period_start, reported_through) do nothing
    returning tenant_id, period_start, reported_through
  )
  update public.usage_counters c set reported = r.reported_through
  from recorded r
  where c.tenant_id = r.tenant_id and c.period_start = r.period_start;

  return query
  select * from public.meter_reports r
  where r.status = 'pending'
    and (claim_meter_deltas.tenant_ids is null or r.tenant_id = any (claim_meter_deltas.tenant_ids))
  order by r.created_at, r.id
  limit least(claim_meter_deltas.max_rows, private.api_max_rows());
end;
$$;

-- Records what happened to one report: sent, late (not sendable any more: its invoice is
-- final or it is older than Stripe accepts; error says why), or a failed attempt (stays
-- pending, retried with the same identifier and value; error_kind says what kind, and
-- unavailable, the default, means the attempt had no answer: Stripe may hold the event),
-- or review (not sent again: an attempt's answer was lost too long ago; error says why).
create or replace function public.record_meter_report(
  id bigint,
  outcome text,
  error text default null,
  error_kind text default null
)
returns public.meter_reports
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  report public.meter_reports;
begin
  if record_meter_report.outcome not in ('sent', 'late', 'failed', 'review') then
    raise exception 'outcome must be sent, late, failed or review (got %)', record_meter_report.outcome;
  end if;
  update public.meter_reports r set
    status = case record_meter_report.outcome when 'failed' then r.status else record_meter_report.outcome end,
    attempts = r.attempts + case when record_meter_report.outcome = 'review' then 0 else 1 end,
    last_error = case when record_meter_report.outcome = 'sent' then null
                      else left(coalesce(record_meter_report.error, r.last_error), 2000) end,
    last_error_kind = case when record_meter_report.outcome = 'failed'
                           then coalesce(record_meter_report.error_kind, 'unavailable') end,
    unknown_outcome = case record_meter_report.outcome
                        when 'failed' then r.unknown_outcome
                          or coalesce(record_meter_report.error_kind, 'unavailable') = 'unavailable'
                        when 'sent' then false
                        else r.unknown_outcome end,
    unanswered_since = case record_meter_report.outcome
                         when 'failed' then case when coalesce(record_meter_report.error_kind, 'unavailable') = 'unavailable'
                                                 then coalesce(r.unanswered_since, now()) else r.unanswered_since end
                         when 'sent' then null
                         else r.unanswered_since end,
    last_attempt_at = case when record_meter_report.outcome = 'review' then r.last_attempt_at else now() end,
    sent_at = case when record_meter_report.outcome = 'sent' then now() else r.sent_at end
  where r.id = record_meter_report.id and r.status = 'pending'
  returning r.* into report;
  return report;
end;
$$;

-- A person checked in Stripe (the meter's events) whether it holds a report in review: if
-- it does, the report is sent; if not, it is pending again, with no unanswered attempt on
-- record (Stripe does not know the identifier, so the next run's send is its first).
create or replace function public.resolve_meter_report(id bigint, stripe_holds boolean)
returns public.meter_reports
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  report public.meter_reports;
begin
  update public.meter_reports r set
    status = case when resolve_meter_report.stripe_holds then 'sent' else 'pending' end,
    sent_at = case when resolve_meter_report.stripe_holds then now() end,
    unknown_outcome = false,
    unanswered_since = null,
    last_error = case when resolve_meter_report.stripe_holds then null
                      else 'checked in Stripe: it does not hold the event; sent again by the next run' end,
    last_error_kind = null
  where r.id = resolve_meter_report.id and r.status = 'review'
  returning r.* into report;
  if not found then
    raise exception 'meter report % is not waiting for a check in Stripe (status review)', resolve_meter_report.id
      using errcode = '22023',
            hint = '`flowmeter reports list --status review` lists them.';
  end if;
  return report;
end;
$$;

-- The operator's view of the ledger (flowmeter reports list): newest first, only
-- tenant_ids' when given, only those in one of statuses when given.
create or replace function public.list_meter_reports(
  tenant_ids uuid[] default null,
  statuses text[] default null,
  max_rows int default 100
)
returns setof public.meter_reports
language sql stable
set search_path = ''
as $$
  select * from public.meter_reports r
  where (list_meter_reports.tenant_ids is null or r.tenant_id = any (list_meter_reports.tenant_ids))
    and (list_meter_reports.statuses is null or r.status = any (list_meter_reports.statuses))
  order by r.id desc
  limit least(greatest(coalesce(list_meter_reports.max_rows, 100), 1), private.api_max_rows());
$$;

select private.grant_to_service_role_only(
  'private.meter_event_stamp(timestamptz)',
  'public.claim_meter_deltas(int, int, uuid[])',
  'public.record_meter_report(bigint, text, text, text)',
  'public.resolve_meter_report(bigint, boolean)',
  'public.list_meter_reports(uuid[], text[], int)'
);

-- A report that failed this many times (each run tries it once or more) is failing, not
-- unlucky; a refused key is failing from its first answer.
create or replace function private.meter_report_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with reports as (
    select r.* from public.meter_reports r
    where r.status in ('pending', 'late', 'review')
      and (meter_report_status.tenant_ids is null or r.tenant_id = any (meter_report_status.tenant_ids))
  ),
  last_sent as (
    select max(r.sent_at) as at from public.meter_reports r
    where meter_report_status.tenant_ids is null or r.tenant_id = any (meter_report_status.tenant_ids)
  ),
  auth as (
    select r.last_error, r.last_attempt_at from reports r, last_sent s
    where r.status = 'pending' and r.last_error_kind = 'auth'
      and r.last_attempt_at >= coalesce(s.at, '-infinity')
    order by r.last_attempt_at desc limit 1
  )
  select jsonb_build_object(
    'pending', (select count(*) from reports where status = 'pending'),
    'pending_value', (select coalesce(sum(value), 0) from reports where status = 'pending'),
    'retrying', (select count(*) from reports where status = 'pending' and attempts > 0),
    'oldest_pending_at', (select min(created_at) from reports where status = 'pending'),
    -- Never attempted: deferred run after run (the budget, the breaker), or a dry run's.
    'unattempted', (select count(*) from reports where status = 'pending' and attempts = 0),
    'oldest_unattempted_at', (
      select min(created_at) from reports where status = 'pending' and attempts = 0
    ),
    'late', (select count(*) from reports where status = 'late'),
    'late_value', (select coalesce(sum(value), 0) from reports where status = 'late'),
    -- Of the late ones, those an attempt before the cut-off sent without an answer: Stripe
    -- may hold them (then they are on the invoice); a person checks before billing by hand.
    'late_unknown', (select count(*) from reports where status = 'late' and unknown_outcome),
    -- Not sent again until a person checks Stripe (resolve_meter_report).
    'review', (select count(*) from reports where status = 'review'),
    'late_unknown_value', (
      select coalesce(sum(value), 0) from reports where status = 'late' and unknown_outcome
    ),
    'last_error', (
      select r.last_error from reports r where r.last_error is not null
      order by r.created_at desc, r.id desc limit 1
    ),
    'failing_threshold', 3,
    'failing', (
      select count(*) from reports r
      where r.status = 'pending' and r.last_error_kind is distinct from 'auth' and r.attempts >= 3
    ),
    'auth_failing', exists (select 1 from auth),
    'auth_error', (select a.last_error from auth a),
    -- Usage claim_meter_deltas can never report: tenants on a plan metered in Stripe with no
    -- Stripe customer to report it for (not linked, or no subscription event named one).
    'unlinked', (
      select jsonb_build_object(
        'tenants', count(distinct c.tenant_id),
        'executions', coalesce(sum(c.billable - c.reported), 0),
        'example_tenant_id', (array_agg(c.tenant_id order by c.billable - c.reported desc, c.tenant_id))[1],
        'example_tenant_name', (array_agg(t.name order by c.billable - c.reported desc, c.tenant_id))[1]
      )
      from public.usage_counters c
      join public.tenants t on t.id = c.tenant_id
      join public.plans p on p.id = t.plan_id
      where c.billable > c.reported
        and t.stripe_customer_id is null
        and p.stripe_meter_event_name is not null
        and (meter_report_status.tenant_ids is null or c.tenant_id = any (meter_report_status.tenant_ids))
    ),
    'corrections', (
      select jsonb_build_object(
        'pending', count(*) filter (where c.status = 'pending'),
        'failing', count(*) filter (where c.status = 'pending' and c.attempts >= 3),
        -- Never attempted: recorded, then deferred run after run (report-usage sends them
        -- with its budget's share for corrections; reconcile's repairs stop at its deadline).
        'unattempted', count(*) filter (where c.status = 'pending' and c.attempts = 0),
        'oldest_unattempted_at', min(c.created_at) filter (where c.status = 'pending' and c.attempts = 0),
        'review', count(*) filter (where c.status = 'review'),
        'late', count(*) filter (where c.status = 'late'),
        'last_error', (array_agg(c.last_error order by c.created_at desc, c.id desc)
                       filter (where c.last_error is not null))[1]
      )
      from public.meter_corrections c
      where c.status in ('pending', 'review', 'late')
        and (meter_report_status.tenant_ids is null or c.tenant_id = any (meter_report_status.tenant_ids))
    )
  );
$$;

select private.grant_to_service_role_only('private.meter_report_status(uuid[])');

-- Reconciliation ----------------------------------------------------------------------

-- Recomputes the counters of every tenant-period starting at or after `since` from the raw
-- executions and records each difference (executions or billable). `since` must not be
-- older than the retained raw data, or pruned months would look like drift. With repair,
-- the counters are brought to the recomputed values (reservations and reported are
-- untouched). tenant_ids limits the check to those tenants.
--
-- A repair races the collector and enforcement, which write the same rows:
-- - each counter moves by the difference the comparison found, not to the raw value it
--   saw: a collector page committed meanwhile (the update then waits for its row and sees
--   its counts) added to the raw rows and the counters alike, so the difference still
--   holds and the page's executions are kept;
-- - the rows are repaired one at a time, a tenant's newest period first, the order in
--   which a collector page and enforcement's run-ref retry lock them, so none of them can
--   wait for another in a circle.
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
declare
  d record;
  was_repaired boolean;
  finding public.reconciliation_findings;
begin
  for d in
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
             coalesce(r.billable_success, 0) - coalesce(c.billable_success, 0) as success_drift,
             coalesce(r.billable_duration_ms, 0) - coalesce(c.billable_duration_ms, 0) as duration_drift,
             (coalesce(r.billable, 0) - coalesce(r.billable_success, 0)) - coalesce(c.billable_failed, 0) as failed_drift
      from raw r
      full join (
        select * from public.usage_counters x
        where x.period_start >= reconcile_counters.since
          and (reconcile_counters.tenant_ids is null or x.tenant_id = any (reconcile_counters.tenant_ids))
      ) c
        on c.tenant_id = r.tenant_id and c.period_start = r.period_start
    )
    select * from compared
    where raw_executions <> counted_executions or raw_billable <> counted_billable
    order by tenant_id, period_start desc
  loop
    was_repaired := false;
    if reconcile_counters.repair then
      update public.usage_counters c set
        executions = c.executions + (d.raw_executions - d.counted_executions),
        billable = c.billable + (d.raw_billable - d.counted_billable),
        billable_success = c.billable_success + d.success_drift,
        billable_failed = c.billable_failed + d.failed_drift,
        billable_duration_ms = c.billable_duration_ms + d.duration_drift,
        updated_at = now()
      where c.tenant_id = d.tenant_id and c.period_start = d.period_start;
      was_repaired := found;
    end if;
    insert into public.reconciliation_findings (kind, tenant_id, period_start, expected, actual, repaired, detail)
    values ('counter_drift', d.tenant_id, d.period_start, d.raw_billable, d.counted_billable, was_repaired,
            format('raw rows: %s executions, %s billable; counters: %s executions, %s billable',
                   d.raw_executions, d.raw_billable, d.counted_executions, d.counted_billable))
    returning * into finding;
    return next finding;
  end loop;
end;
$$;

-- What Stripe's meter should hold per customer, meter and period, for comparing with its
-- summaries: the reports it accepted, plus what corrections did to the meter (an event
-- sent, an event cancelled). A repair only brings the meter to what was billed, so its own
-- delta is not expected there (a repair credited instead leaves the meter as it was).
-- unsettled_corrections: corrections of the period still on their way (pending, or
-- waiting for a person); until they settle the comparison means nothing.
-- unanswered_reports: reports of the period an attempt sent without an answer (pending, in
-- review, or late since), unknown_outcome. Each may be on
-- Stripe's meter (its answer lost) or not, so Stripe holding more than `sent` means
-- nothing yet: a repair taking it off would leave the period under-billed once the
-- report's resend is recognised as Stripe's duplicate and recorded as sent.
-- A keyset page in (tenant_id, period_start, stripe_customer_id) order, at most max_rows
-- (and what the API hands over); the next page starts after the last row's three.
create or replace function public.sent_meter_totals(
  since timestamptz,
  after_tenant_id uuid default null,
  after_period_start timestamptz default null,
  after_customer_id text default null,
  max_rows int default 1000
)
returns table (
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  stripe_customer_id text,
  stripe_meter_id text,
  sent bigint,
  last_sent_at timestamptz,
  unsettled_corrections bigint,
  unanswered_reports bigint
)
language sql stable
set search_path = ''
as $$
  with reports as (
    select r.tenant_id, r.period_start, r.period_end, r.stripe_customer_id,
           coalesce(sum(r.value) filter (where r.status = 'sent'), 0)::bigint as sent,
           max(r.sent_at) as last_sent_at,
           -- Pending, in review or late, an attempt without an answer (unknown_outcome) may
           -- have put it on the meter; one Stripe answered with a refusal did not.
           count(*) filter (where r.unknown_outcome) as unanswered
    from public.meter_reports r
    where r.status in ('sent', 'pending', 'review', 'late') and r.period_start >= sent_meter_totals.since
      and (r.tenant_id, r.period_start, r.stripe_customer_id)
          > (coalesce(sent_meter_totals.after_tenant_id, '00000000-0000-0000-0000-000000000000'::uuid),
             coalesce(sent_meter_totals.after_period_start, '-infinity'::timestamptz),
             coalesce(sent_meter_totals.after_customer_id, ''))
    group by r.tenant_id, r.period_start, r.period_end, r.stripe_customer_id
    having count(*) filter (where r.status = 'sent') > 0
  ),
  corrections as (
    select c.tenant_id, c.period_start,
           sum(case when c.cancel_sent_at is not null then -c.cancelled_value else 0 end
               + case when c.status = 'sent' and c.method in ('meter_event', 'cancel') then coalesce(c.event_value, 0) else 0 end
               - case when c.kind = 'repair' and c.status in ('sent', 'recorded') then c.delta else 0 end)::bigint as effect,
           count(*) filter (where c.status in ('pending', 'review')) as unsettled,
           max(greatest(c.sent_at, c.cancel_sent_at)) as last_sent_at
    from public.meter_corrections c
    where c.period_start >= sent_meter_totals.since
    group by c.tenant_id, c.period_start
  )
  select r.tenant_id, r.period_start, r.period_end, r.stripe_customer_id, p.stripe_meter_id,
         r.sent + coalesce(c.effect, 0), greatest(r.last_sent_at, c.last_sent_at), coalesce(c.unsettled, 0),
         r.unanswered
  from reports r
  join public.tenants t on t.id = r.tenant_id
  join public.plans p on p.id = t.plan_id
  left join corrections c on c.tenant_id = r.tenant_id and c.period_start = r.period_start
  where p.stripe_meter_id is not null
  order by r.tenant_id, r.period_start, r.stripe_customer_id
  limit least(greatest(coalesce(sent_meter_totals.max_rows, 1000), 1), private.api_max_rows());
$$;

-- A difference found by comparing with Stripe (its summaries, its invoice preview), as a
-- finding; counter drift is recorded by reconcile_counters itself. repaired: a correction
-- that brings Stripe's meter back was recorded with it (reconcile --repair).
create or replace function public.record_reconciliation_finding(
  kind text,
  tenant_id uuid,
  period_start timestamptz,
  expected bigint,
  actual bigint,
  detail text,
  repaired boolean default false
)
returns public.reconciliation_findings
language sql
set search_path = ''
as $$
  insert into public.reconciliation_findings (kind, tenant_id, period_start, expected, actual, repaired, detail)
  values (record_reconciliation_finding.kind, record_reconciliation_finding.tenant_id,
          record_reconciliation_finding.period_start, record_reconciliation_finding.expected,
          record_reconciliation_finding.actual, record_reconciliation_finding.repaired,
          record_reconciliation_finding.detail)
  returning *;
$$;

-- For the operator's status: findings of the last 30 days that were not repaired. Nothing
-- marks a finding handled, so each stays visible for a month after it was found.
create or replace function private.reconciliation_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with open_findings as (
    select f.* from public.reconciliation_findings f
    where not f.repaired and f.found_at > now() - interval '30 days'
      and (reconciliation_status.tenant_ids is null or f.tenant_id = any (reconciliation_status.tenant_ids))
  ),
  latest as (
    select o.kind, o.detail from open_findings o order by o.found_at desc, o.id desc limit 1
  )
  select jsonb_build_object(
    'unrepaired', (select count(*) from open_findings),
    'last_found_at', (select max(found_at) from open_findings),
    'last_kind', (select kind from latest),
    'last_detail', (select detail from latest)
  );
$$;

select private.grant_to_service_role_only(
  'private.reconciliation_status(uuid[])',
  'public.reconcile_counters(timestamptz, boolean, uuid[])',
  'public.sent_meter_totals(timestamptz, uuid, timestamptz, text, int)',
  'public.record_reconciliation_finding(text, uuid, timestamptz, bigint, bigint, text, boolean)'
);
