-- Webhook functions: recording events in the outbox, endpoints and their secrets,
-- claiming and finishing deliveries (what status shows is private.webhook_delivery_status,
-- beside the tables). Secrets arrive encrypted by
-- the application; URLs arrive checked by it (src/webhooks).

-- Events ------------------------------------------------------------------------------

-- Records one event and a delivery for every enabled endpoint subscribed to its type, or
-- for the given endpoints whatever they subscribe to (a test event). The key names the cause: recording the
-- same cause again returns the event recorded first and creates nothing. The body is
-- rendered here, once: the Standard Webhooks envelope around the payload.
create or replace function private.record_webhook_event(
  event_type text,
  idempotency_key text,
  tenant_id uuid,
  payload jsonb,
  endpoint_ids uuid[] default null
)
returns public.webhook_events
language plpgsql
set search_path = ''
as $$
declare
  event public.webhook_events;
begin
  insert into public.webhook_events as e (type, idempotency_key, tenant_id, payload, body)
  values (
    record_webhook_event.event_type, record_webhook_event.idempotency_key,
    record_webhook_event.tenant_id, record_webhook_event.payload,
    jsonb_build_object(
      'type', record_webhook_event.event_type,
      'timestamp', to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'data', record_webhook_event.payload)::text)
  on conflict on constraint webhook_events_idempotency_key_unique do nothing
  returning e.* into event;
  if event.id is null then
    select e.* into event from public.webhook_events e
    where e.idempotency_key = record_webhook_event.idempotency_key;
    return event;
  end if;
  insert into public.webhook_deliveries (event_id, endpoint_id)
  select event.id, ep.id
  from public.webhook_endpoints ep
  where ep.enabled
    and case when record_webhook_event.endpoint_ids is null then event.type = any (ep.event_types)
             else ep.id = any (record_webhook_event.endpoint_ids) end;
  return event;
end;
$$;
select private.grant_to_service_role_only('private.record_webhook_event(text, text, uuid, jsonb, uuid[])');

-- The same, for events whose cause happens in the application: a retry with the same
-- key returns the event recorded first.
create or replace function public.record_webhook_event(
  event_type text,
  idempotency_key text,
  payload jsonb,
  tenant_id uuid default null,
  endpoint_ids uuid[] default null
)
returns public.webhook_events
language sql
set search_path = ''
as $$
  select * from private.record_webhook_event(
    record_webhook_event.event_type, record_webhook_event.idempotency_key,
    record_webhook_event.tenant_id, record_webhook_event.payload, record_webhook_event.endpoint_ids);
$$;

-- A tenant blocked at its limit, once per billing period: enforce_usage calls this only
-- on a block, and the existence check keeps every later block of the period to one index
-- probe.
create or replace function private.record_tenant_blocked(
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  committed bigint,
  quota bigint
)
returns void
language plpgsql
set search_path = ''
as $$
declare
  key text := 'tenant.blocked:' || record_tenant_blocked.tenant_id || ':'
              || extract(epoch from record_tenant_blocked.period_start)::bigint;
begin
  if exists (select 1 from public.webhook_events e where e.idempotency_key = key) then
    return;
  end if;
  perform private.record_webhook_event(
    'tenant.blocked', key, record_tenant_blocked.tenant_id,
    jsonb_build_object(
      'tenant', private.webhook_tenant(record_tenant_blocked.tenant_id),
      'reason', 'limit_reached', 'committed', record_tenant_blocked.committed,
      'limit', record_tenant_blocked.quota,
      'period_start', record_tenant_blocked.period_start,
      'period_end', record_tenant_blocked.period_end));
end;
$$;
select private.grant_to_service_role_only('private.record_tenant_blocked(uuid, timestamptz, timestamptz, bigint, bigint)');

-- Endpoints ---------------------------------------------------------------------------

-- An unknown endpoint: 404, with where the ids are.
create or replace function private.webhook_endpoint_not_found(endpoint_id uuid)
returns void
language sql
set search_path = ''
as $$
  select private.raise_not_found('webhook endpoint', webhook_endpoint_not_found.endpoint_id::text,
                                 'flowmeter webhooks list shows the ids');
$$;
select private.grant_to_service_role_only('private.webhook_endpoint_not_found(uuid)');

create or replace function public.add_webhook_endpoint(
  id uuid,
  url text,
  event_types text[],
  secret_ciphertext text,
  description text default null
)
returns public.webhook_endpoints
language sql
set search_path = ''
as $$
  with endpoint as (
    insert into public.webhook_endpoints as ep (id, url, event_types, description)
    values (add_webhook_endpoint.id, add_webhook_endpoint.url,
            (select array_agg(distinct t order by t) from unnest(add_webhook_endpoint.event_types) t),
            add_webhook_endpoint.description)
    returning ep.*
  ),
  secret as (
    insert into public.webhook_endpoint_secrets (endpoint_id, secret_ciphertext)
    select e.id, add_webhook_endpoint.secret_ciphertext from endpoint e
  )
  select * from endpoint;
$$;

-- Endpoints with what they have delivered. failing: deliveries that failed and will be
-- retried; given_up: deliveries that failed for the last time.
create or replace function public.list_webhook_endpoints(endpoint_ids uuid[] default null)
returns table (
  id uuid,
  url text,
  description text,
  event_types text[],
  enabled boolean,
  created_at timestamptz,
  valid_secrets int,
  delivered bigint,
  pending bigint,
  failing bigint,
  given_up bigint,
  last_delivered_at timestamptz,
  last_error text
)
language sql stable
set search_path = ''
as $$
  select ep.id, ep.url, ep.description, ep.event_types, ep.enabled, ep.created_at,
         (select count(*)::int from public.webhook_endpoint_secrets s
          where s.endpoint_id = ep.id and (s.expires_at is null or s.expires_at > now())),
         count(d.event_id) filter (where d.status = 'delivered'),
         count(d.event_id) filter (where d.status in ('pending', 'sending')),
         count(d.event_id) filter (where d.status = 'failed' and d.next_attempt_at is not null),
         count(d.event_id) filter (where d.status = 'failed' and d.next_attempt_at is null),
         max(d.delivered_at),
         (select d2.last_error from public.webhook_deliveries d2
          where d2.endpoint_id = ep.id and d2.status = 'failed'
          order by d2.last_attempt_at desc nulls last limit 1)
  from public.webhook_endpoints ep
  left join public.webhook_deliveries d on d.endpoint_id = ep.id
  where list_webhook_endpoints.endpoint_ids is null or ep.id = any (list_webhook_endpoints.endpoint_ids)
  group by ep.id
  order by ep.created_at, ep.id
  limit private.api_max_rows();
$$;

-- A disabled endpoint gets no new deliveries and its due ones are not claimed.
create or replace function public.set_webhook_endpoint_enabled(endpoint_id uuid, enabled boolean)
returns public.webhook_endpoints
language sql
set search_path = ''
as $$
  select private.set_enabled(null::public.webhook_endpoints, set_webhook_endpoint_enabled.endpoint_id,
                             set_webhook_endpoint_enabled.enabled,
                             'webhook endpoint', 'flowmeter webhooks list shows the ids');
$$;

-- The new secret signs from now on; the ones still valid keep signing for grace_seconds,
-- so receivers can switch without rejecting a delivery. Returns the endpoint.
create or replace function public.rotate_webhook_secret(
  endpoint_id uuid,
  secret_ciphertext text,
  grace_seconds int default 86400
)
returns public.webhook_endpoints
language plpgsql
set search_path = ''
as $$
declare
  endpoint public.webhook_endpoints;
begin
  if rotate_webhook_secret.grace_seconds is null or rotate_webhook_secret.grace_seconds < 0 then
    raise exception 'grace_seconds must be 0 or more' using errcode = '22023';
  end if;
  select ep.* into endpoint from public.webhook_endpoints ep
  where ep.id = rotate_webhook_secret.endpoint_id for update;
  if not found then
    perform private.webhook_endpoint_not_found(rotate_webhook_secret.endpoint_id);
  end if;
  update public.webhook_endpoint_secrets s
  set expires_at = least(coalesce(s.expires_at, 'infinity'),
                         now() + make_interval(secs => rotate_webhook_secret.grace_seconds))
  where s.endpoint_id = endpoint.id and (s.expires_at is null or s.expires_at > now());
  insert into public.webhook_endpoint_secrets (endpoint_id, secret_ciphertext)
  values (endpoint.id, rotate_webhook_secret.secret_ciphertext);
  return endpoint;
end;
$$;

-- Deliveries ----------------------------------------------------------------------------

-- Claims up to max_rows due deliveries for lease_seconds (private.claim_deliveries) of
-- enabled endpoints; a delivery gets at most 8 attempts. Each row carries the event's
-- stored body and the endpoint's valid secrets, newest first. endpoint_ids limits the
-- claim to those endpoints.
create or replace function public.claim_webhook_deliveries(
  max_rows int default 20,
  lease_seconds int default 60,
  endpoint_ids uuid[] default null
)
returns table (
  event_id text,
  endpoint_id uuid,
  attempt int,
  lease_expires_at timestamptz,
  url text,
  event_type text,
  body text,
  secret_ciphertexts text[]
)
language sql
set search_path = ''
as $$
  with claimed as (
    select * from private.claim_deliveries(
      null::public.webhook_deliveries, 8,
      claim_webhook_deliveries.max_rows, claim_webhook_deliveries.lease_seconds,
      'exists (select 1 from public.webhook_endpoints ep where ep.id = d.endpoint_id and ep.enabled)',
      'd.endpoint_id = any ($1)',
      claim_webhook_deliveries.endpoint_ids)
  )
  select c.event_id, c.endpoint_id, c.attempts, c.lease_expires_at, ep.url, e.type, e.body,
         array(select s.secret_ciphertext from public.webhook_endpoint_secrets s
               where s.endpoint_id = ep.id and (s.expires_at is null or s.expires_at > now())
               order by s.id desc)
  from claimed c
  join public.webhook_events e on e.id = c.event_id
  join public.webhook_endpoints ep on ep.id = c.endpoint_id
  order by c.endpoint_id, e.created_at, c.event_id;
$$;

-- Records one attempt's outcome (private.finish_delivery; lease_expires_at as the claim
-- returned it) with the receiver's HTTP status. A failure is retried on the Standard
-- Webhooks / Svix schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; about 27 h in all),
-- each wait spread by ±20 %, and given up after the 8th attempt.
create or replace function public.finish_webhook_delivery(
  event_id text,
  endpoint_id uuid,
  lease_expires_at timestamptz,
  delivered boolean,
  http_status int default null,
  error text default null
)
returns public.webhook_deliveries
language sql
set search_path = ''
as $$
  select private.finish_delivery(
    null::public.webhook_deliveries,
    jsonb_build_object('event_id', finish_webhook_delivery.event_id, 'endpoint_id', finish_webhook_delivery.endpoint_id,
                       'lease_expires_at', finish_webhook_delivery.lease_expires_at),
    finish_webhook_delivery.delivered, finish_webhook_delivery.error,
    array[5, 300, 1800, 7200, 18000, 36000, 36000], 0.2,
    jsonb_build_object('last_status', finish_webhook_delivery.http_status));
$$;

-- Claimed deliveries the sender had no time to attempt (private.return_deliveries); keys:
-- [{event_id, endpoint_id, lease_expires_at}, …], as the claim returned them.
create or replace function public.return_webhook_deliveries(keys jsonb)
returns int
language sql
set search_path = ''
as $$
  select private.return_deliveries(null::public.webhook_deliveries, return_webhook_deliveries.keys);
$$;

-- Deliveries newest first: failed_only keeps those failing or given up; endpoint_ids
-- limits them to those endpoints.
create or replace function public.list_webhook_deliveries(
  endpoint_ids uuid[] default null,
  failed_only boolean default false,
  max_rows int default 50
)
returns table (
  event_id text,
  event_type text,
  endpoint_id uuid,
  url text,
  status text,
  attempts int,
  next_attempt_at timestamptz,
  last_status int,
  last_error text,
  last_attempt_at timestamptz,
  delivered_at timestamptz,
  created_at timestamptz
)
language sql stable
set search_path = ''
as $$
  select d.event_id, e.type, d.endpoint_id, ep.url,
         case when d.status = 'failed' and d.next_attempt_at is null then 'given_up' else d.status end,
         d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.last_attempt_at,
         d.delivered_at, d.created_at
  from public.webhook_deliveries d
  join public.webhook_events e on e.id = d.event_id
  join public.webhook_endpoints ep on ep.id = d.endpoint_id
  where (list_webhook_deliveries.endpoint_ids is null or d.endpoint_id = any (list_webhook_deliveries.endpoint_ids))
    and (not coalesce(list_webhook_deliveries.failed_only, false) or d.status = 'failed')
  order by d.created_at desc, d.event_id desc
  limit greatest(least(list_webhook_deliveries.max_rows, private.api_max_rows()), 0);
$$;

-- Deliveries given up on get a fresh set of attempts, due now (after the receiver is
-- fixed). Returns how many.
create or replace function public.retry_webhook_deliveries(endpoint_id uuid)
returns int
language plpgsql
set search_path = ''
as $$
declare
  retried int;
begin
  if not exists (select 1 from public.webhook_endpoints ep where ep.id = retry_webhook_deliveries.endpoint_id) then
    perform private.webhook_endpoint_not_found(retry_webhook_deliveries.endpoint_id);
  end if;
  select count(*) into retried
  from private.resend_deliveries(null::public.webhook_deliveries, 'd.endpoint_id = ($1)[1] and d.next_attempt_at is null',
                                 array[retry_webhook_deliveries.endpoint_id]);
  return retried;
end;
$$;

select private.grant_to_service_role_only(
  'public.record_webhook_event(text, text, jsonb, uuid, uuid[])',
  'public.add_webhook_endpoint(uuid, text, text[], text, text)',
  'public.list_webhook_endpoints(uuid[])',
  'public.set_webhook_endpoint_enabled(uuid, boolean)',
  'public.rotate_webhook_secret(uuid, text, int)',
  'public.claim_webhook_deliveries(int, int, uuid[])',
  'public.finish_webhook_delivery(text, uuid, timestamptz, boolean, int, text)',
  'public.return_webhook_deliveries(jsonb)',
  'public.list_webhook_deliveries(uuid[], boolean, int)',
  'public.retry_webhook_deliveries(uuid)'
);
