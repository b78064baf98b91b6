-- Corrections: recording a correction of a reported tenant-period in the outbox (deciding
-- there how it reaches Stripe), claiming pending ones for a sending run, and recording
-- what Stripe answered. See the header of 20261123000950_meter_corrections.sql.

-- Stripe cancels an event only within 24 hours of receiving it; an event is picked for a
-- cancellation only if it was written to the ledger (before it was first sent) within the
-- last 23 hours, so the cancellation has an hour to reach Stripe.
create or replace function private.correction_cancel_window()
returns interval
language sql immutable
set search_path = ''
as $$ select interval '23 hours' $$;

-- What a tenant-period is billed for, in executions: every report handed to Stripe or about
-- to be (or in review: maybe handed), and every adjustment that is not late (except one, when its own share is
-- re-decided).
create or replace function private.billed_executions(tenant_id uuid, period_start timestamptz, except_id bigint default null)
returns bigint
language sql stable
set search_path = ''
as $$
  select coalesce((
           select sum(r.value) from public.meter_reports r
           where r.tenant_id = billed_executions.tenant_id and r.period_start = billed_executions.period_start
             and r.status in ('sent', 'pending', 'review')), 0)
       + coalesce((
           select sum(c.delta) from public.meter_corrections c
           where c.tenant_id = billed_executions.tenant_id and c.period_start = billed_executions.period_start
             and c.kind = 'adjustment' and c.status <> 'late'
             and c.id is distinct from billed_executions.except_id), 0);
$$;

-- The overage a reduction of -delta executions takes off the bill, in minor units of the
-- plan's currency (rounded to the unit): only executions above the included quota are
-- billed, and only on overage plans. A repair's reduction is of usage Stripe holds beyond
-- what flowmeter billed, so it is counted from there.
create or replace function private.correction_credit(
  tenant_id uuid, period_start timestamptz, delta bigint, kind text, except_id bigint default null
)
returns table (amount bigint, currency text)
language sql stable
set search_path = ''
as $$
  select case when p.limit_policy = 'overage' and q.quota is not null
              then round((greatest(0, b.base - q.quota) - greatest(0, b.base + correction_credit.delta - q.quota))
                         * coalesce(p.overage_unit_amount, 0))::bigint
              else 0 end,
         p.currency
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  cross join lateral (
    select private.plan_quota(p.limit_policy, false, p.included_executions, p.trial_included_executions) as quota
  ) q
  cross join lateral (
    select private.billed_executions(correction_credit.tenant_id, correction_credit.period_start, correction_credit.except_id)
           - case when correction_credit.kind = 'repair' then correction_credit.delta else 0 end as base
  ) b
  where t.id = correction_credit.tenant_id;
$$;

-- Records one correction of a reported tenant-period, once per request_key (the same
-- request again answers the correction already recorded, created = false). The period is
-- period_start exactly, or the one billing period starting in the UTC month in_month.
-- Refused (22023, nothing recorded): a period not reported to Stripe yet, more usage for a
-- period whose invoice is final, less usage than the period is billed for. Returns
-- {created, correction}.
create or replace function public.record_meter_correction(
  tenant_id uuid,
  delta bigint,
  reason text,
  requested_by text,
  request_key text,
  period_start timestamptz default null,
  in_month date default null,
  kind text default 'adjustment',
  finalization_grace_minutes int default 60
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  existing public.meter_corrections;
  counters public.usage_counters;
  periods int;
  last_report public.meter_reports;
  billed bigint;
  invoice_open boolean;
  stamp timestamptz;
  target_identifier text;
  target_value bigint;
  credit_minor bigint;
  credit_code text;
  created public.meter_corrections;
  chosen_method text;
begin
  if record_meter_correction.kind not in ('adjustment', 'repair') then
    raise exception 'kind must be adjustment or repair (got %)', record_meter_correction.kind using errcode = '22023';
  end if;
  if record_meter_correction.delta is null or record_meter_correction.delta = 0
     or abs(record_meter_correction.delta) > 1000000000 then
    raise exception 'the correction must be a whole number of executions from -1000000000 to 1000000000, not 0 (got %)',
      coalesce(record_meter_correction.delta::text, 'none') using errcode = '22023';
  end if;
  if length(btrim(coalesce(record_meter_correction.reason, ''))) not between 1 and 500 then
    raise exception 'a reason of 1 to 500 characters is required: it is kept with the correction and shown to the tenant'
      using errcode = '22023';
  end if;
  if (record_meter_correction.period_start is null) = (record_meter_correction.in_month is null) then
    raise exception 'name the period by period_start or by in_month, one of them' using errcode = '22023';
  end if;

  select * into existing from public.meter_corrections c where c.request_key = record_meter_correction.request_key;
  if found then
    if existing.tenant_id <> record_meter_correction.tenant_id or existing.delta <> record_meter_correction.delta then
      raise exception 'request key % is already the key of correction % (another tenant or amount)',
        record_meter_correction.request_key, existing.id using errcode = '23505';
    end if;
    return jsonb_build_object('created', false, 'correction', to_jsonb(existing));
  end if;

  if record_meter_correction.period_start is null then
    select count(*) into periods from public.usage_counters c
    where c.tenant_id = record_meter_correction.tenant_id
      and c.period_start >= record_meter_correction.in_month::timestamp at time zone 'UTC'
      and c.period_start < (record_meter_correction.in_month + interval '1 month')::timestamp at time zone 'UTC';
    if periods <> 1 then
      raise exception '% billing periods of this tenant start in %', periods, to_char(record_meter_correction.in_month, 'YYYY-MM')
        using errcode = '22023',
              hint = case when periods = 0 then 'Give a month in which one of its billing periods starts (flowmeter tenants usage shows the current one).'
                          else 'Give the period by its start (period_start).' end;
    end if;
  end if;
  -- One correction of a tenant-period at a time: the billed total and the events still
  -- cancellable are read and used under this lock.
  select * into counters from public.usage_counters c
  where c.tenant_id = record_meter_correction.tenant_id
    and (c.period_start = record_meter_correction.period_start
         or (record_meter_correction.period_start is null
             and c.period_start >= record_meter_correction.in_month::timestamp at time zone 'UTC'
             and c.period_start < (record_meter_correction.in_month + interval '1 month')::timestamp at time zone 'UTC'))
  for update;
  if not found then
    raise exception 'tenant % has no billing period starting at %', record_meter_correction.tenant_id, record_meter_correction.period_start
      using errcode = '22023';
  end if;

  select * into last_report from public.meter_reports r
  where r.tenant_id = counters.tenant_id and r.period_start = counters.period_start and r.status = 'sent'
  order by r.id desc limit 1;
  if not found then
    raise exception 'the period starting % has not been reported to Stripe yet: nothing to correct there', counters.period_start
      using errcode = '22023',
            hint = 'Its usage is reported by the next report-usage run; if the counters are wrong, reconcile --repair sets them.';
  end if;

  billed := private.billed_executions(counters.tenant_id, counters.period_start);
  if record_meter_correction.kind = 'adjustment' and billed + record_meter_correction.delta < 0 then
    raise exception 'the period is billed for % executions: it cannot be reduced by %', billed, -record_meter_correction.delta
      using errcode = '22023';
  end if;
  invoice_open := now() < counters.period_end + make_interval(mins => record_meter_correction.finalization_grace_minutes)
                          - interval '1 minute';
  stamp := private.meter_event_stamp(counters.period_end);

  if record_meter_correction.delta > 0 then
    if not invoice_open then
      raise exception 'the invoice for the period ending % is final: more usage cannot be metered into it', counters.period_end
        using errcode = '22023', hint = 'Bill it by hand (an invoice item on the next invoice).';
    end if;
    chosen_method := 'meter_event';
  else
    if invoice_open then
      -- The event to cancel: one whose value is the reduction exactly, else the smallest
      -- larger one (its remainder is sent again); newest first.
      select e.identifier, e.value into target_identifier, target_value
      from (
        select r.identifier, r.value, r.created_at from public.meter_reports r
        where r.tenant_id = counters.tenant_id and r.period_start = counters.period_start and r.status = 'sent'
        union all
        select c.identifier, c.event_value, c.created_at from public.meter_corrections c
        where c.tenant_id = counters.tenant_id and c.period_start = counters.period_start
          and c.status = 'sent' and c.event_value is not null
      ) e
      where e.created_at > now() - private.correction_cancel_window()
        and e.value >= -record_meter_correction.delta
        and not exists (select 1 from public.meter_corrections x where x.cancels_identifier = e.identifier)
      order by e.value = -record_meter_correction.delta desc, e.value, e.created_at desc
      limit 1;
    end if;
    if target_identifier is not null then
      chosen_method := 'cancel';
    else
      select x.amount, x.currency into credit_minor, credit_code from private.correction_credit(
        counters.tenant_id, counters.period_start, record_meter_correction.delta, record_meter_correction.kind
      ) x;
      chosen_method := case when credit_minor > 0 then 'credit' else 'none' end;
    end if;
  end if;

  insert into public.meter_corrections (
    tenant_id, period_start, period_end, stripe_customer_id, event_name, kind, delta, reason, requested_by,
    request_key, identifier, method, event_value, event_timestamp, cancels_identifier, cancelled_value,
    credit_amount, currency, status, sent_at
  ) values (
    counters.tenant_id, counters.period_start, counters.period_end, last_report.stripe_customer_id,
    last_report.event_name, record_meter_correction.kind, record_meter_correction.delta,
    btrim(record_meter_correction.reason), record_meter_correction.requested_by, record_meter_correction.request_key,
    'flowmeter:correction:' || md5(record_meter_correction.request_key), chosen_method,
    case chosen_method when 'meter_event' then record_meter_correction.delta
                when 'cancel' then nullif(target_value + record_meter_correction.delta, 0) end,
    case when chosen_method in ('meter_event', 'cancel') then stamp end,
    case when chosen_method = 'cancel' then target_identifier end,
    case when chosen_method = 'cancel' then target_value end,
    case when chosen_method = 'credit' then credit_minor end,
    case when chosen_method = 'credit' then credit_code end,
    case when chosen_method = 'none' then 'recorded' else 'pending' end,
    null
  )
  on conflict (request_key) do nothing
  returning * into created;
  if created.id is null then
    -- The same request, recorded meanwhile by an overlapping call.
    select * into existing from public.meter_corrections c where c.request_key = record_meter_correction.request_key;
    return jsonb_build_object('created', false, 'correction', to_jsonb(existing));
  end if;
  return jsonb_build_object('created', true, 'correction', to_jsonb(created));
end;
$$;

-- Pending corrections for a sending run (only ids, or tenant_ids' when given), each held for
-- lease_seconds so that an overlapping run leaves it alone; a run that crashed lets go
-- when its lease ends.
create or replace function public.claim_meter_corrections(
  ids bigint[] default null,
  tenant_ids uuid[] default null,
  max_rows int default 100,
  lease_seconds int default 300
)
returns setof public.meter_corrections
language sql
set search_path = ''
as $$
  with due as (
    select c.id from public.meter_corrections c
    where c.status = 'pending'
      and (c.claimed_until is null or c.claimed_until < now())
      and (claim_meter_corrections.ids is null or c.id = any (claim_meter_corrections.ids))
      and (claim_meter_corrections.tenant_ids is null or c.tenant_id = any (claim_meter_corrections.tenant_ids))
    order by c.created_at, c.id
    limit greatest(least(claim_meter_corrections.max_rows, private.api_max_rows()), 0)
    for update skip locked
  )
  update public.meter_corrections c
  set claimed_until = now() + make_interval(secs => claim_meter_corrections.lease_seconds)
  from due
  where c.id = due.id
  returning c.*;
$$;

-- Records what one step of a pending correction did:
-- cancel_sent: Stripe took the cancellation (the remainder, if any, is sent next);
-- sent: Stripe holds the meter event or the credit (stripe_object_id: the credit's id);
-- failed: an attempt failed, the correction stays pending (error_kind unavailable means
--   the attempt had no answer: Stripe may hold it);
-- credit: Stripe refused the cancellation (past its 24 hours, or the invoice became final
--   first), which was never taken: the reduction becomes a credit (or nothing to send);
-- late: the meter event's invoice became final before it was sent; not sent;
-- review: an earlier attempt's answer was lost and can no longer be replayed.
create or replace function public.record_meter_correction_outcome(
  id bigint,
  outcome text,
  error text default null,
  error_kind text default null,
  stripe_object_id text default null
)
returns public.meter_corrections
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  correction public.meter_corrections;
  credit record;
begin
  if record_meter_correction_outcome.outcome not in ('cancel_sent', 'sent', 'failed', 'credit', 'late', 'review') then
    raise exception 'outcome must be cancel_sent, sent, failed, credit, late or review (got %)',
      record_meter_correction_outcome.outcome using errcode = '22023';
  end if;
  select * into correction from public.meter_corrections c
  where c.id = record_meter_correction_outcome.id and c.status = 'pending'
  for update;
  if not found then
    return null;
  end if;

  if record_meter_correction_outcome.outcome = 'credit' then
    if correction.method <> 'cancel' or correction.cancel_sent_at is not null then
      raise exception 'correction % is not a cancellation Stripe refused', correction.id using errcode = '22023';
    end if;
    select * into credit from private.correction_credit(
      correction.tenant_id, correction.period_start, correction.delta, correction.kind, correction.id
    );
    update public.meter_corrections c set
      method = case when credit.amount > 0 then 'credit' else 'none' end,
      status = case when credit.amount > 0 then 'pending' else 'recorded' end,
      cancels_identifier = null, cancelled_value = null, event_value = null, event_timestamp = null,
      credit_amount = nullif(credit.amount, 0),
      currency = case when credit.amount > 0 then credit.currency end,
      attempts = c.attempts + 1,
      first_attempt_at = coalesce(c.first_attempt_at, now()),
      last_attempt_at = now(),
      -- The cancellation had an answer: a refusal. Nothing of it is at Stripe.
      unknown_outcome = false,
      last_error = left(record_meter_correction_outcome.error, 2000),
      last_error_kind = null
    where c.id = correction.id
    returning c.* into correction;
    return correction;
  end if;

  update public.meter_corrections c set
    status = case record_meter_correction_outcome.outcome
               when 'sent' then 'sent'
               when 'late' then 'late'
               when 'review' then 'review'
               when 'cancel_sent' then case when c.event_value is null then 'sent' else 'pending' end
               else c.status end,
    cancel_sent_at = case when record_meter_correction_outcome.outcome = 'cancel_sent'
                          then coalesce(c.cancel_sent_at, now()) else c.cancel_sent_at end,
    stripe_object_id = coalesce(record_meter_correction_outcome.stripe_object_id, c.stripe_object_id),
    attempts = c.attempts + case when record_meter_correction_outcome.outcome in ('late', 'review') then 0 else 1 end,
    first_attempt_at = case when record_meter_correction_outcome.outcome in ('late', 'review') then c.first_attempt_at
                            else coalesce(c.first_attempt_at, now()) end,
    last_attempt_at = case when record_meter_correction_outcome.outcome in ('late', 'review') then c.last_attempt_at
                           else now() end,
    unknown_outcome = case when record_meter_correction_outcome.outcome = 'failed'
                           then c.unknown_outcome or coalesce(record_meter_correction_outcome.error_kind, 'unavailable') = 'unavailable'
                           when record_meter_correction_outcome.outcome in ('sent', 'cancel_sent') then false
                           else c.unknown_outcome end,
    -- A success clears a failure's error; a note without a kind (why a cancellation became a
    -- credit) stays with the correction.
    last_error = case when record_meter_correction_outcome.outcome in ('sent', 'cancel_sent')
                      then case when c.last_error_kind is null then c.last_error end
                      else left(coalesce(record_meter_correction_outcome.error, c.last_error), 2000) end,
    last_error_kind = case when record_meter_correction_outcome.outcome = 'failed'
                           then coalesce(record_meter_correction_outcome.error_kind, 'unavailable') end,
    sent_at = case when record_meter_correction_outcome.outcome = 'sent'
                     or (record_meter_correction_outcome.outcome = 'cancel_sent' and c.event_value is null)
                   then now() else c.sent_at end,
    -- A failed attempt lets go, so the next run retries; a cancellation taken keeps the
    -- claim for its remainder, which the same run sends next.
    claimed_until = case when record_meter_correction_outcome.outcome = 'cancel_sent' and c.event_value is not null
                         then c.claimed_until end
  where c.id = correction.id
  returning c.* into correction;
  return correction;
end;
$$;

-- A person checked in Stripe a correction in review, and says whether Stripe shows what the
-- correction asked of it. A cancellation whose earlier answer was lost more than a day ago:
-- cancelled, the correction goes on with its remainder (if any); not, the reduction becomes
-- a credit. A meter event (more usage, or a cancellation's remainder) in the same case:
-- held, it is recorded sent; not, it is pending again as a first send (Stripe does not know
-- its identifier). Either way the next sending run finishes it.
create or replace function public.resolve_meter_correction(id bigint, stripe_shows boolean)
returns public.meter_corrections
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  correction public.meter_corrections;
begin
  select * into correction from public.meter_corrections c
  where c.id = resolve_meter_correction.id and c.status = 'review'
  for update;
  if not found then
    raise exception 'correction % is not waiting for a check in Stripe (status review)', resolve_meter_correction.id
      using errcode = '22023', hint = 'flowmeter corrections lists the corrections with their status.';
  end if;
  update public.meter_corrections c set
    status = 'pending',
    unknown_outcome = false,
    last_error = null,
    last_error_kind = null,
    claimed_until = null,
    -- An event Stripe does not hold: its next send is a first one, with a window of its own.
    first_attempt_at = case when (correction.method <> 'cancel' or correction.cancel_sent_at is not null)
                                 and not resolve_meter_correction.stripe_shows then null
                            else c.first_attempt_at end
  where c.id = correction.id;
  if correction.method = 'cancel' and correction.cancel_sent_at is null then
    if resolve_meter_correction.stripe_shows then
      return public.record_meter_correction_outcome(correction.id, 'cancel_sent');
    end if;
    return public.record_meter_correction_outcome(
      correction.id, 'credit', 'checked in Stripe: the event was not cancelled; credited instead'
    );
  end if;
  if resolve_meter_correction.stripe_shows then
    return public.record_meter_correction_outcome(correction.id, 'sent');
  end if;
  select * into correction from public.meter_corrections c where c.id = resolve_meter_correction.id;
  return correction;
end;
$$;

-- The operator's view of corrections (flowmeter corrections): newest first, only
-- tenant_ids' when given, only those starting in the UTC month in_month when given.
create or replace function public.list_meter_corrections(
  tenant_ids uuid[] default null,
  in_month date default null,
  max_rows int default 100
)
returns setof public.meter_corrections
language sql stable
set search_path = ''
as $$
  select * from public.meter_corrections c
  where (list_meter_corrections.tenant_ids is null or c.tenant_id = any (list_meter_corrections.tenant_ids))
    and (list_meter_corrections.in_month is null
         or (c.period_start >= list_meter_corrections.in_month::timestamp at time zone 'UTC'
             and c.period_start < (list_meter_corrections.in_month + interval '1 month')::timestamp at time zone 'UTC'))
  order by c.id desc
  limit least(greatest(coalesce(list_meter_corrections.max_rows, 100), 1), private.api_max_rows());
$$;

select private.grant_to_service_role_only(
  'private.correction_cancel_window()',
  'private.billed_executions(uuid, timestamptz, bigint)',
  'private.correction_credit(uuid, timestamptz, bigint, text, bigint)',
  'public.record_meter_correction(uuid, bigint, text, text, text, timestamptz, date, text, int)',
  'public.list_meter_corrections(uuid[], date, int)',
  'public.resolve_meter_correction(bigint, boolean)',
  'public.claim_meter_corrections(bigint[], uuid[], int, int)',
  'public.record_meter_correction_outcome(bigint, text, text, text, text)'
);

-- What a tenant's users see of corrections: their own tenant's, under row-level security
-- (security invoker, the columns granted to authenticated), newest first.
create or replace function public.tenant_usage_corrections(
  tenant_id uuid,
  for_period timestamptz default null,
  max_rows int default 50
)
returns table (
  id bigint,
  period_start timestamptz,
  period_end timestamptz,
  delta bigint,
  reason text,
  method text,
  credit_amount bigint,
  currency text,
  status text,
  created_at timestamptz,
  sent_at timestamptz
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
begin
  if coalesce(tenant_usage_corrections.max_rows, 50) not between 1 and 200 then
    raise exception 'max_rows must be 1 to 200 (got %)', tenant_usage_corrections.max_rows using errcode = '22023';
  end if;
  return query
  select c.id, c.period_start, c.period_end, c.delta, c.reason, c.method, c.credit_amount, c.currency, c.status,
         c.created_at, c.sent_at
  from public.meter_corrections c
  where c.tenant_id = tenant_usage_corrections.tenant_id
    and c.kind = 'adjustment'
    and (tenant_usage_corrections.for_period is null or c.period_start = tenant_usage_corrections.for_period)
  order by c.id desc
  limit least(coalesce(tenant_usage_corrections.max_rows, 50), private.api_max_rows());
end;
$$;
comment on function public.tenant_usage_corrections(uuid, timestamptz, int) is
$$Corrections of one tenant's billed usage (all periods, or the one starting at for_period), newest first, at most max_rows (default 50, 1 to 200).
Columns: id, period_start, period_end; delta = executions added (positive) or taken off (negative); reason;
method = meter_event (more usage metered) | cancel (a meter event cancelled, the rest re-sent) | credit (credited to the customer balance) | none (nothing had been billed for them);
credit_amount, currency (credits only, minor units); status = pending | sent | recorded | late | review; created_at, sent_at.
Repairs that only bring Stripe's meter back to what was billed are not listed. No rows when the caller is not a member of the tenant.$$;

select private.grant_to_authenticated('public.tenant_usage_corrections(uuid, timestamptz, int)');
