-- Usage reporting to Stripe Billing Meters through a ledger (outbox).
--
-- Stripe never over-bills: every report is a delta recorded here, with a deterministic
-- identifier, before it is sent. A retry re-sends the same identifier and value (Stripe
-- de-duplicates identifiers for at least 24 hours), so Σ reported = Σ billable per
-- tenant-period, whatever fails between the ledger write and Stripe's answer.

alter table public.plans
  -- The Billing Meter's event_name that this plan's usage is reported under; null = the
  -- plan's usage is not reported (e.g. a flat plan). The price attached to the meter is
  -- graduated: its first tier is included_executions at 0.
  add column stripe_meter_event_name text
    constraint plans_stripe_meter_event_name_format check (stripe_meter_event_name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  -- The meter's id (mtr_…), for reconciling with Stripe's event summaries.
  add column stripe_meter_id text
    constraint plans_stripe_meter_id_format check (stripe_meter_id ~ '^mtr_[A-Za-z0-9]+$');

alter table public.usage_counters
  -- Σ value of this tenant-period's meter_reports: what has been handed to the outbox.
  add column reported bigint not null default 0
    constraint usage_counters_reported_range check (reported >= 0);

create table public.meter_reports (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  period_end timestamptz not null,
  stripe_customer_id text not null,
  event_name text not null,
  -- The tenant-period's billable count this report brings Stripe's total up to.
  reported_through bigint not null,
  value bigint not null constraint meter_reports_value_positive check (value > 0),
  -- flowmeter:<tenant id>:<period start, Unix seconds>:<reported_through>; the same delta
  -- always gets the same identifier.
  identifier text not null unique
    constraint meter_reports_identifier_length check (length(identifier) <= 100),
  -- Inside the period it bills: now, or the period's last second once it has ended.
  event_timestamp timestamptz not null,
  -- pending: to send (or to retry); sent: Stripe accepted it; late: its period's invoice is
  -- final (or the timestamp is older than Stripe accepts), so it is not sent — the
  -- operator sees it and decides.
  status text not null default 'pending'
    constraint meter_reports_status_known check (status in ('pending', 'sent', 'late')),
  attempts int not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  unique (tenant_id, period_start, reported_through)
);
comment on table public.meter_reports is 'Outbox of usage deltas for Stripe Billing Meters; written before sending, never changed in value.';
create index meter_reports_pending_idx on public.meter_reports (created_at) where status = 'pending';
create index meter_reports_tenant_period_idx on public.meter_reports (tenant_id, period_start);

alter table public.meter_reports enable row level security;
revoke all on table public.meter_reports from public, anon, authenticated;
grant select (id, tenant_id, period_start, period_end, reported_through, value, event_timestamp, status, created_at, sent_at)
  on table public.meter_reports to authenticated;
grant all on table public.meter_reports to service_role;
create policy meter_reports_select_member on public.meter_reports
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));

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
           least(now(), d.period_end - interval '1 second'),
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
  limit claim_meter_deltas.max_rows;
end;
$$;

-- Records what happened to one report: sent, late (not sendable any more), or a failed
-- attempt (stays pending, retried with the same identifier and value).
create or replace function public.record_meter_report(id bigint, outcome text, error text default null)
returns public.meter_reports
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  report public.meter_reports;
begin
  if record_meter_report.outcome not in ('sent', 'late', 'failed') then
    raise exception 'outcome must be sent, late or failed (got %)', record_meter_report.outcome;
  end if;
  update public.meter_reports r set
    status = case record_meter_report.outcome when 'failed' then r.status else record_meter_report.outcome end,
    attempts = r.attempts + 1,
    last_error = case when record_meter_report.outcome = 'sent' then null
                      else left(coalesce(record_meter_report.error, r.last_error), 2000) end,
    sent_at = case when record_meter_report.outcome = 'sent' then now() else r.sent_at end
  where r.id = record_meter_report.id and r.status = 'pending'
  returning r.* into report;
  return report;
end;
$$;

revoke execute on function public.claim_meter_deltas(int, int, uuid[]), public.record_meter_report(bigint, text, text)
  from public, anon, authenticated;
grant execute on function public.claim_meter_deltas(int, int, uuid[]), public.record_meter_report(bigint, text, text)
  to service_role;
