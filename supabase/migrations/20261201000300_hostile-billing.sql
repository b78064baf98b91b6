-- Hostile billing input: usage is never lost silently, Stripe's answers are read by their
-- codes, test-mode ids are accepted, and a signed Stripe event that cannot be applied is
-- recorded as rejected instead of failing the webhook.
--
-- Holds only objects new or redefined for that; each belongs with its owner:
-- meter_reports (its columns, record_meter_report, private.meter_report_status),
-- stripe_subscriptions (stripe_events, apply_stripe_subscription_event,
-- record_rejected_stripe_event, private.stripe_event_status), tenancy and plans (the id
-- formats), operator (operator_status).

-- Stripe ids: test-mode objects carry `_test_` (mtr_test_…), so an id is a prefix and
-- letters, digits and underscores.

alter table public.plans
  drop constraint plans_stripe_meter_id_format,
  add constraint plans_stripe_meter_id_format check (stripe_meter_id ~ '^mtr_[A-Za-z0-9_]+$');

alter table public.tenants
  drop constraint tenants_stripe_customer_id_format,
  add constraint tenants_stripe_customer_id_format check (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  drop constraint tenants_stripe_subscription_id_format,
  add constraint tenants_stripe_subscription_id_format check (stripe_subscription_id ~ '^sub_[A-Za-z0-9_]+$');

-- Meter reports: what kind of failure the last attempt met, and when ------------------

alter table public.meter_reports
  -- auth: Stripe refused the key; rate_limited: 429 past what the run could wait; refused:
  -- another 4xx (this report's data); unavailable: no answer or a 5xx. Null after a success.
  add column last_error_kind text
    constraint meter_reports_last_error_kind_known
      check (last_error_kind in ('auth', 'rate_limited', 'refused', 'unavailable')),
  add column last_attempt_at timestamptz;

drop function public.record_meter_report(bigint, text, text);

-- Records what happened to one report: sent, late (not sendable any more: its invoice is
-- final or it is older than Stripe accepts; error says why), or a failed attempt (stays
-- pending, retried with the same identifier and value; error_kind says what kind).
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
  if record_meter_report.outcome not in ('sent', 'late', 'failed') then
    raise exception 'outcome must be sent, late or failed (got %)', record_meter_report.outcome;
  end if;
  update public.meter_reports r set
    status = case record_meter_report.outcome when 'failed' then r.status else record_meter_report.outcome end,
    attempts = r.attempts + 1,
    last_error = case when record_meter_report.outcome = 'sent' then null
                      else left(coalesce(record_meter_report.error, r.last_error), 2000) end,
    last_error_kind = case when record_meter_report.outcome = 'failed'
                           then coalesce(record_meter_report.error_kind, 'unavailable') end,
    last_attempt_at = now(),
    sent_at = case when record_meter_report.outcome = 'sent' then now() else r.sent_at end
  where r.id = record_meter_report.id and r.status = 'pending'
  returning r.* into report;
  return report;
end;
$$;

revoke execute on function public.record_meter_report(bigint, text, text, text) from public, anon, authenticated;
grant execute on function public.record_meter_report(bigint, text, text, text) to service_role;

-- A report that failed this many times (each run tries it once or more) is failing, not
-- unlucky; a refused key is failing from its first answer.
create or replace function private.meter_report_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with reports as (
    select r.* from public.meter_reports r
    where r.status in ('pending', 'late')
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
    'late', (select count(*) from reports where status = 'late'),
    'late_value', (select coalesce(sum(value), 0) from reports where status = 'late'),
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
    'auth_error', (select a.last_error from auth a)
  );
$$;

revoke all on function private.meter_report_status(uuid[]) from public, anon, authenticated;
grant execute on function private.meter_report_status(uuid[]) to service_role;

-- Stripe events: rejected ones are recorded too ----------------------------------------

-- A rejected event is recorded with what could be read of it: a malformed one may lack a
-- type or a created time.
alter table public.stripe_events
  alter column type drop not null,
  alter column created drop not null,
  drop constraint stripe_events_outcome_known,
  -- rejected: correctly signed but not applicable (malformed, an unknown subscription
  -- status, ids Stripe does not issue, a customer linked to another tenant); detail says
  -- why. Re-processed if Stripe delivers it again, like unknown_tenant.
  add constraint stripe_events_outcome_known
    check (outcome in ('applied', 'stale', 'superseded', 'unknown_tenant', 'rejected')),
  add constraint stripe_events_type_and_created_known
    check (outcome = 'rejected' or (type is not null and created is not null));

create index stripe_events_rejected_idx on public.stripe_events (received_at) where outcome = 'rejected';

-- Applies one customer.subscription.* event to the tenant it belongs to, in one transaction.
--
-- The tenant is the one holding the subscription id, else the customer id, else tenant_hint
-- (the subscription's metadata.flowmeter_tenant_id). Returns {outcome, ...}; outcome is
-- applied, stale, superseded, unknown_tenant (each recorded in stripe_events) or duplicate
-- (the event was recorded before; nothing changes).
--
-- Ordering: an event created before the one the tenant holds is stale. Stripe's `created`
-- has one-second resolution; within the same second a later kind of event wins
-- (created < updated < deleted), and two updates apply in arrival order.
create or replace function public.apply_stripe_subscription_event(
  event_id text,
  event_type text,
  event_created timestamptz,
  subscription_id text,
  customer_id text,
  status text,
  price_ids text[],
  period_start timestamptz,
  period_end timestamptz,
  -- Defaults so that supabase-js callers may leave them out (generated types make every
  -- argument without a default required and non-null).
  trial_end timestamptz default null,
  tenant_hint uuid default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  evt text := apply_stripe_subscription_event.event_id;
  kind text := apply_stripe_subscription_event.event_type;
  event_at timestamptz := apply_stripe_subscription_event.event_created;
  sub text := apply_stripe_subscription_event.subscription_id;
  cus text := apply_stripe_subscription_event.customer_id;
  prices text[] := apply_stripe_subscription_event.price_ids;
  hint uuid := apply_stripe_subscription_event.tenant_hint;
  new_status text := case when apply_stripe_subscription_event.event_type = 'customer.subscription.deleted'
                          then 'canceled' else apply_stripe_subscription_event.status end;
  terminal constant text[] := array['canceled', 'incomplete_expired'];
  t public.tenants;
  held_type text;
  mapped_plan text;
  unmapped text[];
  result_outcome text;
  result_detail text;
  recorded boolean;
begin
  if evt is null or evt !~ '^evt_[A-Za-z0-9_]+$' then
    raise exception 'event_id must be a Stripe event id (evt_…), got %', coalesce(quote_literal(evt), 'null');
  end if;
  if kind is null or kind !~ '^customer\.subscription\.[a-z_]+$' then
    raise exception 'event_type must be a customer.subscription.* event type, got %', coalesce(quote_literal(kind), 'null');
  end if;
  if event_at is null then
    raise exception 'event_created is required (the event''s created time)';
  end if;
  if sub is null or sub !~ '^sub_[A-Za-z0-9_]+$' then
    raise exception 'subscription_id must be a Stripe subscription id (sub_…), got %', coalesce(quote_literal(sub), 'null');
  end if;
  if cus is null or cus !~ '^cus_[A-Za-z0-9_]+$' then
    raise exception 'customer_id must be a Stripe customer id (cus_…), got %', coalesce(quote_literal(cus), 'null');
  end if;
  if new_status is null or new_status not in (
    'trialing', 'active', 'past_due', 'unpaid', 'canceled', 'incomplete', 'incomplete_expired', 'paused'
  ) then
    raise exception 'status must be a Stripe subscription status (trialing, active, past_due, unpaid, canceled, incomplete, incomplete_expired, paused), got %',
      coalesce(quote_literal(new_status), 'null');
  end if;
  if prices is null or array_position(prices, null) is not null then
    raise exception 'price_ids must be an array of the subscription items'' price ids, without nulls';
  end if;
  if apply_stripe_subscription_event.period_start is null or apply_stripe_subscription_event.period_end is null then
    raise exception 'period_start and period_end are required (the subscription items'' current period)';
  end if;
  if apply_stripe_subscription_event.period_end <= apply_stripe_subscription_event.period_start then
    raise exception 'period_end (%) must be after period_start (%)',
      apply_stripe_subscription_event.period_end, apply_stripe_subscription_event.period_start;
  end if;

  -- Find the tenant and lock it: events for one tenant apply one at a time, each seeing the
  -- state the previous one left.
  select * into t from public.tenants x where x.stripe_subscription_id = sub for update;
  if not found then
    select * into t from public.tenants x where x.stripe_customer_id = cus for update;
  end if;
  if not found and hint is not null then
    select * into t from public.tenants x where x.id = hint for update;
  end if;

  if t.id is null then
    result_outcome := 'unknown_tenant';
    result_detail := format(
      'no tenant holds subscription %s or customer %s, and %s',
      sub, cus,
      case when hint is null then 'the subscription has no metadata.flowmeter_tenant_id'
           else format('metadata.flowmeter_tenant_id %s names no tenant', hint) end
    );
  elsif t.stripe_synced_at > event_at then
    result_outcome := 'stale';
    result_detail := format('the tenant holds the state of an event created at %s', t.stripe_synced_at);
  else
    if t.stripe_synced_at = event_at then
      select e.type into held_type from public.stripe_events e
      where e.tenant_id = t.id and e.outcome = 'applied' and e.created = t.stripe_synced_at
      order by e.received_at desc
      limit 1;
    end if;
    if held_type is not null and private.subscription_event_rank(held_type) > private.subscription_event_rank(kind) then
      result_outcome := 'stale';
      result_detail := format('the tenant holds the state of a %s event created in the same second', held_type);
    elsif t.stripe_subscription_id is distinct from sub
          and t.stripe_subscription_id is not null
          and t.subscription_status <> all (terminal)
          and new_status = any (terminal) then
      result_outcome := 'superseded';
      result_detail := format('subscription %s ended; the tenant''s subscription is %s (%s)',
                              sub, t.stripe_subscription_id, t.subscription_status);
    else
      result_outcome := 'applied';
    end if;
  end if;

  if result_outcome = 'applied' then
    select pp.plan_id into mapped_plan
    from unnest(prices) with ordinality as u(price_id, ord)
    join public.plan_prices pp on pp.stripe_price_id = u.price_id
    order by u.ord
    limit 1;
    if mapped_plan is null then
      unmapped := prices;
      result_detail := format('unmapped_price: no plan for %s; the plan was kept',
                              coalesce(nullif(array_to_string(prices, ', '), ''), 'a subscription without prices'));
    end if;
    if exists (
      select 1 from public.tenants x
      where x.id <> t.id and (x.stripe_customer_id = cus or x.stripe_subscription_id = sub)
    ) then
      raise exception 'Stripe customer % or subscription % is already linked to another tenant than %', cus, sub, t.id
        using hint = 'Each Stripe customer and subscription belongs to one tenant; unlink it from the other tenant first.';
    end if;
  end if;

  -- Record the event once. A delivery of an event already recorded changes nothing, except
  -- one that found no tenant or was rejected before: that one is looked at again, so the
  -- operator can link the tenant (or deploy a fix) and resend the event from the Stripe
  -- dashboard.
  insert into public.stripe_events as e (id, type, created, outcome, tenant_id, detail)
  values (evt, kind, event_at, result_outcome, t.id, result_detail)
  on conflict on constraint stripe_events_pkey do update set
    type = excluded.type,
    created = excluded.created,
    outcome = excluded.outcome,
    tenant_id = excluded.tenant_id,
    detail = excluded.detail,
    received_at = now()
  where e.outcome in ('unknown_tenant', 'rejected')
  returning true into recorded;
  if recorded is null then
    return jsonb_build_object('outcome', 'duplicate');
  end if;

  if result_outcome = 'applied' then
    update public.tenants x set
      subscription_status = new_status,
      stripe_customer_id = cus,
      stripe_subscription_id = sub,
      current_period_start = apply_stripe_subscription_event.period_start,
      current_period_end = apply_stripe_subscription_event.period_end,
      trial_ends_at = apply_stripe_subscription_event.trial_end,
      plan_id = coalesce(mapped_plan, x.plan_id),
      stripe_synced_at = event_at
    where x.id = t.id
    returning * into t;
    return jsonb_build_object(
      'outcome', 'applied',
      'tenant_id', t.id,
      'plan_id', t.plan_id,
      'subscription_status', t.subscription_status,
      'unmapped_price_ids', to_jsonb(unmapped)
    );
  end if;

  return jsonb_build_object('outcome', result_outcome, 'tenant_id', t.id, 'detail', result_detail);
end;
$$;

revoke execute on function
  public.apply_stripe_subscription_event(text, text, timestamptz, text, text, text, text[], timestamptz, timestamptz, timestamptz, uuid)
  from public, anon, authenticated;
grant execute on function
  public.apply_stripe_subscription_event(text, text, timestamptz, text, text, text, text[], timestamptz, timestamptz, timestamptz, uuid)
  to service_role;

-- Records a correctly signed event that cannot be applied, with the reason, so that the
-- webhook answers Stripe without an error (a 5xx would be retried for days, to the same
-- end) and the operator sees it. Returns {outcome: rejected} or, when the event was
-- recorded with another outcome before, {outcome: duplicate} and changes nothing.
create or replace function public.record_rejected_stripe_event(
  event_id text,
  reason text,
  event_type text default null,
  event_created timestamptz default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  recorded boolean;
begin
  if record_rejected_stripe_event.event_id is null or record_rejected_stripe_event.event_id !~ '^evt_[A-Za-z0-9_]+$' then
    raise exception 'event_id must be a Stripe event id (evt_…), got %',
      coalesce(quote_literal(record_rejected_stripe_event.event_id), 'null');
  end if;
  if coalesce(record_rejected_stripe_event.reason, '') = '' then
    raise exception 'reason is required: say why the event cannot be applied';
  end if;
  insert into public.stripe_events as e (id, type, created, outcome, detail)
  values (record_rejected_stripe_event.event_id, left(record_rejected_stripe_event.event_type, 200),
          record_rejected_stripe_event.event_created, 'rejected', left(record_rejected_stripe_event.reason, 2000))
  on conflict on constraint stripe_events_pkey do update set
    type = excluded.type,
    created = excluded.created,
    outcome = 'rejected',
    tenant_id = null,
    detail = excluded.detail,
    received_at = now()
  where e.outcome in ('unknown_tenant', 'rejected')
  returning true into recorded;
  return jsonb_build_object('outcome', case when recorded then 'rejected' else 'duplicate' end);
end;
$$;

revoke execute on function public.record_rejected_stripe_event(text, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.record_rejected_stripe_event(text, text, text, timestamptz) to service_role;

-- Rejected events Stripe still holds (it keeps events 30 days, so they can be resent from
-- the Dashboard): until one is resent and applies, its subscription's state is not synced.
-- A rejected event names no tenant for certain, so a view limited to some tenants
-- (tenant_ids) shows none.
create or replace function private.stripe_event_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with rejected as (
    select e.* from public.stripe_events e
    where stripe_event_status.tenant_ids is null
      and e.outcome = 'rejected' and e.received_at > now() - interval '30 days'
  )
  select jsonb_build_object(
    'rejected', (select count(*) from rejected),
    'last_rejected_at', (select max(received_at) from rejected),
    'last_rejected_id', (select r.id from rejected r order by r.received_at desc, r.id desc limit 1),
    'last_reason', (select r.detail from rejected r order by r.received_at desc, r.id desc limit 1)
  );
$$;

revoke all on function private.stripe_event_status(uuid[]) from public, anon, authenticated;
grant execute on function private.stripe_event_status(uuid[]) to service_role;

-- Status ------------------------------------------------------------------------------

-- One snapshot for the operator's status screen: the sources most in need of attention
-- (failing first, then the longest lag), Stripe reports not sent yet (and whether sending
-- fails), Stripe webhook events rejected, alert deliveries not
-- delivered, the latest collector runs, and each scheduled function's latest run with how
-- many have failed since its last success (runs and functions are not per tenant).
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
               latest.ok as last_ok, latest.error as last_error,
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
