-- Billing: which Stripe price means which plan, every Stripe event seen, the outbox of
-- usage reported to Stripe Billing Meters, and what reconciliation found.

-- Stripe subscription sync (stripe_subscription_functions): a tenant's plan, status and
-- billing period follow its Stripe subscription, from the customer.subscription.*
-- webhooks. Every event id is recorded once (a replay changes nothing), each subscription
-- keeps the state of its newest event (stripe_subscriptions), and the tenant row holds the
-- state of one of its subscriptions. The tables are service-only: tenant members read the
-- result on tenants.

-- Which Stripe price means which plan -------------------------------------------------

create table public.plan_prices (
  stripe_price_id text primary key
    constraint plan_prices_stripe_price_id_format check (stripe_price_id ~ '^price_[A-Za-z0-9_]+$'),
  plan_id text not null references public.plans (id) on delete cascade,
  created_at timestamptz not null default now()
);
comment on table public.plan_prices is 'Stripe prices and the plan each stands for; a subscription takes the plan of its first mapped price.';

create index plan_prices_plan_id_idx on public.plan_prices (plan_id);

-- Every Stripe event seen -------------------------------------------------------------

create table public.stripe_events (
  id text primary key
    constraint stripe_events_id_format check (id ~ '^evt_[A-Za-z0-9_]+$'),
  -- Null only for a rejected event: a malformed one may lack a type or a created time.
  type text,
  -- When Stripe created the event (its `created`), not when it arrived.
  created timestamptz,
  received_at timestamptz not null default now(),
  -- applied: the tenant now holds this event's state; stale: its subscription already held
  -- a newer state, or had been deleted; superseded: its subscription took the state, but
  -- the tenant's subscription is another one; unknown_tenant: no tenant matched; rejected:
  -- correctly signed but not applicable
  -- (malformed, an unknown subscription status, ids Stripe does not issue, a customer
  -- linked to another tenant), detail says why. unknown_tenant and rejected events are
  -- re-processed if Stripe delivers them again.
  outcome text not null
    constraint stripe_events_outcome_known
      check (outcome in ('applied', 'stale', 'superseded', 'unknown_tenant', 'rejected')),
  tenant_id uuid references public.tenants (id) on delete set null,
  detail text,
  -- A subscription event's customer and prices, whatever its outcome: for an event that
  -- found no tenant, who bought which plan without a tenant to bill (stripe_event_status).
  customer_id text
    constraint stripe_events_customer_id_format check (customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  price_ids text[],
  constraint stripe_events_type_and_created_known
    check (outcome = 'rejected' or (type is not null and created is not null))
);
comment on table public.stripe_events is 'Each Stripe webhook event processed, once, with what it did; for idempotency and for the operator.';

create index stripe_events_tenant_id_idx on public.stripe_events (tenant_id);
create index stripe_events_rejected_idx on public.stripe_events (received_at) where outcome = 'rejected';
create index stripe_events_customer_id_idx on public.stripe_events (customer_id, created desc);

-- Each subscription of a tenant as its newest event describes it. Stripe does not deliver
-- a subscription's events in order, so each one's state is ordered by its own events, and
-- the tenant holds one of them (apply_stripe_subscription_event): the newest live one,
-- else the newest. The tenant's older subscription that is still live is here when a
-- newer one ends, and a deletion stays final when the subscription's earlier events
-- arrive after it.
create table public.stripe_subscriptions (
  id text primary key
    constraint stripe_subscriptions_id_format check (id ~ '^sub_[A-Za-z0-9_]+$'),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  customer_id text not null
    constraint stripe_subscriptions_customer_id_format check (customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  -- When Stripe created the subscription (its `created`): of two live ones the later is
  -- the tenant's.
  created timestamptz not null,
  status text not null
    constraint stripe_subscriptions_status_known check (status in (
      'trialing', 'active', 'past_due', 'unpaid', 'canceled', 'incomplete', 'incomplete_expired', 'paused'
    )),
  price_ids text[] not null,
  period_start timestamptz not null,
  period_end timestamptz not null,
  trial_end timestamptz,
  -- The event whose state the row holds: when Stripe created it, and its type (within
  -- one second a later kind wins).
  synced_at timestamptz not null,
  synced_type text not null
    constraint stripe_subscriptions_synced_type_known check (synced_type in (
      'customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted'
    )),
  constraint stripe_subscriptions_period_ordered check (period_end > period_start),
  constraint stripe_subscriptions_deleted_is_canceled
    check (synced_type <> 'customer.subscription.deleted' or status = 'canceled')
);
comment on table public.stripe_subscriptions is 'Each Stripe subscription of a tenant, in the state of its newest event; the tenant holds its newest live one, else its newest.';

create index stripe_subscriptions_tenant_id_idx on public.stripe_subscriptions (tenant_id);

select private.restrict_to_service_role('public.plan_prices', 'public.stripe_events', 'public.stripe_subscriptions');

-- Meter reports (meter_report_functions): usage reported to Stripe Billing Meters
-- through a ledger (outbox). Stripe never over-bills: every report is a delta recorded
-- here, with a deterministic identifier, before it is sent. A retry re-sends the same
-- identifier and value (Stripe de-duplicates identifiers for at least 24 hours), so
-- Σ reported = Σ billable per tenant-period, whatever fails between the ledger write and
-- Stripe's answer.

-- Where a delta lands in Stripe: the tenant-period it bills, the customer and the meter
-- event name. A correction goes where the report it corrects went, so meter_reports and
-- meter_corrections take these columns with `like private.meter_destination` (their
-- foreign key on tenant_id is their own: like copies none); it holds no rows itself.
create table private.meter_destination (
  tenant_id uuid not null,
  period_start timestamptz not null,
  period_end timestamptz not null,
  stripe_customer_id text not null,
  event_name text not null
);
comment on table private.meter_destination is 'The columns meter_reports and meter_corrections share (like …); never written.';
revoke all on table private.meter_destination from public, anon, authenticated, service_role;

create table public.meter_reports (
  id bigint generated always as identity primary key,
  like private.meter_destination,
  -- The tenant-period's billable count this report brings Stripe's total up to.
  reported_through bigint not null,
  value bigint not null constraint meter_reports_value_positive check (value > 0),
  -- flowmeter:<tenant id>:<period start, Unix seconds>:<reported_through>; the same delta
  -- always gets the same identifier.
  identifier text not null unique
    constraint meter_reports_identifier_length check (length(identifier) <= 100),
  -- Inside the period it bills: now, but no later than the second before the period's last
  -- whole minute (private.meter_event_stamp), so that a minute-aligned summary finds it.
  event_timestamp timestamptz not null,
  -- pending: to send (or to retry); sent: Stripe accepted it; late: its period's invoice is
  -- final (or the timestamp is older than Stripe accepts), so it is not sent — the
  -- operator sees it and decides; review: an attempt's answer was lost longer ago than
  -- Stripe surely de-duplicates its identifier (24 hours), so a resend could bill it twice:
  -- nothing is sent until a person has checked Stripe (resolve_meter_report).
  status text not null default 'pending'
    constraint meter_reports_status_known check (status in ('pending', 'sent', 'late', 'review')),
  attempts int not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  -- What kind of failure the last attempt met: auth: Stripe refused the key; rate_limited:
  -- 429 past what the run could wait; refused: another 4xx (this report's data);
  -- unavailable: no answer or a 5xx. Null after a success.
  last_error_kind text
    constraint meter_reports_last_error_kind_known
      check (last_error_kind in ('auth', 'rate_limited', 'refused', 'unavailable')),
  last_attempt_at timestamptz,
  -- An attempt had no answer (network, timeout, the run's cut, 5xx): Stripe may hold the
  -- event. Cleared when Stripe answers that it holds it. A report late with this set may
  -- be on the invoice: status says to check Stripe before billing it by hand.
  unknown_outcome boolean not null default false,
  -- When the first attempt without an answer was made: Stripe can have taken the event no
  -- earlier, so it de-duplicates the identifier for at least 24 hours from then.
  unanswered_since timestamptz,
  constraint meter_reports_unanswered_since_known check (unknown_outcome = (unanswered_since is not null)),
  foreign key (tenant_id) references public.tenants (id) on delete cascade,
  unique (tenant_id, period_start, reported_through)
);
comment on table public.meter_reports is 'Outbox of usage deltas for Stripe Billing Meters; written before sending, never changed in value.';
create index meter_reports_pending_idx on public.meter_reports (created_at) where status = 'pending';
create index meter_reports_tenant_period_idx on public.meter_reports (tenant_id, period_start);

select private.restrict_to_service_role('public.meter_reports');
select private.grant_member_read('public.meter_reports', 'id', 'tenant_id', 'period_start', 'period_end',
  'reported_through', 'value', 'event_timestamp', 'status', 'created_at', 'sent_at');

-- Reconciliation (meter_report_functions): prove counters = raw rows, and what we
-- reported = what Stripe holds. Findings are recorded where the operator sees them;
-- counters are repaired only when asked, and a repair is itself a finding.

create table public.reconciliation_findings (
  id bigint generated always as identity primary key,
  -- counter_drift: usage_counters disagree with the raw executions;
  -- stripe_drift: Stripe's meter event summary disagrees with the reports it accepted;
  -- invoice_preview_drift: Stripe's upcoming invoice bills the usage differently from
  -- flowmeter's estimate for what was reported (invoice_preview_functions).
  kind text not null constraint reconciliation_findings_kind_known
    check (kind in ('counter_drift', 'stripe_drift', 'invoice_preview_drift')),
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

select private.restrict_to_service_role('public.reconciliation_findings');
