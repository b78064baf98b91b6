-- Corrections (correction_functions): after-the-fact changes to what a tenant-period is
-- billed, and repairs that bring Stripe's meter back to what flowmeter billed. Like the
-- meter reports, a correction is an outbox row written before anything is sent, with its
-- own identifier (the meter event identifier and idempotency key of what it sends), so a
-- retry sends the very same thing and a crash between the write and Stripe's answer
-- loses nothing.
--
-- How a correction reaches Stripe (method, decided when it is recorded):
-- meter_event: more usage, a new meter event of event_value with this identifier;
-- cancel: less usage, a Meter Event Adjustment cancelling the event cancels_identifier
--   (Stripe cancels only within 24 hours of receiving an event, and only while the
--   invoice is open), then the remainder event_value (the cancelled event's value less
--   the reduction) re-sent as a new meter event with this identifier;
-- credit: less usage the meter can no longer lose, a customer balance transaction of
--   -credit_amount in the plan's currency (the overage it had billed);
-- none: less usage that billed nothing (inside the included quota, or a plan without
--   overage): recorded, nothing to send.

create table public.meter_corrections (
  id bigint generated always as identity primary key,
  -- Copied from the last report of the tenant-period it corrects.
  like private.meter_destination,
  -- adjustment: an operator changes what the period is billed (flowmeter adjust);
  -- repair: Stripe's meter disagreed with what flowmeter billed (reconcile --repair).
  kind text not null constraint meter_corrections_kind_known check (kind in ('adjustment', 'repair')),
  -- Executions added to (positive) or taken from (negative) the period.
  delta bigint not null constraint meter_corrections_delta_nonzero check (delta <> 0),
  reason text not null constraint meter_corrections_reason_length check (length(btrim(reason)) between 1 and 500),
  requested_by text not null constraint meter_corrections_requested_by_length check (length(requested_by) between 1 and 200),
  -- The same request (a retried command, an overlapping reconciliation) is this correction.
  request_key text not null unique constraint meter_corrections_request_key_length check (length(request_key) <= 500),
  -- flowmeter:correction:<md5 of request_key>
  identifier text not null unique constraint meter_corrections_identifier_length check (length(identifier) <= 100),
  method text not null constraint meter_corrections_method_known check (method in ('meter_event', 'cancel', 'credit', 'none')),
  event_value bigint constraint meter_corrections_event_value_positive check (event_value > 0),
  event_timestamp timestamptz,
  -- Each event Stripe holds is cancelled at most once.
  cancels_identifier text unique,
  cancelled_value bigint,
  cancel_sent_at timestamptz,
  -- Minor units of currency, credited (a balance transaction of -credit_amount).
  credit_amount bigint constraint meter_corrections_credit_amount_positive check (credit_amount > 0),
  currency text constraint meter_corrections_currency_format check (currency ~ '^[a-z]{3}$'),
  -- The customer balance transaction (cbtxn_…) a credit became.
  stripe_object_id text,
  -- pending: to send (or to retry); sent: Stripe holds it; recorded: nothing to send (method
  -- none); late: a meter event whose invoice became final before it could be sent, not
  -- sent; review: Stripe's answer to an earlier attempt was lost and can no longer be
  -- replayed, so a person checks Stripe before anything else is sent.
  status text not null default 'pending'
    constraint meter_corrections_status_known check (status in ('pending', 'sent', 'recorded', 'late', 'review')),
  attempts int not null default 0,
  -- An attempt had no answer (network, timeout, 5xx): Stripe may hold what it sent.
  unknown_outcome boolean not null default false,
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  last_error text,
  last_error_kind text
    constraint meter_corrections_last_error_kind_known
      check (last_error_kind in ('auth', 'rate_limited', 'refused', 'unavailable')),
  -- A run sending it holds it until then; another run leaves it alone.
  claimed_until timestamptz,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  foreign key (tenant_id) references public.tenants (id) on delete cascade,
  constraint meter_corrections_method_fields check (
    (method = 'meter_event' and delta > 0 and event_value = delta and event_timestamp is not null
       and cancels_identifier is null and credit_amount is null)
    or (method = 'cancel' and delta < 0 and cancels_identifier is not null
        and cancelled_value = coalesce(event_value, 0) - delta and credit_amount is null)
    or (method = 'credit' and delta < 0 and credit_amount is not null and currency is not null
        and cancels_identifier is null and event_value is null)
    or (method = 'none' and delta < 0 and cancels_identifier is null and event_value is null and credit_amount is null)
  )
);
comment on table public.meter_corrections is 'Outbox of corrections to what Stripe bills a tenant-period: meter events, cancellations and credits, written before sending.';
create index meter_corrections_tenant_period_idx on public.meter_corrections (tenant_id, period_start);
create index meter_corrections_pending_idx on public.meter_corrections (created_at) where status = 'pending';

-- A correction held for review raises meter_correction.review (webhooks), each time it
-- stops for a check in Stripe (attempts differ).
create trigger meter_corrections_review_webhook_event after update on public.meter_corrections
  for each row when (new.status = 'review' and old.status <> 'review')
  execute function private.webhook_on_row('meter_correction.review', 'attempts');

select private.restrict_to_service_role('public.meter_corrections');
select private.grant_member_read('public.meter_corrections', 'id', 'tenant_id', 'period_start', 'period_end',
  'kind', 'delta', 'reason', 'method', 'credit_amount', 'currency', 'status', 'created_at', 'sent_at');
