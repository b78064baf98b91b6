-- Subscription sync: a tenant's plan, status and billing period follow its Stripe
-- subscription, from the customer.subscription.* webhooks.
--
-- Stripe delivers events at least once and in no particular order. Every event id is
-- recorded once (a replay changes nothing), and each subscription remembers the `created`
-- time of the event whose state it holds, so an older event arriving late cannot overwrite
-- a newer state; the tenant holds the state of one of its subscriptions. A correctly
-- signed event that cannot be applied is recorded as rejected, with the reason, for the
-- operator. The tables are service-only: tenant members read the result on tenants.

-- Refuses what is not an id Stripe issues: `argument` must be a Stripe <kind> id (<prefix>_…).
create or replace function private.require_stripe_id(argument text, kind text, prefix text, value text)
returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  if require_stripe_id.value is null or require_stripe_id.value !~ ('^' || require_stripe_id.prefix || '_[A-Za-z0-9_]+$') then
    raise exception '% must be a Stripe % id (%_…), got %', require_stripe_id.argument, require_stripe_id.kind,
      require_stripe_id.prefix, coalesce(quote_literal(require_stripe_id.value), 'null');
  end if;
end;
$$;

-- Records a Stripe event once, with what it did; true when it was recorded now. A delivery
-- of an event already recorded changes nothing, except one that found no tenant or was
-- rejected before: that one is looked at again, so the operator can link the tenant (or
-- deploy a fix) and resend the event from the Stripe dashboard. customer_id and price_ids
-- are a subscription event's (null for a rejected one).
create or replace function private.record_stripe_event(
  id text, type text, created timestamptz, outcome text, tenant_id uuid, detail text,
  customer_id text default null, price_ids text[] default null
)
returns boolean
language sql
set search_path = ''
as $$
  insert into public.stripe_events as e (id, type, created, outcome, tenant_id, detail, customer_id, price_ids)
  values (record_stripe_event.id, record_stripe_event.type, record_stripe_event.created,
          record_stripe_event.outcome, record_stripe_event.tenant_id, record_stripe_event.detail,
          record_stripe_event.customer_id, record_stripe_event.price_ids)
  on conflict on constraint stripe_events_pkey do update set
    type = excluded.type,
    created = excluded.created,
    outcome = excluded.outcome,
    tenant_id = excluded.tenant_id,
    detail = excluded.detail,
    customer_id = excluded.customer_id,
    price_ids = excluded.price_ids,
    received_at = now()
  where e.outcome in ('unknown_tenant', 'rejected')
  returning true;
$$;

select private.grant_to_service_role_only(
  'private.require_stripe_id(text, text, text, text)',
  'private.record_stripe_event(text, text, timestamptz, text, uuid, text, text, text[])'
);

-- Maps a Stripe price to a plan, or moves an existing mapping to another plan.
create or replace function public.upsert_plan_price(stripe_price_id text, plan_id text)
returns public.plan_prices
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  mapping public.plan_prices;
begin
  perform private.require_stripe_id('stripe_price_id', 'price', 'price', upsert_plan_price.stripe_price_id);
  if not exists (select 1 from public.plans p where p.id = upsert_plan_price.plan_id) then
    raise exception 'no plan has the id %', coalesce(quote_literal(upsert_plan_price.plan_id), 'null')
      using hint = 'Create the plan first with set_plan.';
  end if;

  insert into public.plan_prices as pp (stripe_price_id, plan_id)
  values (upsert_plan_price.stripe_price_id, upsert_plan_price.plan_id)
  on conflict on constraint plan_prices_pkey do update set plan_id = excluded.plan_id
  returning pp.* into mapping;
  return mapping;
end;
$$;

-- Within one second, which kind of subscription event describes the later state.
create or replace function private.subscription_event_rank(event_type text)
returns int
language sql immutable
set search_path = ''
as $$
  select case subscription_event_rank.event_type
    when 'customer.subscription.created' then 0
    when 'customer.subscription.deleted' then 2
    else 1
  end
$$;

select private.grant_to_service_role_only('private.subscription_event_rank(text)');

-- The plan a subscription's prices stand for: that of its first mapped price (null when
-- none is mapped). plpgsql: with its pinned search_path a sql function is never inlined.
create or replace function private.plan_of_prices(price_ids text[])
returns text
language plpgsql stable
set search_path = ''
as $$
begin
  return (
    select pp.plan_id
    from unnest(plan_of_prices.price_ids) with ordinality as u(price_id, ord)
    join public.plan_prices pp on pp.stripe_price_id = u.price_id
    order by u.ord
    limit 1);
end;
$$;

select private.grant_to_service_role_only('private.plan_of_prices(text[])');

-- Applies one customer.subscription.* event to the tenant it belongs to, in one transaction.
--
-- The tenant is the one the subscription was recorded for, else the one holding the
-- customer id, else tenant_hint (the subscription's metadata.flowmeter_tenant_id).
-- Returns {outcome, ...}; outcome is applied, stale, superseded, unknown_tenant (each
-- recorded in stripe_events) or duplicate (the event was recorded before; nothing changes).
--
-- Ordering, per subscription (stripe_subscriptions): an event created before the one its
-- subscription holds is stale. Stripe's `created` has one-second resolution; within the
-- same second a later kind of event wins (created < updated < deleted), and two updates
-- apply in arrival order. A deletion is a subscription's last event, so its end is final:
-- its creation or update arriving after it is stale, and never makes it the tenant's.
--
-- The tenant's subscription, whatever the events' order: its newest live one (by Stripe's
-- `created` on the subscription), else its newest. A customer who buys a new subscription
-- moves onto it; the end of the older one, or any update of it (set to cancel at period
-- end), leaves the tenant on the new one; and when the new one ends while the older one is
-- live, the tenant is back on the older one. An event whose subscription is not the
-- tenant's is superseded.
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
  subscription_created timestamptz,
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
  recorded_state public.stripe_subscriptions;
  event_state public.stripe_subscriptions;
  chosen public.stripe_subscriptions;
  mapped_plan text;
  unmapped text[];
  result_outcome text;
  result_detail text;
  recorded boolean;
begin
  perform private.require_stripe_id('event_id', 'event', 'evt', evt);
  if kind is null or kind !~ '^customer\.subscription\.[a-z_]+$' then
    raise exception 'event_type must be a customer.subscription.* event type, got %', coalesce(quote_literal(kind), 'null');
  end if;
  if event_at is null then
    raise exception 'event_created is required (the event''s created time)';
  end if;
  perform private.require_stripe_id('subscription_id', 'subscription', 'sub', sub);
  if apply_stripe_subscription_event.subscription_created is null then
    raise exception 'subscription_created is required (the subscription''s created time)';
  end if;
  perform private.require_stripe_id('customer_id', 'customer', 'cus', cus);
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
  -- state the previous one left (its subscriptions are written only under this lock).
  select * into t from public.tenants x
  where x.id = (select s.tenant_id from public.stripe_subscriptions s where s.id = sub)
  for update;
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
  else
    select * into recorded_state from public.stripe_subscriptions s where s.id = sub;
    if recorded_state.synced_at > event_at then
      result_outcome := 'stale';
      result_detail := format('subscription %s holds the state of a %s event created at %s',
                              sub, recorded_state.synced_type, recorded_state.synced_at);
    elsif recorded_state.synced_at = event_at
          and private.subscription_event_rank(recorded_state.synced_type) > private.subscription_event_rank(kind) then
      result_outcome := 'stale';
      result_detail := format('subscription %s holds the state of a %s event created in the same second',
                              sub, recorded_state.synced_type);
    else
      event_state := row(
        sub, t.id, cus, apply_stripe_subscription_event.subscription_created, new_status, prices,
        apply_stripe_subscription_event.period_start, apply_stripe_subscription_event.period_end,
        apply_stripe_subscription_event.trial_end, event_at, kind
      )::public.stripe_subscriptions;
      -- The tenant's subscription once this event's state is recorded: its newest live
      -- one, else its newest; of two created in the same second, the one it holds.
      select c.* into chosen
      from (
        select s.* from public.stripe_subscriptions s where s.tenant_id = t.id and s.id <> sub
        union all
        select (event_state).*
      ) c
      order by c.status <> all (terminal) desc, c.created desc,
               c.id = t.stripe_subscription_id desc, c.id
      limit 1;

      if chosen.id = sub then
        result_outcome := 'applied';
      else
        result_outcome := 'superseded';
        result_detail := case
          when new_status = any (terminal) then
            format('subscription %s ended; the tenant''s subscription is %s (%s)', sub, chosen.id, chosen.status)
          else
            format('subscription %s was not created after the tenant''s live subscription %s (%s)',
                   sub, chosen.id, chosen.status)
        end;
      end if;

      mapped_plan := private.plan_of_prices(chosen.price_ids);
      if mapped_plan is null and result_outcome = 'applied' then
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
  end if;

  recorded := private.record_stripe_event(evt, kind, event_at, result_outcome, t.id, result_detail, cus, prices);
  if recorded is null then
    return jsonb_build_object('outcome', 'duplicate');
  end if;

  if event_state.id is not null then
    insert into public.stripe_subscriptions
    select (event_state).*
    on conflict on constraint stripe_subscriptions_pkey do update set
      customer_id = excluded.customer_id,
      created = excluded.created,
      status = excluded.status,
      price_ids = excluded.price_ids,
      period_start = excluded.period_start,
      period_end = excluded.period_end,
      trial_end = excluded.trial_end,
      synced_at = excluded.synced_at,
      synced_type = excluded.synced_type;

    -- The tenant takes the state of its subscription when that is this event's, or when
    -- this event made another one the tenant's (the newer one ended, the older is live).
    if chosen.id = sub or chosen.id is distinct from t.stripe_subscription_id then
      update public.tenants x set
        subscription_status = chosen.status,
        stripe_customer_id = chosen.customer_id,
        stripe_subscription_id = chosen.id,
        current_period_start = chosen.period_start,
        current_period_end = chosen.period_end,
        trial_ends_at = chosen.trial_end,
        plan_id = coalesce(mapped_plan, x.plan_id),
        stripe_synced_at = chosen.synced_at
      where x.id = t.id
      returning * into t;
    end if;
  end if;

  if result_outcome = 'applied' then
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

select private.grant_to_service_role_only(
  'public.upsert_plan_price(text, text)',
  'public.apply_stripe_subscription_event(text, text, timestamptz, text, text, text, text[], timestamptz, timestamptz, timestamptz, timestamptz, uuid)'
);

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
  perform private.require_stripe_id('event_id', 'event', 'evt', record_rejected_stripe_event.event_id);
  if coalesce(record_rejected_stripe_event.reason, '') = '' then
    raise exception 'reason is required: say why the event cannot be applied';
  end if;
  recorded := private.record_stripe_event(
    record_rejected_stripe_event.event_id, left(record_rejected_stripe_event.event_type, 200),
    record_rejected_stripe_event.event_created, 'rejected', null, left(record_rejected_stripe_event.reason, 2000));
  return jsonb_build_object('outcome', case when recorded then 'rejected' else 'duplicate' end);
end;
$$;

select private.grant_to_service_role_only('public.record_rejected_stripe_event(text, text, text, timestamptz)');

-- Rejected events Stripe still holds (it keeps events 30 days, so they can be resent from
-- the Dashboard): until one is resent and applies, its subscription's state is not synced.
-- And customers who bought one of the plans with no tenant to bill: their newest
-- subscription event of the last 30 days found no tenant, is not the subscription's end,
-- and has a price mapped to a plan; until a tenant is linked and the event resent (or the
-- next one arrives), flowmeter applies no plan to them and bills none of their usage.
-- Neither names a tenant for certain, so a view limited to some tenants (tenant_ids) shows
-- none.
create or replace function private.stripe_event_status(tenant_ids uuid[] default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  with rejected as (
    select e.* from public.stripe_events e
    where stripe_event_status.tenant_ids is null
      and e.outcome = 'rejected' and e.received_at > now() - interval '30 days'
  ),
  newest_per_customer as (
    select distinct on (e.customer_id) e.*
    from public.stripe_events e
    where stripe_event_status.tenant_ids is null
      and e.customer_id is not null and e.received_at > now() - interval '30 days'
    order by e.customer_id, e.created desc, e.received_at desc
  ),
  unbilled as (
    select e.id, e.customer_id, e.received_at,
           private.plan_of_prices(e.price_ids) as plan_id
    from newest_per_customer e
    where e.outcome = 'unknown_tenant' and e.type <> 'customer.subscription.deleted'
  ),
  unbilled_on_plan as (
    select * from unbilled u where u.plan_id is not null
  ),
  latest_unbilled as (
    select * from unbilled_on_plan u order by u.received_at desc, u.id desc limit 1
  )
  select jsonb_build_object(
    'rejected', (select count(*) from rejected),
    'last_rejected_at', (select max(received_at) from rejected),
    'last_rejected_id', (select r.id from rejected r order by r.received_at desc, r.id desc limit 1),
    'last_reason', (select r.detail from rejected r order by r.received_at desc, r.id desc limit 1),
    'customers_without_tenant', (select count(*) from unbilled_on_plan),
    'last_customer_without_tenant', (
      select jsonb_build_object('customer_id', l.customer_id, 'plan_id', l.plan_id, 'event_id', l.id)
      from latest_unbilled l)
  );
$$;

select private.grant_to_service_role_only('private.stripe_event_status(uuid[])');
