-- Usage alerts: one alert per tenant, billing period and threshold, and its deliveries.
--
-- When usage_counters.billable reaches a percentage of the plan's quota listed in
-- plans.alert_thresholds, a trigger on the counters inserts the alert in the transaction
-- that moved them. The unique key (tenant, period, threshold) makes a second alert for the
-- same crossing impossible, however many collector runs race. Each new alert gets one
-- delivery per enabled channel (the tenant's own and the global ones); a sender claims
-- deliveries under a lease, sends them with a stable key and records the outcome, retried
-- with exponential backoff. The in-app channel is the alert row itself: members read
-- their tenant's alerts and may set read_at, nothing else. Channels hold secrets (Slack
-- webhook URLs) and are service-only.

-- Alerts ------------------------------------------------------------------------------

create table public.usage_alerts (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  period_end timestamptz not null,
  -- Percent of the quota, as listed in plans.alert_thresholds.
  threshold smallint not null
    constraint usage_alerts_threshold_range check (threshold between 1 and 1000),
  -- Billable executions when the threshold was reached, and the quota in force then.
  used bigint not null,
  quota bigint not null,
  created_at timestamptz not null default now(),
  -- Set by a member of the tenant (mark_alert_read).
  read_at timestamptz,
  constraint usage_alerts_once_per_threshold unique (tenant_id, period_start, threshold),
  constraint usage_alerts_period_ordered check (period_end > period_start)
);
comment on table public.usage_alerts is 'One row per tenant, billing period and threshold reached; the in-app alert.';

-- Channels ----------------------------------------------------------------------------

create table public.alert_channels (
  id bigint generated always as identity primary key,
  -- null: a global channel, which receives every tenant's alerts (the operator's own).
  tenant_id uuid references public.tenants (id) on delete cascade,
  kind text not null
    constraint alert_channels_kind_known check (kind in ('slack', 'email')),
  -- A Slack incoming-webhook URL (a secret: whoever has it can post) or an e-mail address.
  target text not null,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  constraint alert_channels_target_format check (
    (kind = 'slack' and target ~ '^https://hooks\.slack\.com/\S+$')
    or (kind = 'email' and target ~ '^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$')
  ),
  -- Also serves the tenant_id foreign key (leading column).
  constraint alert_channels_unique_target unique nulls not distinct (tenant_id, kind, target)
);
comment on table public.alert_channels is 'Where alerts are sent besides the app: Slack incoming webhooks and e-mail addresses, per tenant or global.';

-- Deliveries --------------------------------------------------------------------------

create table public.alert_deliveries (
  alert_id bigint not null references public.usage_alerts (id) on delete cascade,
  channel_id bigint not null references public.alert_channels (id) on delete cascade,
  status text not null default 'pending'
    constraint alert_deliveries_status_known check (status in ('pending', 'sending', 'delivered', 'failed')),
  -- Attempts started (counted when claimed, so a sender that dies mid-send counts too).
  attempts int not null default 0,
  -- Sent with every attempt (e-mail Idempotency-Key), so the provider can drop a repeat.
  delivery_key text not null
    generated always as ('flowmeter-alert-' || alert_id::text || '-' || channel_id::text) stored,
  lease_expires_at timestamptz,
  -- null once delivered or given up.
  next_attempt_at timestamptz default now(),
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (alert_id, channel_id),
  constraint alert_deliveries_delivery_key_unique unique (delivery_key)
);
comment on table public.alert_deliveries is 'One row per alert and channel: at-least-once delivery with a stable key, retried with backoff.';

create index alert_deliveries_channel_idx on public.alert_deliveries (channel_id);
-- What claim_alert_deliveries looks for: due retries, and sends whose sender vanished.
create index alert_deliveries_due_idx on public.alert_deliveries (next_attempt_at)
  where status in ('pending', 'failed');
create index alert_deliveries_leased_idx on public.alert_deliveries (lease_expires_at)
  where status = 'sending';

-- Raising alerts ----------------------------------------------------------------------

-- After the counters of a tenant-period grow: one alert per threshold now reached and not
-- yet alerted, each with a delivery per enabled channel. Runs in the collector's
-- transaction while it holds the counters row, so concurrent ingests for one tenant take
-- turns here; the unique key settles any race left. Unlimited plans have no quota and
-- raise nothing; a trialing tenant's quota is the plan's trial quota.
create or replace function private.raise_usage_alerts()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  plan_quota bigint;
  plan_thresholds smallint[];
begin
  select private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                            p.included_executions, p.trial_included_executions),
         p.alert_thresholds
    into plan_quota, plan_thresholds
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  where t.id = new.tenant_id;
  -- No quota (an unlimited plan): nothing to alert on.
  if plan_quota is null then
    return null;
  end if;

  with reached as (
    insert into public.usage_alerts (tenant_id, period_start, period_end, threshold, used, quota)
    select new.tenant_id, new.period_start, new.period_end, x.threshold, new.billable, plan_quota
    from (select distinct unnest(plan_thresholds) as threshold) x
    where new.billable * 100 >= x.threshold::bigint * plan_quota
      and not exists (
        select 1 from public.usage_alerts a
        where a.tenant_id = new.tenant_id and a.period_start = new.period_start
          and a.threshold = x.threshold
      )
    on conflict on constraint usage_alerts_once_per_threshold do nothing
    returning id
  )
  insert into public.alert_deliveries (alert_id, channel_id)
  select r.id, ch.id
  from reached r
  cross join public.alert_channels ch
  where ch.enabled and (ch.tenant_id = new.tenant_id or ch.tenant_id is null);

  return null;
end;
$$;
revoke all on function private.raise_usage_alerts() from public;

-- Two triggers rather than one so each can skip, without a call, the writes that cannot
-- reach a threshold (enforcement creating an empty counters row, pages without billable runs).
create trigger usage_counters_raise_alerts_on_insert after insert on public.usage_counters
  for each row when (new.billable > 0)
  execute function private.raise_usage_alerts();

create trigger usage_counters_raise_alerts_on_update after update of billable on public.usage_counters
  for each row when (new.billable > old.billable)
  execute function private.raise_usage_alerts();

-- Privileges and row-level security ---------------------------------------------------

alter table public.usage_alerts enable row level security;
alter table public.alert_channels enable row level security;
alter table public.alert_deliveries enable row level security;

revoke all on table public.usage_alerts, public.alert_channels, public.alert_deliveries
  from public, anon, authenticated;
grant select on table public.usage_alerts to authenticated;
-- Members acknowledge an alert and can change nothing else about it.
grant update (read_at) on table public.usage_alerts to authenticated;
grant all on table public.usage_alerts, public.alert_channels, public.alert_deliveries
  to service_role;

create policy usage_alerts_select_member on public.usage_alerts
  for select to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));

create policy usage_alerts_update_member on public.usage_alerts
  for update to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())))
  with check (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));

-- Functions ---------------------------------------------------------------------------

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
  order by ch.tenant_id nulls first, ch.id;
$$;

-- Turns a channel off (its pending deliveries are no longer claimed) or back on. Unknown
-- channel: 404.
create or replace function public.set_alert_channel_enabled(channel_id bigint, enabled boolean)
returns public.alert_channels
language plpgsql
set search_path = ''
as $$
declare
  channel public.alert_channels;
begin
  update public.alert_channels c set enabled = set_alert_channel_enabled.enabled
  where c.id = set_alert_channel_enabled.channel_id
  returning c.* into channel;
  if not found then
    raise exception 'alert channel % not found', set_alert_channel_enabled.channel_id
      using errcode = 'PT404', hint = 'flowmeter alerts channels list shows the ids';
  end if;
  return channel;
end;
$$;

-- Claims up to max_rows due deliveries for lease_seconds: new ones, failed ones whose
-- backoff is over, and sends whose sender's lease ran out without an outcome. Concurrent
-- senders skip each other's rows. A delivery gets at most 10 attempts; one whose 10th
-- attempt never reported is given up here. tenant_ids limits the claim to those tenants'
-- alerts (an operator's targeted run).
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
  with abandoned as (
    update public.alert_deliveries d
    set status = 'failed', lease_expires_at = null, next_attempt_at = null,
        last_error = 'gave up: the last attempt never reported an outcome'
    where d.status = 'sending' and d.lease_expires_at <= now() and d.attempts >= 10
      and (claim_alert_deliveries.tenant_ids is null or exists (
        select 1 from public.usage_alerts a
        where a.id = d.alert_id and a.tenant_id = any (claim_alert_deliveries.tenant_ids)))
  ),
  due as (
    select d.alert_id, d.channel_id
    from public.alert_deliveries d
    join public.alert_channels ch on ch.id = d.channel_id
    where ch.enabled
      and d.attempts < 10
      and (
        (d.status in ('pending', 'failed') and d.next_attempt_at <= now())
        or (d.status = 'sending' and d.lease_expires_at <= now())
      )
      and (claim_alert_deliveries.tenant_ids is null or exists (
        select 1 from public.usage_alerts a
        where a.id = d.alert_id and a.tenant_id = any (claim_alert_deliveries.tenant_ids)))
    order by d.next_attempt_at, d.alert_id, d.channel_id
    limit greatest(claim_alert_deliveries.max_rows, 0)
    for update of d skip locked
  ),
  claimed as (
    update public.alert_deliveries d
    set status = 'sending',
        attempts = d.attempts + 1,
        lease_expires_at = now() + make_interval(secs => claim_alert_deliveries.lease_seconds)
    from due
    where d.alert_id = due.alert_id and d.channel_id = due.channel_id
    returning d.alert_id, d.channel_id, d.delivery_key, d.attempts
  )
  select c.alert_id, c.channel_id, c.delivery_key, c.attempts,
         ch.kind, ch.target, t.id, t.name, p.name, p.limit_policy,
         a.threshold, a.used, a.quota, a.period_start, a.period_end
  from claimed c
  join public.usage_alerts a on a.id = c.alert_id
  join public.alert_channels ch on ch.id = c.channel_id
  join public.tenants t on t.id = a.tenant_id
  join public.plans p on p.id = t.plan_id
  order by c.channel_id, c.alert_id;
$$;

-- Records one attempt's outcome. Delivered is final (whichever sender reports it); a
-- failure counts only for a delivery still being sent and schedules the next attempt
-- 30 s, 1 min, 2 min, … at most 1 h later, or gives up after the 10th. Returns the
-- delivery as it now is, or null when nothing changed (already delivered, or the lease
-- was lost and another sender has it).
create or replace function public.finish_alert_delivery(
  alert_id bigint,
  channel_id bigint,
  delivered boolean,
  error text default null
)
returns public.alert_deliveries
language sql
set search_path = ''
as $$
  update public.alert_deliveries d
  set status = case when finish_alert_delivery.delivered then 'delivered' else 'failed' end,
      delivered_at = case when finish_alert_delivery.delivered then now() end,
      lease_expires_at = null,
      next_attempt_at = case
        when finish_alert_delivery.delivered or d.attempts >= 10 then null
        else now() + least(interval '1 hour', interval '30 seconds' * power(2, greatest(d.attempts, 1) - 1))
      end,
      last_error = case
        when finish_alert_delivery.delivered then null
        else left(coalesce(finish_alert_delivery.error, 'unknown error'), 2000)
      end
  where d.alert_id = finish_alert_delivery.alert_id
    and d.channel_id = finish_alert_delivery.channel_id
    and (
      (finish_alert_delivery.delivered and d.status <> 'delivered')
      or (not finish_alert_delivery.delivered and d.status = 'sending')
    )
  returning d.*;
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

revoke execute on function
  public.add_alert_channel(text, text, uuid),
  public.list_alert_channels(uuid[]),
  public.set_alert_channel_enabled(bigint, boolean),
  public.claim_alert_deliveries(int, int, uuid[]),
  public.finish_alert_delivery(bigint, bigint, boolean, text),
  public.mark_alert_read(bigint)
  from public, anon, authenticated;
grant execute on function
  public.add_alert_channel(text, text, uuid),
  public.list_alert_channels(uuid[]),
  public.set_alert_channel_enabled(bigint, boolean),
  public.claim_alert_deliveries(int, int, uuid[]),
  public.finish_alert_delivery(bigint, bigint, boolean, text)
  to service_role;
grant execute on function public.mark_alert_read(bigint) to authenticated, service_role;
