-- Usage alerts: one alert per tenant, billing period and threshold, and its deliveries.
--
-- When usage_counters.billable reaches a percentage of the plan's quota listed in
-- plans.alert_thresholds, a trigger on the counters (usage) inserts the alert in the
-- transaction that moved them. The unique key (tenant, period, threshold) makes a second alert for the
-- same crossing impossible, however many collector runs race. Each new alert gets one
-- delivery per enabled channel (the tenant's own and the global ones); a sender claims
-- deliveries under a lease, sends them with a stable key and records the outcome, retried
-- with exponential backoff (a delivery outbox, delivery_outbox). The in-app channel is the
-- alert row itself: members read their tenant's alerts and may set read_at, nothing else.
-- Channels hold secrets (Slack webhook URLs) and are service-only.

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

-- tenant_alerts lists a tenant's alerts newest first.
create index usage_alerts_tenant_id_idx on public.usage_alerts (tenant_id, id);

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
  -- Sent with every attempt (e-mail Idempotency-Key), so the provider can drop a repeat.
  delivery_key text not null
    generated always as ('flowmeter-alert-' || alert_id::text || '-' || channel_id::text) stored,
  -- status, attempts, the lease and the schedule, claimed and finished as every outbox is.
  like private.delivery_outbox including all,
  primary key (alert_id, channel_id),
  constraint alert_deliveries_delivery_key_unique unique (delivery_key)
);
comment on table public.alert_deliveries is 'One row per alert and channel: at-least-once delivery with a stable key, retried with backoff.';

create index alert_deliveries_channel_idx on public.alert_deliveries (channel_id);

-- Privileges and row-level security ---------------------------------------------------

select private.restrict_to_service_role('public.usage_alerts', 'public.alert_channels', 'public.alert_deliveries');
select private.grant_member_read('public.usage_alerts');
-- Members acknowledge an alert and can change nothing else about it.
grant update (read_at) on table public.usage_alerts to authenticated;

create policy usage_alerts_update_member on public.usage_alerts
  for update to authenticated
  using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())))
  with check (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));
