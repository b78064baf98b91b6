-- Outbound webhooks (Standard Webhooks): the operator's endpoints with their signing
-- secrets, the outbox of events, and one delivery per event and endpoint.
--
-- An event is recorded in the transaction of the change that causes it (the triggers at
-- the end of this file, and enforce_usage), with a key that makes a second recording of
-- the same cause impossible. Its body, the exact bytes that are signed and sent, is
-- fixed at insert: nobody may update an event, so every attempt for one webhook-id sends
-- the same body. Recording an event creates a delivery for every enabled endpoint
-- subscribed to its type; deliver-webhooks claims due deliveries under a lease, signs
-- with every valid secret and records the outcome, retried with backoff over a day (a
-- delivery outbox, delivery_outbox).
-- Everything here is the operator's: service only, no tenant reads it.

-- Endpoints -----------------------------------------------------------------------------

create table public.webhook_endpoints (
  id uuid primary key,
  -- Checked by the application (https, public hosts only outside local mode) before it
  -- gets here, and again before every send.
  url text not null
    constraint webhook_endpoints_url_format check (url ~ '^https?://[^/\s?#@]+' and length(url) <= 2000),
  description text
    constraint webhook_endpoints_description_length check (length(description) between 1 and 500),
  event_types text[] not null
    constraint webhook_endpoints_event_types_known check (
      cardinality(event_types) > 0 and event_types <@ array[
        'usage.threshold_crossed', 'tenant.blocked', 'source.failing', 'source.recovered',
        'collection.gap_recorded', 'meter_report.failed', 'meter_report.late',
        'meter_report.review', 'meter_correction.review',
        'reconciliation.drift_found', 'subscription.changed', 'webhook.test'
      ]::text[]
    ),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.webhook_endpoints is 'The operator''s webhook receivers and the event types each subscribes to.';

create trigger webhook_endpoints_touch_updated_at before update on public.webhook_endpoints
  for each row execute function private.touch_updated_at();

-- Rotation adds a secret and gives the ones before it an expiry: until then every attempt
-- carries one signature per valid secret, so a receiver verifies with either.
create table public.webhook_endpoint_secrets (
  id bigint generated always as identity primary key,
  endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
  -- whsec_…, encrypted by the application (AES-256-GCM bound to the endpoint, src/crypto);
  -- the database never sees the plaintext or the key.
  secret_ciphertext text not null
    constraint webhook_endpoint_secrets_ciphertext_format check (secret_ciphertext ~ '^fm1\.'),
  created_at timestamptz not null default now(),
  -- null: the current secret; else it stops signing at this time.
  expires_at timestamptz
);
comment on table public.webhook_endpoint_secrets is 'Signing secrets of webhook endpoints, encrypted; rotated ones expire after a grace period.';
create index webhook_endpoint_secrets_endpoint_idx on public.webhook_endpoint_secrets (endpoint_id, id);

-- Events (the outbox) -----------------------------------------------------------------

create table public.webhook_events (
  -- webhook-id: the same on every attempt and for every endpoint.
  id text primary key default ('msg_' || replace(gen_random_uuid()::text, '-', ''))
    constraint webhook_events_id_format check (id ~ '^msg_[0-9a-f]{32}$'),
  type text not null
    constraint webhook_events_type_known check (type in (
      'usage.threshold_crossed', 'tenant.blocked', 'source.failing', 'source.recovered',
      'collection.gap_recorded', 'meter_report.failed', 'meter_report.late',
      'meter_report.review', 'meter_correction.review',
      'reconciliation.drift_found', 'subscription.changed', 'webhook.test'
    )),
  -- What caused the event (e.g. usage.threshold_crossed:<alert id>): one event per cause.
  idempotency_key text not null
    constraint webhook_events_idempotency_key_unique unique
    constraint webhook_events_idempotency_key_length check (length(idempotency_key) between 1 and 300),
  tenant_id uuid references public.tenants (id) on delete cascade,
  payload jsonb not null,
  -- {"data": payload, "type": …, "timestamp": …} as text: the signed bytes, never re-rendered.
  body text not null,
  created_at timestamptz not null default now()
);
comment on table public.webhook_events is 'Outbox of webhook events; each is written once, in the transaction of its cause, and never changed.';
create index webhook_events_tenant_idx on public.webhook_events (tenant_id);
create index webhook_events_created_idx on public.webhook_events (created_at);

-- Deliveries ------------------------------------------------------------------------------

create table public.webhook_deliveries (
  event_id text not null references public.webhook_events (id) on delete cascade,
  endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
  -- status, attempts, the lease and the schedule, claimed and finished as every outbox is.
  like private.delivery_outbox including all,
  -- The receiver's HTTP status on the last attempt; null when it never answered.
  last_status int,
  primary key (event_id, endpoint_id)
);
comment on table public.webhook_deliveries is 'One row per webhook event and endpoint: at least once, retried with backoff, given up after the last attempt.';

create index webhook_deliveries_endpoint_idx on public.webhook_deliveries (endpoint_id, status);

-- Privileges and row-level security ---------------------------------------------------

select private.restrict_to_service_role('public.webhook_endpoints', 'public.webhook_endpoint_secrets',
  'public.webhook_events', 'public.webhook_deliveries');
-- An event's body is what every attempt signs: written once, never updated.
revoke all on table public.webhook_events from service_role;
grant select, insert, delete on table public.webhook_events to service_role;

-- Status -------------------------------------------------------------------------------

-- What operator_status shows of webhooks (here rather than with the webhook functions:
-- operator_status, created before those, calls it). Enabled endpoints with deliveries
-- failing (retried later) or given up, and deliveries to enabled endpoints never attempted
-- (how many, since when); tenant_ids limits them to those tenants' events.
create or replace function private.webhook_delivery_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with failed as (
    select d.*, ep.url from public.webhook_deliveries d
    join public.webhook_endpoints ep on ep.id = d.endpoint_id
    where ep.enabled and d.status = 'failed'
      and (webhook_delivery_status.tenant_ids is null or exists (
        select 1 from public.webhook_events e
        where e.id = d.event_id and e.tenant_id = any (webhook_delivery_status.tenant_ids)))
  )
  , unattempted as (
    -- Pending on an enabled endpoint: never attempted (a hand-back leaves it so, too).
    select d.created_at from public.webhook_deliveries d
    join public.webhook_endpoints ep on ep.id = d.endpoint_id
    where ep.enabled and d.status = 'pending'
      and (webhook_delivery_status.tenant_ids is null or exists (
        select 1 from public.webhook_events e
        where e.id = d.event_id and e.tenant_id = any (webhook_delivery_status.tenant_ids)))
  )
  select jsonb_build_object(
    'retrying', (select count(*) from failed where next_attempt_at is not null),
    'given_up', (select count(*) from failed where next_attempt_at is null),
    'unattempted', (select count(*) from unattempted),
    'oldest_unattempted_at', (select min(created_at) from unattempted),
    'failing_endpoints', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.given_up desc, x.retrying desc, x.id)
      from (
        select f.endpoint_id as id, f.url,
               count(*) filter (where f.next_attempt_at is not null) as retrying,
               count(*) filter (where f.next_attempt_at is null) as given_up,
               (array_agg(f.last_error order by f.last_attempt_at desc nulls last))[1] as last_error
        from failed f
        group by f.endpoint_id, f.url
      ) x
    ), '[]'::jsonb)
  );
$$;
select private.grant_to_service_role_only('private.webhook_delivery_status(uuid[])');

-- Events raised by other tables' changes -------------------------------------------------
--
-- Each trigger records its event through private.record_webhook_event (webhook
-- functions) in the transaction of the change. The WHEN clauses keep the triggers off the
-- writes that cannot raise an event, so the collector and the reporter pay nothing for
-- the updates they make on every page and attempt.

-- The tenant an event is about, as the operator's systems name it.
create or replace function private.webhook_tenant(tenant_id uuid)
returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object('id', t.id, 'external_ref', t.external_ref, 'name', t.name)
  from public.tenants t where t.id = webhook_tenant.tenant_id;
$$;
select private.grant_to_service_role_only('private.webhook_tenant(uuid)');

-- The event of a row a table gains (or that changes as the trigger says): its payload is
-- the row as stored, with the tenant named as the operator's systems name it; its key is
-- the event type and the row's id, so one row raises each type of event once, or once
-- per value of a column named in TG_ARGV[1] (a row that can enter a state again).
-- TG_ARGV[0]: the event type.
create or replace function private.webhook_on_row()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  stored jsonb := to_jsonb(new);
begin
  perform private.record_webhook_event(
    tg_argv[0],
    tg_argv[0] || ':' || new.id || coalesce(':' || (stored ->> tg_argv[1]), ''),
    new.tenant_id,
    jsonb_build_object('tenant', private.webhook_tenant(new.tenant_id)) || (stored - 'tenant_id'));
  return null;
end;
$$;

-- A source is failing from its first failed attempt after a success (as status counts
-- it), and recovered at its first success after that.
create or replace function private.webhook_on_source_health()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  source public.n8n_sources;
  failing boolean := new.consecutive_failures > 0;
  kind text := case when new.consecutive_failures > 0 then 'source.failing' else 'source.recovered' end;
begin
  select * into source from public.n8n_sources s where s.id = new.source_id;
  perform private.record_webhook_event(
    kind, kind || ':' || new.source_id || ':' || txid_current(), source.tenant_id,
    jsonb_build_object(
      'tenant', private.webhook_tenant(source.tenant_id),
      'source', jsonb_build_object('id', source.id, 'name', source.name, 'base_url', source.base_url),
      'consecutive_failures', new.consecutive_failures,
      'error', case when failing then new.last_error end,
      'failing_since', case when failing then new.last_error_at else old.last_error_at end,
      'last_success_at', new.last_success_at));
  return null;
end;
$$;

-- A Stripe subscription event that changed what the tenant is billed on (stripe_synced_at
-- moves only with Stripe's events, so operator edits of the plan do not count).
create or replace function private.webhook_on_subscription_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform private.record_webhook_event(
    'subscription.changed', 'subscription.changed:' || new.id || ':' || txid_current(), new.id,
    jsonb_build_object(
      'tenant', private.webhook_tenant(new.id),
      'stripe_subscription_id', new.stripe_subscription_id,
      'stripe_customer_id', new.stripe_customer_id,
      'status', new.subscription_status, 'plan_id', new.plan_id,
      'current_period_start', new.current_period_start, 'current_period_end', new.current_period_end,
      'trial_ends_at', new.trial_ends_at,
      'previous', jsonb_build_object('status', old.subscription_status, 'plan_id', old.plan_id)));
  return null;
end;
$$;
revoke all on function private.webhook_on_row(), private.webhook_on_source_health(),
  private.webhook_on_subscription_change() from public;

-- Which change raises which event.

create trigger usage_alerts_webhook_event after insert on public.usage_alerts
  for each row execute function private.webhook_on_row('usage.threshold_crossed');

create trigger collector_source_state_webhook_event after update of consecutive_failures
  on public.collector_source_state
  for each row when ((old.consecutive_failures > 0) is distinct from (new.consecutive_failures > 0))
  execute function private.webhook_on_source_health();

create trigger collection_gaps_webhook_event after insert on public.collection_gaps
  for each row execute function private.webhook_on_row('collection.gap_recorded');

-- A report is late once (recorded late, or found late when sent); it is failed once, when
-- it is failing as status counts it: its third failed attempt, or Stripe refusing the key.
create trigger meter_reports_late_webhook_event_on_insert after insert on public.meter_reports
  for each row when (new.status = 'late')
  execute function private.webhook_on_row('meter_report.late');

create trigger meter_reports_late_webhook_event after update on public.meter_reports
  for each row when (new.status = 'late' and old.status <> 'late')
  execute function private.webhook_on_row('meter_report.late');

-- A report is held for review each time it stops for a check in Stripe: resolved as not
-- held, it is sent again, and can be held again after a later attempt (attempts differ).
create trigger meter_reports_review_webhook_event after update on public.meter_reports
  for each row when (new.status = 'review' and old.status <> 'review')
  execute function private.webhook_on_row('meter_report.review', 'attempts');

create trigger meter_reports_failed_webhook_event after update on public.meter_reports
  for each row when (
    new.status = 'pending' and new.last_error_kind is not null
    and ((new.attempts >= 3 and old.attempts < 3)
         or (new.last_error_kind = 'auth' and old.last_error_kind is distinct from 'auth'))
  )
  execute function private.webhook_on_row('meter_report.failed');

create trigger reconciliation_findings_webhook_event after insert on public.reconciliation_findings
  for each row execute function private.webhook_on_row('reconciliation.drift_found');

create trigger tenants_webhook_subscription_event after update on public.tenants
  for each row when (
    new.stripe_synced_at is distinct from old.stripe_synced_at
    and (new.subscription_status, new.plan_id, new.stripe_subscription_id,
         new.current_period_start, new.current_period_end, new.trial_ends_at)
        is distinct from
        (old.subscription_status, old.plan_id, old.stripe_subscription_id,
         old.current_period_start, old.current_period_end, old.trial_ends_at)
  )
  execute function private.webhook_on_subscription_change();
