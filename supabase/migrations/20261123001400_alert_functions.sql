-- Alert functions: channels, claiming and finishing deliveries, marking an alert read.
-- Alerts themselves are raised by a trigger on the counters (usage).

-- Adds a channel (tenant_id null = every tenant's alerts), or re-enables an existing one.
create or replace function public.add_alert_channel(
  kind text,
  target text,
  tenant_id uuid default null
)
returns public.alert_channels
language sql
set search_path = ''
as $$
  insert into public.alert_channels as c (tenant_id, kind, target)
  values (add_alert_channel.tenant_id, add_alert_channel.kind, add_alert_channel.target)
  on conflict on constraint alert_channels_unique_target do update set enabled = true
  returning c.*;
$$;

-- Channels with what they have delivered, for the operator (flowmeter alerts channels
-- list): tenant_ids limits them to those tenants' own channels plus the global ones. A
-- Slack webhook URL is a secret, so only its host and workspace segment are shown.
create or replace function public.list_alert_channels(tenant_ids uuid[] default null)
returns table (
  id bigint,
  tenant_id uuid,
  tenant_name text,
  kind text,
  target text,
  enabled boolean,
  created_at timestamptz,
  delivered bigint,
  pending bigint,
  given_up bigint,
  last_delivered_at timestamptz
)
language sql stable
set search_path = ''
as $$
  select ch.id, ch.tenant_id, t.name, ch.kind,
         case when ch.kind = 'slack'
              then regexp_replace(ch.target, '^(https://hooks\.slack\.com/services/[^/]+/).*$', '\1…')
              else ch.target end,
         ch.enabled, ch.created_at,
         count(*) filter (where d.status = 'delivered'),
         count(*) filter (where d.status in ('pending', 'sending') or (d.status = 'failed' and d.next_attempt_at is not null)),
         count(*) filter (where d.status = 'failed' and d.next_attempt_at is null),
         max(d.delivered_at)
  from public.alert_channels ch
  left join public.tenants t on t.id = ch.tenant_id
  left join public.alert_deliveries d on d.channel_id = ch.id
  where list_alert_channels.tenant_ids is null or ch.tenant_id is null
     or ch.tenant_id = any (list_alert_channels.tenant_ids)
  group by ch.id, t.name
  order by ch.tenant_id nulls first, ch.id
  limit private.api_max_rows();
$$;

-- Turns a channel off (its pending deliveries are no longer claimed) or back on. Unknown
-- channel: 404.
create or replace function public.set_alert_channel_enabled(channel_id bigint, enabled boolean)
returns public.alert_channels
language sql
set search_path = ''
as $$
  select private.set_enabled(null::public.alert_channels, set_alert_channel_enabled.channel_id,
                             set_alert_channel_enabled.enabled,
                             'alert channel', 'flowmeter alerts channels list shows the ids');
$$;

-- Claims up to max_rows due deliveries for lease_seconds (private.claim_deliveries) of
-- enabled channels; a delivery gets at most 10 attempts. tenant_ids limits the claim to
-- those tenants' alerts (an operator's targeted run).
create or replace function public.claim_alert_deliveries(
  max_rows int default 50,
  lease_seconds int default 60,
  tenant_ids uuid[] default null
)
returns table (
  alert_id bigint,
  channel_id bigint,
  delivery_key text,
  attempt int,
  lease_expires_at timestamptz,
  channel_kind text,
  channel_target text,
  tenant_id uuid,
  tenant_name text,
  plan_name text,
  limit_policy text,
  threshold smallint,
  used bigint,
  quota bigint,
  period_start timestamptz,
  period_end timestamptz
)
language sql
set search_path = ''
as $$
  with claimed as (
    select * from private.claim_deliveries(
      null::public.alert_deliveries, 10,
      claim_alert_deliveries.max_rows, claim_alert_deliveries.lease_seconds,
      'exists (select 1 from public.alert_channels ch where ch.id = d.channel_id and ch.enabled)',
      'exists (select 1 from public.usage_alerts a where a.id = d.alert_id and a.tenant_id = any ($1))',
      claim_alert_deliveries.tenant_ids)
  )
  select c.alert_id, c.channel_id, c.delivery_key, c.attempts, c.lease_expires_at,
         ch.kind, ch.target, t.id, t.name, p.name, p.limit_policy,
         a.threshold, a.used, a.quota, a.period_start, a.period_end
  from claimed c
  join public.usage_alerts a on a.id = c.alert_id
  join public.alert_channels ch on ch.id = c.channel_id
  join public.tenants t on t.id = a.tenant_id
  join public.plans p on p.id = t.plan_id
  order by c.channel_id, c.alert_id;
$$;

-- Records one attempt's outcome (private.finish_delivery; lease_expires_at as the claim
-- returned it): a failure is retried 30 s, 1 min, 2 min, … at most 1 h later, and given
-- up after the 10th attempt.
create or replace function public.finish_alert_delivery(
  alert_id bigint,
  channel_id bigint,
  lease_expires_at timestamptz,
  delivered boolean,
  error text default null
)
returns public.alert_deliveries
language sql
set search_path = ''
as $$
  select private.finish_delivery(
    null::public.alert_deliveries,
    jsonb_build_object('alert_id', finish_alert_delivery.alert_id, 'channel_id', finish_alert_delivery.channel_id,
                       'lease_expires_at', finish_alert_delivery.lease_expires_at),
    finish_alert_delivery.delivered, finish_alert_delivery.error,
    array[30, 60, 120, 240, 480, 960, 1920, 3600, 3600], 0);
$$;

-- Claimed deliveries the sender had no time to attempt (private.return_deliveries); keys:
-- [{alert_id, channel_id, lease_expires_at}, …], as the claim returned them.
create or replace function public.return_alert_deliveries(keys jsonb)
returns int
language sql
set search_path = ''
as $$
  select private.return_deliveries(null::public.alert_deliveries, return_alert_deliveries.keys);
$$;

-- For tenant users (authenticated), under their row-level security: sets read_at once.
-- Another tenant's alert, or one that does not exist, is not found (404).
create or replace function public.mark_alert_read(alert_id bigint)
returns public.usage_alerts
language plpgsql
set search_path = ''
as $$
declare
  alert public.usage_alerts;
begin
  update public.usage_alerts a
  set read_at = coalesce(a.read_at, now())
  where a.id = mark_alert_read.alert_id
  returning a.* into alert;
  if not found then
    raise exception 'alert % not found', mark_alert_read.alert_id using errcode = 'PT404';
  end if;
  return alert;
end;
$$;

select private.grant_to_service_role_only(
  'public.add_alert_channel(text, text, uuid)',
  'public.list_alert_channels(uuid[])',
  'public.set_alert_channel_enabled(bigint, boolean)',
  'public.claim_alert_deliveries(int, int, uuid[])',
  'public.finish_alert_delivery(bigint, bigint, timestamptz, boolean, text)',
  'public.return_alert_deliveries(jsonb)'
);
select private.grant_to_authenticated('public.mark_alert_read(bigint)');
